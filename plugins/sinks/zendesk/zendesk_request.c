/* zendesk_request.c - the requests of the zendesk sink: the Authorization
 * header, the Support API URLs and the JSON bodies of tickets, users and
 * comments. Pure (see zendesk_api.h). */
#include "zendesk_api.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "../../common/plugin_util.h"
#include "../../common/utf8.h"

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

/* base64 of len bytes, owned by the caller; NULL when out of memory. */
char *zd_base64(const void *data, size_t len)
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
	encoded = zd_base64(plain, n - 1);
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

