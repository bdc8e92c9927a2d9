/* zendesk_api.c - requests, answers and webhooks of the Zendesk Support
 * API, without any host call (see zendesk_api.h). */
#include "zendesk_api.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "../../common/plugin_util.h"
#include "../../common/rfc3339.h"
#include "../../common/utf8.h"

#define ZD_EXCERPT_BYTES 300

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

/* base64 of len bytes, owned by the caller; NULL when out of memory. */
static char *base64(const void *data, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out == NULL)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

bool zd_is_id(const char *s)
{
	size_t n = 0;

	if (s == NULL)
		return false;
	for (; s[n] != '\0'; n++) {
		if (s[n] < '0' || s[n] > '9' || n >= 19)
			return false;
	}
	return n > 0;
}

/* A JSON id (a positive integer, or a string of digits as in event
 * webhooks) as text into out. False for anything else. v: borrowed. */
static bool json_id(const json_t *v, char out[ZD_ID_BYTES])
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

/* base_url + path (both borrowed), the base without a trailing '/'. */
static char *join_url(const char *base, const char *path)
{
	size_t bl = strlen(base), pl = strlen(path);
	char *url;

	while (bl > 0 && base[bl - 1] == '/')
		bl--;
	url = malloc(bl + pl + 1);
	if (url == NULL)
		return NULL;
	memcpy(url, base, bl);
	memcpy(url + bl, path, pl + 1);
	return url;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

char *zd_auth_header(const char *email, const char *api_token, const char *oauth_token)
{
	static const char bearer[] = "Authorization: Bearer ";
	static const char basic[] = "Authorization: Basic ";
	char *line, *plain, *encoded;
	size_t n;

	if (oauth_token != NULL) {
		n = sizeof(bearer) + strlen(oauth_token);
		line = malloc(n);
		if (line != NULL)
			snprintf(line, n, "%s%s", bearer, oauth_token);
		return line;
	}
	if (email == NULL || api_token == NULL)
		return NULL;
	n = strlen(email) + strlen("/token:") + strlen(api_token) + 1;
	plain = malloc(n);
	if (plain == NULL)
		return NULL;
	snprintf(plain, n, "%s/token:%s", email, api_token);
	encoded = base64(plain, n - 1);
	pu_wipe(plain, n);
	free(plain);
	if (encoded == NULL)
		return NULL;
	n = sizeof(basic) + strlen(encoded);
	line = malloc(n);
	if (line != NULL)
		snprintf(line, n, "%s%s", basic, encoded);
	pu_wipe_string(encoded);
	free(encoded);
	return line;
}

char *zd_url_lookup(const char *base_url, const char *external_id)
{
	static const char hex[] = "0123456789ABCDEF";
	static const char path[] = "/api/v2/tickets.json?external_id=";
	size_t n = strlen(external_id);
	char *query = malloc(sizeof(path) + 3 * n), *q, *url;

	if (query == NULL)
		return NULL;
	memcpy(query, path, sizeof(path) - 1);
	q = query + sizeof(path) - 1;
	for (const unsigned char *p = (const unsigned char *)external_id; *p != '\0'; p++) {
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
			*q++ = (char)*p;
		} else {
			*q++ = '%';
			*q++ = hex[*p >> 4];
			*q++ = hex[*p & 15];
		}
	}
	*q = '\0';
	url = join_url(base_url, query);
	free(query);
	return url;
}

char *zd_url_create(const char *base_url)
{
	return join_url(base_url, "/api/v2/tickets.json");
}

char *zd_url_ticket(const char *base_url, const char *ticket_id)
{
	char path[64];

	if (!zd_is_id(ticket_id))
		return NULL;
	snprintf(path, sizeof(path), "/api/v2/tickets/%s.json", ticket_id);
	return join_url(base_url, path);
}

char *zd_url_me(const char *base_url)
{
	return join_url(base_url, "/api/v2/users/me.json");
}

char *zd_url_user_upsert(const char *base_url)
{
	return join_url(base_url, "/api/v2/users/create_or_update.json");
}

char *zd_url_comments(const char *base_url, const char *ticket_id)
{
	char path[96];

	if (!zd_is_id(ticket_id))
		return NULL;
	snprintf(path, sizeof(path), "/api/v2/tickets/%s/comments.json?sort_order=desc", ticket_id);
	return join_url(base_url, path);
}

