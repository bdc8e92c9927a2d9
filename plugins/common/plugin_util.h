/* plugin_util.h - small helpers the shipped plugins share.
 *
 * Compiled into each plugin (and into the unit tests and fuzz targets of
 * their parsers); plugins export only parley_plugin_entry, so these names
 * never clash between plugins or with the daemon. They use only the public
 * ABI (parley/parley.h): third-party plugins can copy this file as it is. */
#ifndef PARLEY_PLUGIN_UTIL_H
#define PARLEY_PLUGIN_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/parley.h"

#if defined(__GNUC__)
#define PU_INTERNAL __attribute__((visibility("hidden")))
#else
#define PU_INTERNAL
#endif

/* A copy of s, owned by the caller; NULL for NULL or when out of memory. */
PU_INTERNAL char *pu_strdup(const char *s);

/* Overwrite len bytes of a secret before its memory is given back; the
 * stores are volatile so they are not optimized away as dead. p may be NULL. */
PU_INTERNAL void pu_wipe(void *p, size_t len);
/* The same for a NUL-terminated string (its bytes up to the NUL). */
PU_INTERNAL void pu_wipe_string(char *s);

/* Seconds from a Retry-After header in its delta-seconds form, capped at
 * max; 0 for none, garbage or the HTTP-date form (the core's backoff
 * applies then). value: borrowed, may be NULL. */
PU_INTERNAL int64_t pu_retry_after_seconds(const char *value, int64_t max);

/* True when s can be a header value: no control character (CR, LF, NUL,
 * the rest of C0, DEL) that could end the header line or smuggle another.
 * s: borrowed, not NULL. */
PU_INTERNAL bool pu_header_safe(const char *s);

/* Exactly 2 * n hex digits at hex (either case) into n bytes at out; false
 * when any of them is not a hex digit (out is then partly written). hex:
 * borrowed, at least 2 * n characters or NUL-terminated before (a NUL is
 * not a digit, so a short string stops the decoding). */
PU_INTERNAL bool pu_hex_decode(const char *hex, unsigned char *out, size_t n);

/* n bytes at data as 2 * n lowercase hex digits and a NUL into out (at
 * least 2 * n + 1 bytes). data: borrowed. */
PU_INTERNAL void pu_hex_encode(const void *data, size_t n, char *out);

/* At most `max` bytes of untrusted text (a response body, a platform's error
 * message) as an operator-facing excerpt in out (outlen bytes, always
 * NUL-terminated): whole valid UTF-8 sequences only, never cut in half;
 * control characters and invalid bytes become '?'. body: borrowed. */
PU_INTERNAL void pu_excerpt(const void *body, size_t len, size_t max, char *out, size_t outlen);

/* A growing text buffer, always NUL-terminated once something was added.
 * A failed allocation sets `failed` and ignores later appends, so a caller
 * checks once at the end. data: owned by the caller (free). */
typedef struct pu_buf {
	char *data;
	size_t len;
	size_t cap;
	bool failed;
} pu_buf;

/* Append n bytes of s (borrowed). */
PU_INTERNAL void pu_buf_add(pu_buf *b, const char *s, size_t n);
/* Append the string s (borrowed). */
PU_INTERNAL void pu_buf_str(pu_buf *b, const char *s);
/* The finished string (owned by the caller, free()), "" when nothing was
 * added, or NULL when an append failed; b is reset either way. */
PU_INTERNAL char *pu_buf_take(pu_buf *b);
/* Give b's memory back and reset it. */
PU_INTERNAL void pu_buf_free(pu_buf *b);

#endif
