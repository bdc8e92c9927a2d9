/* freshdesk_api.c - requests, answers, HTML and the webhook parser of the
 * freshdesk sink (see freshdesk_api.h). Pure: no host table, no loop. */
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
static void buf_char(pu_buf *b, char c)
{
	pu_buf_add(b, &c, 1);
}

/* The buffer's text, owned by the caller from now on (an empty string for an
 * empty buffer); NULL when an append failed. */
static char *buf_take(pu_buf *b)
{
	if (!b->failed && b->data == NULL)
		pu_buf_add(b, "", 0);
	if (b->failed) {
		free(b->data);
		b->data = NULL;
		return NULL;
	}
	return b->data;
}

/* snprintf into out that never fails loudly: a cut text is still a text. */
static void fmt(char *out, size_t outlen, const char *f, ...) PARLEY_PRINTF(3, 4);

static void fmt(char *out, size_t outlen, const char *f, ...)
{
	va_list ap;

	if (outlen == 0)
		return;
	va_start(ap, f);
	if (vsnprintf(out, outlen, f, ap) < 0)
		out[0] = '\0';
	va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                    */
/* ------------------------------------------------------------------------ */

/* Append code point cp as UTF-8; invalid ones (0, surrogates, beyond
 * U+10FFFF) as U+FFFD. */
static void buf_codepoint(pu_buf *b, uint32_t cp)
{
	char s[4];

	pu_buf_add(b, s, pu_utf8_encode(cp, s));
}

/* ------------------------------------------------------------------------ */
/* Building blocks                                                          */
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

char *fd_html_escape(const char *text)
{
	pu_buf b = { 0 };

	for (const char *p = text; *p != '\0'; p++) {
		switch (*p) {
		case '&': pu_buf_str(&b, "&amp;"); break;
		case '<': pu_buf_str(&b, "&lt;"); break;
		case '>': pu_buf_str(&b, "&gt;"); break;
		case '"': pu_buf_str(&b, "&quot;"); break;
		case '\'': pu_buf_str(&b, "&#39;"); break;
		case '\r':
			if (p[1] != '\n')
				pu_buf_str(&b, "<br>");
			break;
		case '\n': pu_buf_str(&b, "<br>"); break;
		default: buf_char(&b, *p);
		}
	}
	return buf_take(&b);
}

/* The named entities Freshdesk's editor writes for plain text. */
static const struct {
	const char *name;
	uint32_t cp;
} fd_entities[] = {
	{ "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' }, { "apos", '\'' },
	{ "nbsp", 0xA0 }, { "hellip", 0x2026 }, { "ndash", 0x2013 }, { "mdash", 0x2014 },
	{ "lsquo", 0x2018 }, { "rsquo", 0x2019 }, { "ldquo", 0x201C }, { "rdquo", 0x201D },
	{ "euro", 0x20AC }, { "copy", 0xA9 },
};

/* Decode the entity at s ("&...;", at most len bytes). Returns the bytes it
 * used (0: not an entity, the '&' is literal) and appends the character. */
static size_t decode_entity(pu_buf *b, const char *s, size_t len)
{
	char name[12];
	size_t n = 0;
	uint32_t cp = 0;

	for (size_t i = 1; i < len && i < sizeof(name); i++) {
		if (s[i] == ';') {
			n = i;
			break;
		}
	}
	if (n < 2)
		return 0;
	memcpy(name, s + 1, n - 1);
	name[n - 1] = '\0';
	if (name[0] == '#') {
		int hex = name[1] == 'x' || name[1] == 'X';
		const char *digits = name + (hex ? 2 : 1);
		if (digits[0] == '\0')
			return 0;
		for (const char *d = digits; *d != '\0'; d++) {
			int v;
			if (*d >= '0' && *d <= '9')
				v = *d - '0';
			else if (hex && *d >= 'a' && *d <= 'f')
				v = *d - 'a' + 10;
			else if (hex && *d >= 'A' && *d <= 'F')
				v = *d - 'A' + 10;
			else
				return 0;
			cp = cp * (hex ? 16u : 10u) + (uint32_t)v;
			if (cp > 0x10FFFF)
				cp = 0x110000;   /* stays invalid; no overflow */
		}
		buf_codepoint(b, cp);
		return n + 1;
	}
	for (size_t i = 0; i < sizeof(fd_entities) / sizeof(fd_entities[0]); i++) {
		if (strcmp(name, fd_entities[i].name) == 0) {
			buf_codepoint(b, fd_entities[i].cp);
			return n + 1;
		}
	}
	return 0;
}

/* Case-insensitive: does s (len bytes) start with the ASCII word w? */
static bool starts_with_ci(const char *s, size_t len, const char *w)
{
	size_t n = strlen(w);

	return len >= n && strncasecmp(s, w, n) == 0;
}

/* The tag at s ('<' ... '>', len bytes available): how many bytes it spans
 * (len when unterminated) and what it means for the text. */
static size_t skip_tag(const char *s, size_t len, pu_buf *b, size_t *skip_content_to)
{
	const char *end = memchr(s, '>', len);
	size_t span = end != NULL ? (size_t)(end - s) + 1 : len;
	const char *name = s + 1;
	size_t name_avail = span > 1 ? span - 1 : 0;
	int closing = 0;
	char tag[12];
	size_t n = 0;

	*skip_content_to = 0;
	if (name_avail > 0 && *name == '/') {
		closing = 1;
		name++;
		name_avail--;
	}
	while (n < name_avail && n < sizeof(tag) - 1 && isalnum((unsigned char)name[n])) {
		tag[n] = (char)tolower((unsigned char)name[n]);
		n++;
	}
	tag[n] = '\0';
	if (strcmp(tag, "br") == 0) {
		buf_char(b, '\n');
	} else if (closing && (strcmp(tag, "p") == 0 || strcmp(tag, "div") == 0 ||
	                       strcmp(tag, "li") == 0 || strcmp(tag, "tr") == 0 ||
	                       strcmp(tag, "blockquote") == 0 ||
	                       (tag[0] == 'h' && tag[1] >= '1' && tag[1] <= '6' && tag[2] == '\0'))) {
		buf_char(b, '\n');
	} else if (!closing && (strcmp(tag, "script") == 0 || strcmp(tag, "style") == 0)) {
		/* Their content is not text: skip to the closing tag. */
		const char *close = strcmp(tag, "script") == 0 ? "</script" : "</style";
		size_t i = span;
		while (i < len && !starts_with_ci(s + i, len - i, close))
			i++;
		*skip_content_to = i;
	}
	return span;
}

/* Text with every run of horizontal white space as one space, no spaces at
 * line ends or starts, at most one blank line in a row, trimmed. */
static char *squeeze(const char *s)
{
	pu_buf b = { 0 };
	int pending_space = 0, newlines = 0, started = 0;

	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '\n') {
			if (started)
				newlines++;
			pending_space = 0;
		} else if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\f' || *p == '\v') {
			pending_space = 1;
		} else {
			if (newlines > 0)
				pu_buf_str(&b, newlines > 1 ? "\n\n" : "\n");
			else if (pending_space && started)
				buf_char(&b, ' ');
			newlines = 0;
			pending_space = 0;
			started = 1;
			buf_char(&b, *p);
		}
	}
	return buf_take(&b);
}

