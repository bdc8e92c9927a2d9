/* freshdesk_webhook.c - Freshdesk's automation webhook: its credentials
 * (the secret header or Basic auth) and the one ticket event its body
 * becomes. Pure (see freshdesk_api.h). */
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

#define FD_TEXT_MAX_BYTES 65536       /* a webhook comment is cut here */

/* ------------------------------------------------------------------------ */
/* Inbound                                                                  */
/* ------------------------------------------------------------------------ */

/* Decode standard base64 (borrowed, NUL-terminated) into a new buffer owned
 * by the caller (NUL-terminated; wipe it: it holds a password). */
static unsigned char *base64_decode(const char *in, size_t *out_len)
{
	size_t len = strlen(in), pad = 0;
	unsigned char *out;
	int n;

	if (len == 0 || len % 4 != 0 || len > 8192)
		return NULL;
	out = malloc(len / 4 * 3 + 1);
	if (out == NULL)
		return NULL;
	n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
	if (n < 0) {
		free(out);
		return NULL;
	}
	if (in[len - 1] == '=')
		pad++;
	if (in[len - 2] == '=')
		pad++;
	*out_len = (size_t)n - pad;
	out[*out_len] = '\0';
	return out;
}

fd_auth_result fd_check_auth(const char *secret_header, const char *authorization,
                             const char *username, const char *secret, fd_equals_fn equals)
{
	size_t secret_len = strlen(secret);
	unsigned char *plain;
	size_t plain_len = 0;
	const char *colon;
	int user_ok, pass_ok;

	if (secret_header != NULL)
		return equals(secret_header, strlen(secret_header), secret, secret_len)
		       ? FD_AUTH_OK : FD_AUTH_BAD;
	if (authorization == NULL || username == NULL)
		return FD_AUTH_MISSING;
	if (strncasecmp(authorization, "Basic ", 6) != 0)
		return FD_AUTH_BAD;
	authorization += 6;
	while (*authorization == ' ')
		authorization++;
	plain = base64_decode(authorization, &plain_len);
	if (plain == NULL)
		return FD_AUTH_BAD;
	colon = memchr(plain, ':', plain_len);
	if (colon == NULL) {
		pu_wipe(plain, plain_len);
		free(plain);
		return FD_AUTH_BAD;
	}
	/* Both halves are always compared: the answer's timing says nothing
	 * about which one was wrong. */
	user_ok = equals(plain, (size_t)(colon - (const char *)plain), username, strlen(username));
	pass_ok = equals(colon + 1, plain_len - (size_t)(colon + 1 - (const char *)plain), secret,
	                 secret_len);
	pu_wipe(plain, plain_len);
	free(plain);
	return user_ok && pass_ok ? FD_AUTH_OK : FD_AUTH_BAD;
}

typedef enum fd_kind {
	FD_KIND_UNKNOWN = 0,
	FD_KIND_PUBLIC_COMMENT = 1,
	FD_KIND_PRIVATE_COMMENT = 2,
	FD_KIND_STATUS = 3
} fd_kind;

/* A placeholder Freshdesk left as it was ("{{ticket.x}}") counts as absent. */
static const char *field_text(json_t *root, const char *name)
{
	const char *s = json_string_value(json_object_get(root, name));

	if (s == NULL || s[0] == '\0' || strncmp(s, "{{", 2) == 0)
		return NULL;
	return s;
}

/* A status value ("4", "Resolved", ...) as Parley's; 0 when not mapped. */
static parley_ticket_status status_of_text(const char *s, size_t len)
{
	char word[16];

	while (len > 0 && (*s == ' ' || *s == '"' || *s == '\''))
		s++, len--;
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '"' || s[len - 1] == '\''))
		len--;
	if (len == 0 || len >= sizeof(word))
		return 0;
	memcpy(word, s, len);
	word[len] = '\0';
	if (strcmp(word, "2") == 0 || strcasecmp(word, "open") == 0)
		return PARLEY_TICKET_OPEN;
	if (strcmp(word, "3") == 0 || strcasecmp(word, "pending") == 0)
		return PARLEY_TICKET_PENDING;
	if (strcmp(word, "4") == 0 || strcasecmp(word, "resolved") == 0 ||
	    strcasecmp(word, "solved") == 0)
		return PARLEY_TICKET_SOLVED;
	if (strcmp(word, "5") == 0 || strcasecmp(word, "closed") == 0)
		return PARLEY_TICKET_CLOSED;
	return 0;
}

