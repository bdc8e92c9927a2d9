/* util.c - small helpers shared by the core's subsystems. */
#include "util.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

void util_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                      unsigned char out[32])
{
	unsigned int out_len = 32;
	/* HMAC() only fails on allocation failure; treat it like xmalloc does. */
	if (HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &out_len) == NULL) {
		fputs("parleyd: HMAC failed (out of memory)\n", stderr);
		abort();
	}
}

void util_hex(const unsigned char *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * len] = '\0';
}

int util_secure_equals(const void *a, size_t a_len, const void *b, size_t b_len)
{
	/* Lengths are public (a signature has a fixed size); contents are not. */
	if (a_len != b_len)
		return 0;
	if (a_len == 0)
		return 1;
	return CRYPTO_memcmp(a, b, a_len) == 0;
}

void util_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void util_one_line(const char *in, char *out, size_t len)
{
	size_t o = 0;
	bool space = false;
	if (len == 0)
		return;
	for (const char *p = in ? in : ""; *p && o + 1 < len; p++) {
		if (*p == '\n' || *p == '\r' || *p == '\t' || *p == ' ') {
			space = o > 0;
			continue;
		}
		if (space && o + 2 < len)
			out[o++] = ' ';
		space = false;
		out[o++] = *p;
	}
	out[o] = '\0';
}

int64_t util_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t util_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void out_of_memory(void)
{
	fputs("parleyd: out of memory\n", stderr);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		out_of_memory();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		out_of_memory();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		out_of_memory();
	return q;
}

char *xstrdup(const char *s)
{
	if (s == NULL)
		return NULL;
	char *d = strdup(s);
	if (d == NULL)
		out_of_memory();
	return d;
}

char *xstrndup(const char *s, size_t n)
{
	if (s == NULL)
		return NULL;
	char *d = strndup(s, n);
	if (d == NULL)
		out_of_memory();
	return d;
}
