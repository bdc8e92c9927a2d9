/* freshdesk_request.c - the requests of the freshdesk sink: the
 * Authorization header, the ticket's body (subject, description, tags,
 * requester), the lookup of an earlier attempt's ticket and the note.
 * Pure (see freshdesk_api.h). */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "freshdesk_api.h"
#include "../../common/plugin_util.h"
#include "../../common/utf8.h"

/* ------------------------------------------------------------------------ */
/* Authorization                                                            */
/* ------------------------------------------------------------------------ */

char *fd_auth_header(const char *api_key)
{
	static const char prefix[] = "Authorization: Basic ";
	size_t klen, plain_len, enc_len;
	unsigned char *plain;
	char *header;

	if (api_key == NULL || api_key[0] == '\0' || !pu_header_safe(api_key))
		return NULL;
	klen = strlen(api_key);
	if (klen > 4096)
		return NULL;
	plain_len = klen + 2;
	plain = malloc(plain_len);
	enc_len = 4 * ((plain_len + 2) / 3);
	header = malloc(sizeof(prefix) + enc_len);
	if (plain == NULL || header == NULL) {
		pu_wipe(plain, plain != NULL ? plain_len : 0);
		free(plain);
		free(header);
		return NULL;
	}
	memcpy(plain, api_key, klen);
	memcpy(plain + klen, ":X", 2);
	memcpy(header, prefix, sizeof(prefix) - 1);
	EVP_EncodeBlock((unsigned char *)header + sizeof(prefix) - 1, plain, (int)plain_len);
	pu_wipe(plain, plain_len);
	free(plain);
	return header;
}

/* ------------------------------------------------------------------------ */
/* Outbound requests                                                        */
/* ------------------------------------------------------------------------ */

static bool present(const char *s)
{
	return s != NULL && s[0] != '\0';
}

fd_requester_kind fd_requester(const fd_ticket_in *t)
{
	if (present(t->customer_email))
		return FD_REQUESTER_EMAIL;
	if (present(t->customer_phone))
		return FD_REQUESTER_PHONE;
	if (present(t->customer_id))
		return FD_REQUESTER_EXTERNAL_ID;
	return FD_REQUESTER_NONE;
}

/* "parley-<customer_id>", owned by the caller. */
static char *external_id_of(const fd_ticket_in *t)
{
	pu_buf b = { 0 };

	pu_buf_str(&b, "parley-");
	pu_buf_str(&b, t->customer_id);
	return fd_buf_take(&b);
}

/* A case number usable as a tag: at most 32 bytes, no comma, no control
 * characters. */
static bool tag_is_usable(const char *s)
{
	size_t n = 0;

	if (!present(s))
		return false;
	for (; s[n] != '\0'; n++) {
		if ((unsigned char)s[n] < 0x20 || s[n] == ',' || s[n] == 0x7F)
			return false;
	}
	return n <= 32;
}

/* "[PC-1] Follow-up: <first line of the text, cut>" */
static char *ticket_subject(const fd_ticket_in *t)
{
	pu_buf b = { 0 };
	const char *text = present(t->text) ? t->text : NULL;

	while (text != NULL && (*text == ' ' || *text == '\n' || *text == '\r' || *text == '\t'))
		text++;
	if (present(t->case_number)) {
		pu_buf_str(&b, "[");
		pu_buf_str(&b, t->case_number);
		pu_buf_str(&b, "] ");
	}
	if (present(t->follow_up_of))
		pu_buf_str(&b, "Follow-up: ");
	if (present(text)) {
		size_t line = strcspn(text, "\r\n");
		size_t cut = pu_utf8_cut(text, line, FD_SUBJECT_TEXT_BYTES);
		pu_buf_add(&b, text, cut);
		if (cut < line)
			pu_buf_str(&b, "\xE2\x80\xA6");
	} else {
		pu_buf_str(&b, "Conversation");
		if (present(t->channel_instance)) {
			pu_buf_str(&b, " on ");
			pu_buf_str(&b, t->channel_instance);
		}
	}
	return fd_buf_take(&b);
}

/* Append the escaped text s. */
static void buf_escaped(pu_buf *b, const char *s)
{
	char *e = fd_html_escape(s);

	if (e == NULL) {
		b->failed = true;
		return;
	}
	pu_buf_str(b, e);
	free(e);
}