static parley_ticket_status status_of_json(const json_t *v)
{
	char num[24];

	if (json_is_integer(v)) {
		fd_fmt(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return status_of_text(num, strlen(num));
	}
	if (json_is_string(v))
		return status_of_text(json_string_value(v), json_string_length(v));
	return 0;
}

/* What {{triggered_event}} says: "{note_type:public}", "{note_type:private}",
 * "{reply_sent:sent}", "{status:{from:2,to:4}}", or one of the plain words
 * public_note, private_note, reply, status. *to / *to_len receive the new
 * status's text from a status change, when it has one. */
static fd_kind kind_of_event(const char *ev, const char **to, size_t *to_len)
{
	char key[32];
	size_t n = 0;
	const char *p = ev, *value;

	*to = NULL;
	*to_len = 0;
	while (*p == '{' || *p == ' ' || *p == '"')
		p++;
	while (n < sizeof(key) - 1 && *p != '\0' && *p != ':' && *p != '}' && *p != '"' &&
	       *p != ' ') {
		key[n++] = (char)tolower((unsigned char)*p);
		p++;
	}
	key[n] = '\0';
	while (*p == '"' || *p == ' ' || *p == ':')
		p++;
	value = p;
	if (strcmp(key, "note_type") == 0) {
		if (strncasecmp(value, "public", 6) == 0)
			return FD_KIND_PUBLIC_COMMENT;
		if (strncasecmp(value, "private", 7) == 0)
			return FD_KIND_PRIVATE_COMMENT;
		return FD_KIND_UNKNOWN;
	}
	if (strncmp(key, "reply", 5) == 0 || strcmp(key, "public_note") == 0 ||
	    strcmp(key, "public_comment") == 0)
		return FD_KIND_PUBLIC_COMMENT;
	if (strcmp(key, "private_note") == 0 || strcmp(key, "private_comment") == 0)
		return FD_KIND_PRIVATE_COMMENT;
	if (strcmp(key, "status") == 0) {
		const char *t = strstr(value, "to");
		if (t != NULL) {
			t += 2;
			while (*t == '"' || *t == ' ' || *t == ':')
				t++;
			*to = t;
			*to_len = strcspn(t, ",}");
		}
		return FD_KIND_STATUS;
	}
	return FD_KIND_UNKNOWN;
}

/* The ticket id: a string of digits or a positive integer. */
static bool ticket_id_of(json_t *root, char out[FD_ID_BYTES])
{
	json_t *v = json_object_get(root, "ticket_id");

	return fd_json_id(v, out);
}

typedef struct fd_parse_ctx {
	json_t *root;               /* owned by fd_parse_webhook */
	char *raw;                  /* owned: the payload, compact */
	char ticket_id[FD_ID_BYTES];
	int64_t now_ms;
	fd_emit_fn emit;
	void *emit_ctx;
	char *why;
	size_t whylen;
} fd_parse_ctx;

static fd_parse_result emit_comment(fd_parse_ctx *c, int is_public)
{
	const char *html = field_text(c->root, is_public ? "public_comment" : "private_comment");
	char comment_id[FD_COMMENT_ID_BYTES], dedupe[FD_COMMENT_ID_BYTES + 16];
	parley_ticket_event ev;
	char *text;
	fd_parse_result res;

	if (html == NULL) {
		fd_fmt(c->why, c->whylen, "%s: missing for a %s comment",
		    is_public ? "public_comment" : "private_comment", is_public ? "public" : "private");
		return FD_PARSE_INVALID;
	}
	text = fd_html_to_text(html, strlen(html));
	if (text == NULL) {
		fd_fmt(c->why, c->whylen, "out of memory");
		return FD_PARSE_INVALID;
	}
	if (text[0] == '\0') {
		free(text);
		fd_fmt(c->why, c->whylen, "the comment has no text");
		return FD_PARSE_IGNORED;
	}
	if (strlen(text) > FD_TEXT_MAX_BYTES)
		text[pu_utf8_cut(text, strlen(text), FD_TEXT_MAX_BYTES)] = '\0';
	if (!fd_comment_id(c->ticket_id, is_public, text, comment_id)) {
		free(text);
		fd_fmt(c->why, c->whylen, "ticket_id: not a Freshdesk id");
		return FD_PARSE_INVALID;
	}
	fd_fmt(dedupe, sizeof(dedupe), "comment:%s", comment_id);
	memset(&ev, 0, sizeof(ev));
	ev.size = sizeof(ev);
	ev.type = PARLEY_TICKET_COMMENT;
	ev.dedupe_key = dedupe;
	ev.external_ticket_id = c->ticket_id;
	ev.comment_id = comment_id;
	ev.is_public = is_public;
	ev.from_parley = 0;   /* Parley's own notes: the caller's emit marks them */
	ev.author_name = field_text(c->root, "agent_name");
	ev.text = text;
	ev.raw_json = c->raw;
	ev.raw_json_len = strlen(c->raw);
	res = c->emit(c->emit_ctx, &ev) == 0 ? FD_PARSE_EMITTED : FD_PARSE_REFUSED;
	free(text);
	return res;
}

static fd_parse_result emit_status(fd_parse_ctx *c, parley_ticket_status status)
{
	char dedupe[96];
	parley_ticket_event ev;

	/* One status per ticket and second: a request sent twice at once
	 * changes nothing, and a ticket resolved, reopened and resolved again
	 * is three events. (Setting a status twice is harmless; losing one is
	 * not.) */
	fd_fmt(dedupe, sizeof(dedupe), "status:%s:%d:%" PRId64, c->ticket_id, (int)status,
	    c->now_ms / 1000);
	memset(&ev, 0, sizeof(ev));
	ev.size = sizeof(ev);
	ev.type = PARLEY_TICKET_STATUS;
	ev.dedupe_key = dedupe;
	ev.external_ticket_id = c->ticket_id;
	ev.status = status;
	ev.time_ms = c->now_ms;
	ev.raw_json = c->raw;
	ev.raw_json_len = strlen(c->raw);
	return c->emit(c->emit_ctx, &ev) == 0 ? FD_PARSE_EMITTED : FD_PARSE_REFUSED;
}

/* Check the types of the optional fields: strings (or, for status, an
 * integer) or null. */
static bool fields_typed(json_t *root, char *why, size_t whylen)
{
	static const char *const strings[] = { "triggered_event", "public_comment",
	                                       "private_comment", "agent_name" };
	json_t *v;

	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		v = json_object_get(root, strings[i]);
		if (v != NULL && !json_is_string(v) && !json_is_null(v)) {
			fd_fmt(why, whylen, "%s: expected a string", strings[i]);
			return false;
		}
	}
	v = json_object_get(root, "status");
	if (v != NULL && !json_is_string(v) && !json_is_integer(v) && !json_is_null(v)) {
		fd_fmt(why, whylen, "status: expected a string or an integer");
		return false;
	}
	return true;
}

