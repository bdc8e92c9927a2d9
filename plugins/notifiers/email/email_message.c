/* email_message.c - the "email" notifier's pure part (see email_message.h).
 *
 * The message is plain text in UTF-8, quoted-printable, so it needs no
 * 8BITMIME from the server and no line is ever longer than 76 bytes
 * whatever the notice says. Header fields built from notice text are either
 * printable ASCII without CR/LF or RFC 2047 encoded-words (Q encoding), so
 * nothing a customer writes can add a header or end the header block. */
#include "email_message.h"
#include "../../common/plugin_util.h"
#include "../../common/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QP_LINE_MAX 76        /* RFC 2045 6.7 (5): encoded lines, "=" included */
#define HEADER_LINE_SOFT 78   /* RFC 5322 2.1.1: SHOULD not exceed */
#define EW_PAYLOAD_MAX 55     /* encoded text per encoded-word: the first line
                                 "Subject: =?UTF-8?Q?" + 55 + "?=" is 76 bytes,
                                 folded lines " =?UTF-8?Q?" + 55 + "?=" less
                                 (RFC 2047 2: lines of encoded-words <= 76) */
#define LOCAL_PART_MAX 64     /* RFC 5321 4.5.3.1.1 */

static const char hex_digits[] = "0123456789ABCDEF";

/* ------------------------------------------------------------------------ */
/* "=XX" for one byte. */
static void buf_hex(pu_buf *b, unsigned char c)
{
	char t[3] = { '=', hex_digits[c >> 4], hex_digits[c & 0xF] };
	pu_buf_add(b, t, 3);
}

/* ------------------------------------------------------------------------ */
/* Addresses                                                                */
/* ------------------------------------------------------------------------ */

/* RFC 5322 atext. */
static bool is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool is_ldh(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* A dot-atom of n bytes at s made of chars accepted by ok: no empty atom. */
static bool dot_atom(const char *s, size_t n, bool (*ok)(unsigned char))
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!ok((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

bool email_address_valid(const char *addr)
{
	const char *at;
	size_t len;

	if (addr == NULL)
		return false;
	len = strlen(addr);
	at = strchr(addr, '@');
	if (len > EMAIL_ADDRESS_MAX || at == NULL || strchr(at + 1, '@') != NULL)
		return false;
	if ((size_t)(at - addr) > LOCAL_PART_MAX)
		return false;
	return dot_atom(addr, (size_t)(at - addr), is_atext) &&
	       dot_atom(at + 1, strlen(at + 1), is_ldh);
}

const char *email_address_domain(const char *addr)
{
	const char *at = strchr(addr, '@');

	return at != NULL ? at + 1 : addr + strlen(addr);
}

/* ------------------------------------------------------------------------ */
/* Date                                                                     */
/* ------------------------------------------------------------------------ */

bool email_format_date(int64_t ms, char *out, size_t outlen)
{
	/* Fixed English names: strftime would follow the locale. */
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	int n;

	if (ms < 0 || gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999)
		return false;
	n = snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday],
	             tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
	             tm.tm_sec);
	return n > 0 && (size_t)n < outlen;
}

/* ------------------------------------------------------------------------ */
/* Subject                                                                  */
/* ------------------------------------------------------------------------ */

/* The title made one line: control characters become spaces, cut to
 * EMAIL_SUBJECT_BYTES without splitting a character ("…" marks the cut).
 * Owned by the caller; NULL when out of memory. */
static char *subject_text(const char *title)
{
	size_t len = strlen(title), cut = len;
	char *s;

	if (len > EMAIL_SUBJECT_BYTES)
		cut = pu_utf8_cut(title, len, EMAIL_SUBJECT_BYTES);
	s = malloc(cut + 4);
	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < cut; i++) {
		unsigned char c = (unsigned char)title[i];
		s[i] = (c < 0x20 || c == 0x7F) ? ' ' : (char)c;
	}
	s[cut] = '\0';
	if (cut < len)
		strcat(s, "\xE2\x80\xA6");   /* U+2026 */
	return s;
}

/* True when s can stand in the header as it is: printable ASCII, short
 * enough for one line, and nothing a reader would take for an
 * encoded-word. */
