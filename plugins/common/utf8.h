/* utf8.h - UTF-8 checks and cuts for the shipped plugins, on utf8proc.
 *
 * Platforms and notices hand plugins text that must be valid UTF-8 before it
 * goes into JSON or a mail header, and limits that must cut it without
 * splitting a character. utf8proc decides what a valid sequence is (no
 * overlong forms, no surrogates, nothing beyond U+10FFFF); these wrappers
 * give the plugins the few shapes they need. Compiled into each plugin. */
#ifndef PARLEY_PLUGIN_UTF8_H
#define PARLEY_PLUGIN_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plugin_util.h"

/* The length (1..4) of the valid UTF-8 sequence at s, which has avail bytes;
 * 0 when avail is 0 or the bytes are not a valid sequence. s: borrowed. */
PU_INTERNAL size_t pu_utf8_seq(const void *s, size_t avail);

/* True when the len bytes at s are valid UTF-8. s: borrowed. */
PU_INTERNAL bool pu_utf8_valid_n(const void *s, size_t len);

/* True when the string s is valid UTF-8; NULL counts as valid (nothing to
 * check). s: borrowed. */
PU_INTERNAL bool pu_utf8_valid(const char *s);

/* The length of the longest start of s (len bytes, valid UTF-8) that is at
 * most max bytes and ends on a character boundary. s: borrowed. */
PU_INTERNAL size_t pu_utf8_cut(const char *s, size_t len, size_t max);

/* Code point cp as UTF-8 into out; 0, surrogates and anything beyond
 * U+10FFFF become U+FFFD. Returns the number of bytes (1..4). */
PU_INTERNAL size_t pu_utf8_encode(uint32_t cp, char out[4]);

/* s (valid UTF-8, borrowed) as one line for an operator-facing reason:
 * control characters become spaces, at most outlen - 1 bytes of whole
 * characters, always NUL-terminated (outlen > 0). */
PU_INTERNAL void pu_utf8_line(const char *s, char *out, size_t outlen);

#endif
