/* fuzz_webhook.c - libFuzzer target for the webhook channel's inbound path:
 * the body parser, the signature check and the excerpt used in reasons.
 * Run with tests/fuzz/run.sh webhook. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>

#include "parley/parley.h"
#include "plugin_util.h"
#include "webhook_parse.h"

static void hmac(const void *key, size_t key_len, const void *data, size_t len,
                 unsigned char out[32])
{
	unsigned int n = 32;
	HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n);
}

static int equals(const void *a, size_t a_len, const void *b, size_t b_len)
{
	return a_len == b_len && CRYPTO_memcmp(a, b, a_len) == 0;
}

/* Touch every string of the event so the sanitizers see a bad pointer. */
static bool item(void *arg, size_t index, const parley_event *ev)
{
	size_t *sum = arg;
	const char *s[] = { ev->dedupe_key, ev->external_id, ev->author.external_id,
	                    ev->author.handle, ev->author.display_name, ev->author.email,
	                    ev->author.phone, ev->author.profile_json, ev->text, ev->thread_id,
	                    ev->in_reply_to, ev->detail };
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
		if (s[i] != NULL)
			*sum += strlen(s[i]);
	*sum += index + ev->raw_json_len;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t sum = 0, n = 0;
	webhook_error err;
	char excerpt[128];
	char header[WEBHOOK_SIGNATURE_LEN + 1];

	(void)webhook_parse(data, size, item, &sum, &n, &err);
	pu_excerpt(data, size, 100, excerpt, sizeof(excerpt));
	/* The first line as a signature header over the rest. */
	const uint8_t *nl = memchr(data, '\n', size);
	if (nl != NULL && (size_t)(nl - data) < sizeof(header)) {
		size_t hl = (size_t)(nl - data);
		memcpy(header, data, hl);
		header[hl] = '\0';
		(void)webhook_verify_signature(header, "secret", 6, nl + 1, size - hl - 1, hmac, equals);
	}
	return 0;
}