char *fd_html_to_text(const char *html, size_t len)
{
	pu_buf b = { 0 };
	char *text;

	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)html[i];
		if (c == '<') {
			size_t content_end = 0;
			size_t span = skip_tag(html + i, len - i, &b, &content_end);
			/* content_end: where a script/style element's text ends,
			 * relative to the tag's start. */
			i += content_end > 0 ? content_end : span;
			continue;
		}
		if (c == '&') {
			size_t used = decode_entity(&b, html + i, len - i);
			if (used > 0) {
				i += used;
				continue;
			}
			buf_char(&b, '&');
			i++;
			continue;
		}
		if (c == '\n' || c == '\r' || c == '\t' || c == 0) {
			buf_char(&b, ' ');   /* HTML source line breaks are spaces */
			i++;
			continue;
		}
		{
			size_t n = pu_utf8_seq(html + i, len - i);
			if (n == 0) {
				buf_codepoint(&b, 0xFFFD);
				i++;
			} else {
				pu_buf_add(&b, html + i, n);
				i += n;
			}
		}
	}
	text = buf_take(&b);
	if (text == NULL)
		return NULL;
	{
		/* U+00A0 counts as a space for the squeeze. */
		char *nb;
		while ((nb = strstr(text, "\xC2\xA0")) != NULL) {
			nb[0] = ' ';
			memmove(nb + 1, nb + 2, strlen(nb + 2) + 1);
		}
	}
	{
		char *out = squeeze(text);
		free(text);
		return out;
	}
}

