/* zendesk_answer.c - what the Support API's answers mean: the outcome of
 * a delivery's step (zd_classify) and the ids, tickets and comments read
 * from a 2xx. Pure (see zendesk_api.h). */
#include "zendesk_api.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

#include "../../common/plugin_util.h"
#include "../../common/rfc3339.h"

#define ZD_EXCERPT_BYTES 300

/* ------------------------------------------------------------------------ */
/* Reading Zendesk's JSON                                                   */
/* ------------------------------------------------------------------------ */

/* A JSON id (a positive integer, or a string of digits as in event
 * webhooks) as text into out. False for anything else. v: borrowed. */
bool zd_json_id(const json_t *v, char out[ZD_ID_BYTES])
{
	if (json_is_integer(v) && json_integer_value(v) > 0) {
		snprintf(out, ZD_ID_BYTES, "%lld", (long long)json_integer_value(v));
		return true;
	}
	if (json_is_string(v) && zd_is_id(json_string_value(v))) {
		snprintf(out, ZD_ID_BYTES, "%s", json_string_value(v));
		return true;
	}
	return false;
}

/* Compare two decimal ids as numbers (both zd_is_id, no leading zeros
 * assumed away by comparing lengths first). */
static int id_cmp(const char *a, const char *b)
{
	size_t la, lb;

	while (*a == '0' && a[1] != '\0')
		a++;
	while (*b == '0' && b[1] != '\0')
		b++;
	la = strlen(a);
	lb = strlen(b);
	if (la != lb)
		return la < lb ? -1 : 1;
	return strcmp(a, b);
}


/* "2024-05-01T12:34:56Z" or with fractional seconds / an offset: Unix ms;
 * 0 when it is not such a time. s: borrowed, may be NULL. */
int64_t zd_parse_time(const char *s)
{
	int64_t ms;

	return pu_rfc3339_ms(s, &ms) && ms > 0 ? ms : 0;
}

/* ------------------------------------------------------------------------ */
/* Answers                                                                  */
/* ------------------------------------------------------------------------ */


static json_t *parse_body(const unsigned char *body, size_t len)
{
	if (body == NULL || len == 0)
		return NULL;
	return json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, NULL);
}

/* Zendesk's error {"error","description","details":{field:[{"description"}]}}
 * as "description: field: detail; ..." into out; false when body is not it. */
static bool error_details(const unsigned char *body, size_t len, char *out, size_t outlen)
{
	json_t *root = parse_body(body, len), *details, *list, *item;
	const char *key, *error, *desc;
	size_t o = 0, i;
	char text[ZD_EXCERPT_BYTES + 1];

	if (!json_is_object(root)) {
		json_decref(root);
		return false;
	}
	error = json_string_value(json_object_get(root, "error"));
	desc = json_string_value(json_object_get(root, "description"));
	if (error == NULL && desc == NULL) {
		/* {"error":{"title","message"}} on some endpoints */
		json_t *e = json_object_get(root, "error");
		error = json_string_value(json_object_get(e, "title"));
		desc = json_string_value(json_object_get(e, "message"));
	}
	if (error == NULL && desc == NULL) {
		json_decref(root);
		return false;
	}
	out[0] = '\0';
	snprintf(out, outlen, "%s", desc != NULL ? desc : error);
	o = strlen(out);
	details = json_object_get(root, "details");
	json_object_foreach(details, key, list) {
		json_array_foreach(list, i, item) {
			const char *d = json_string_value(json_object_get(item, "description"));
			if (d == NULL)
				d = json_string_value(json_object_get(item, "error"));
			if (d == NULL || o + 4 >= outlen)
				continue;
			snprintf(out + o, outlen - o, "; %s: %s", key, d);
			o = strlen(out);
		}
	}
	json_decref(root);
	/* The parts came from the answer: make them one safe line. */
	pu_excerpt(out, strlen(out), ZD_EXCERPT_BYTES, text, sizeof(text));
	snprintf(out, outlen, "%s", text);
	return true;
}

/* The answer body as a one-line excerpt, preferring Zendesk's error fields. */
static void answer_text(const unsigned char *body, size_t len, char *out, size_t outlen)
{
	if (error_details(body, len, out, outlen))
		return;
	while (body != NULL && len > 0 && body[len - 1] <= 0x20)
		len--;
	pu_excerpt(body, len, ZD_EXCERPT_BYTES < outlen - 1 ? ZD_EXCERPT_BYTES : outlen - 1,
	           out, outlen);
}

