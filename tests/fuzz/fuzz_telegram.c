/* fuzz_telegram.c - libFuzzer target for the telegram channel's parsers: the
 * input is tried as a webhook Update (with and without channel posts), as a
 * getUpdates answer, as a sendMessage answer, and its first line as a secret
 * header and a bot token. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "telegram_parse.h"

/* Check what the parser hands out the way the core would, so a field that
 * is not a string or not NUL-terminated shows up under the sanitizers. */
static int take(void *ctx, const parley_event *ev)
{
	size_t *n = ctx;
	size_t sum = 0;
	const char *strings[] = { ev->dedupe_key, ev->external_id, ev->author.external_id,
	                          ev->author.handle, ev->author.display_name,
	                          ev->author.profile_json, ev->text, ev->thread_id,
	                          ev->in_reply_to };

	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		if (strings[i] != NULL)
			sum += strlen(strings[i]);
	}
	if (ev->raw_json != NULL && strlen(ev->raw_json) != ev->raw_json_len)
		abort();
	if (ev->dedupe_key == NULL || ev->external_id == NULL)
		abort();
	*n += sum > 0;
	/* Refuse every third event, so the refusal paths run too. */
	return (*n % 3 == 0) ? -1 : 0;
}

static int equals(const void *a, size_t a_len, const void *b, size_t b_len)
{
	return a_len == b_len && memcmp(a, b, a_len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const telegram_parse_opts plain = { 0 }, channels = { 1 };
	telegram_poll_summary sum;
	telegram_send_result r;
	char why[256], line[300];
	int64_t uid;
	size_t n = 0, i;

	telegram_parse_update(data, size, &plain, take, &n, &uid, why, sizeof(why));
	telegram_parse_update(data, size, &channels, take, &n, &uid, why, sizeof(why));
	telegram_parse_updates(data, size, 42, &channels, take, &n, &sum, why, sizeof(why));
	telegram_classify_send(429, NULL, data, size, "5", 1000, &r);
	telegram_classify_send(200, NULL, data, size, NULL, 1000, &r);
	telegram_classify_send(403, NULL, data, size, NULL, 1000, &r);

	for (i = 0; i < size && i < sizeof(line) - 1 && data[i] != '\n'; i++)
		line[i] = data[i] != '\0' ? (char)data[i] : ' ';
	line[i] = '\0';
	telegram_secret_is_valid(line);
	telegram_token_is_valid(line);
	telegram_check_secret(line, "secret", 6, equals);
	{
		char buf[64];
		memcpy(buf, line, i < sizeof(buf) - 1 ? i + 1 : sizeof(buf) - 1);
		buf[sizeof(buf) - 1] = '\0';
		telegram_scrub(buf, sizeof(buf), i > 0 && line[0] != '\0' ? "bot1:x" : NULL);
		telegram_scrub(buf, sizeof(buf), i > 2 ? line + i - 2 : NULL);
	}
	{
		telegram_send_in in = { PARLEY_SEND_MESSAGE, line, line, line, line };
		char *body = NULL;
		if (telegram_send_body(&in, &body, why, sizeof(why)))
			free(body);
		in.kind = PARLEY_SEND_PRIVATE_REPLY;
		if (telegram_send_body(&in, &body, why, sizeof(why)))
			free(body);
	}
	return 0;
}