/* Hex of the first n bytes of SHA-256(data). out: 2n + 1 bytes. */
static void sha256_hex(const void *data, size_t len, size_t n, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;

	if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len < n)
		memset(md, 0, sizeof(md));
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[2 * n] = '\0';
}

void fd_fingerprint(const char *text, char out[17])
{
	pu_buf b = { 0 };
	int space = 0;

	for (const char *p = text; *p != '\0'; p++) {
		int ws = *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' ||
		         *p == '\v';
		if (!ws && (unsigned char)p[0] == 0xC2 && (unsigned char)p[1] == 0xA0) {
			ws = 1;
			p++;
		}
		if (ws) {
			space = 1;
			continue;
		}
		if (space && b.len > 0)
			buf_char(&b, ' ');
		space = 0;
		buf_char(&b, *p);
	}
	/* Out of memory leaves an empty text: its fingerprint, still stable. */
	sha256_hex(b.failed || b.data == NULL ? "" : b.data, b.failed ? 0 : b.len, 8, out);
	free(b.data);
}

void fd_key_tag(const char *idempotency_key, char out[FD_TAG_BYTES])
{
	char hex[17];

	sha256_hex(idempotency_key, strlen(idempotency_key), 8, hex);
	fmt(out, FD_TAG_BYTES, "parley-%s", hex);
}

bool fd_id_is_valid(const char *s)
{
	size_t n = 0;

	if (s == NULL)
		return false;
	for (; s[n] != '\0'; n++) {
		if (s[n] < '0' || s[n] > '9')
			return false;
	}
	return n >= 1 && n <= 20;
}

bool fd_comment_id(const char *ticket_id, int is_public, const char *text,
                   char out[FD_COMMENT_ID_BYTES])
{
	char fp[17];
	int n;

	if (!fd_id_is_valid(ticket_id))
		return false;
	fd_fingerprint(text, fp);
	n = snprintf(out, FD_COMMENT_ID_BYTES, "%s:%s:%s", ticket_id, is_public ? "pub" : "priv",
	             fp);
	return n > 0 && n < FD_COMMENT_ID_BYTES;
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
	return buf_take(&b);
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
	return buf_take(&b);
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
	return buf_take(&b);
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
		fmt(follow, sizeof(follow), "follow-up-of-%s", t->follow_up_of);
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
		fmt(why, whylen, "the conversation holds text that is not valid UTF-8");
		return false;
	}
	if (fd_requester(t) == FD_REQUESTER_NONE) {
		fmt(why, whylen, "the conversation has no customer to be the ticket's requester");
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
		fmt(why, whylen, "out of memory building the ticket");
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
			buf_char(b, (char)*p);
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
		fmt(query, sizeof(query), "\"tag:'%s'\"", tag);
		pu_buf_str(&b, "/api/v2/search/tickets?query=");
		buf_pct(&b, query);
		*path = buf_take(&b);
		return *path != NULL;
	}
	case FD_REQUESTER_NONE:
		return false;
	}
	pu_buf_str(&b, "&order_by=created_at&order_type=desc&per_page=100");
	*path = buf_take(&b);
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
	return buf_take(&b);
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

/* ------------------------------------------------------------------------ */
/* Answers                                                                  */
/* ------------------------------------------------------------------------ */

