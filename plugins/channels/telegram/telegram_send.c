/* telegram_send.c - the telegram channel's outbound wire format: Bot API
 * method URLs (and scrubbing the token out of texts), sendMessage bodies,
 * and what a sendMessage answer means for the delivery. No host calls: see
 * telegram_parse.h. */
#include "telegram_parse.h"
#include "telegram_json.h"
#include "../../common/plugin_util.h"
#include "../../common/utf8.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

/* ------------------------------------------------------------------------ */
/* sendMessage                                                              */
/* ------------------------------------------------------------------------ */

char *telegram_method_url(const char *api_url, const char *token, const char *method)
{
	/* "https://api.telegram.org/" + "/bot..." would double the slash. */
	size_t base = strlen(api_url);
	while (base > 0 && api_url[base - 1] == '/')
		base--;
	size_t n = base + 4 + strlen(token) + 1 + strlen(method) + 1;
	char *url = malloc(n);

	if (url != NULL)
		snprintf(url, n, "%.*s/bot%s/%s", (int)base, api_url, token, method);
	return url;
}

void telegram_scrub(char *s, size_t size, const char *secret)
{
	static const char mask[] = "<bot_token>";
	size_t slen = secret != NULL ? strlen(secret) : 0;
	char *p = s;

	if (slen == 0)
		return;
	while ((p = strstr(p, secret)) != NULL) {
		size_t at = (size_t)(p - s);
		size_t rest = strlen(p + slen) + 1;   /* the tail and its NUL */
		if (at + sizeof(mask) - 1 + rest > size) {
			*p = '\0';
			return;
		}
		memmove(p + sizeof(mask) - 1, p + slen, rest);
		memcpy(p, mask, sizeof(mask) - 1);
		p += sizeof(mask) - 1;   /* the mask cannot hold the secret again */
	}
	/* A text cut short before it was scrubbed may end in part of the token:
	 * a trailing prefix of it goes too, from the bot id and its colon plus
	 * one byte on (a bare number at the end of a text is not a token). */
	const char *colon = strchr(secret, ':');
	size_t min = colon != NULL ? (size_t)(colon - secret) + 2 : 8;
	size_t n = strlen(s);
	for (size_t k = slen - 1; k >= min && k < slen; k--) {
		if (n >= k && memcmp(s + n - k, secret, k) == 0) {
			s[n - k] = '\0';
			return;
		}
	}
}

/* A decimal int64 that is the whole of s[0..len) ("-100123", "42"). */
static bool parse_id(const char *s, size_t len, int64_t *out)
{
	bool neg = false;
	uint64_t v = 0;
	size_t i = 0;

	if (len > 0 && s[0] == '-') {
		neg = true;
		i = 1;
	}
	if (i == len || len - i > 19)
		return false;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > (uint64_t)INT64_MAX)
		return false;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return true;
}

/* The message id of in_reply_to ("<chat id>:<message id>") when that message
 * is in chat; 0 otherwise. */
static int64_t reply_message_id(const char *in_reply_to, int64_t chat)
{
	const char *colon;
	int64_t c, m;

	if (in_reply_to == NULL)
		return 0;
	colon = strrchr(in_reply_to, ':');
	if (colon == NULL || !parse_id(in_reply_to, (size_t)(colon - in_reply_to), &c) ||
	    !parse_id(colon + 1, strlen(colon + 1), &m) || c != chat || m <= 0)
		return 0;
	return m;
}

bool telegram_send_body(const telegram_send_in *in, char **body_out, char *why, size_t whylen)
{
	const char *target;
	int64_t chat, reply = 0;
	json_t *req;

	*body_out = NULL;
	if (in->kind == PARLEY_SEND_PRIVATE_REPLY)
		target = in->recipient_id;
	else
		target = in->thread_id != NULL ? in->thread_id : in->recipient_id;
	if (target == NULL || !parse_id(target, strlen(target), &chat) || chat == 0) {
		say(why, whylen, "%s", in->kind == PARLEY_SEND_PRIVATE_REPLY
		                       ? "the customer has no Telegram user id"
		                       : "the conversation has no Telegram chat id");
		return false;
	}
	if (in->text == NULL || in->text[0] == '\0') {
		say(why, whylen, "%s", "Telegram cannot send an empty message");
		return false;
	}
	if (in->kind != PARLEY_SEND_PRIVATE_REPLY)
		reply = reply_message_id(in->in_reply_to, chat);

	req = json_pack("{s:I, s:s}", "chat_id", (json_int_t)chat, "text", in->text);
	if (req == NULL) {
		say(why, whylen, "%s", "the text is not valid UTF-8");
		return false;
	}
	/* allow_sending_without_reply: an answer still goes out when the
	 * customer has deleted the message it answers. */
	if (reply > 0)
		json_object_set_new(req, "reply_parameters",
		                    json_pack("{s:I, s:b}", "message_id", (json_int_t)reply,
		                              "allow_sending_without_reply", 1));
	*body_out = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (*body_out == NULL) {
		say(why, whylen, "%s", "out of memory");
		return false;
	}
	return true;
}