/* The description: the follow-up note, the message, where it came from. */
static char *ticket_description(const fd_ticket_in *t)
{
	pu_buf b = { 0 };
	const char *who = present(t->author_name) ? t->author_name : t->customer_name;

	if (present(t->follow_up_of)) {
		pu_buf_str(&b, "<p>Follow-up to ticket #");
		buf_escaped(&b, t->follow_up_of);
		pu_buf_str(&b, ", which is closed.</p>");
	}
	pu_buf_str(&b, "<p>");
	buf_escaped(&b, present(t->text) ? t->text : "");
	pu_buf_str(&b, "</p><p>");
	if (present(who)) {
		pu_buf_str(&b, "From ");
		buf_escaped(&b, who);
		if (present(t->customer_handle)) {
			pu_buf_str(&b, " (");
			buf_escaped(&b, t->customer_handle);
			pu_buf_str(&b, ")");
		}
		pu_buf_str(&b, ", ");
	}
	pu_buf_str(&b, t->is_public ? "a public message" : "a private message");
	if (present(t->channel_instance)) {
		pu_buf_str(&b, " on ");
		buf_escaped(&b, t->channel_instance);
		if (present(t->channel_kind)) {
			pu_buf_str(&b, " (");
			buf_escaped(&b, t->channel_kind);
			pu_buf_str(&b, ")");
		}
	}
	if (present(t->case_number)) {
		pu_buf_str(&b, ", Parley case ");
		buf_escaped(&b, t->case_number);
	}
	pu_buf_str(&b, ".</p>");
	return fd_buf_take(&b);
}

/* The tags: "parley", the case number, the job's tag, and for a follow-up
 * "follow-up-of-<id>". NULL when out of memory. */
static json_t *ticket_tags(const fd_ticket_in *t)
{
	json_t *tags = json_array();
	char key_tag[FD_TAG_BYTES];
	char follow[FD_TAG_BYTES];

	if (tags == NULL)
		return NULL;
	fd_key_tag(t->idempotency_key, key_tag);
	if (json_array_append_new(tags, json_string("parley")) != 0)
		goto fail;
	if (tag_is_usable(t->case_number) &&
	    json_array_append_new(tags, json_string(t->case_number)) != 0)
		goto fail;
	if (json_array_append_new(tags, json_string(key_tag)) != 0)
		goto fail;
	if (fd_id_is_valid(t->follow_up_of)) {
		fd_fmt(follow, sizeof(follow), "follow-up-of-%s", t->follow_up_of);
		if (json_array_append_new(tags, json_string(follow)) != 0)
			goto fail;
	}
	return tags;
fail:
	json_decref(tags);
	return NULL;
}

/* Set the requester fields of the body. false when out of memory. */
static bool set_requester(json_t *o, const fd_ticket_in *t)
{
	const char *name = present(t->customer_name) ? t->customer_name
	                   : present(t->customer_handle) ? t->customer_handle : NULL;
	int rc = 0;

	switch (fd_requester(t)) {
	case FD_REQUESTER_EMAIL:
		rc |= json_object_set_new(o, "email", json_string(t->customer_email));
		break;
	case FD_REQUESTER_PHONE:
		/* Freshdesk wants a name with a phone number. */
		rc |= json_object_set_new(o, "phone", json_string(t->customer_phone));
		if (name == NULL)
			name = t->customer_phone;
		break;
	case FD_REQUESTER_EXTERNAL_ID: {
		char *ext = external_id_of(t);
		if (ext == NULL)
			return false;
		rc |= json_object_set_new(o, "unique_external_id", json_string(ext));
		/* A new contact needs a name; the external id stands in. */
		if (name == NULL)
			rc |= json_object_set_new(o, "name", json_string(ext));
		free(ext);
		break;
	}
	case FD_REQUESTER_NONE:
		return false;
	}
	if (name != NULL)
		rc |= json_object_set_new(o, "name", json_string(name));
	return rc == 0;
}

/* True when every string of t is valid UTF-8 (jansson refuses the rest). */
static bool ticket_in_is_utf8(const fd_ticket_in *t)
{
	const char *all[] = { t->idempotency_key, t->case_number, t->channel_instance,
	                      t->channel_kind, t->customer_id, t->customer_name,
	                      t->customer_email, t->customer_phone, t->customer_handle,
	                      t->author_name, t->text, t->follow_up_of, t->group_id };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (all[i] != NULL && !pu_utf8_valid(all[i]))
			return false;
	}
	return true;
}

