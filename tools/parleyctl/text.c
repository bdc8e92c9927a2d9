/* text.c - escaping outside text for a terminal, widths, short times (text.h). */
#include "text.h"

#include <stdio.h>
#include <string.h>
#include <utf8proc.h>

/* Format characters that reorder or hide text; the rest of category Cf
 * (zero-width joiners in emoji, soft hyphens) are left alone. */
static bool is_bidi_control(utf8proc_int32_t cp)
{
	return cp == 0x061C || cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) ||
	       (cp >= 0x2066 && cp <= 0x2069);
}

/* Is cp shown as "<U+XXXX>" rather than as itself? */
static bool is_hidden_control(utf8proc_int32_t cp)
{
	if (cp >= 0x80 && cp <= 0x9F)
		return true;
	utf8proc_category_t cat = utf8proc_category(cp);
	return cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP || is_bidi_control(cp);
}

static void add_codepoint(ctl_buf *out, utf8proc_int32_t cp)
{
	utf8proc_uint8_t enc[4];
	utf8proc_ssize_t n = utf8proc_encode_char(cp, enc);
	ctl_buf_add(out, (const char *)enc, (size_t)n);
}

void ctl_text_escape(ctl_buf *out, const char *s, size_t n, const char *newline_indent)
{
	const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
	size_t i = 0;
	bool in_space = false;   /* one-line mode: inside a run of breaks and tabs */
	while (i < n) {
		unsigned char c = p[i];
		if (c < 0x80) {
			i++;
			bool space = c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
			if (!newline_indent && space) {
				if (!in_space)
					ctl_buf_addc(out, ' ');
				in_space = true;
				continue;
			}
			in_space = false;
			if (newline_indent && c == '\r' && i < n && p[i] == '\n')
				continue;   /* CRLF: the LF makes the break */
			if (newline_indent && c == '\n') {
				ctl_buf_addc(out, '\n');
				ctl_buf_adds(out, newline_indent);
			} else if (c == '\t' || (c >= 0x20 && c < 0x7F)) {
				ctl_buf_addc(out, (char)c);
			} else {
				add_codepoint(out, c == 0x7F ? 0x2421 : 0x2400 + c);
			}
			continue;
		}
		in_space = false;
		utf8proc_int32_t cp;
		utf8proc_ssize_t len = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &cp);
		if (len <= 0) {
			add_codepoint(out, 0xFFFD);
			i++;
			continue;
		}
		if (is_hidden_control(cp))
			ctl_buf_addf(out, "<U+%04X>", (unsigned)cp);
		else
			ctl_buf_add(out, s + i, (size_t)len);
		i += (size_t)len;
	}
	if (!out->data)
		ctl_buf_add(out, "", 0);
}

char *ctl_text_line(const char *s)
{
	ctl_buf b = { 0 };
	ctl_text_escape(&b, s, strlen(s), NULL);
	return ctl_buf_take(&b);
}

/* The next code point of valid UTF-8 and its width; invalid bytes count as 1. */
static size_t next_char(const char *s, size_t n, int *width)
{
	utf8proc_int32_t cp;
	utf8proc_ssize_t len = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &cp);
	if (len <= 0) {
		*width = 1;
		return 1;
	}
	int w = utf8proc_charwidth(cp);
	*width = w < 0 ? 0 : w;
	return (size_t)len;
}

int ctl_text_width(const char *s)
{
	size_t n = strlen(s), i = 0;
	int total = 0, w;
	while (i < n) {
		i += next_char(s + i, n - i, &w);
		total += w;
	}
	return total;
}

void ctl_text_cut(ctl_buf *out, const char *s, int max_width)
{
	if (ctl_text_width(s) <= max_width) {
		ctl_buf_adds(out, s);
		return;
	}
	size_t n = strlen(s), i = 0;
	int used = 0, w;
	while (i < n) {
		size_t len = next_char(s + i, n - i, &w);
		if (used + w > max_width - 1)
			break;
		ctl_buf_add(out, s + i, len);
		used += w;
		i += len;
	}
	if (max_width >= 1)
		ctl_buf_adds(out, "\u2026");
}

static bool digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

bool ctl_time_parse(const char *s, time_t *out)
{
	int y, mo, d, h, mi, sec, oh = 0, om = 0;
	if (strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
	    !digits(s + 17, 2, &sec))
		return false;
	const char *p = s + 19;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	int sign = 0;
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
		sign = 1;
	} else if ((*p == '+' || *p == '-') && digits(p + 1, 2, &oh)) {
		sign = *p == '+' ? 1 : -1;
		p += 3;
		if (*p == ':')
			p++;
		if (*p && (!digits(p, 2, &om) || p[2] != '\0'))
			return false;
	} else {
		return false;
	}
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || oh > 23 || om > 59)
		return false;
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
	                 .tm_hour = h, .tm_min = mi, .tm_sec = sec };
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return false;
	*out = t - sign * (oh * 3600 + om * 60);
	return true;
}

void ctl_time_short(char *out, time_t t, time_t now)
{
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm at, today;
	if (!localtime_r(&t, &at) || !localtime_r(&now, &today)) {
		snprintf(out, CTL_TIME_SHORT, "?");
		return;
	}
	if (at.tm_year == today.tm_year && at.tm_yday == today.tm_yday)
		snprintf(out, CTL_TIME_SHORT, "%02d:%02d", at.tm_hour, at.tm_min);
	else if (at.tm_year == today.tm_year)
		snprintf(out, CTL_TIME_SHORT, "%s %02d %02d:%02d", months[at.tm_mon], at.tm_mday,
		         at.tm_hour, at.tm_min);
	else
		snprintf(out, CTL_TIME_SHORT, "%04d-%02d-%02d", at.tm_year + 1900, at.tm_mon + 1,
		         at.tm_mday);
}

void ctl_json_safe(ctl_buf *out, const char *json)
{
	size_t n = strlen(json), i = 0;
	while (i < n) {
		size_t start = i;
		while (i < n && (unsigned char)json[i] < 0x80)
			i++;
		ctl_buf_add(out, json + start, i - start);
		if (i >= n)
			break;
		utf8proc_int32_t cp;
		utf8proc_ssize_t len = utf8proc_iterate((const utf8proc_uint8_t *)json + i,
		                                        (utf8proc_ssize_t)(n - i), &cp);
		if (len <= 0) {   /* jansson writes valid UTF-8; be safe anyway */
			ctl_buf_adds(out, "\\ufffd");
			i++;
		} else if (is_hidden_control(cp)) {
			ctl_buf_addf(out, "\\u%04x", (unsigned)cp);
			i += (size_t)len;
		} else {
			ctl_buf_add(out, json + i, (size_t)len);
			i += (size_t)len;
		}
	}
	if (!out->data)
		ctl_buf_add(out, "", 0);
}
