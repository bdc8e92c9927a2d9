/* x_send.c - the x channel's outbound wire format: reply and DM bodies,
 * request and search URLs, the rate-limit reset header and what an X API
 * answer means for a delivery. No host calls: see x_parse.h. */
#include "x_parse.h"
#include "../../common/plugin_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#define MAX_RATE_WAIT_MS (24LL * 3600 * 1000)
#define REASON_DETAIL_BYTES 300
#define MAX_ANSWER_BYTES (1u << 20)

/* A string member, or NULL (null, absent or another type). */
static const char *str_member(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

char *x_reply_body(const char *text, const char *in_reply_to)
{
	json_t *o = json_pack("{s:s, s:{s:s}}", "text", text, "reply",
	                      "in_reply_to_tweet_id", in_reply_to);
	char *s;

	if (o == NULL)
		return NULL;
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

char *x_dm_body(const char *text)
{
	json_t *o = json_pack("{s:s}", "text", text);
	char *s;

	if (o == NULL)
		return NULL;
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

/* api_url without its trailing slashes, into b. */
static void append_base(pu_buf *b, const char *api_url)
{
	size_t len = strlen(api_url);

	while (len > 0 && api_url[len - 1] == '/')
		len--;
	pu_buf_add(b, api_url, len);
}

x_build_result x_build_send(const char *api_url, int dm, const char *recipient_id,
                            const char *reply_to, const char *text, x_send_request *out)
{
	pu_buf url = { 0 };

	memset(out, 0, sizeof(*out));
	if (text == NULL || text[0] == '\0')
		return X_BUILD_BAD_TEXT;
	if (!x_id_is_valid(dm ? recipient_id : reply_to))
		return X_BUILD_BAD_TARGET;
	append_base(&url, api_url);
	if (dm) {
		pu_buf_str(&url, "/2/dm_conversations/with/");
		pu_buf_str(&url, recipient_id);
		pu_buf_str(&url, "/messages");
		out->body = x_dm_body(text);
	} else {
		pu_buf_str(&url, "/2/tweets");
		out->body = x_reply_body(text, reply_to);
	}
	out->url = pu_buf_take(&url);
	if (out->body == NULL || out->url == NULL) {
		/* jansson refuses invalid UTF-8; anything else is memory. */
		json_t *probe = json_string(text);
		x_build_result r = probe == NULL ? X_BUILD_BAD_TEXT : X_BUILD_NO_MEMORY;

		json_decref(probe);
		free(out->url);
		free(out->body);
		memset(out, 0, sizeof(*out));
		return r;
	}
	return X_BUILD_OK;
}

static void query_param(pu_buf *b, const char *key, const char *value, bool first)
{
	pu_buf_str(b, first ? "?" : "&");
	pu_buf_str(b, key);
	pu_buf_str(b, "=");
	x_oauth_percent_encode(b, value);
}

char *x_search_url(const char *api_url, const char *query, const char *since_id,
                   const char *pagination_token)
{
	pu_buf b = { 0 };

	append_base(&b, api_url);
	pu_buf_str(&b, "/2/tweets/search/recent");
	query_param(&b, "query", query, true);
	query_param(&b, "max_results", "100", false);
	if (since_id != NULL && since_id[0] != '\0')
		query_param(&b, "since_id", since_id, false);
	if (pagination_token != NULL && pagination_token[0] != '\0')
		query_param(&b, "pagination_token", pagination_token, false);
	query_param(&b, "tweet.fields",
	            "author_id,created_at,conversation_id,in_reply_to_user_id,referenced_tweets,note_tweet",
	            false);
	query_param(&b, "expansions", "author_id", false);
	query_param(&b, "user.fields", "username,name", false);
	return pu_buf_take(&b);
}

int64_t x_rate_limit_reset_ms(const char *value, int64_t now_ms)
{
	int64_t s = 0;

	if (value == NULL)
		return 0;
	while (*value == ' ' || *value == '\t')
		value++;
	if (*value < '0' || *value > '9')
		return 0;
	/* A reset past year 9999 is no clock's; capping there also keeps s * 1000
	 * far from overflowing. */
	for (; *value >= '0' && *value <= '9'; value++) {
		s = s * 10 + (*value - '0');
		if (s > 253402300799LL)
			return now_ms + MAX_RATE_WAIT_MS;
	}
	if (s * 1000 <= now_ms)
		return 0;
	return s * 1000 > now_ms + MAX_RATE_WAIT_MS ? now_ms + MAX_RATE_WAIT_MS : s * 1000;
}

/* The most specific message X put in an error answer: a problem's detail,
 * else its title, else errors[0].message / detail / title. NULL if none. */
static const char *error_message(json_t *root)
{
	static const char *const keys[] = { "detail", "message", "title", NULL };
	json_t *first = json_array_get(json_object_get(root, "errors"), 0);
	const char *s;

	for (size_t i = 0; keys[i] != NULL; i++) {
		if ((s = str_member(root, keys[i])) != NULL && s[0] != '\0')
			return s;
	}
	for (size_t i = 0; keys[i] != NULL; i++) {
		if ((s = str_member(first, keys[i])) != NULL && s[0] != '\0')
			return s;
	}
	return NULL;
}

/* A 2xx: the new tweet's or DM event's id, and a DM's conversation id, from
 * {"data":{...}} or the bare object. */
static void take_ids(json_t *root, x_send_result *out)
{
	json_t *d = json_object_get(root, "data");
	const char *s;

	if (!json_is_object(d))
		d = root;
	s = str_member(d, "dm_event_id");
	if (s == NULL)
		s = str_member(d, "id");
	if (x_id_is_valid(s))
		snprintf(out->external_id, sizeof(out->external_id), "%s", s);
	s = str_member(d, "dm_conversation_id");
	if (s != NULL && strlen(s) < sizeof(out->dm_conversation_id))
		pu_excerpt(s, strlen(s), sizeof(out->dm_conversation_id) - 1,
		          out->dm_conversation_id, sizeof(out->dm_conversation_id));
}

void x_classify_send(long status, const char *transport_error, const char *rate_reset,
                     const void *body, size_t len, const char *what, int64_t now_ms,
                     x_send_result *out)
{
	json_t *root = NULL;
	char detail[REASON_DETAIL_BYTES + 1] = "";
	const char *msg;

	memset(out, 0, sizeof(*out));
	if (status == 0) {
		out->outcome = PARLEY_RETRY;
		pu_excerpt(transport_error != NULL ? transport_error : "transport error",
		          transport_error != NULL ? strlen(transport_error) : 15,
		          REASON_DETAIL_BYTES, detail, sizeof(detail));
		snprintf(out->reason, sizeof(out->reason), "X did not answer the %s: %s", what,
		         detail);
		return;
	}
	/* X's answers are small; a huge one is not parsed for a reason. */
	if (body != NULL && len > 0 && len <= MAX_ANSWER_BYTES)
		root = json_loadb(body, len, 0, NULL);
	msg = error_message(root);
	if (msg != NULL)
		pu_excerpt(msg, strlen(msg), REASON_DETAIL_BYTES, detail, sizeof(detail));

	if (status >= 200 && status <= 299) {
		out->outcome = PARLEY_OK;
		take_ids(root, out);
	} else if (status == 429) {
		out->outcome = PARLEY_RETRY;
		out->retry_at_ms = x_rate_limit_reset_ms(rate_reset, now_ms);
		snprintf(out->reason, sizeof(out->reason), "X rate limit reached sending the %s%s%s",
		         what, detail[0] != '\0' ? ": " : "", detail);
	} else if (status >= 500 || status == 408) {
		out->outcome = PARLEY_RETRY;
		snprintf(out->reason, sizeof(out->reason), "X answered %ld to the %s%s%s", status,
		         what, detail[0] != '\0' ? ": " : "", detail);
	} else {
		out->outcome = PARLEY_FAIL;
		snprintf(out->reason, sizeof(out->reason), "X refused the %s (HTTP %ld): %s", what,
		         status, detail[0] != '\0' ? detail : "no error detail given");
	}
	json_decref(root);
}