/* The id of a JSON value (an integer, or a string of digits) in out. */
static bool id_of(const json_t *v, char out[FD_ID_BYTES])
{
	if (json_is_integer(v) && json_integer_value(v) > 0) {
		fmt(out, FD_ID_BYTES, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return true;
	}
	if (json_is_string(v) && fd_id_is_valid(json_string_value(v))) {
		fmt(out, FD_ID_BYTES, "%s", json_string_value(v));
		return true;
	}
	return false;
}

/* Freshdesk's validation answer as one line: "Validation failed: email:
 * It should be a valid email address (invalid_value)", else the body. */
static void validation_details(const void *body, size_t len, char *out, size_t outlen)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	pu_buf b = { 0 };
	const char *desc;
	json_t *errors, *e;
	size_t i;

	if (!json_is_object(root)) {
		json_decref(root);
		pu_excerpt(body, len, 300, out, outlen);
		return;
	}
	desc = json_string_value(json_object_get(root, "description"));
	pu_buf_str(&b, desc != NULL ? desc : "refused");
	errors = json_object_get(root, "errors");
	json_array_foreach(errors, i, e) {
		const char *field = json_string_value(json_object_get(e, "field"));
		const char *message = json_string_value(json_object_get(e, "message"));
		const char *code = json_string_value(json_object_get(e, "code"));
		if (i >= 5)
			break;
		pu_buf_str(&b, i == 0 ? ": " : "; ");
		if (field != NULL) {
			pu_buf_str(&b, field);
			pu_buf_str(&b, ": ");
		}
		pu_buf_str(&b, message != NULL ? message : "invalid");
		if (code != NULL) {
			pu_buf_str(&b, " (");
			pu_buf_str(&b, code);
			pu_buf_str(&b, ")");
		}
	}
	json_decref(root);
	if (b.failed || b.data == NULL)
		pu_excerpt(body, len, 300, out, outlen);
	else
		pu_excerpt(b.data, b.len, 300, out, outlen);
	free(b.data);
}

void fd_classify_failure(long status, const char *error, const void *body, size_t len,
                         const char *retry_after, const char *what, fd_result *r)
{
	char text[320];

	pu_excerpt(body, body != NULL ? len : 0, 200, text, sizeof(text));
	if (status == 0) {
		r->outcome = PARLEY_RETRY;
		fmt(r->reason, sizeof(r->reason), "Freshdesk request failed: %s",
		    error != NULL ? error : "transport error");
	} else if (status == 429) {
		r->outcome = PARLEY_RETRY;
		r->rate_limited = 1;
		r->retry_after_s = pu_retry_after_seconds(retry_after, FD_MAX_RETRY_AFTER_S);
		fmt(r->reason, sizeof(r->reason), "Freshdesk rate limit (429)%s",
		    r->retry_after_s > 0 ? ": honouring Retry-After" : "");
	} else if (status == 408 || status >= 500) {
		r->outcome = PARLEY_RETRY;
		fmt(r->reason, sizeof(r->reason), "Freshdesk answered %ld%s%s", status,
		    text[0] != '\0' ? ": " : "", text);
	} else if (status == 401 || status == 403) {
		r->outcome = PARLEY_FAIL;
		fmt(r->reason, sizeof(r->reason),
		    "unauthorized: check the API token (Freshdesk answered %ld)", status);
	} else if (status == 400 || status == 422) {
		char details[320];
		validation_details(body, body != NULL ? len : 0, details, sizeof(details));
		r->outcome = PARLEY_FAIL;
		fmt(r->reason, sizeof(r->reason), "Freshdesk refused the %s (%ld): %s", what, status,
		    details);
	} else {
		r->outcome = PARLEY_FAIL;
		fmt(r->reason, sizeof(r->reason), "Freshdesk answered %ld to the %s%s%s", status,
		    what, text[0] != '\0' ? ": " : "", text);
	}
}

void fd_classify_create(long status, const char *error, const void *body, size_t len,
                        const char *retry_after, const char *what, fd_result *r)
{
	memset(r, 0, sizeof(*r));
	if (status >= 200 && status < 300) {
		json_t *root = body != NULL ? json_loadb(body, len, 0, NULL) : NULL;
		bool ok = json_is_object(root) && id_of(json_object_get(root, "id"), r->id);
		json_decref(root);
		if (ok) {
			r->outcome = PARLEY_OK;
			return;
		}
		/* It may exist without us knowing its id: an operator should look
		 * rather than a retry opening a second one. */
		r->outcome = PARLEY_FAIL;
		fmt(r->reason, sizeof(r->reason),
		    "Freshdesk answered %ld without the %s's id; check whether it was created", status,
		    what);
		return;
	}
	fd_classify_failure(status, error, body, len, retry_after, what, r);
}

/* The id of the first ticket in list whose tags hold tag. */
static bool find_tagged(const json_t *list, const char *tag, char id_out[FD_ID_BYTES])
{
	size_t i, j;
	json_t *ticket, *t;

	json_array_foreach(list, i, ticket) {
		json_array_foreach(json_object_get(ticket, "tags"), j, t) {
			if (json_is_string(t) && strcasecmp(json_string_value(t), tag) == 0 &&
			    id_of(json_object_get(ticket, "id"), id_out))
				return true;
		}
	}
	return false;
}