void telegram_describe(const void *body, size_t len, char *out, size_t outlen)
{
	const unsigned char *b = body;
	json_t *root = NULL;
	const char *d;
	size_t n = 0;

	if (out == NULL || outlen == 0)
		return;
	out[0] = '\0';
	if (body == NULL || len == 0)
		return;
	if (len <= TELEGRAM_MAX_PARSE_BYTES)
		root = json_loadb(body, len, 0, NULL);
	d = json_is_object(root) ? get_str(root, "description") : NULL;
	if (d != NULL) {
		pu_utf8_line(d, out, outlen);
		json_decref(root);
		return;
	}
	json_decref(root);
	/* Not the Bot API's shape (a proxy's page): printable ASCII only, so
	 * the reason is always valid UTF-8. */
	for (size_t i = 0; i < len && n + 1 < outlen && n < 200; i++)
		out[n++] = (b[i] < 0x20 || b[i] >= 0x7f) ? (b[i] >= 0x80 ? '?' : ' ') : (char)b[i];
	while (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
}

/* Seconds from "... retry after N" in a description (case-insensitive); 0
 * when absent. */
static int64_t retry_after_in_text(const char *d)
{
	static const char needle[] = "retry after ";
	int64_t s = 0;

	for (; d != NULL && *d != '\0'; d++) {
		if (strncasecmp(d, needle, sizeof(needle) - 1) != 0)
			continue;
		d += sizeof(needle) - 1;
		for (; *d >= '0' && *d <= '9'; d++) {
			s = s * 10 + (*d - '0');
			if (s > TELEGRAM_MAX_RETRY_AFTER_S)
				return TELEGRAM_MAX_RETRY_AFTER_S;
		}
		return s;
	}
	return 0;
}

/* How long a 429 asks us to wait, in seconds (0: not said). */
static int64_t flood_wait_s(json_t *root, const char *description, const char *header)
{
	json_t *params = json_object_get(root, "parameters");
	int64_t s = 0;

	if (json_is_object(params) && get_int(params, "retry_after", &s) && s > 0)
		return s > TELEGRAM_MAX_RETRY_AFTER_S ? TELEGRAM_MAX_RETRY_AFTER_S : s;
	s = retry_after_in_text(description);
	if (s > 0)
		return s;
	return pu_retry_after_seconds(header, TELEGRAM_MAX_RETRY_AFTER_S);
}

static void sent_ids(json_t *root, telegram_send_result *out)
{
	json_t *result = json_object_get(root, "result");
	json_t *chat = json_is_object(result) ? json_object_get(result, "chat") : NULL;
	int64_t mid, cid;

	if (json_is_object(chat) && get_int(result, "message_id", &mid) && get_int(chat, "id", &cid)) {
		snprintf(out->external_id, sizeof(out->external_id), "%" PRId64 ":%" PRId64, cid, mid);
		snprintf(out->chat_id, sizeof(out->chat_id), "%" PRId64, cid);
	}
}

void telegram_classify_send(long status, const char *transport_error, const void *body, size_t len,
                            const char *retry_after, int64_t now_ms, telegram_send_result *out)
{
	json_t *root = NULL;
	char desc[200];

	memset(out, 0, sizeof(*out));
	if (status == 0) {
		out->outcome = PARLEY_RETRY;
		snprintf(out->reason, sizeof(out->reason), "sendMessage failed: %s",
		         transport_error != NULL ? transport_error : "transport error");
		return;
	}
	if (body != NULL && len > 0 && len <= TELEGRAM_MAX_PARSE_BYTES)
		root = json_loadb(body, len, 0, NULL);
	telegram_describe(body, len, desc, sizeof(desc));

	if (status >= 200 && status <= 299) {
		if (json_is_object(root) && json_is_true(json_object_get(root, "ok"))) {
			out->outcome = PARLEY_OK;
			sent_ids(root, out);
		} else {
			/* Not the Bot API's answer (a proxy?): try again rather than
			 * report a message as sent that may not be. */
			out->outcome = PARLEY_RETRY;
			snprintf(out->reason, sizeof(out->reason),
			         "Telegram answered %ld without a result%s%s", status,
			         desc[0] != '\0' ? ": " : "", desc);
		}
	} else if (status == 429) {
		int64_t s = flood_wait_s(root, desc, retry_after);
		out->outcome = PARLEY_RETRY;
		out->retry_at_ms = s > 0 ? now_ms + s * 1000 : 0;
		snprintf(out->reason, sizeof(out->reason), "Telegram rate limit (429)%s%s",
		         desc[0] != '\0' ? ": " : "", desc);
	} else if (status == 408 || status >= 500) {
		out->outcome = PARLEY_RETRY;
		snprintf(out->reason, sizeof(out->reason), "Telegram answered %ld%s%s", status,
		         desc[0] != '\0' ? ": " : "", desc);
	} else {
		/* 400 chat not found, 403 bot was blocked by the user, 403 bot
		 * can't initiate conversation with a user, 401 bad token: no
		 * retry will change them. */
		out->outcome = PARLEY_FAIL;
		snprintf(out->reason, sizeof(out->reason), "Telegram answered %ld%s%s", status,
		         desc[0] != '\0' ? ": " : "", desc);
	}
	json_decref(root);
}
