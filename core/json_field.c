/* json_field.c - typed reads of one field of a JSON object, with precise errors. */
#include "json_field.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

bool jf_fail(const jf_ctx *ctx, const char *path, const char *fmt, ...)
{
	char reason[JF_REASON_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (ctx->err == NULL || ctx->errlen == 0)
		return false;
	if (ctx->prefix != NULL)
		snprintf(ctx->err, ctx->errlen, "%s: %s: %s", ctx->prefix, path, reason);
	else
		snprintf(ctx->err, ctx->errlen, "%s: %s", path, reason);
	return false;
}

const char *jf_type_with_article(json_type t)
{
	switch (t) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "a value";
}

const char *jf_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return "real";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	case JSON_NULL: return "null";
	}
	return "unknown";
}

bool jf_fail_type(const jf_ctx *ctx, const char *path, json_type want, const json_t *got)
{
	return jf_fail(ctx, path, "expected %s, got %s", jf_type_with_article(want), jf_type_name(got));
}

/* A path too long for the buffer (absurd nesting or key names) still makes
 * a readable message: it ends in "..." instead of being cut mid-word. */
static void path_mark_cut(char out[JF_PATH_MAX], int n)
{
	if (n < 0 || n >= JF_PATH_MAX)
		memcpy(out + JF_PATH_MAX - 4, "...", 4);
}

void jf_path_key(char out[JF_PATH_MAX], const char *parent, const char *key)
{
	int n;
	if (parent == NULL || parent[0] == '\0')
		n = snprintf(out, JF_PATH_MAX, "%s", key);
	else
		n = snprintf(out, JF_PATH_MAX, "%s.%s", parent, key);
	path_mark_cut(out, n);
}

void jf_path_index(char out[JF_PATH_MAX], const char *parent, size_t i)
{
	path_mark_cut(out, snprintf(out, JF_PATH_MAX, "%s[%zu]", parent, i));
}

bool jf_check_keys(const jf_ctx *ctx, const json_t *obj, const char *path,
                   const char *const *allowed)
{
	const char *key;
	json_t *v;
	char child[JF_PATH_MAX];
	json_object_foreach((json_t *)obj, key, v) {
		bool known = false;
		for (size_t i = 0; allowed[i] != NULL && !known; i++)
			known = strcmp(key, allowed[i]) == 0;
		if (!known) {
			jf_path_key(child, path, key);
			return jf_fail(ctx, child, "unknown key");
		}
	}
	return true;
}

bool jf_require(const jf_ctx *ctx, const json_t *obj, const char *path, const char *key)
{
	if (json_object_get(obj, key) != NULL)
		return true;
	char child[JF_PATH_MAX];
	jf_path_key(child, path, key);
	return jf_fail(ctx, child, "required key missing");
}

/* obj.key when present and of type `want` (JSON_TRUE stands for either
 * boolean); *v NULL when absent. */
static bool get_typed(const jf_ctx *ctx, const json_t *obj, const char *path, const char *key,
                      json_type want, json_t **v)
{
	*v = json_object_get(obj, key);
	if (*v == NULL)
		return true;
	bool ok = want == JSON_TRUE ? json_is_boolean(*v) : json_typeof(*v) == want;
	if (ok)
		return true;
	char child[JF_PATH_MAX];
	jf_path_key(child, path, key);
	return jf_fail_type(ctx, child, want, *v);
}

bool jf_get_string(const jf_ctx *ctx, const json_t *obj, const char *path, const char *key,
                   const char **out)
{
	json_t *v;
	if (!get_typed(ctx, obj, path, key, JSON_STRING, &v))
		return false;
	if (v != NULL)
		*out = json_string_value(v);
	return true;
}

bool jf_get_bool(const jf_ctx *ctx, const json_t *obj, const char *path, const char *key,
                 bool *out)
{
	json_t *v;
	if (!get_typed(ctx, obj, path, key, JSON_TRUE, &v))
		return false;
	if (v != NULL)
		*out = json_is_true(v);
	return true;
}

bool jf_get_int(const jf_ctx *ctx, const json_t *obj, const char *path, const char *key,
                json_int_t min, json_int_t max, json_int_t *out)
{
	json_t *v;
	if (!get_typed(ctx, obj, path, key, JSON_INTEGER, &v))
		return false;
	if (v == NULL)
		return true;
	json_int_t n = json_integer_value(v);
	char child[JF_PATH_MAX];
	jf_path_key(child, path, key);
	if (n < min && max >= INT_MAX)
		return jf_fail(ctx, child, "must be at least %" JSON_INTEGER_FORMAT, min);
	if (n < min || n > max)
		return jf_fail(ctx, child, "must be between %" JSON_INTEGER_FORMAT
		               " and %" JSON_INTEGER_FORMAT, min, max);
	*out = n;
	return true;
}

bool jf_get_object(const jf_ctx *ctx, const json_t *obj, const char *path, const char *key,
                   json_t **out)
{
	json_t *v;
	if (!get_typed(ctx, obj, path, key, JSON_OBJECT, &v))
		return false;
	if (v != NULL)
		*out = v;
	return true;
}

bool jf_get_array(const jf_ctx *ctx, const json_t *obj, const char *path, const char *key,
                  json_t **out)
{
	json_t *v;
	if (!get_typed(ctx, obj, path, key, JSON_ARRAY, &v))
		return false;
	if (v != NULL)
		*out = v;
	return true;
}

bool jf_get_string_array(const jf_ctx *ctx, const json_t *obj, const char *path,
                         const char *key, size_t min_len, size_t max_len, json_t **out)
{
	json_t *arr = NULL;
	if (!jf_get_array(ctx, obj, path, key, &arr))
		return false;
	if (arr == NULL)
		return true;
	char at[JF_PATH_MAX], child[JF_PATH_MAX];
	jf_path_key(at, path, key);
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e) {
		jf_path_index(child, at, i);
		if (!json_is_string(e))
			return jf_fail_type(ctx, child, JSON_STRING, e);
		size_t len = json_string_length(e);
		if (len < min_len || len > max_len)
			return jf_fail(ctx, child, "must be %zu to %zu characters", min_len, max_len);
	}
	*out = arr;
	return true;
}