void zd_subject(const char *channel, const char *text, char *out, size_t outlen)
{
	size_t o = 0, last_word_end = 0, n;
	int cut = 0, space = 0;

	char name[64];
	size_t nl;

	/* The channel's name, at most 60 bytes, cut between characters. */
	if (channel == NULL || channel[0] == '\0')
		channel = "Parley";
	nl = strlen(channel);
	nl = pu_utf8_cut(channel, nl, 60);
	memcpy(name, channel, nl);
	name[nl] = '\0';
	snprintf(out, outlen, "%s: ", name);
	o = strlen(out);
	if (text == NULL || text[0] == '\0') {
		snprintf(out + o, outlen - o, "new conversation");
		return;
	}
	if (outlen < o + 8)
		return;   /* no room for words */
	/* Whitespace runs become one space; stop at a word boundary within
	 * ZD_SUBJECT_BYTES bytes of text (never inside a UTF-8 sequence). */
	size_t start = o, limit = o + ZD_SUBJECT_BYTES;
	if (limit > outlen - 4)
		limit = outlen - 4;
	for (const char *p = text; *p != '\0'; p += n) {
		unsigned char c = (unsigned char)*p;
		n = 1;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c < 0x20) {
			space = o > start;
			continue;
		}
		if (space) {
			last_word_end = o;
			if (o + 1 >= limit) {
				cut = 1;
				break;
			}
			out[o++] = ' ';
			space = 0;
		}
		/* Whole characters only (text is valid UTF-8: checked by the
		 * caller; a stray byte would be one). */
		n = pu_utf8_seq(p, strnlen(p, 4));
		if (n == 0)
			n = 1;
		if (o + n >= limit) {
			cut = 1;
			break;
		}
		memcpy(out + o, p, n);
		o += n;
	}
	if (cut) {
		if (last_word_end > start)
			o = last_word_end;
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

void zd_tag(const char *prefix, const char *value, char *out, size_t outlen)
{
	size_t o;

	snprintf(out, outlen, "%s", prefix);
	o = strlen(out);
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0' && o + 1 < outlen; p++)
		out[o++] = isalnum(*p) ? (char)tolower(*p) : (*p == '-' ? '-' : '_');
	out[o] = '\0';
}

/* The name Zendesk shows for customer c (borrowed): the display name, else
 * the handle, else the platform id, else "Customer"; only valid UTF-8. */
static const char *customer_name(const parley_customer_info *c)
{
	const char *candidates[] = { c->display_name, c->handle, c->external_id };

	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
		if (candidates[i] != NULL && candidates[i][0] != '\0' && pu_utf8_valid(candidates[i]))
			return candidates[i];
	}
	return "Customer";
}

/* Customer c's (borrowed) e-mail address when Parley knows one, else NULL. */
static const char *customer_email(const parley_customer_info *c)
{
	if (c->email != NULL && c->email[0] != '\0' && pu_utf8_valid(c->email))
		return c->email;
	return NULL;
}

/* {"name","email"} for customer c (borrowed), email only when known; for
 * the inline requester and the user call. Owned by the caller; NULL when c
 * is NULL or out of memory. */
static json_t *name_and_email(const parley_customer_info *c)
{
	const char *email;
	json_t *r;

	if (c == NULL)
		return NULL;
	r = json_pack("{s:s}", "name", customer_name(c));
	email = customer_email(c);
	if (r != NULL && email != NULL && json_object_set_new(r, "email", json_string(email)) != 0) {
		json_decref(r);
		return NULL;
	}
	return r;
}

static void add_tag(json_t *tags, const char *prefix, const char *value)
{
	char tag[128];

	if (value == NULL || value[0] == '\0')
		return;
	zd_tag(prefix, value, tag, sizeof(tag));
	json_array_append_new(tags, json_string(tag));
}