bool fd_ticket_body(const fd_ticket_in *t, char **body, char *why, size_t whylen)
{
	json_t *o = NULL, *tags = NULL;
	char *subject = NULL, *description = NULL;
	bool ok = false;

	*body = NULL;
	if (!ticket_in_is_utf8(t)) {
		fd_fmt(why, whylen, "the conversation holds text that is not valid UTF-8");
		return false;
	}
	if (fd_requester(t) == FD_REQUESTER_NONE) {
		fd_fmt(why, whylen, "the conversation has no customer to be the ticket's requester");
		return false;
	}
	subject = ticket_subject(t);
	description = ticket_description(t);
	tags = ticket_tags(t);
	o = json_object();
	if (subject == NULL || description == NULL || tags == NULL || o == NULL)
		goto out;
	if (json_object_set_new(o, "subject", json_string(subject)) != 0 ||
	    json_object_set_new(o, "description", json_string(description)) != 0 ||
	    json_object_set_new(o, "status", json_integer(2)) != 0 ||
	    json_object_set_new(o, "priority", json_integer(t->priority)) != 0 ||
	    json_object_set_new(o, "source", json_integer(t->source)) != 0 ||
	    !set_requester(o, t))
		goto out;
	if (t->group_id != NULL && fd_id_is_valid(t->group_id) &&
	    json_object_set_new(o, "group_id", json_integer(strtoll(t->group_id, NULL, 10))) != 0)
		goto out;
	if (json_object_set(o, "tags", tags) != 0)
		goto out;
	*body = json_dumps(o, JSON_COMPACT);
	ok = *body != NULL;
out:
	if (!ok)
		fd_fmt(why, whylen, "out of memory building the ticket");
	json_decref(o);
	json_decref(tags);
	free(subject);
	free(description);
	return ok;
}

/* Append s percent-encoded for a query value (RFC 3986 unreserved kept). */
static void buf_pct(pu_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
			fd_buf_char(b, (char)*p);
		} else {
			char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
			pu_buf_add(b, e, 3);
		}
	}
}

bool fd_lookup_path(const fd_ticket_in *t, char **path)
{
	pu_buf b = { 0 };
	char tag[FD_TAG_BYTES];

	*path = NULL;
	switch (fd_requester(t)) {
	case FD_REQUESTER_EMAIL:
		pu_buf_str(&b, "/api/v2/tickets?email=");
		buf_pct(&b, t->customer_email);
		break;
	case FD_REQUESTER_EXTERNAL_ID: {
		char *ext = external_id_of(t);
		if (ext == NULL)
			return false;
		pu_buf_str(&b, "/api/v2/tickets?unique_external_id=");
		buf_pct(&b, ext);
		free(ext);
		break;
	}
	case FD_REQUESTER_PHONE: {
		/* The list cannot filter by phone: ask the filter API for the tag. */
		char query[64];
		fd_key_tag(t->idempotency_key, tag);
		fd_fmt(query, sizeof(query), "\"tag:'%s'\"", tag);
		pu_buf_str(&b, "/api/v2/search/tickets?query=");
		buf_pct(&b, query);
		*path = fd_buf_take(&b);
		return *path != NULL;
	}
	case FD_REQUESTER_NONE:
		return false;
	}
	pu_buf_str(&b, "&order_by=created_at&order_type=desc&per_page=100");
	*path = fd_buf_take(&b);
	return *path != NULL;
}

char *fd_note_path(const char *ticket_id)
{
	pu_buf b = { 0 };

	if (!fd_id_is_valid(ticket_id))
		return NULL;
	pu_buf_str(&b, "/api/v2/tickets/");
	pu_buf_str(&b, ticket_id);
	pu_buf_str(&b, "/notes");
	return fd_buf_take(&b);
}

char *fd_note_body(const char *text)
{
	char *html, *body = NULL;
	json_t *o;

	if (!pu_utf8_valid(text))
		return NULL;
	html = fd_html_escape(text);
	if (html == NULL)
		return NULL;
	o = json_pack("{s:s, s:b, s:b}", "body", html, "incoming", 1, "private", 0);
	if (o != NULL)
		body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	free(html);
	return body;
}

