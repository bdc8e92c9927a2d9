/* freshdesk_text.c - the freshdesk sink's text work: HTML in both
 * directions, the fingerprint of a message, the job's tag, ticket and
 * comment ids, and the small buffer helpers the other pure files share.
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
/* Shared helpers                                                           */
/* ------------------------------------------------------------------------ */

void fd_buf_char(pu_buf *b, char c)
{
	pu_buf_add(b, &c, 1);
}

/* The buffer's text, owned by the caller from now on (an empty string for an
 * empty buffer); NULL when an append failed. */
char *fd_buf_take(pu_buf *b)
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
void fd_fmt(char *out, size_t outlen, const char *f, ...)
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
		default: fd_buf_char(&b, *p);
		}
	}
	return fd_buf_take(&b);
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
		fd_buf_char(b, '\n');
	} else if (closing && (strcmp(tag, "p") == 0 || strcmp(tag, "div") == 0 ||
	                       strcmp(tag, "li") == 0 || strcmp(tag, "tr") == 0 ||
	                       strcmp(tag, "blockquote") == 0 ||
	                       (tag[0] == 'h' && tag[1] >= '1' && tag[1] <= '6' && tag[2] == '\0'))) {
		fd_buf_char(b, '\n');
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
				fd_buf_char(&b, ' ');
			newlines = 0;
			pending_space = 0;
			started = 1;
			fd_buf_char(&b, *p);
		}
	}
	return fd_buf_take(&b);
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
			fd_buf_char(&b, '&');
			i++;
			continue;
		}
		if (c == '\n' || c == '\r' || c == '\t' || c == 0) {
			fd_buf_char(&b, ' ');   /* HTML source line breaks are spaces */
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
	text = fd_buf_take(&b);
	if (text == NULL)
		return NULL;
	{
		/* U+00A0 counts as a space for the squeeze. In one pass:
		 * Freshdesk's editor writes &nbsp; in every run of spaces, and
		 * moving the rest of the text once per U+00A0 made a long
		 * comment cost seconds of the event loop. */
		char *w = text;
		for (const char *r = text; *r != '\0';) {
			if ((unsigned char)r[0] == 0xC2 && (unsigned char)r[1] == 0xA0) {
				*w++ = ' ';
				r += 2;
			} else {
				*w++ = *r++;
			}
		}
		*w = '\0';
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
			fd_buf_char(&b, ' ');
		space = 0;
		fd_buf_char(&b, *p);
	}
	/* Out of memory leaves an empty text: its fingerprint, still stable. */
	sha256_hex(b.failed || b.data == NULL ? "" : b.data, b.failed ? 0 : b.len, 8, out);
	free(b.data);
}

void fd_key_tag(const char *idempotency_key, char out[FD_TAG_BYTES])
{
	char hex[17];

	sha256_hex(idempotency_key, strlen(idempotency_key), 8, hex);
	fd_fmt(out, FD_TAG_BYTES, "parley-%s", hex);
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

