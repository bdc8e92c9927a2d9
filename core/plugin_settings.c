/* plugin_settings.c - a plugin's settings table (ABI 1.3).
 *
 * The table is the plugin's, in the layout of the header it was built
 * with: rows are `setting_size` bytes apart and only the fields that size
 * covers are read. The struct it describes is allocated, filled and freed
 * here; the plugin only reads it. */
#include "plugin_settings.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json_field.h"
#include "util.h"

#define SETTINGS_STRUCT_MAX (64 * 1024)  /* a struct of settings, not a data set */
#define KNOWN_FLAGS (PARLEY_SETTING_FLAG_REQUIRED | PARLEY_SETTING_FLAG_SECRET | \
                     PARLEY_SETTING_FLAG_RELOADABLE | PARLEY_SETTING_FLAG_PRINTABLE)
/* A row as ABI 1.3 defines it: everything up to `description`. */
#define ROW_V13_SIZE (offsetof(parley_setting, description) + sizeof(const char *))

#define FIELD(st, r, type) ((type *)(void *)((char *)(st) + (r)->offset))
#define CFIELD(st, r, type) ((const type *)(const void *)((const char *)(st) + (r)->offset))

bool psettings_present(const parley_plugin_descriptor *d)
{
	return PARLEY_HAS_FIELD(d, parley_plugin_descriptor, settings_size) && d->settings != NULL;
}

static const parley_setting *row_at(const parley_plugin_descriptor *d, size_t i)
{
	return (const parley_setting *)(const void *)((const char *)d->settings + i * d->setting_size);
}

static bool is_secret(const parley_setting *r)
{
	return r->type == PARLEY_SETTING_SECRET || (r->flags & PARLEY_SETTING_FLAG_SECRET);
}

static bool has_bounds(const parley_setting *r)
{
	return r->min != 0 || r->max != 0;
}

/* The field a type fills, for the layout check. */
static bool field_layout(parley_setting_type t, size_t *size, size_t *align)
{
	switch (t) {
	case PARLEY_SETTING_STRING:
	case PARLEY_SETTING_SECRET:
	case PARLEY_SETTING_URL:
	case PARLEY_SETTING_JSON:
	case PARLEY_SETTING_STRING_LIST:
		*size = *align = sizeof(void *);
		return true;
	case PARLEY_SETTING_INTEGER:
		*size = *align = sizeof(int64_t);
		return true;
	case PARLEY_SETTING_BOOLEAN:
		*size = *align = sizeof(int);
		return true;
	}
	return false;
}

static const char *type_name(parley_setting_type t)
{
	switch (t) {
	case PARLEY_SETTING_STRING:
	case PARLEY_SETTING_SECRET: return "string";
	case PARLEY_SETTING_INTEGER: return "integer";
	case PARLEY_SETTING_BOOLEAN: return "boolean";
	case PARLEY_SETTING_URL: return "url";
	case PARLEY_SETTING_STRING_LIST: return "list of strings";
	case PARLEY_SETTING_JSON: return "json";
	}
	return "unknown";
}

/* ------------------------------------------------------------------------ */
/* One value                                                                */
/* ------------------------------------------------------------------------ */

/* "must be between 1 and 64 bytes long" for a string of the wrong length. */
static bool check_length(const jf_ctx *jf, const char *path, const parley_setting *r, size_t len)
{
	if (!has_bounds(r) || ((int64_t)len >= r->min && (int64_t)len <= r->max))
		return true;
	if (r->min == 1 && r->max >= INT_MAX)
		return jf_fail(jf, path, "must not be empty");
	if (r->max >= INT_MAX)
		return jf_fail(jf, path, "must be at least %lld bytes long", (long long)r->min);
	return jf_fail(jf, path, "must be between %lld and %lld bytes long", (long long)r->min,
	               (long long)r->max);
}

/* http:// or https://, a host, and nothing that could end a request line
 * or a header (no spaces or control characters). */
static bool has_control(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return true;
	return false;
}

