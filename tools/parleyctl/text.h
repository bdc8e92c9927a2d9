/* text.h - showing text that came from outside on a terminal.
 *
 * Customer messages, names and even API error details are someone else's
 * bytes. Written raw to a terminal, an ESC or a C1 control starts an escape
 * sequence (colours, cursor moves, window titles, on some terminals worse),
 * a bare CR overwrites what was printed before it, and bidi overrides turn
 * text around. So every string parleyctl prints in its human format goes
 * through ctl_text_escape first, and --json output through ctl_json_safe. */
#ifndef PARLEYCTL_TEXT_H
#define PARLEYCTL_TEXT_H

#include <stdbool.h>
#include <time.h>

#include "ctl.h"

/* Appends s (n bytes, any content) to out as safe, valid UTF-8:
 *   - C0 controls and DEL become their Unicode control pictures (ESC -> U+241B),
 *     so "\x1b[31m" shows as "␛[31m" and does nothing;
 *   - C1 controls (U+0080-U+009F), line/paragraph separators and bidi
 *     controls become "<U+202E>";
 *   - bytes that are not UTF-8 become U+FFFD.
 * newline_indent NULL: one line; tabs, CR and LF (runs of them) become one
 * space. Otherwise line breaks (LF, CRLF) are kept, each followed by
 * newline_indent; a lone CR still becomes its picture. */
void ctl_text_escape(ctl_buf *out, const char *s, size_t n, const char *newline_indent);

/* ctl_text_escape of a NUL-terminated string, one line, as a new string. */
char *ctl_text_line(const char *s);

/* Columns the (escaped, so valid UTF-8) string takes on a terminal. */
int ctl_text_width(const char *s);

/* Appends s cut to at most max_width columns, ending in "…" when cut. */
void ctl_text_cut(ctl_buf *out, const char *s, int max_width);

/* RFC 3339 ("2024-05-01T12:34:56.123+02:00", "...Z") to a time_t. */
bool ctl_time_parse(const char *s, time_t *out) CTL_MUSTCHECK;

/* A short local time relative to now: "14:05" today, "May 01 14:05" this
 * year, "2023-11-30" otherwise. out must hold CTL_TIME_SHORT bytes. */
#define CTL_TIME_SHORT 48   /* room for any int the compiler imagines */
void ctl_time_short(char *out, time_t t, time_t now);

/* Rewrites JSON text (as jansson writes it: UTF-8, C0 already escaped) so
 * C1 controls, line separators and bidi controls inside strings are \u
 * escapes too: the same JSON value, harmless on a terminal. */
void ctl_json_safe(ctl_buf *out, const char *json);

#endif