void zd_classify(long status, const char *error, const char *retry_after,
                 const unsigned char *body, size_t len, int64_t now_ms,
                 const char *what, zd_result *r)
{
	char text[ZD_EXCERPT_BYTES + 1];

	memset(r, 0, sizeof(*r));
	if (status >= 200 && status <= 299) {
		r->outcome = PARLEY_OK;
		return;
	}
	if (status == 0) {
		r->outcome = PARLEY_RETRY;
		pu_excerpt(error != NULL ? error : "transport error",
		           strlen(error != NULL ? error : "transport error"), 200, text, sizeof(text));
		snprintf(r->reason, sizeof(r->reason), "Zendesk request failed %s: %s", what, text);
		return;
	}
	answer_text(body, len, text, sizeof(text));
	if (status == 429) {
		int64_t s = pu_retry_after_seconds(retry_after, ZD_MAX_RETRY_AFTER_S);
		r->outcome = PARLEY_RETRY;
		r->retry_at_ms = s > 0 ? now_ms + s * 1000 : 0;
		r->pause_until_ms = now_ms + (s > 0 ? s * 1000 : ZD_DEFAULT_PAUSE_MS);
		snprintf(r->reason, sizeof(r->reason), "Zendesk answered 429 %s (rate limited%s)%s%s",
		         what, s > 0 ? ", honouring Retry-After" : "", text[0] != '\0' ? ": " : "",
		         text);
		return;
	}
	if (status == 401 || status == 403) {
		r->outcome = PARLEY_FAIL;
		r->unauthorized = 1;
		snprintf(r->reason, sizeof(r->reason),
		         "Zendesk answered %ld %s: unauthorized: check the API token (and email)",
		         status, what);
		return;
	}
	if (status == 408 || status == 409 || status >= 500) {
		/* 409: a concurrent update of the same ticket; the retry wins. */
		r->outcome = PARLEY_RETRY;
		snprintf(r->reason, sizeof(r->reason), "Zendesk answered %ld %s%s%s", status, what,
		         text[0] != '\0' ? ": " : "", text);
		return;
	}
	r->outcome = PARLEY_FAIL;
	if (status == 422 && strstr(text, "closed prevents ticket update") != NULL) {
		r->closed = 1;
		snprintf(r->reason, sizeof(r->reason),
		         "Zendesk answered 422 %s: the ticket is closed and takes no more comments "
		         "(%s)", what, text);
		return;
	}
	snprintf(r->reason, sizeof(r->reason), "Zendesk answered %ld %s%s%s", status, what,
	         text[0] != '\0' ? ": " : "", text);
}

bool zd_parse_ticket(const unsigned char *body, size_t len, char id[ZD_ID_BYTES],
                     char requester[ZD_ID_BYTES], char *status)
{
	json_t *root = parse_body(body, len);
	json_t *ticket = json_object_get(root, "ticket");
	bool ok = zd_json_id(json_object_get(ticket, "id"), id);

	if (!zd_json_id(json_object_get(ticket, "requester_id"), requester))
		requester[0] = '\0';
	if (status != NULL) {
		const char *s = json_string_value(json_object_get(ticket, "status"));
		snprintf(status, 16, "%s", s != NULL ? s : "");
	}
	json_decref(root);
	return ok;
}

int zd_parse_lookup(const unsigned char *body, size_t len, const char *external_id,
                    const char *follow_up_of, char id[ZD_ID_BYTES], char requester[ZD_ID_BYTES])
{
	json_t *root = parse_body(body, len);
	json_t *tickets = json_object_get(root, "tickets"), *t;
	int found = 0;
	size_t i;

	if (!json_is_array(tickets)) {
		json_decref(root);
		return -1;
	}
	json_array_foreach(tickets, i, t) {
		char tid[ZD_ID_BYTES];
		const char *ext = json_string_value(json_object_get(t, "external_id"));
		const char *st = json_string_value(json_object_get(t, "status"));
		if (!zd_json_id(json_object_get(t, "id"), tid) || ext == NULL ||
		    strcmp(ext, external_id) != 0 || (st != NULL && strcasecmp(st, "closed") == 0))
			continue;
		if (follow_up_of != NULL && id_cmp(tid, follow_up_of) <= 0)
			continue;
		if (found && id_cmp(tid, id) >= 0)
			continue;
		snprintf(id, ZD_ID_BYTES, "%s", tid);
		if (!zd_json_id(json_object_get(t, "requester_id"), requester))
			requester[0] = '\0';
		found = 1;
	}
	json_decref(root);
	return found;
}

bool zd_parse_comment_id(const unsigned char *body, size_t len, char id[ZD_ID_BYTES])
{
	json_t *root = parse_body(body, len);
	json_t *events = json_object_get(json_object_get(root, "audit"), "events"), *e;
	bool ok = false;
	size_t i;

	json_array_foreach(events, i, e) {
		const char *type = json_string_value(json_object_get(e, "type"));
		if (type != NULL && strcmp(type, "Comment") == 0 && zd_json_id(json_object_get(e, "id"), id)) {
			ok = true;
			break;
		}
	}
	json_decref(root);
	return ok;
}

/* s without leading and trailing whitespace: *start and the length. */
static size_t trimmed(const char *s, const char **start)
{
	size_t n;

	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		n--;
	*start = s;
	return n;
}

int zd_parse_comments_find(const unsigned char *body, size_t len, const char *author_id,
                           const char *text, int64_t since_ms, char id[ZD_ID_BYTES])
{
	json_t *root = parse_body(body, len);
	json_t *comments = json_object_get(root, "comments"), *c;
	const char *want;
	size_t want_len, i;
	int found = 0;

	if (!json_is_array(comments)) {
		json_decref(root);
		return -1;
	}
	if (text == NULL || text[0] == '\0')
		text = "(no text)";
	want_len = trimmed(text, &want);
	json_array_foreach(comments, i, c) {
		char cid[ZD_ID_BYTES], author[ZD_ID_BYTES];
		const char *b = json_string_value(json_object_get(c, "body")), *have;
		int64_t at = zd_parse_time(json_string_value(json_object_get(c, "created_at")));
		if (b == NULL || !zd_json_id(json_object_get(c, "id"), cid) ||
		    !zd_json_id(json_object_get(c, "author_id"), author) || strcmp(author, author_id) != 0 ||
		    at < since_ms)
			continue;
		if (trimmed(b, &have) != want_len || memcmp(have, want, want_len) != 0)
			continue;
		/* The newest wins, whatever order the page is in. */
		if (found && id_cmp(cid, id) <= 0)
			continue;
		snprintf(id, ZD_ID_BYTES, "%s", cid);
		found = 1;
	}
	json_decref(root);
	return found;
}

bool zd_parse_user_id(const unsigned char *body, size_t len, char id[ZD_ID_BYTES])
{
	json_t *root = parse_body(body, len);
	bool ok = zd_json_id(json_object_get(json_object_get(root, "user"), "id"), id);

	json_decref(root);
	return ok;
}
