/* utf8.c - UTF-8 checks and cuts on utf8proc (see utf8.h). */
#include "utf8.h"

#include <string.h>
#include <utf8proc.h>

size_t pu_utf8_seq(const void *s, size_t avail)
{
	utf8proc_int32_t cp;
	utf8proc_ssize_t n;

	if (avail == 0)
		return 0;
	/* utf8proc_iterate reads at most 4 bytes and never past avail. */
	n = utf8proc_iterate(s, avail > 4 ? 4 : (utf8proc_ssize_t)avail, &cp);
	return n > 0 ? (size_t)n : 0;
}

bool pu_utf8_valid_n(const void *s, size_t len)
{
	const unsigned char *p = s;

	for (size_t i = 0; i < len;) {
		size_t n = p[i] < 0x80 ? 1 : pu_utf8_seq(p + i, len - i);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

bool pu_utf8_valid(const char *s)
{
	return s == NULL || pu_utf8_valid_n(s, strlen(s));
}

size_t pu_utf8_cut(const char *s, size_t len, size_t max)
{
	size_t i = 0;

	if (len <= max)
		return len;
	while (i < max) {
		size_t n = pu_utf8_seq(s + i, len - i);
		if (n == 0)
			n = 1;   /* not UTF-8 after all: a byte is a byte */
		if (i + n > max)
			break;
		i += n;
	}
	return i;
}

size_t pu_utf8_encode(uint32_t cp, char out[4])
{
	if (cp == 0 || cp > 0x10FFFF || !utf8proc_codepoint_valid((utf8proc_int32_t)cp))
		cp = 0xFFFD;
	return (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)out);
}

void pu_utf8_line(const char *s, char *out, size_t outlen)
{
	size_t n;

	if (outlen == 0)
		return;
	n = pu_utf8_cut(s, strlen(s), outlen - 1);
	for (size_t i = 0; i < n; i++)
		out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? ' ' : s[i];
	out[n] = '\0';
}
