/* plugin_util.c - small helpers the shipped plugins share (see plugin_util.h). */
#include "plugin_util.h"
#include "utf8.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

char *pu_strdup(const char *s)
{
	if (s == NULL)
		return NULL;
	size_t len = strlen(s) + 1;
	char *copy = malloc(len);
	if (copy != NULL)
		memcpy(copy, s, len);
	return copy;
}

void pu_wipe(void *p, size_t len)
{
	volatile unsigned char *v = p;
	if (p == NULL)
		return;
	while (len-- > 0)
		*v++ = 0;
}

void pu_wipe_string(char *s)
{
	if (s != NULL)
		pu_wipe(s, strlen(s));
}

int64_t pu_retry_after_seconds(const char *value, int64_t max)
{
	int64_t s = 0;

	if (value == NULL)
		return 0;
	while (*value == ' ' || *value == '\t')
		value++;
	for (; *value >= '0' && *value <= '9'; value++) {
		s = s * 10 + (*value - '0');
		if (s > max)
			return max;
	}
	return s;
}

bool pu_header_safe(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return false;
	}
	return true;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool pu_hex_decode(const char *hex, unsigned char *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hex_digit(hex[2 * i]), lo;
		if (hi < 0)
			return false;
		lo = hex_digit(hex[2 * i + 1]);
		if (lo < 0)
			return false;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return true;
}

void pu_hex_encode(const void *data, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *d = data;

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 0xf];
	}
	out[2 * n] = '\0';
}

void pu_excerpt(const void *body, size_t len, size_t max, char *out, size_t outlen)
{
	const unsigned char *s = body;
	size_t i = 0, o = 0;

	if (outlen == 0)
		return;
	if (max > outlen - 1)
		max = outlen - 1;
	while (s != NULL && i < len && o < max) {
		size_t n = s[i] < 0x80 ? 1 : pu_utf8_seq(s + i, len - i);
		if (n == 0 || (n == 1 && (s[i] < 0x20 || s[i] == 0x7f))) {
			out[o++] = '?';
			i++;
			continue;
		}
		if (o + n > max)
			break;   /* never cut a character in half */
		memcpy(out + o, s + i, n);
		o += n;
		i += n;
	}
	out[o] = '\0';
}

void pu_buf_add(pu_buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap == 0 ? 256 : b->cap;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *grown = realloc(b->data, cap);
		if (grown == NULL) {
			b->failed = true;
			return;
		}
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void pu_buf_str(pu_buf *b, const char *s)
{
	pu_buf_add(b, s, strlen(s));
}

char *pu_buf_take(pu_buf *b)
{
	char *s = NULL;

	if (!b->failed) {
		/* An empty buffer is still a valid empty string. */
		s = b->data != NULL ? b->data : calloc(1, 1);
		b->data = NULL;
	}
	pu_buf_free(b);
	return s;
}

void pu_buf_free(pu_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}