char *zd_ticket_body(const parley_ticket_request *t, char *err, size_t errlen)
{
	const parley_conversation_info *c = t->conversation;
	const parley_message_info *m = t->first_message;
	const char *text = m != NULL && m->text != NULL && m->text[0] != '\0' ? m->text : NULL;
	char subject[ZD_SUBJECT_BYTES * 2 + 64];
	json_t *ticket, *tags, *root;
	char *body;

	err[0] = '\0';
	if (t->follow_up_of != NULL && !zd_is_id(t->follow_up_of)) {
		snprintf(err, errlen, "follow_up_of is not a Zendesk ticket id");
		return NULL;
	}
	if ((text != NULL && !pu_utf8_valid(text)) || (c != NULL && c->channel_instance != NULL &&
	                                         !pu_utf8_valid(c->channel_instance))) {
		snprintf(err, errlen, "the message is not valid UTF-8");
		return NULL;
	}
	zd_subject(c != NULL ? c->channel_instance : NULL, text, subject, sizeof(subject));
	if (!pu_utf8_valid(subject))   /* a cut never splits a character; be sure anyway */
		zd_subject(c != NULL ? c->channel_instance : NULL, NULL, subject, sizeof(subject));
	ticket = json_pack("{s:s, s:{s:s}}", "subject", subject, "comment", "body",
	                   text != NULL ? text : "(no text)");
	tags = json_array();
	if (ticket == NULL || tags == NULL) {
		json_decref(ticket);
		json_decref(tags);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (c != NULL && PARLEY_HAS_FIELD(c, parley_conversation_info, customer)) {
		/* Without a customer the API user is the requester. */
		json_t *r = name_and_email(c->customer);
		if (r != NULL)
			json_object_set_new(ticket, "requester", r);
	}
	if (c != NULL && c->case_number != NULL && c->case_number[0] != '\0')
		json_object_set_new(ticket, "external_id", json_string(c->case_number));
	json_array_append_new(tags, json_string("parley"));
	if (c != NULL) {
		add_tag(tags, "channel_", c->channel_instance);
		add_tag(tags, "visibility_", c->visibility == PARLEY_VISIBILITY_PUBLIC ? "public"
		                                                                       : "private");
		add_tag(tags, "category_", c->category);
	}
	json_object_set_new(ticket, "tags", tags);
	if (t->follow_up_of != NULL)
		json_object_set_new(ticket, "via_followup_source_id",
		                    json_integer(strtoll(t->follow_up_of, NULL, 10)));
	root = json_pack("{s:o}", "ticket", ticket);
	body = root != NULL ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(root);
	if (body == NULL)
		snprintf(err, errlen, "out of memory");
	return body;
}

char *zd_user_body(const parley_customer_info *c, char *err, size_t errlen)
{
	char external_id[sizeof(ZD_USER_EXTERNAL_PREFIX) + ZD_CUSTOMER_ID_MAX];
	json_t *user, *root;
	char *body;

	err[0] = '\0';
	if (c == NULL || c->customer_id == NULL || c->customer_id[0] == '\0') {
		snprintf(err, errlen, "the customer has no id");
		return NULL;
	}
	if (strlen(c->customer_id) > ZD_CUSTOMER_ID_MAX || !pu_utf8_valid(c->customer_id)) {
		snprintf(err, errlen, "the customer's id cannot be a Zendesk external_id");
		return NULL;
	}
	snprintf(external_id, sizeof(external_id), "%s%s", ZD_USER_EXTERNAL_PREFIX, c->customer_id);
	user = name_and_email(c);
	if (user == NULL || json_object_set_new(user, "external_id", json_string(external_id)) != 0) {
		json_decref(user);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	root = json_pack("{s:o}", "user", user);
	body = root != NULL ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(root);
	if (body == NULL)
		snprintf(err, errlen, "out of memory");
	return body;
}

char *zd_ticket_body_requester_id(const char *body, const char *user_id)
{
	json_t *root, *ticket, *out = NULL, *wrapped = NULL, *v;
	const char *key;
	char *result = NULL;
	int ok = 1;

	if (body == NULL || !zd_is_id(user_id))
		return NULL;
	root = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
	ticket = json_object_get(root, "ticket");
	if (json_is_object(ticket))
		out = json_object();
	if (out == NULL || json_object_get(ticket, "comment") == NULL) {
		json_decref(out);
		json_decref(root);
		return NULL;
	}
	/* Rebuilt key by key (jansson keeps insertion order): the body reads
	 * as before, with requester_id where requester was. */
	json_object_foreach(ticket, key, v) {
		if (strcmp(key, "requester") == 0 || strcmp(key, "requester_id") == 0)
			continue;
		ok &= json_object_set(out, key, v) == 0;
		if (strcmp(key, "comment") == 0)
			ok &= json_object_set_new(out, "requester_id",
			                          json_integer(strtoll(user_id, NULL, 10))) == 0;
	}
	if (ok)
		wrapped = json_pack("{s:o}", "ticket", out);
	else
		json_decref(out);
	if (wrapped != NULL)
		result = json_dumps(wrapped, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(wrapped);
	json_decref(root);
	return result;
}

char *zd_comment_body(const char *text, const char *author_id)
{
	json_t *comment, *root;
	char *body;

	if (text == NULL || text[0] == '\0')
		text = "(no text)";
	comment = json_pack("{s:s, s:b}", "body", text, "public", 1);
	if (comment == NULL)
		return NULL;
	if (author_id != NULL && zd_is_id(author_id))
		json_object_set_new(comment, "author_id", json_integer(strtoll(author_id, NULL, 10)));
	root = json_pack("{s:{s:o}}", "ticket", "comment", comment);
	body = root != NULL ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(root);
	return body;
}

/* ------------------------------------------------------------------------ */
/* Answers                                                                  */
/* ------------------------------------------------------------------------ */

static int64_t parse_time(const char *s);

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
	bool ok = json_id(json_object_get(ticket, "id"), id);

	if (!json_id(json_object_get(ticket, "requester_id"), requester))
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
		if (!json_id(json_object_get(t, "id"), tid) || ext == NULL ||
		    strcmp(ext, external_id) != 0 || (st != NULL && strcasecmp(st, "closed") == 0))
			continue;
		if (follow_up_of != NULL && id_cmp(tid, follow_up_of) <= 0)
			continue;
		if (found && id_cmp(tid, id) >= 0)
			continue;
		snprintf(id, ZD_ID_BYTES, "%s", tid);
		if (!json_id(json_object_get(t, "requester_id"), requester))
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
		if (type != NULL && strcmp(type, "Comment") == 0 && json_id(json_object_get(e, "id"), id)) {
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
		int64_t at = parse_time(json_string_value(json_object_get(c, "created_at")));
		if (b == NULL || !json_id(json_object_get(c, "id"), cid) ||
		    !json_id(json_object_get(c, "author_id"), author) || strcmp(author, author_id) != 0 ||
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
	bool ok = json_id(json_object_get(json_object_get(root, "user"), "id"), id);

	json_decref(root);
	return ok;
}

/* ------------------------------------------------------------------------ */
/* Webhooks                                                                 */
/* ------------------------------------------------------------------------ */

bool zd_verify_signature(const char *signature, const char *timestamp,
                         const void *secret, size_t secret_len,
                         const void *body, size_t len, zd_hmac_fn hmac, zd_equals_fn equals)
{
	unsigned char mac[32];
	size_t tl;
	char *data, *expected;
	bool ok;

	if (signature == NULL || timestamp == NULL || signature[0] == '\0' || timestamp[0] == '\0')
		return false;
	tl = strlen(timestamp);
	data = malloc(tl + len + 1);
	if (data == NULL)
		return false;
	memcpy(data, timestamp, tl);
	if (len > 0)
		memcpy(data + tl, body, len);
	hmac(secret, secret_len, data, tl + len, mac);
	free(data);
	expected = base64(mac, sizeof(mac));
	if (expected == NULL)
		return false;
	ok = equals(expected, strlen(expected), signature, strlen(signature)) == 1;
	free(expected);
	return ok;
}

/* "2024-05-01T12:34:56Z" or with fractional seconds / an offset: Unix ms;
 * 0 when it is not such a time. s: borrowed, may be NULL. */
static int64_t parse_time(const char *s)
{
	int64_t ms;

	return pu_rfc3339_ms(s, &ms) && ms > 0 ? ms : 0;
}

/* Zendesk's status names (any case) as Parley's; 0 for others. */
static parley_ticket_status map_status(const char *s)
{
	if (s == NULL)
		return 0;
	if (strcasecmp(s, "new") == 0 || strcasecmp(s, "open") == 0 || strcasecmp(s, "hold") == 0)
		return PARLEY_TICKET_OPEN;
	if (strcasecmp(s, "pending") == 0)
		return PARLEY_TICKET_PENDING;
	if (strcasecmp(s, "solved") == 0)
		return PARLEY_TICKET_SOLVED;
	if (strcasecmp(s, "closed") == 0)
		return PARLEY_TICKET_CLOSED;
	return 0;
}

#define COMMENT_TYPE "zen:event-type:ticket.comment_added"
#define STATUS_TYPE "zen:event-type:ticket.status_changed"

/* Fill ev from a comment_added event. Strings point into root or key. */
static zd_webhook_status comment_event(json_t *root, const char *api_user_id,
                                       parley_ticket_event *ev,
                                       char key[64], char comment_id[ZD_ID_BYTES],
                                       char *what, size_t whatlen)
{
	json_t *detail = json_object_get(root, "detail");
	json_t *comment = json_object_get(json_object_get(root, "event"), "comment");
	json_t *author = json_object_get(comment, "author");
	json_t *pub = json_object_get(comment, "is_public");
	const char *text = json_string_value(json_object_get(comment, "body"));
	char author_id[ZD_ID_BYTES] = "", requester[ZD_ID_BYTES] = "";

	if (!json_is_object(comment) || !json_id(json_object_get(comment, "id"), comment_id) ||
	    text == NULL || !json_is_boolean(pub)) {
		snprintf(what, whatlen, "event.comment needs an id, a body and is_public");
		return ZD_WEBHOOK_BAD;
	}
	if (text[0] == '\0') {
		snprintf(what, whatlen, "comment %s has no text", comment_id);
		return ZD_WEBHOOK_IGNORED;
	}
	json_id(json_object_get(author, "id"), author_id);
	json_id(json_object_get(detail, "requester_id"), requester);
	snprintf(key, 64, "comment:%s", comment_id);
	ev->type = PARLEY_TICKET_COMMENT;
	ev->comment_id = comment_id;
	ev->is_public = json_is_true(pub);
	/* Parley posts the customer's messages as the requester; anything by
	 * the API user is Parley's too. Neither goes back to the customer. */
	ev->from_parley = author_id[0] != '\0' &&
	                  ((requester[0] != '\0' && strcmp(author_id, requester) == 0) ||
	                   (api_user_id != NULL && strcmp(author_id, api_user_id) == 0));
	ev->author_name = json_string_value(json_object_get(author, "name"));
	ev->text = text;
	return ZD_WEBHOOK_EVENT;
}

zd_webhook_status zd_parse_webhook(const unsigned char *body, size_t len,
                                   const char *api_user_id, zd_emit_fn emit, void *ctx,
                                   char *what, size_t whatlen)
{
	json_error_t jerr;
	json_t *root;
	const char *type, *event_id, *time_text;
	char ticket[ZD_ID_BYTES], comment_id[ZD_ID_BYTES], key[128];
	parley_ticket_event ev;
	zd_webhook_status st;

	what[0] = '\0';
	root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(root)) {
		snprintf(what, whatlen, "the body is not a JSON object");
		json_decref(root);
		return ZD_WEBHOOK_BAD;
	}
	type = json_string_value(json_object_get(root, "type"));
	if (type == NULL) {
		snprintf(what, whatlen, "no \"type\": not a Zendesk event webhook");
		json_decref(root);
		return ZD_WEBHOOK_BAD;
	}
	if (strcmp(type, COMMENT_TYPE) != 0 && strcmp(type, STATUS_TYPE) != 0) {
		pu_excerpt(type, strlen(type), 100, key, sizeof(key));
		snprintf(what, whatlen, "event type %s is not used", key);
		json_decref(root);
		return ZD_WEBHOOK_IGNORED;
	}
	if (!json_id(json_object_get(json_object_get(root, "detail"), "id"), ticket)) {
		snprintf(what, whatlen, "detail.id (the ticket) is missing");
		json_decref(root);
		return ZD_WEBHOOK_BAD;
	}
	event_id = json_string_value(json_object_get(root, "id"));
	time_text = json_string_value(json_object_get(root, "time"));
	memset(&ev, 0, sizeof(ev));
	ev.size = sizeof(ev);
	ev.external_ticket_id = ticket;
	ev.time_ms = parse_time(time_text);
	ev.raw_json = (const char *)body;
	ev.raw_json_len = len;
	if (strcmp(type, COMMENT_TYPE) == 0) {
		char ckey[64];
		st = comment_event(root, api_user_id, &ev, ckey, comment_id, what, whatlen);
		snprintf(key, sizeof(key), "%s", ckey);
	} else {
		const char *current = json_string_value(
			json_object_get(json_object_get(root, "event"), "current"));
		ev.type = PARLEY_TICKET_STATUS;
		ev.status = map_status(current);
		if (current == NULL) {
			snprintf(what, whatlen, "event.current (the status) is missing");
			st = ZD_WEBHOOK_BAD;
		} else if (ev.status == 0) {
			pu_excerpt(current, strlen(current), 40, key, sizeof(key));
			snprintf(what, whatlen, "status %s is not one Parley follows", key);
			st = ZD_WEBHOOK_IGNORED;
		} else if (event_id != NULL && event_id[0] != '\0' && strlen(event_id) <= 100 &&
		           pu_header_safe(event_id)) {
			snprintf(key, sizeof(key), "status:%s", event_id);
			st = ZD_WEBHOOK_EVENT;
		} else {
			snprintf(key, sizeof(key), "status:%s:%d:%lld", ticket, (int)ev.status,
			         (long long)ev.time_ms);
			st = ZD_WEBHOOK_EVENT;
		}
	}
	if (st == ZD_WEBHOOK_EVENT) {
		ev.dedupe_key = key;
		if (emit(ctx, &ev) != 0) {
			snprintf(what, whatlen, "the event was refused");
			st = ZD_WEBHOOK_REFUSED;
		}
	}
	json_decref(root);
	return st;
}
