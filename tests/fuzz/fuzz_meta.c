/* fuzz_meta.c - libFuzzer target for the meta channel's pure code: the input
 * is tried as a webhook body, as a Graph API answer of each shape, as an
 * asset list, and its first line as a signature header, a thread id and the
 * hub.* handshake values of a send plan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "meta_parse.h"
#include "meta_graph.h"

/* Check what the parser hands out the way the core would, so a field that
 * is not NUL-terminated or is missing shows up under the sanitizers. */
static int take(void *ctx, const parley_event *ev)
{
	size_t *n = ctx;
	size_t sum = 0;
	const char *strings[] = { ev->dedupe_key, ev->external_id, ev->author.external_id,
	                          ev->author.handle, ev->author.display_name, ev->author.phone,
	                          ev->text, ev->thread_id, ev->in_reply_to, ev->detail };

	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		if (strings[i] != NULL)
			sum += strlen(strings[i]);
	}
	if (ev->raw_json != NULL && strlen(ev->raw_json) != ev->raw_json_len)
		abort();
	if (ev->dedupe_key == NULL || ev->external_id == NULL)
		abort();
	if (ev->type == PARLEY_EVENT_MESSAGE_CREATED &&
	    (ev->author.external_id == NULL || ev->thread_id == NULL))
		abort();
	*n += sum > 0;
	/* Refuse every third event, so the refusal path runs too. */
	return (*n % 3 == 0) ? -1 : 0;
}

static void note(void *ctx, const char *what)
{
	(void)ctx;
	if (strlen(what) > 200)
		abort();
}

static void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                        unsigned char out[32])
{
	unsigned int out_len = 32;
	HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &out_len);
}

static int equals(const void *a, size_t a_len, const void *b, size_t b_len)
{
	return a_len == b_len && memcmp(a, b, a_len) == 0;
}

static void plan(const char *line, const char *text, parley_send_kind kind, int64_t age_ms)
{
	meta_send_options opt = { "http://g", "v21.0", 1, "t", "en_US", 1800000000000LL };
	parley_outbound_message m;
	meta_plan p;
	char thread[META_MAX_THREAD_BYTES];

	memset(&m, 0, sizeof(m));
	m.size = sizeof(m);
	m.thread_id = line;
	m.in_reply_to = text;
	m.recipient_id = text;
	m.text = text;
	m.kind = kind;
	m.last_inbound_ms = opt.now_ms - age_ms;
	if (meta_plan_send(&opt, &m, &p)) {
		if (p.url == NULL || p.body == NULL)
			abort();
		meta_private_thread(&p, text, thread, sizeof(thread));
	} else if (p.reason[0] == '\0') {
		abort();
	}
	meta_plan_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const meta_answer_shape shapes[] = {
		META_ANSWER_MESSAGE, META_ANSWER_COMMENT, META_ANSWER_WHATSAPP
	};
	static const long statuses[] = { 0, 200, 400, 429, 503 };
	meta_parse_stats stats;
	meta_asset_list assets;
	meta_thread thread;
	meta_answer a;
	meta_result r;
	char err[256], line[600];
	char *text;
	size_t n = 0, i, j;

	meta_parse(data, size, take, note, &n, &stats, err, sizeof(err));

	for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		for (j = 0; j < sizeof(statuses) / sizeof(statuses[0]); j++) {
			memset(&a, 0, sizeof(a));
			a.status = statuses[j];
			a.body = data;
			a.body_len = size;
			a.now_ms = 1800000000000LL;
			meta_classify(&a, shapes[i], &r);
		}
	}

	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (meta_assets_parse(text, "id", &assets, err, sizeof(err)))
		meta_assets_free(&assets);
	memset(&a, 0, sizeof(a));
	a.status = 400;
	a.retry_after = text;
	a.buc_usage = text;
	a.now_ms = 1;
	meta_classify(&a, META_ANSWER_MESSAGE, &r);

	/* First line: header, thread id; the rest: the text of a send. */
	for (i = 0; i < size && i < sizeof(line) - 1 && data[i] != '\n'; i++)
		line[i] = (char)data[i];
	line[i] = '\0';
	meta_verify_signature(line, "k", 1, data, size, hmac_sha256, equals);
	meta_check_handshake("subscribe", line, line, "token", equals);
	meta_thread_parse(line, &thread);
	plan(line, i < size ? text + i + 1 : "x", PARLEY_SEND_MESSAGE, 3600000);
	plan(line, i < size ? text + i + 1 : "x", PARLEY_SEND_MESSAGE, 30 * 3600000LL);
	plan(line, i < size ? text + i + 1 : "x", PARLEY_SEND_PRIVATE_REPLY, 3600000);
	free(text);
	return 0;
}