static bool subject_is_plain(const char *s)
{
	if (strlen("Subject: ") + strlen(s) > HEADER_LINE_SOFT || strstr(s, "=?") != NULL)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p >= 0x7F)
			return false;
	}
	return true;
}

/* Characters a Q-encoded word in a Subject may carry as themselves
 * (RFC 2047 5 (3)); everything else is =XX, space is '_'. */
static bool q_literal(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '!' || c == '*' || c == '+' || c == '-' || c == '/';
}

/* "Subject: " and s as encoded-words, folded between words. */
static void add_encoded_subject(pu_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t payload = 0;

	pu_buf_str(b, "Subject: =?UTF-8?Q?");
	while (*p != '\0') {
		/* A whole character per step, so an encoded-word never
		 * splits one (RFC 2047 5 (3)); a stray byte is one. */
		size_t n = pu_utf8_seq(p, strlen((const char *)p)), need = 0;
		if (n == 0)
			n = 1;
		for (size_t i = 0; i < n; i++)
			need += (q_literal(p[i]) || p[i] == ' ') ? 1 : 3;
		if (payload > 0 && payload + need > EW_PAYLOAD_MAX) {
			pu_buf_str(b, "?=\r\n =?UTF-8?Q?");
			payload = 0;
		}
		for (size_t i = 0; i < n; i++) {
			if (p[i] == ' ')
				pu_buf_add(b, "_", 1);
			else if (q_literal(p[i]))
				pu_buf_add(b, (const char *)p + i, 1);
			else
				buf_hex(b, p[i]);
		}
		payload += need;
		p += n;
	}
	pu_buf_str(b, "?=\r\n");
}

static bool add_subject(pu_buf *b, const char *title)
{
	char *s = subject_text(title);

	if (s == NULL)
		return false;
	if (subject_is_plain(s)) {
		pu_buf_str(b, "Subject: ");
		pu_buf_str(b, s);
		pu_buf_str(b, "\r\n");
	} else {
		add_encoded_subject(b, s);
	}
	free(s);
	return true;
}

/* ------------------------------------------------------------------------ */
/* Other headers                                                            */
/* ------------------------------------------------------------------------ */

/* "To: a, b, ..." folded after a comma before a line grows past 78. The
 * addresses are valid, so they hold no space, comma or control character. */
static void add_to(pu_buf *b, const char *const *to)
{
	size_t col = strlen("To: ");

	pu_buf_str(b, "To: ");
	for (size_t i = 0; to[i] != NULL; i++) {
		size_t n = strlen(to[i]);
		if (i > 0) {
			if (col + 2 + n > HEADER_LINE_SOFT) {
				pu_buf_str(b, ",\r\n ");
				col = 1;
			} else {
				pu_buf_str(b, ", ");
				col += 2;
			}
		}
		pu_buf_add(b, to[i], n);
		col += n;
	}
	pu_buf_str(b, "\r\n");
}

/* The kind as an X-Parley-Notice-Kind header when it is a plain token
 * ("conversation.created"); anything else is left out. */
static void add_kind(pu_buf *b, const char *kind)
{
	size_t n;

	if (kind == NULL)
		return;
	n = strlen(kind);
	if (n == 0 || n > 60)
		return;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)kind[i];
		if (!is_ldh(c) && c != '.' && c != '_')
			return;
	}
	pu_buf_str(b, "X-Parley-Notice-Kind: ");
	pu_buf_add(b, kind, n);
	pu_buf_str(b, "\r\n");
}

static bool id_left_valid(const char *s)
{
	if (s == NULL || s[0] == '\0' || strlen(s) > 64)
		return false;
	return dot_atom(s, strlen(s), is_ldh);
}

/* ------------------------------------------------------------------------ */
/* Body: quoted-printable (RFC 2045 6.7)                                    */
/* ------------------------------------------------------------------------ */

typedef struct qp_state {
	pu_buf *b;
	size_t col;        /* bytes on the current output line */
} qp_state;

/* Append one token (a byte as itself or "=XX"), breaking the line softly
 * first when it would not fit with the trailing '=' of a soft break. */
static void qp_token(qp_state *q, const char *tok, size_t n)
{
	if (q->col + n > QP_LINE_MAX - 1) {
		pu_buf_str(q->b, "=\r\n");
		q->col = 0;
	}
	pu_buf_add(q->b, tok, n);
	q->col += n;
}

