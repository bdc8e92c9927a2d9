/* fuzz_x.c - libFuzzer target for the x channel's inbound parsers: the
 * Account Activity webhook body, a recent-search answer, the webhook
 * signature check, the classification of an API answer and the time
 * parsers, all on the same untrusted bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>

#include "rfc3339.h"
#include "x_parse.h"

static void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                        unsigned char out[32])
{
	unsigned int out_len = 32;
	HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &out_len);
}

static int equals(const void *a, size_t a_len, const void *b, size_t b_len)
{
	return a_len == b_len && CRYPTO_memcmp(a, b, a_len) == 0;
}

/* Touch every string of the event so the sanitizers see bad pointers. */
static int consume(void *ctx, const parley_event *ev)
{
	size_t *total = ctx;
	const char *fields[] = { ev->dedupe_key, ev->external_id, ev->text, ev->thread_id,
	                         ev->in_reply_to, ev->author.external_id, ev->author.handle,
	                         ev->author.display_name, ev->author.profile_json, ev->raw_json };

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (fields[i] != NULL)
			*total += strlen(fields[i]);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	x_parse_stats stats;
	x_parse_error err;
	x_search_meta meta;
	x_send_result result;
	size_t total = 0;
	char *text;

	x_parse_activity(data, size, "2975699229", consume, &total, &stats, &err);
	x_parse_search(data, size, "2975699229", consume, &total, &meta, &stats, &err);
	x_classify_send(size > 0 ? 400 + data[0] % 200 : 200, NULL, NULL, data, size, "reply",
	                1795428000000LL, &result);

	/* As text: a signature header, a reset header and dates. */
	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	x_verify_signature(text, "secret", 6, data, size, hmac_sha256, equals);
	x_rate_limit_reset_ms(text, 1795428000000LL);
	{
		int64_t ms;
		char conv[X_MAX_DM_CONVERSATION_LEN + 1];
		x_parse_v1_time(text, &ms);
		pu_rfc3339_ms(text, &ms);
		x_dm_conversation_id(text, "2975699229", conv);
	}
	free(text);
	return 0;
}
