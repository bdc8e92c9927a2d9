/* telegram_json.h - small JSON helpers shared by the telegram channel's
 * wire-format files (telegram_parse.c, telegram_send.c). Header-only: each
 * file gets its own static copies. */
#ifndef PARLEY_TELEGRAM_JSON_H
#define PARLEY_TELEGRAM_JSON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

#include "parley/parley.h"

/* Answers larger than this are not parsed: a sendMessage result is a few
 * KB, a getUpdates page of 100 updates well below this. */
#define TELEGRAM_MAX_PARSE_BYTES (16u * 1024u * 1024u)

static inline void say(char *why, size_t whylen, const char *fmt, ...) PARLEY_PRINTF(3, 4);

/* Fill the caller's why buffer (may be NULL). */
static inline void say(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* A JSON integer member as int64 (never through a double: chat ids have up
 * to 13 digits, other ids may grow). */
static inline bool get_int(json_t *obj, const char *key, int64_t *out)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_integer(v))
		return false;
	*out = (int64_t)json_integer_value(v);
	return true;
}

static inline const char *get_str(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

#endif
