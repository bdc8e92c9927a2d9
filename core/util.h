/* util.h - small helpers shared by the core's subsystems. */
#ifndef PARLEY_CORE_UTIL_H
#define PARLEY_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* HMAC-SHA256 (libcrypto). */
void util_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                      unsigned char out[32]);
/* Lowercase hex of `len` bytes into out (2*len+1 bytes). */
void util_hex(const unsigned char *in, size_t len, char *out);
/* Constant time in the contents; 1 if equal. */
int util_secure_equals(const void *a, size_t a_len, const void *b, size_t b_len);
/* printf into err (may be NULL or errlen 0: then nothing). */
void util_set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Copy `in` (may be NULL) into out as one trimmed line: runs of newlines,
 * tabs and spaces become one space (libpq's messages span lines). */
void util_one_line(const char *in, char *out, size_t len);
int64_t util_now_ms(void);         /* wall clock, Unix ms */
uint64_t util_mono_us(void);       /* monotonic microseconds */
/* Allocation that aborts on failure (out of memory is not recoverable here). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);      /* NULL stays NULL */
char *xstrndup(const char *s, size_t n);

#endif
