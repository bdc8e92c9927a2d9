/* fuzz_zendesk.c - libFuzzer target for the zendesk sink's pure code: the
 * input is tried as an event webhook body, as every kind of API answer
 * (ticket, lookup, update audit, user, error bodies for each status), and
 * its first line as the signature header, the timestamp, a ticket id and a
 * message text. Run with tests/fuzz/run.sh zendesk. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "parley/parley.h"
#include "zendesk_api.h"

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

/* Check what the parser hands out the way the core would. */
static int take(void *ctx, const parley_ticket_event *ev)
{
	size_t *n = ctx;

	if (ev->dedupe_key == NULL || ev->external_ticket_id == NULL ||
	    strlen(ev->dedupe_key) > 512 || strlen(ev->raw_json) < ev->raw_json_len)
		abort();
	if (ev->type == PARLEY_TICKET_COMMENT &&
	    (ev->comment_id == NULL || ev->text == NULL || ev->text[0] == '\0'))
		abort();
	if (ev->type == PARLEY_TICKET_STATUS &&
	    (ev->status < PARLEY_TICKET_OPEN || ev->status > PARLEY_TICKET_CLOSED))
		abort();
	if (ev->author_name != NULL)
		*n += strlen(ev->author_name);
	(*n)++;
	return (*n % 3 == 0) ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 0, 200, 201, 400, 401, 404, 409, 422, 429, 503 };
	char id[ZD_ID_BYTES], req[ZD_ID_BYTES], status[16], what[ZD_REASON_BYTES];
	char line[300], subject[ZD_SUBJECT_BYTES * 2 + 64];
	char *text, *s;
	size_t n = 0, i;
	zd_result r;

	/* The parser gets the raw bytes; raw_json is only NUL-terminated by
	 * the core's copy, so hand it a terminated copy as the core does. */
	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	zd_parse_webhook((const unsigned char *)text, size, "424242", take, &n, what, sizeof(what));
	if (strlen(what) >= sizeof(what))
		abort();

	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		zd_classify(statuses[i], text, text, data, size, 1800000000000LL, "x", &r);
		if (r.reason[0] == '\0' && r.outcome != PARLEY_OK)
			abort();
	}
	zd_parse_ticket(data, size, id, req, status);
	zd_parse_lookup(data, size, "PC-1", NULL, id, req);
	zd_parse_lookup(data, size, "PC-1", "100", id, req);
	zd_parse_comment_id(data, size, id);
	zd_parse_user_id(data, size, id);
	free(zd_ticket_body_requester_id(text, "1"));

	for (i = 0; i < size && i < sizeof(line) - 1 && data[i] != '\n'; i++)
		line[i] = (char)data[i];
	line[i] = '\0';
	zd_verify_signature(line, line, "k", 1, data, size, hmac, equals);
	zd_subject(line, text, subject, sizeof(subject));
	s = zd_url_ticket("https://a.zendesk.com", line);
	free(s);
	s = zd_url_lookup("https://a.zendesk.com", line);
	free(s);
	s = zd_comment_body(text, line);
	free(s);
	free(text);
	return 0;
}