/* The checks a string value gets beyond its length: PRINTABLE. */
static bool check_text(const jf_ctx *jf, const char *path, const parley_setting *r, const char *s)
{
	if ((r->flags & PARLEY_SETTING_FLAG_PRINTABLE) && has_control(s))
		return jf_fail(jf, path, "must not contain control characters");
	return true;
}

static bool is_http_url(const char *s)
{
	size_t skip = strncasecmp(s, "http://", 7) == 0 ? 7 : strncasecmp(s, "https://", 8) == 0 ? 8 : 0;
	if (skip == 0 || s[skip] == '\0' || s[skip] == '/')
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* Overwrite a secret before it is freed, so it does not linger in the heap. */
static void wipe(char *s)
{
	for (volatile char *p = s; *p != '\0'; p++)
		*p = 0;
}

static void free_list(char **list, bool wipe_them)
{
	if (list == NULL)
		return;
	for (char **p = list; *p != NULL; p++) {
		if (wipe_them)
			wipe(*p);
		free(*p);
	}
	free(list);
}

static void free_field(const parley_setting *r, void *st)
{
	switch (r->type) {
	case PARLEY_SETTING_STRING_LIST:
		free_list(*FIELD(st, r, char **), is_secret(r));
		*FIELD(st, r, char **) = NULL;
		break;
	case PARLEY_SETTING_STRING:
	case PARLEY_SETTING_SECRET:
	case PARLEY_SETTING_URL:
	case PARLEY_SETTING_JSON: {
		char *s = *FIELD(st, r, char *);
		if (s != NULL && is_secret(r))
			wipe(s);
		free(s);
		*FIELD(st, r, char *) = NULL;
		break;
	}
	case PARLEY_SETTING_INTEGER:
	case PARLEY_SETTING_BOOLEAN:
		break;
	}
}

/* Read obj[key] (present) by row r into st. `parent` is the JSON path of
 * obj; errors name parent.key. */
static bool read_value(const jf_ctx *jf, const json_t *obj, const char *parent, const char *key,
                       const parley_setting *r, void *st)
{
	char path[JF_PATH_MAX];
	jf_path_key(path, parent, key);
	switch (r->type) {
	case PARLEY_SETTING_INTEGER: {
		json_int_t n = 0;
		json_int_t lo = has_bounds(r) ? (json_int_t)r->min : LLONG_MIN;
		json_int_t hi = has_bounds(r) ? (json_int_t)r->max : LLONG_MAX;
		if (!jf_get_int(jf, obj, parent, key, lo, hi, &n))
			return false;
		*FIELD(st, r, int64_t) = (int64_t)n;
		return true;
	}
	case PARLEY_SETTING_BOOLEAN: {
		bool b = false;
		if (!jf_get_bool(jf, obj, parent, key, &b))
			return false;
		*FIELD(st, r, int) = b ? 1 : 0;
		return true;
	}
	case PARLEY_SETTING_STRING:
	case PARLEY_SETTING_SECRET:
	case PARLEY_SETTING_URL: {
		const char *s = NULL;
		if (!jf_get_string(jf, obj, parent, key, &s))
			return false;
		if (!check_length(jf, path, r, strlen(s)) || !check_text(jf, path, r, s))
			return false;
		if (r->type == PARLEY_SETTING_URL && !is_http_url(s))
			return jf_fail(jf, path, "must be an http:// or https:// URL");
		free_field(r, st);
		*FIELD(st, r, char *) = xstrdup(s);
		return true;
	}
	case PARLEY_SETTING_STRING_LIST: {
		json_t *arr = NULL;
		size_t lo = has_bounds(r) ? (size_t)r->min : 0;
		size_t hi = has_bounds(r) ? (size_t)r->max : SIZE_MAX;
		if (!jf_get_string_array(jf, obj, parent, key, lo, hi, &arr))
			return false;
		for (size_t i = 0; i < json_array_size(arr); i++) {
			char at[JF_PATH_MAX];
			jf_path_index(at, path, i);
			if (!check_text(jf, at, r, json_string_value(json_array_get(arr, i))))
				return false;
		}
		char **list = xcalloc(json_array_size(arr) + 1, sizeof(char *));
		for (size_t i = 0; i < json_array_size(arr); i++)
			list[i] = xstrdup(json_string_value(json_array_get(arr, i)));
		free_field(r, st);
		*FIELD(st, r, char **) = list;
		return true;
	}
	case PARLEY_SETTING_JSON: {
		char *text = json_dumps(json_object_get(obj, key), JSON_COMPACT | JSON_ENCODE_ANY);
		if (text == NULL)
			return jf_fail(jf, path, "cannot be serialized");
		free_field(r, st);
		*FIELD(st, r, char *) = text;
		return true;
	}
	}
	return jf_fail(jf, path, "unknown setting type %d", (int)r->type);
}

/* The row's default as a one-key object {key: value} (new reference), or
 * NULL with a reason when its text does not parse. */
static json_t *default_object(const parley_setting *r, const char *key, char *why, size_t whylen)
{
	json_t *v;
	if (r->type == PARLEY_SETTING_STRING || r->type == PARLEY_SETTING_SECRET ||
	    r->type == PARLEY_SETTING_URL) {
		v = json_string(r->default_value);
		if (v == NULL)
			snprintf(why, whylen, "not valid UTF-8");
	} else {
		json_error_t e;
		v = json_loads(r->default_value, JSON_DECODE_ANY, &e);
		if (v == NULL)
			snprintf(why, whylen, "not JSON: %s", e.text);
	}
	if (v == NULL)
		return NULL;
	json_t *obj = json_object();
	json_object_set_new(obj, key, v);
	return obj;
}

/* ------------------------------------------------------------------------ */
/* The table                                                                */
/* ------------------------------------------------------------------------ */

/* "a.b" is a dotted name of non-empty segments of printable characters. */
static bool name_is_valid(const char *name)
{
	if (name == NULL || name[0] == '\0' || name[0] == '.')
		return false;
	for (const char *p = name; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f || (*p == '.' && (p[1] == '.' || p[1] == '\0')))
			return false;
	return strlen(name) < 128;
}

/* a is b, or one is an object holding the other ("auth" and "auth.token"). */
static bool names_clash(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t n = la < lb ? la : lb;
	return strncmp(a, b, n) == 0 && (la == lb || (la < lb ? b[n] : a[n]) == '.');
}

static const char *leaf_of(const char *name)
{
	const char *dot = strrchr(name, '.');
	return dot != NULL ? dot + 1 : name;
}

static bool check_row(const parley_plugin_descriptor *d, size_t i, char *why, size_t whylen)
{
	const parley_setting *r = row_at(d, i);
	size_t size, align;
	if (!name_is_valid(r->name)) {
		snprintf(why, whylen, "no valid name");
		return false;
	}
	for (size_t j = 0; j < i; j++)
		if (names_clash(row_at(d, j)->name, r->name)) {
			snprintf(why, whylen, "clashes with row %zu (\"%s\")", j, row_at(d, j)->name);
			return false;
		}
	if (!field_layout(r->type, &size, &align)) {
		snprintf(why, whylen, "unknown type %d", (int)r->type);
		return false;
	}
	if ((r->flags & ~KNOWN_FLAGS) != 0) {
		snprintf(why, whylen, "unknown flags 0x%x", r->flags & ~KNOWN_FLAGS);
		return false;
	}
	if (r->offset > d->settings_size || d->settings_size - r->offset < size || r->offset % align) {
		snprintf(why, whylen, "offset %zu is outside the %zu-byte struct or misaligned for type %s",
		         r->offset, d->settings_size, type_name(r->type));
		return false;
	}
	if (r->min > r->max || (r->type != PARLEY_SETTING_INTEGER && r->min < 0)) {
		snprintf(why, whylen, "min %lld and max %lld are not a range", (long long)r->min,
		         (long long)r->max);
		return false;
	}
	if (r->default_value == NULL)
		return true;
	if (r->flags & PARLEY_SETTING_FLAG_REQUIRED) {
		snprintf(why, whylen, "is required and has a default");
		return false;
	}
	/* The default goes through the reader a written value goes through. */
	char reason[JF_REASON_MAX];
	json_t *obj = default_object(r, leaf_of(r->name), why, whylen);
	if (obj == NULL)
		return false;
	void *scratch = xcalloc(1, d->settings_size);
	jf_ctx jf = { .prefix = NULL, .err = reason, .errlen = sizeof(reason) };
	bool ok = read_value(&jf, obj, "", leaf_of(r->name), r, scratch);
	free_field(r, scratch);
	free(scratch);
	json_decref(obj);
	if (!ok)
		snprintf(why, whylen, "default %.400s", reason);
	return ok;
}

bool psettings_check_table(const parley_plugin_descriptor *d, char *err, size_t errlen)
{
	if (d->setting_size < ROW_V13_SIZE) {
		snprintf(err, errlen, "settings rows are %zu bytes, ABI 1.3 needs at least %zu",
		         d->setting_size, (size_t)ROW_V13_SIZE);
		return false;
	}
	if (d->settings_size == 0 || d->settings_size > SETTINGS_STRUCT_MAX) {
		snprintf(err, errlen, "settings struct of %zu bytes (1 to %d)", d->settings_size,
		         SETTINGS_STRUCT_MAX);
		return false;
	}
	if (d->n_settings == 0 || d->n_settings > 1000) {
		snprintf(err, errlen, "%zu settings rows (1 to 1000)", d->n_settings);
		return false;
	}
	char why[JF_REASON_MAX];
	for (size_t i = 0; i < d->n_settings; i++) {
		if (!check_row(d, i, why, sizeof(why))) {
			const char *name = row_at(d, i)->name;
			snprintf(err, errlen, "settings table row %zu (%s): %s", i,
			         name_is_valid(name) ? name : "?", why);
			return false;
		}
	}
	return true;
}

/* ------------------------------------------------------------------------ */
/* Filling                                                                  */
/* ------------------------------------------------------------------------ */

/* Every key of obj (at JSON path `path`, dotted name `prefix`, "" at the
 * top) is a row, or an object holding rows: a typo must not fall back to a
 * default. */
static bool check_keys(const jf_ctx *jf, const parley_plugin_descriptor *d, const json_t *obj,
                       const char *path, const char *prefix)
{
	const char *key;
	json_t *v;
	char child[JF_PATH_MAX], name[JF_PATH_MAX];
	json_object_foreach((json_t *)obj, key, v) {
		jf_path_key(child, path, key);
		jf_path_key(name, prefix, key);
		bool leaf = false, holder = false;
		size_t n = strlen(name);
		for (size_t i = 0; i < d->n_settings && !leaf; i++) {
			const char *rn = row_at(d, i)->name;
			leaf = strcmp(rn, name) == 0;
			holder = holder || (strncmp(rn, name, n) == 0 && rn[n] == '.');
		}
		if (leaf)
			continue;
		if (!holder)
			return jf_fail(jf, child, "unknown key");
		if (!json_is_object(v))
			return jf_fail_type(jf, child, JSON_OBJECT, v);
		if (!check_keys(jf, d, v, child, name))
			return false;
	}
	return true;
}

/* The object holding row r's key: walks the dotted name's objects. *parent
 * NULL when one of them is absent; `ppath` receives its JSON path. */
static bool find_parent(const jf_ctx *jf, json_t *config, const char *config_path,
                        const char *name, json_t **parent, char ppath[JF_PATH_MAX])
{
	json_t *obj = config;
	snprintf(ppath, JF_PATH_MAX, "%s", config_path);
	char seg[128];
	for (const char *p = name, *dot; (dot = strchr(p, '.')) != NULL; p = dot + 1) {
		snprintf(seg, sizeof(seg), "%.*s", (int)(dot - p), p);
		json_t *sub = NULL;
		if (!jf_get_object(jf, obj, ppath, seg, &sub))
			return false;
		char next[JF_PATH_MAX];
		jf_path_key(next, ppath, seg);
		memcpy(ppath, next, JF_PATH_MAX);
		if (sub == NULL) {
			*parent = NULL;
			return true;
		}
		obj = sub;
	}
	*parent = obj;
	return true;
}

static bool fill_row(const jf_ctx *jf, const parley_setting *r, json_t *config,
                     const char *config_path, void *st)
{
	const char *key = leaf_of(r->name);
	char ppath[JF_PATH_MAX];
	json_t *parent = NULL;
	if (!find_parent(jf, config, config_path, r->name, &parent, ppath))
		return false;
	if (parent != NULL && json_object_get(parent, key) != NULL)
		return read_value(jf, parent, ppath, key, r, st);
	if (r->flags & PARLEY_SETTING_FLAG_REQUIRED) {
		json_t *empty = json_object();
		bool ok = jf_require(jf, empty, ppath, key);
		json_decref(empty);
		return ok;
	}
	if (r->default_value == NULL)
		return true;
	char why[JF_REASON_MAX];
	json_t *obj = default_object(r, key, why, sizeof(why));
	if (obj == NULL)   /* cannot happen: checked when the plugin was opened */
		return jf_fail(jf, ppath, "%s: broken default", key);
	bool ok = read_value(jf, obj, ppath, key, r, st);
	json_decref(obj);
	return ok;
}

bool psettings_fill(const parley_plugin_descriptor *d, const char *file, const char *path,
                    json_t *config, void **out, char *err, size_t errlen)
{
	jf_ctx jf = { .prefix = file, .err = err, .errlen = errlen };
	char config_path[JF_PATH_MAX];
	jf_path_key(config_path, path, "config");
	*out = NULL;

	json_t *empty = NULL;
	if (config == NULL)
		config = empty = json_object();
	if (!json_is_object(config))
		return jf_fail_type(&jf, config_path, JSON_OBJECT, config);

	void *st = xcalloc(1, d->settings_size);
	bool ok = check_keys(&jf, d, config, config_path, "");
	for (size_t i = 0; ok && i < d->n_settings; i++)
		ok = fill_row(&jf, row_at(d, i), config, config_path, st);
	json_decref(empty);
	if (!ok) {
		psettings_free(d, st);
		return false;
	}
	*out = st;
	return true;
}

void psettings_free(const parley_plugin_descriptor *d, void *settings)
{
	if (settings == NULL)
		return;
	for (size_t i = 0; i < d->n_settings; i++)
		free_field(row_at(d, i), settings);
	free(settings);
}

/* ------------------------------------------------------------------------ */
/* Reload                                                                   */
/* ------------------------------------------------------------------------ */

static char *const *list_at(const void *st, const parley_setting *r)
{
	return *(char **const *)(const void *)((const char *)st + r->offset);
}

static bool same_string(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool same_value(const parley_setting *r, const void *a, const void *b)
{
	switch (r->type) {
	case PARLEY_SETTING_INTEGER: return *CFIELD(a, r, int64_t) == *CFIELD(b, r, int64_t);
	case PARLEY_SETTING_BOOLEAN: return *CFIELD(a, r, int) == *CFIELD(b, r, int);
	case PARLEY_SETTING_STRING_LIST: {
		char *const *x = list_at(a, r), *const *y = list_at(b, r);
		for (; x != NULL && y != NULL && *x != NULL && *y != NULL; x++, y++)
			if (strcmp(*x, *y) != 0)
				return false;
		return (x == NULL || *x == NULL) && (y == NULL || *y == NULL);
	}
	case PARLEY_SETTING_STRING:
	case PARLEY_SETTING_SECRET:
	case PARLEY_SETTING_URL:
	case PARLEY_SETTING_JSON:
		return same_string(*CFIELD(a, r, char *), *CFIELD(b, r, char *));
	}
	return true;
}

/* next's field of row r becomes a copy of cur's. */
static void copy_field(const parley_setting *r, const void *cur, void *next)
{
	free_field(r, next);
	switch (r->type) {
	case PARLEY_SETTING_INTEGER: *FIELD(next, r, int64_t) = *CFIELD(cur, r, int64_t); break;
	case PARLEY_SETTING_BOOLEAN: *FIELD(next, r, int) = *CFIELD(cur, r, int); break;
	case PARLEY_SETTING_STRING_LIST: {
		char *const *x = list_at(cur, r);
		size_t n = 0;
		while (x != NULL && x[n] != NULL)
			n++;
		char **copy = x != NULL ? xcalloc(n + 1, sizeof(char *)) : NULL;
		for (size_t i = 0; i < n; i++)
			copy[i] = xstrdup(x[i]);
		*FIELD(next, r, char **) = copy;
		break;
	}
	case PARLEY_SETTING_STRING:
	case PARLEY_SETTING_SECRET:
	case PARLEY_SETTING_URL:
	case PARLEY_SETTING_JSON: {
		const char *v = *CFIELD(cur, r, char *);
		*FIELD(next, r, char *) = v != NULL ? xstrdup(v) : NULL;
		break;
	}
	}
}

size_t psettings_hold_restart_only(const parley_plugin_descriptor *d, const char *path,
                                   const void *cur, void *next, char *out, size_t outlen)
{
	size_t count = 0, used = 0;
	if (outlen > 0)
		out[0] = '\0';
	for (size_t i = 0; i < d->n_settings; i++) {
		const parley_setting *r = row_at(d, i);
		if ((r->flags & PARLEY_SETTING_FLAG_RELOADABLE) || same_value(r, cur, next))
			continue;
		copy_field(r, cur, next);
		int n = snprintf(out + used, outlen - used, "%s%s.config.%s", count > 0 ? ", " : "",
		                 path, r->name);
		if (n > 0)
			used = used + (size_t)n < outlen ? used + (size_t)n : outlen - 1;
		count++;
	}
	return count;
}

/* ------------------------------------------------------------------------ */
/* --list-plugins -v                                                        */
/* ------------------------------------------------------------------------ */

static void describe_range(const parley_setting *r, FILE *out)
{
	if (!has_bounds(r) || r->type == PARLEY_SETTING_BOOLEAN || r->type == PARLEY_SETTING_JSON)
		return;
	const char *unit = r->type == PARLEY_SETTING_INTEGER ? ""
	                 : r->type == PARLEY_SETTING_STRING_LIST ? " bytes each" : " bytes";
	if (r->min == 1 && r->max >= INT_MAX && r->type != PARLEY_SETTING_INTEGER)
		fprintf(out, ", not empty");
	else if (r->max >= INT_MAX)
		fprintf(out, ", range >= %lld%s", (long long)r->min, unit);
	else
		fprintf(out, ", range %lld..%lld%s", (long long)r->min, (long long)r->max, unit);
}

void psettings_describe(const parley_plugin_descriptor *d, FILE *out)
{
	for (size_t i = 0; i < d->n_settings; i++) {
		const parley_setting *r = row_at(d, i);
		fprintf(out, "    config.%s (%s", r->name, type_name(r->type));
		if (r->flags & PARLEY_SETTING_FLAG_REQUIRED)
			fprintf(out, ", required");
		if (is_secret(r))
			fprintf(out, ", secret");
		if (r->default_value != NULL && is_secret(r))
			fprintf(out, ", default hidden");
		else if (r->default_value != NULL && r->type != PARLEY_SETTING_STRING &&
		         r->type != PARLEY_SETTING_URL)
			fprintf(out, ", default %s", r->default_value);
		else if (r->default_value != NULL)
			fprintf(out, ", default \"%s\"", r->default_value);
		describe_range(r, out);
		if (r->flags & PARLEY_SETTING_FLAG_PRINTABLE)
			fprintf(out, ", printable");
		if (r->flags & PARLEY_SETTING_FLAG_RELOADABLE)
			fprintf(out, ", reloadable");
		fprintf(out, ")%s%s\n", r->description ? ": " : "", r->description ? r->description : "");
	}
}