static fd_parse_result parse_root(fd_parse_ctx *c)
{
	const char *event, *to = NULL;
	size_t to_len = 0;
	parley_ticket_status status = 0;

	if (!json_is_object(c->root)) {
		fd_fmt(c->why, c->whylen, "expected a JSON object");
		return FD_PARSE_INVALID;
	}
	if (!ticket_id_of(c->root, c->ticket_id)) {
		fd_fmt(c->why, c->whylen, "ticket_id: required, a Freshdesk ticket id");
		return FD_PARSE_INVALID;
	}
	if (!fields_typed(c->root, c->why, c->whylen))
		return FD_PARSE_INVALID;
	event = field_text(c->root, "triggered_event");
	if (event == NULL) {
		fd_fmt(c->why, c->whylen, "triggered_event: required");
		return FD_PARSE_INVALID;
	}
	c->raw = json_dumps(c->root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (c->raw == NULL) {
		fd_fmt(c->why, c->whylen, "out of memory");
		return FD_PARSE_INVALID;
	}
	switch (kind_of_event(event, &to, &to_len)) {
	case FD_KIND_PUBLIC_COMMENT:
		return emit_comment(c, 1);
	case FD_KIND_PRIVATE_COMMENT:
		return emit_comment(c, 0);
	case FD_KIND_STATUS:
		if (to != NULL)
			status = status_of_text(to, to_len);
		if (status == 0)
			status = status_of_json(json_object_get(c->root, "status"));
		if (status == 0) {
			fd_fmt(c->why, c->whylen, "a status Parley does not map (custom status?)");
			return FD_PARSE_IGNORED;
		}
		return emit_status(c, status);
	case FD_KIND_UNKNOWN:
		break;
	}
	fd_fmt(c->why, c->whylen, "an event Parley does not act on");
	return FD_PARSE_IGNORED;
}

bool fd_webhook_public_ticket(const void *body, size_t len, char ticket_id[FD_ID_BYTES])
{
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	const char *event, *to = NULL;
	size_t to_len = 0;
	bool yes = false;

	ticket_id[0] = '\0';
	if (json_is_object(root) && ticket_id_of(root, ticket_id)) {
		event = json_is_string(json_object_get(root, "triggered_event"))
		        ? field_text(root, "triggered_event") : NULL;
		yes = event != NULL && kind_of_event(event, &to, &to_len) == FD_KIND_PUBLIC_COMMENT;
	}
	json_decref(root);
	return yes;
}

fd_parse_result fd_parse_webhook(const void *body, size_t len, int64_t now_ms, fd_emit_fn emit,
                                 void *ctx, char *why, size_t whylen)
{
	fd_parse_ctx c;
	json_error_t err;
	fd_parse_result res;

	memset(&c, 0, sizeof(c));
	c.now_ms = now_ms;
	c.emit = emit;
	c.emit_ctx = ctx;
	c.why = why;
	c.whylen = whylen;
	if (whylen > 0)
		why[0] = '\0';
	c.root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
	if (c.root == NULL) {
		fd_fmt(why, whylen, "line %d column %d: %s", err.line, err.column, err.text);
		return FD_PARSE_INVALID;
	}
	res = parse_root(&c);
	free(c.raw);
	json_decref(c.root);
	return res;
}