/* One line of text (no line break in it) and its hard CRLF. */
static void qp_line(qp_state *q, const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		bool last = i + 1 == n;
		/* Literal: printable ASCII but '='; space and tab unless they
		 * end the line (trailing white space may be stripped in
		 * transit, RFC 2045 6.7 (3)); not a '.' opening a line. */
		bool literal = ((c >= 0x21 && c <= 0x7E && c != '=') ||
		                ((c == ' ' || c == '\t') && !last));
		/* A '.' that would open a line, here or after a soft break. */
		if (literal && c == '.' && (q->col == 0 || q->col + 1 > QP_LINE_MAX - 1))
			literal = false;
		if (literal) {
			qp_token(q, (const char *)&s[i], 1);
		} else {
			char t[3] = { '=', hex_digits[c >> 4], hex_digits[c & 0xF] };
			qp_token(q, t, 3);
		}
	}
	pu_buf_str(q->b, "\r\n");
	q->col = 0;
}

/* text with CRLF, CR or LF line breaks, each becoming a hard CRLF. */
static void qp_text(qp_state *q, const char *text)
{
	const unsigned char *s = (const unsigned char *)text;

	for (;;) {
		size_t n = 0;
		while (s[n] != '\0' && s[n] != '\r' && s[n] != '\n')
			n++;
		qp_line(q, s, n);
		s += n;
		if (*s == '\0')
			break;
		if (s[0] == '\r' && s[1] == '\n')
			s += 2;
		else
			s++;
		if (*s == '\0')
			break;   /* a final line break ends the text, no empty line after it */
	}
}

/* ------------------------------------------------------------------------ */
/* The message                                                              */
/* ------------------------------------------------------------------------ */

static bool input_valid(const email_message_input *in)
{
	if (!email_address_valid(in->from) || in->to == NULL || in->to[0] == NULL ||
	    !id_left_valid(in->message_id_left))
		return false;
	for (size_t i = 0; in->to[i] != NULL; i++) {
		if (!email_address_valid(in->to[i]))
			return false;
	}
	return true;
}

bool email_message_build(const email_message_input *in, char **out, size_t *out_len)
{
	pu_buf b = { 0 };
	qp_state q = { .b = &b, .col = 0 };
	char date[64];
	const char *title = in->title != NULL && in->title[0] != '\0' ? in->title
	                    : in->kind != NULL ? in->kind : "Parley notice";

	if (!input_valid(in) || !email_format_date(in->date_ms, date, sizeof(date)))
		return false;

	pu_buf_str(&b, "Date: ");
	pu_buf_str(&b, date);
	pu_buf_str(&b, "\r\nFrom: ");
	pu_buf_str(&b, in->from);
	pu_buf_str(&b, "\r\n");
	add_to(&b, in->to);
	if (!add_subject(&b, title)) {
		free(b.data);
		return false;
	}
	pu_buf_str(&b, "Message-ID: <");
	pu_buf_str(&b, in->message_id_left);
	pu_buf_str(&b, "@");
	pu_buf_str(&b, email_address_domain(in->from));
	pu_buf_str(&b, ">\r\n");
	/* RFC 3834: machine-made, so auto-responders do not answer it. */
	pu_buf_str(&b, "Auto-Submitted: auto-generated\r\n");
	add_kind(&b, in->kind);
	pu_buf_str(&b, "MIME-Version: 1.0\r\n"
	            "Content-Type: text/plain; charset=utf-8\r\n"
	            "Content-Transfer-Encoding: quoted-printable\r\n"
	            "\r\n");

	qp_text(&q, in->text != NULL ? in->text : "");
	if (in->url != NULL && in->url[0] != '\0') {
		qp_line(&q, (const unsigned char *)"", 0);
		qp_text(&q, in->url);
	}
	if (b.failed) {
		free(b.data);
		return false;
	}
	*out = b.data;
	*out_len = b.len;
	return true;
}

parley_outcome email_reply_outcome(long code)
{
	if (code >= 200 && code < 300)
		return PARLEY_OK;
	if (code == 0 || (code >= 400 && code < 500))
		return PARLEY_RETRY;
	return PARLEY_FAIL;
}