fd_lookup_result fd_classify_lookup(long status, const char *error, const void *body,
                                    size_t len, const char *retry_after, const char *tag,
                                    char id_out[FD_ID_BYTES], fd_result *r)
{
	json_t *root, *list;
	fd_lookup_result res;

	memset(r, 0, sizeof(*r));
	id_out[0] = '\0';
	if (status == 400 || status == 404)
		return FD_LOOKUP_NONE;   /* e.g. "There is no contact matching the given email" */
	if (status != 200) {
		fd_classify_failure(status, error, body, len, retry_after, "ticket lookup", r);
		return FD_LOOKUP_ERROR;
	}
	root = body != NULL ? json_loadb(body, len, 0, NULL) : NULL;
	list = json_is_object(root) ? json_object_get(root, "results") : root;
	if (!json_is_array(list)) {
		/* Without an answer we cannot rule out a ticket from an earlier
		 * attempt: try again later rather than risk a duplicate. */
		r->outcome = PARLEY_RETRY;
		fmt(r->reason, sizeof(r->reason), "Freshdesk's ticket lookup answer is not a list");
		res = FD_LOOKUP_ERROR;
	} else {
		res = find_tagged(list, tag, id_out) ? FD_LOOKUP_FOUND : FD_LOOKUP_NONE;
	}
	json_decref(root);
	return res;
}

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
		fmt(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
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

	return id_of(v, out);
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
		fmt(c->why, c->whylen, "%s: missing for a %s comment",
		    is_public ? "public_comment" : "private_comment", is_public ? "public" : "private");
		return FD_PARSE_INVALID;
	}
	text = fd_html_to_text(html, strlen(html));
	if (text == NULL) {
		fmt(c->why, c->whylen, "out of memory");
		return FD_PARSE_INVALID;
	}
	if (text[0] == '\0') {
		free(text);
		fmt(c->why, c->whylen, "the comment has no text");
		return FD_PARSE_IGNORED;
	}
	if (strlen(text) > FD_TEXT_MAX_BYTES)
		text[pu_utf8_cut(text, strlen(text), FD_TEXT_MAX_BYTES)] = '\0';
	if (!fd_comment_id(c->ticket_id, is_public, text, comment_id)) {
		free(text);
		fmt(c->why, c->whylen, "ticket_id: not a Freshdesk id");
		return FD_PARSE_INVALID;
	}
	fmt(dedupe, sizeof(dedupe), "comment:%s", comment_id);
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
	fmt(dedupe, sizeof(dedupe), "status:%s:%d:%" PRId64, c->ticket_id, (int)status,
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
			fmt(why, whylen, "%s: expected a string", strings[i]);
			return false;
		}
	}
	v = json_object_get(root, "status");
	if (v != NULL && !json_is_string(v) && !json_is_integer(v) && !json_is_null(v)) {
		fmt(why, whylen, "status: expected a string or an integer");
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
		fmt(c->why, c->whylen, "expected a JSON object");
		return FD_PARSE_INVALID;
	}
	if (!ticket_id_of(c->root, c->ticket_id)) {
		fmt(c->why, c->whylen, "ticket_id: required, a Freshdesk ticket id");
		return FD_PARSE_INVALID;
	}
	if (!fields_typed(c->root, c->why, c->whylen))
		return FD_PARSE_INVALID;
	event = field_text(c->root, "triggered_event");
	if (event == NULL) {
		fmt(c->why, c->whylen, "triggered_event: required");
		return FD_PARSE_INVALID;
	}
	c->raw = json_dumps(c->root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (c->raw == NULL) {
		fmt(c->why, c->whylen, "out of memory");
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
			fmt(c->why, c->whylen, "a status Parley does not map (custom status?)");
			return FD_PARSE_IGNORED;
		}
		return emit_status(c, status);
	case FD_KIND_UNKNOWN:
		break;
	}
	fmt(c->why, c->whylen, "an event Parley does not act on");
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
		fmt(why, whylen, "line %d column %d: %s", err.line, err.column, err.text);
		return FD_PARSE_INVALID;
	}
	res = parse_root(&c);
	free(c.raw);
	json_decref(c.root);
	return res;
}
