/* rfc3339.h - timestamps as platforms send them, to Unix milliseconds.
 *
 * One strict parser for RFC 3339 date-times (2024-05-01T12:00:00.250+02:00)
 * and the calendar arithmetic under it, so no plugin keeps its own copy.
 * Compiled into each plugin. */
#ifndef PARLEY_PLUGIN_RFC3339_H
#define PARLEY_PLUGIN_RFC3339_H

#include <stdbool.h>
#include <stdint.h>

#include "plugin_util.h"

/* n decimal digits at s into *out; false when one is not a digit (a NUL
 * stops it too, so a short string is never read past its end). */
PU_INTERNAL bool pu_read_digits(const char *s, int n, int *out);

/* A calendar date and time at offset_min minutes east of UTC, plus ms
 * milliseconds, as Unix ms into *out_ms. false (and *out_ms untouched) when a
 * field is out of range: month 1..12, day within the month, hour 0..23,
 * minute 0..59, second 0..60 (60: a leap second). */
PU_INTERNAL bool pu_civil_to_ms(int year, int month, int day, int hour, int minute, int second,
                                int offset_min, int ms, int64_t *out_ms);

/* An RFC 3339 date-time (section 5.6: "T" or "t", an optional fraction of
 * which milliseconds are kept, "Z"/"z" or a +hh:mm/-hh:mm offset, nothing
 * after it) into *out_ms. false for NULL or anything else. s: borrowed. */
PU_INTERNAL bool pu_rfc3339_ms(const char *s, int64_t *out_ms);

#endif
