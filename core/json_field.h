/* json_field.h - typed reads of one field of a JSON object, with precise errors.
 *
 * Every reader takes the object, the JSON path of that object ("" at the top
 * level, "limits", "channels[2].config") and a key. An absent key leaves *out
 * alone, so a caller sets the default first and reads over it. A present key
 * of the wrong type or out of range fails with one line
 *
 *     [PREFIX: ]PATH.KEY: reason
 *
 * written into the context's buffer. Reasons name types and ranges, never the
 * value: any string may be a secret. The readers know nothing of the
 * configuration; job payloads and request bodies use them the same way. */
#ifndef PARLEY_CORE_JSON_FIELD_H
#define PARLEY_CORE_JSON_FIELD_H

#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#define JF_PATH_MAX 512     /* JSON paths in messages; longer ones end in "..." */
#define JF_REASON_MAX 512

/* Where errors go. `prefix` (borrowed, may be NULL) starts every message,
 * e.g. the configuration file's name; `err` (borrowed) receives the line. */
typedef struct jf_ctx {
	const char *prefix;
	char *err;
	size_t errlen;
} jf_ctx;

/* Write "[PREFIX: ]PATH: reason" and return false, so callers can
 * `return jf_fail(...)`. */
bool jf_fail(const jf_ctx *ctx, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* "expected an integer, got string" at path. Returns false. */
bool jf_fail_type(const jf_ctx *ctx, const char *path, json_type want, const json_t *got);

/* "an integer", "a boolean"...: what a key expects, for messages. */
const char *jf_type_with_article(json_type t);
/* "integer", "real"...: what a value is, for "got ..." in messages. */
const char *jf_type_name(const json_t *v);

/* "parent.key" ("key" at the top level) and "parent[i]" into out. */
void jf_path_key(char out[JF_PATH_MAX], const char *parent, const char *key);
void jf_path_index(char out[JF_PATH_MAX], const char *parent, size_t i);

/* Every key of obj is one of allowed[] (NULL-terminated), else
 * "PATH.KEY: unknown key". */
PARLEY_MUSTCHECK bool jf_check_keys(const jf_ctx *ctx, const json_t *obj, const char *path,
                                    const char *const *allowed);

/* obj.key must be present: "PATH.KEY: required key missing" otherwise. */
PARLEY_MUSTCHECK
bool jf_require(const jf_ctx *ctx, const json_t *obj, const char *path, const char *key);

/* The typed readers. *out is left alone when the key is absent. Strings are
 * borrowed from obj. */
PARLEY_MUSTCHECK
bool jf_get_string(const jf_ctx *ctx, const json_t *obj, const char *path, const char *key,
                   const char **out);
PARLEY_MUSTCHECK
bool jf_get_bool(const jf_ctx *ctx, const json_t *obj, const char *path, const char *key,
                 bool *out);
/* An integer in [min, max]. A max of INT_MAX or more reads as "no upper
 * bound" in the message ("must be at least MIN"). */
PARLEY_MUSTCHECK
bool jf_get_int(const jf_ctx *ctx, const json_t *obj, const char *path, const char *key,
                json_int_t min, json_int_t max, json_int_t *out);
/* An object or array (borrowed); anything else is a type error. */
PARLEY_MUSTCHECK
bool jf_get_object(const jf_ctx *ctx, const json_t *obj, const char *path, const char *key,
                   json_t **out);
PARLEY_MUSTCHECK
bool jf_get_array(const jf_ctx *ctx, const json_t *obj, const char *path, const char *key,
                  json_t **out);
/* An array of strings, each min_len..max_len bytes (0, SIZE_MAX for any);
 * errors name the element, "PATH.KEY[3]: expected a string, got integer". */
PARLEY_MUSTCHECK
bool jf_get_string_array(const jf_ctx *ctx, const json_t *obj, const char *path, const char *key,
                         size_t min_len, size_t max_len, json_t **out);

#endif
