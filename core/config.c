/* config.c - the daemon's JSON configuration: load, validate, resolve secrets.
 *
 * Loading happens in three passes over one jansson tree:
 *   1. parse the file (duplicate keys rejected),
 *   2. replace every "$env:NAME" / "$file:PATH" string in place, so that
 *   3. validation checks types and ranges on the values actually used.
 *
 * Every error is one line "FILE: PATH: reason". Reasons name keys, types,
 * environment variables and files, never a value: any string may be a secret
 * once references are resolved, and even before that a typo'd secret pasted
 * into the wrong key must not end up in a log.
 *
 * cfg_load reads local files synchronously. It runs before the event loop
 * starts and again on SIGHUP; the files are small and a $file: reference is
 * capped at CFG_FILE_MAX, so the pause is bounded. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <regex.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "util.h"

#ifndef PARLEY_PLUGIN_DIR
#define PARLEY_PLUGIN_DIR "/usr/local/lib/parley/plugins"
#endif

#define CFG_ENV_PREFIX "$env:"
#define CFG_FILE_PREFIX "$file:"
#define CFG_FILE_MAX (1024 * 1024)  /* a secret or a certificate, not a data set */
#define CFG_NAME_MAX 64
#define CFG_PATH_MAX 512            /* JSON paths in messages; longer ones are cut */
#define CFG_REASON_MAX 512

/* ------------------------------------------------------------------------ */
/* Error reporting                                                          */
/* ------------------------------------------------------------------------ */

/* What every pass needs to report an error and resolve relative paths. */
typedef struct cfg_ctx {
	const char *file;      /* borrowed: the path as the caller gave it */
	const char *base_dir;  /* borrowed: absolute directory of `file` */
	char *err;             /* borrowed: caller's buffer */
	size_t errlen;
} cfg_ctx;


/* Write "FILE: PATH: reason" and return false, so callers can
 * `return cfg_fail(...)`. */
static bool cfg_fail(const cfg_ctx *ctx, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool cfg_fail(const cfg_ctx *ctx, const char *path, const char *fmt, ...)
{
	char reason[CFG_REASON_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	util_set_err(ctx->err, ctx->errlen, "%s: %s: %s", ctx->file, path, reason);
	return false;
}

/* "an integer", "a string"...: the type a key expects, for messages. */
static const char *type_with_article(json_type t)
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

/* The type a value has, for "got ..." in messages. Never the value itself. */
static const char *type_name(const json_t *v)
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

static bool fail_type(const cfg_ctx *ctx, const char *path, json_type want, const json_t *got)
{
	return cfg_fail(ctx, path, "expected %s, got %s", type_with_article(want), type_name(got));
}

/* ------------------------------------------------------------------------ */
/* JSON paths                                                               */
/* ------------------------------------------------------------------------ */

/* A path too long for the buffer (absurd nesting or key names) still makes
 * a readable message: it ends in "..." instead of being cut mid-word. */
static void path_mark_cut(char out[CFG_PATH_MAX], int n)
{
	if (n < 0 || n >= CFG_PATH_MAX)
		memcpy(out + CFG_PATH_MAX - 4, "...", 4);
}

/* "parent.key" (or "key" at the top level) into out. */
static void path_key(char out[CFG_PATH_MAX], const char *parent, const char *key)
{
	int n;
	if (parent == NULL || parent[0] == '\0')
		n = snprintf(out, CFG_PATH_MAX, "%s", key);
	else
		n = snprintf(out, CFG_PATH_MAX, "%s.%s", parent, key);
	path_mark_cut(out, n);
}

/* "parent[i]" into out. */
static void path_index(char out[CFG_PATH_MAX], const char *parent, size_t i)
{
	path_mark_cut(out, snprintf(out, CFG_PATH_MAX, "%s[%zu]", parent, i));
}

/* ------------------------------------------------------------------------ */
/* $env: / $file: references                                                */
/* ------------------------------------------------------------------------ */

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Absolute directory of `file`. Owned by the caller. Relative config files
 * are anchored to the current directory now, so a later chdir does not move
 * what "$file:secret" or "plugin_dir": "plugins" point at. */
static char *dir_of(const char *file)
{
	const char *slash = strrchr(file, '/');
	char *dir;
	if (slash == NULL)
		dir = xstrdup(".");
	else if (slash == file)
		dir = xstrdup("/");
	else
		dir = xstrndup(file, (size_t)(slash - file));
	if (dir[0] == '/')
		return dir;

	char *cwd = getcwd(NULL, 0);
	if (cwd == NULL)
		return dir;  /* stays relative; still right while the cwd does not change */
	char *abs;
	if (strcmp(dir, ".") == 0) {
		abs = xstrdup(cwd);
	} else {
		size_t n = strlen(cwd) + 1 + strlen(dir) + 1;
		abs = xmalloc(n);
		snprintf(abs, n, "%s/%s", cwd, dir);
	}
	free(cwd);
	free(dir);
	return abs;
}

/* `path` if absolute, else base_dir/path. Owned by the caller. */
static char *resolve_relative(const char *base_dir, const char *path)
{
	if (path[0] == '/' || base_dir == NULL)
		return xstrdup(path);
	size_t n = strlen(base_dir) + 1 + strlen(path) + 1;
	char *out = xmalloc(n);
	if (strcmp(base_dir, "/") == 0)
		snprintf(out, n, "/%s", path);
	else
		snprintf(out, n, "%s/%s", base_dir, path);
	return out;
}

/* Read a whole regular file of at most CFG_FILE_MAX bytes. Returns a
 * NUL-terminated buffer owned by the caller and its length, or NULL with a
 * reason naming the file. Only regular files: a FIFO would block the daemon
 * and a device could be endless. */
static char *read_small_file(const char *path, size_t *len_out, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		util_set_err(err, errlen, "cannot read file %s: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		util_set_err(err, errlen, "cannot read file %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		util_set_err(err, errlen, "cannot read file %s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_size > CFG_FILE_MAX) {
		util_set_err(err, errlen, "file %s is larger than %d bytes", path, CFG_FILE_MAX);
		close(fd);
		return NULL;
	}

	/* The size may change under us: read up to one byte past the cap to
	 * notice a file that grew. */
	char *buf = xmalloc(CFG_FILE_MAX + 2);
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, CFG_FILE_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			util_set_err(err, errlen, "cannot read file %s: %s", path, strerror(errno));
			close(fd);
			free(buf);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CFG_FILE_MAX) {
			util_set_err(err, errlen, "file %s is larger than %d bytes", path, CFG_FILE_MAX);
			close(fd);
			free(buf);
			return NULL;
		}
	}
	close(fd);
	buf[len] = '\0';
	*len_out = len;
	return buf;
}

/* Resolve one string. `base_dir` (borrowed, may be NULL = current directory)
 * anchors relative $file: paths. Returns a json string (new reference) or
 * NULL with a reason in err that names the variable or file, never a value. */
static json_t *resolve_to_json(const char *value, const char *base_dir, char *err, size_t errlen)
{
	if (starts_with(value, CFG_ENV_PREFIX)) {
		const char *name = value + strlen(CFG_ENV_PREFIX);
		if (name[0] == '\0') {
			util_set_err(err, errlen, "empty environment variable name after \"$env:\"");
			return NULL;
		}
		const char *env = getenv(name);
		if (env == NULL) {
			util_set_err(err, errlen, "environment variable %s is not set", name);
			return NULL;
		}
		json_t *s = json_string(env);
		if (s == NULL)
			util_set_err(err, errlen, "environment variable %s is not valid UTF-8", name);
		return s;
	}

	if (starts_with(value, CFG_FILE_PREFIX)) {
		const char *rel = value + strlen(CFG_FILE_PREFIX);
		if (rel[0] == '\0') {
			util_set_err(err, errlen, "empty file name after \"$file:\"");
			return NULL;
		}
		char *path = resolve_relative(base_dir, rel);
		size_t len = 0;
		char *content = read_small_file(path, &len, err, errlen);
		if (content == NULL) {
			free(path);
			return NULL;
		}
		/* Editors and `echo` add a final newline nobody means as part of a
		 * secret; strip exactly one. */
		if (len > 0 && content[len - 1] == '\n') {
			len--;
			if (len > 0 && content[len - 1] == '\r')
				len--;
		}
		json_t *s = NULL;
		if (memchr(content, '\0', len) != NULL)
			util_set_err(err, errlen, "file %s contains a NUL byte", path);
		else if ((s = json_stringn(content, len)) == NULL)
			util_set_err(err, errlen, "file %s is not valid UTF-8", path);
		/* The content may be a secret: do not leave it in freed memory. */
		memset(content, 0, len);
		free(content);
		free(path);
		return s;
	}

	return json_string(value);
}

char *cfg_resolve_string(const char *value, char *err, size_t errlen)
{
	if (value == NULL) {
		util_set_err(err, errlen, "no value");
		return NULL;
	}
	json_t *s = resolve_to_json(value, NULL, err, errlen);
	if (s == NULL)
		return NULL;
	char *out = xstrdup(json_string_value(s));
	json_decref(s);
	return out;
}

static bool is_reference(const char *s)
{
	return starts_with(s, CFG_ENV_PREFIX) || starts_with(s, CFG_FILE_PREFIX);
}

/* Walk the whole tree and replace every reference in place. `path` is the
 * JSON path of `node` ("" for the root). */
static bool resolve_tree(const cfg_ctx *ctx, json_t *node, const char *path)
{
	char child[CFG_PATH_MAX];
	char reason[CFG_REASON_MAX];

	if (json_is_object(node)) {
		for (void *it = json_object_iter(node); it != NULL;
		     it = json_object_iter_next(node, it)) {
			json_t *v = json_object_iter_value(it);
			path_key(child, path, json_object_iter_key(it));
			if (json_is_string(v)) {
				if (!is_reference(json_string_value(v)))
					continue;
				json_t *r = resolve_to_json(json_string_value(v), ctx->base_dir,
				                            reason, sizeof(reason));
				if (r == NULL)
					return cfg_fail(ctx, child, "%s", reason);
				json_object_iter_set_new(node, it, r);
			} else if (!resolve_tree(ctx, v, child)) {
				return false;
			}
		}
	} else if (json_is_array(node)) {
		for (size_t i = 0; i < json_array_size(node); i++) {
			json_t *v = json_array_get(node, i);
			path_index(child, path, i);
			if (json_is_string(v)) {
				if (!is_reference(json_string_value(v)))
					continue;
				json_t *r = resolve_to_json(json_string_value(v), ctx->base_dir,
				                            reason, sizeof(reason));
				if (r == NULL)
					return cfg_fail(ctx, child, "%s", reason);
				json_array_set_new(node, i, r);
			} else if (!resolve_tree(ctx, v, child)) {
				return false;
			}
		}
	}
	return true;
}

/* ------------------------------------------------------------------------ */
/* Typed readers for one key of an object                                   */
/* ------------------------------------------------------------------------ */

/* Each reader leaves *out alone when the key is absent (the default stays)
 * and fails with the key's path on a wrong type or range. */

/* Reject keys an object may not have. `allowed` is NULL-terminated. */
static bool check_known_keys(const cfg_ctx *ctx, json_t *obj, const char *path,
                             const char *const *allowed)
{
	const char *key;
	json_t *v;
	char child[CFG_PATH_MAX];
	json_object_foreach(obj, key, v) {
		bool known = false;
		for (size_t i = 0; allowed[i] != NULL && !known; i++)
			known = strcmp(key, allowed[i]) == 0;
		if (!known) {
			path_key(child, path, key);
			return cfg_fail(ctx, child, "unknown key");
		}
	}
	return true;
}

/* Borrowed string value of obj.key, or NULL when absent. */
static bool get_string(const cfg_ctx *ctx, json_t *obj, const char *path, const char *key,
                       const char **out)
{
	json_t *v = json_object_get(obj, key);
	if (v == NULL)
		return true;
	char child[CFG_PATH_MAX];
	path_key(child, path, key);
	if (!json_is_string(v))
		return fail_type(ctx, child, JSON_STRING, v);
	*out = json_string_value(v);
	return true;
}

static bool get_bool(const cfg_ctx *ctx, json_t *obj, const char *path, const char *key,
                     bool *out)
{
	json_t *v = json_object_get(obj, key);
	if (v == NULL)
		return true;
	char child[CFG_PATH_MAX];
	path_key(child, path, key);
	if (!json_is_boolean(v))
		return fail_type(ctx, child, JSON_TRUE, v);
	*out = json_is_true(v);
	return true;
}

/* An integer in [min, max]. */
static bool get_int_range(const cfg_ctx *ctx, json_t *obj, const char *path, const char *key,
                          json_int_t min, json_int_t max, json_int_t *out)
{
	json_t *v = json_object_get(obj, key);
	if (v == NULL)
		return true;
	char child[CFG_PATH_MAX];
	path_key(child, path, key);
	if (!json_is_integer(v))
		return fail_type(ctx, child, JSON_INTEGER, v);
	json_int_t n = json_integer_value(v);
	/* Keys with only a lower bound in the documentation are capped at
	 * INT_MAX because they are stored as int; say "at least" for them. */
	if (n < min && max == INT_MAX)
		return cfg_fail(ctx, child, "must be at least %" JSON_INTEGER_FORMAT, min);
	if (n < min || n > max)
		return cfg_fail(ctx, child, "must be between %" JSON_INTEGER_FORMAT
		                " and %" JSON_INTEGER_FORMAT, min, max);
	*out = n;
	return true;
}

static bool get_int(const cfg_ctx *ctx, json_t *obj, const char *path, const char *key,
                    json_int_t min, json_int_t max, int *out)
{
	json_int_t n = *out;
	if (!get_int_range(ctx, obj, path, key, min, max, &n))
		return false;
	*out = (int)n;
	return true;
}

static bool get_size(const cfg_ctx *ctx, json_t *obj, const char *path, const char *key,
                     json_int_t min, json_int_t max, size_t *out)
{
	json_int_t n = (json_int_t)*out;
	if (!get_int_range(ctx, obj, path, key, min, max, &n))
		return false;
	*out = (size_t)n;
	return true;
}

/* An optional section: absent is fine (defaults), anything but an object is not. */
static bool get_section(const cfg_ctx *ctx, json_t *root, const char *key, json_t **out)
{
	json_t *v = json_object_get(root, key);
	*out = v;
	if (v != NULL && !json_is_object(v))
		return fail_type(ctx, key, JSON_OBJECT, v);
	return true;
}

/* ------------------------------------------------------------------------ */
/* Top-level keys                                                           */
/* ------------------------------------------------------------------------ */

static bool parse_port(const char *s, int *port)
{
	if (*s == '\0' || strlen(s) > 5)
		return false;
	int n = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		n = n * 10 + (*p - '0');
	}
	if (n < 1 || n > 65535)
		return false;
	*port = n;
	return true;
}

/* "HOST:PORT" or "[IPV6]:PORT". The value is not echoed: messages say
 * what shape is expected instead. */
static bool parse_listen(const cfg_ctx *ctx, const char *listen, cfg *c)
{
	static const char shape[] = "expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080";
	const char *host_start, *host_end, *port;

	if (listen[0] == '[') {
		host_start = listen + 1;
		host_end = strchr(host_start, ']');
		if (host_end == NULL || host_end[1] != ':')
			return cfg_fail(ctx, "listen", "%s", shape);
		port = host_end + 2;
	} else {
		host_start = listen;
		host_end = strrchr(listen, ':');
		if (host_end == NULL)
			return cfg_fail(ctx, "listen", "%s", shape);
		if (memchr(listen, ':', (size_t)(host_end - listen)) != NULL)
			return cfg_fail(ctx, "listen", "an IPv6 address goes in brackets, "
			                "e.g. [::1]:8080");
		port = host_end + 1;
	}
	if (host_end == host_start)
		return cfg_fail(ctx, "listen", "%s", shape);
	for (const char *p = host_start; p < host_end; p++)
		if ((unsigned char)*p <= ' ' || *p == '/' || *p == '[' || *p == ']')
			return cfg_fail(ctx, "listen", "%s", shape);
	if (!parse_port(port, &c->listen_port))
		return cfg_fail(ctx, "listen", "port must be between 1 and 65535");
	c->listen_host = xstrndup(host_start, (size_t)(host_end - host_start));
	return true;
}

/* Stored without trailing slashes, so "public_url + /webhooks/x" is right. */
static bool parse_public_url(const cfg_ctx *ctx, const char *url, cfg *c)
{
	const char *rest;
	if (starts_with(url, "https://"))
		rest = url + strlen("https://");
	else if (starts_with(url, "http://"))
		rest = url + strlen("http://");
	else
		return cfg_fail(ctx, "public_url", "must start with http:// or https://");
	if (rest[0] == '\0' || rest[0] == '/')
		return cfg_fail(ctx, "public_url", "has no host after the scheme");
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return cfg_fail(ctx, "public_url", "must not contain spaces or "
			                "control characters");
	size_t len = strlen(url);
	while (len > 0 && url[len - 1] == '/')
		len--;
	c->public_url = xstrndup(url, len);
	return true;
}

static bool parse_database(const cfg_ctx *ctx, json_t *root, cfg *c)
{
	static const char *const keys[] = {
		"dsn", "pool_size", "connect_timeout_ms", "query_timeout_ms",
		"migrate_on_start", NULL
	};
	json_t *db;
	if (!get_section(ctx, root, "database", &db))
		return false;
	if (db == NULL)
		return cfg_fail(ctx, "database", "required key missing");
	if (!check_known_keys(ctx, db, "database", keys))
		return false;

	const char *dsn = NULL;
	if (!get_string(ctx, db, "database", "dsn", &dsn))
		return false;
	if (dsn == NULL)
		return cfg_fail(ctx, "database.dsn", "required key missing");
	c->database.dsn = xstrdup(dsn);

	return get_int(ctx, db, "database", "pool_size", 1, 64, &c->database.pool_size) &&
	       get_int(ctx, db, "database", "connect_timeout_ms", 100, INT_MAX,
	               &c->database.connect_timeout_ms) &&
	       get_int(ctx, db, "database", "query_timeout_ms", 100, INT_MAX,
	               &c->database.query_timeout_ms) &&
	       get_bool(ctx, db, "database", "migrate_on_start", &c->database.migrate_on_start);
}

/* A regular expression the database evaluates (PostgreSQL's flavour is a
 * superset of POSIX extended syntax): checked here so a typo is a config
 * error at start-up, not a failing batch later. */
static bool check_regex(const cfg_ctx *ctx, const char *path, const char *pattern)
{
	regex_t re;
	int rc = regcomp(&re, pattern, REG_EXTENDED | REG_ICASE);
	if (rc != 0) {
		char why[128];
		regerror(rc, &re, why, sizeof(why));
		return cfg_fail(ctx, path, "invalid regular expression: %s", why);
	}
	regfree(&re);
	return true;
}

/* obj[key]: an optional array of strings (instance names) at `path`. The
 * array is attached to *out as it fills, so cfg_free releases a partial one. */
static bool get_names(const cfg_ctx *ctx, json_t *obj, const char *path, const char *key,
                      char ***out, size_t *n_out)
{
	json_t *arr = json_object_get(obj, key);
	if (arr == NULL)
		return true;
	if (!json_is_array(arr))
		return fail_type(ctx, path, JSON_ARRAY, arr);
	size_t i;
	json_t *v;
	*out = xcalloc(json_array_size(arr) + 1, sizeof(char *));
	json_array_foreach(arr, i, v) {
		char child[CFG_PATH_MAX];
		snprintf(child, sizeof(child), "%s[%zu]", path, i);
		if (!json_is_string(v))
			return fail_type(ctx, child, JSON_STRING, v);
		(*out)[i] = xstrdup(json_string_value(v));
		*n_out = i + 1;
	}
	return true;
}

static bool parse_ingest(const cfg_ctx *ctx, json_t *root, cfg *c)
{
	static const char *const keys[] = {
		"batch_max_events", "batch_max_delay_ms", "max_inflight_batches", "reopen_window_s",
		"auto_merge_verified_email", "auto_merge_verified_phone", "case_prefix",
		"order_number_pattern", "notify_new_conversation", NULL
	};
	json_t *in;
	if (!get_section(ctx, root, "ingest", &in))
		return false;
	c->ingest.case_prefix = xstrdup("PC-");
	c->ingest.order_number_pattern = xstrdup(CFG_DEFAULT_ORDER_PATTERN);
	if (in == NULL)
		return true;
	if (!check_known_keys(ctx, in, "ingest", keys))
		return false;
	const char *prefix = NULL, *order = NULL;
	if (!get_int(ctx, in, "ingest", "batch_max_events", 1, 10000, &c->ingest.batch_max_events) ||
	    !get_int(ctx, in, "ingest", "batch_max_delay_ms", 0, 1000, &c->ingest.batch_max_delay_ms) ||
	    !get_int(ctx, in, "ingest", "max_inflight_batches", 1, 64, &c->ingest.max_inflight_batches) ||
	    !get_int(ctx, in, "ingest", "reopen_window_s", 0, INT_MAX, &c->ingest.reopen_window_s) ||
	    !get_bool(ctx, in, "ingest", "auto_merge_verified_email", &c->ingest.auto_merge_verified_email) ||
	    !get_bool(ctx, in, "ingest", "auto_merge_verified_phone", &c->ingest.auto_merge_verified_phone) ||
	    !get_string(ctx, in, "ingest", "case_prefix", &prefix) ||
	    !get_string(ctx, in, "ingest", "order_number_pattern", &order))
		return false;
	if (prefix != NULL) {
		size_t n = strlen(prefix);
		bool ok = n >= 1 && n <= 16;
		for (size_t i = 0; ok && i < n; i++)
			ok = isalnum((unsigned char)prefix[i]) || prefix[i] == '-' || prefix[i] == '_';
		if (!ok)
			return cfg_fail(ctx, "ingest.case_prefix", "must be 1..16 of A-Z a-z 0-9 - _");
		free(c->ingest.case_prefix);
		c->ingest.case_prefix = xstrdup(prefix);
	}
	if (!get_names(ctx, in, "ingest.notify_new_conversation", "notify_new_conversation",
	               &c->ingest.notify_new_conversation, &c->ingest.n_notify_new_conversation))
		return false;
	if (order != NULL) {
		if (order[0] == '\0')
			return cfg_fail(ctx, "ingest.order_number_pattern", "must not be empty");
		if (!check_regex(ctx, "ingest.order_number_pattern", order))
			return false;
		free(c->ingest.order_number_pattern);
		c->ingest.order_number_pattern = xstrdup(order);
	}
	return true;
}

static bool parse_jobs(const cfg_ctx *ctx, json_t *root, cfg *c)
{
	static const char *const keys[] = {
		"enabled", "concurrency", "lease_ms", "max_attempts", "backoff_base_ms",
		"backoff_max_ms", "sweep_interval_ms", "notify_delivery_failed", "unclaimed_notice_ms", NULL
	};
	json_t *j;
	if (!get_section(ctx, root, "jobs", &j))
		return false;
	if (j == NULL)
		return true;
	if (!check_known_keys(ctx, j, "jobs", keys))
		return false;
	if (!get_bool(ctx, j, "jobs", "enabled", &c->jobs.enabled) ||
	    !get_int(ctx, j, "jobs", "concurrency", 1, 1000, &c->jobs.concurrency) ||
	    !get_int(ctx, j, "jobs", "lease_ms", 500, INT_MAX, &c->jobs.lease_ms) ||
	    !get_int(ctx, j, "jobs", "max_attempts", 1, 1000, &c->jobs.max_attempts) ||
	    !get_int(ctx, j, "jobs", "backoff_base_ms", 1, INT_MAX, &c->jobs.backoff_base_ms) ||
	    !get_int(ctx, j, "jobs", "backoff_max_ms", 1, INT_MAX, &c->jobs.backoff_max_ms) ||
	    !get_int(ctx, j, "jobs", "sweep_interval_ms", 50, INT_MAX, &c->jobs.sweep_interval_ms) ||
	    !get_int(ctx, j, "jobs", "unclaimed_notice_ms", 100, INT_MAX, &c->jobs.unclaimed_notice_ms))
		return false;
	if (c->jobs.backoff_max_ms < c->jobs.backoff_base_ms)
		return cfg_fail(ctx, "jobs.backoff_max_ms", "must be at least jobs.backoff_base_ms");
	return get_names(ctx, j, "jobs.notify_delivery_failed", "notify_delivery_failed",
	                 &c->jobs.notify_delivery_failed, &c->jobs.n_notify_delivery_failed);
}

static bool parse_log(const cfg_ctx *ctx, json_t *root, cfg *c)
{
	static const char *const keys[] = { "level", "format", NULL };
	json_t *log;
	if (!get_section(ctx, root, "log", &log))
		return false;
	if (log == NULL)
		return true;
	if (!check_known_keys(ctx, log, "log", keys))
		return false;

	const char *level = NULL, *format = NULL;
	if (!get_string(ctx, log, "log", "level", &level) ||
	    !get_string(ctx, log, "log", "format", &format))
		return false;
	if (level != NULL && !log_parse_level(level, &c->log.level))
		return cfg_fail(ctx, "log.level", "must be one of error, warn, info, debug");
	if (format != NULL) {
		if (strcmp(format, "text") == 0)
			c->log.json = false;
		else if (strcmp(format, "json") == 0)
			c->log.json = true;
		else
			return cfg_fail(ctx, "log.format", "must be text or json");
	}
	return true;
}

static bool parse_limits(const cfg_ctx *ctx, json_t *root, cfg *c)
{
	static const char *const keys[] = {
		"max_body_bytes", "max_header_bytes", "read_timeout_ms", "write_timeout_ms",
		"idle_timeout_ms", "max_connections", "shutdown_timeout_ms", NULL
	};
	json_t *lim;
	if (!get_section(ctx, root, "limits", &lim))
		return false;
	if (lim == NULL)
		return true;
	if (!check_known_keys(ctx, lim, "limits", keys))
		return false;

	return get_size(ctx, lim, "limits", "max_body_bytes", 1024, INT_MAX,
	                &c->limits.max_body_bytes) &&
	       get_size(ctx, lim, "limits", "max_header_bytes", 1024, INT_MAX,
	                &c->limits.max_header_bytes) &&
	       get_int(ctx, lim, "limits", "read_timeout_ms", 100, INT_MAX,
	               &c->limits.read_timeout_ms) &&
	       get_int(ctx, lim, "limits", "write_timeout_ms", 100, INT_MAX,
	               &c->limits.write_timeout_ms) &&
	       get_int(ctx, lim, "limits", "idle_timeout_ms", 100, INT_MAX,
	               &c->limits.idle_timeout_ms) &&
	       get_int(ctx, lim, "limits", "max_connections", 1, 100000,
	               &c->limits.max_connections) &&
	       get_int(ctx, lim, "limits", "shutdown_timeout_ms", 0, INT_MAX,
	               &c->limits.shutdown_timeout_ms);
}

/* ------------------------------------------------------------------------ */
/* Plugin instances                                                         */
/* ------------------------------------------------------------------------ */

bool cfg_name_is_url_safe(const char *name)
{
	if (name == NULL)
		return false;
	size_t len = 0;
	for (const char *p = name; *p; p++, len++) {
		bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		          (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
		if (!ok || len >= CFG_NAME_MAX)
			return false;
	}
	return len > 0;
}

/* Plugin names become file names (plugin_dir/NAME.so): no dots, no slashes. */
static bool plugin_name_is_valid(const char *name)
{
	size_t len = 0;
	for (const char *p = name; *p; p++, len++) {
		bool ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
		if (!ok || len >= CFG_NAME_MAX)
			return false;
	}
	return len > 0;
}

static void instance_clear(cfg_instance *in)
{
	free(in->name);
	free(in->plugin);
	free(in->move_to_private_text);
	json_decref(in->route);
	free(in->path);
	json_decref(in->config);
}

/* An array of 1..64-byte strings at path (or absent). */
static bool check_string_list(const cfg_ctx *ctx, json_t *v, const char *path)
{
	if (v == NULL)
		return true;
	if (!json_is_array(v))
		return fail_type(ctx, path, JSON_ARRAY, v);
	size_t i;
	json_t *e;
	json_array_foreach(v, i, e) {
		char child[CFG_PATH_MAX];
		snprintf(child, sizeof(child), "%s[%zu]", path, i);
		if (!json_is_string(e))
			return fail_type(ctx, child, JSON_STRING, e);
		if (json_string_length(e) < 1 || json_string_length(e) > 64)
			return cfg_fail(ctx, child, "must be 1 to 64 characters");
	}
	return true;
}

/* The conversation filter of a sink's route or a notice rule: "channels"
 * (channel instance names), "visibility" and "categories", each optional.
 * extra: further allowed keys (NULL-terminated), checked by the caller.
 * *out: a copy holding only the filter keys (owned by the caller). */
static bool check_filter_keys(const cfg_ctx *ctx, json_t *v, const char *path,
                              const char *const *allowed, json_t **out)
{
	*out = NULL;
	if (v == NULL)
		return true;
	if (!json_is_object(v))
		return fail_type(ctx, path, JSON_OBJECT, v);
	if (!check_known_keys(ctx, v, path, allowed))
		return false;
	char child[CFG_PATH_MAX];
	json_t *vis = json_object_get(v, "visibility");
	path_key(child, path, "visibility");
	if (vis != NULL && (!json_is_string(vis) || (strcmp(json_string_value(vis), "public") != 0 &&
	                                             strcmp(json_string_value(vis), "private") != 0)))
		return cfg_fail(ctx, child, "must be \"public\" or \"private\"");
	path_key(child, path, "channels");
	if (!check_string_list(ctx, json_object_get(v, "channels"), child))
		return false;
	path_key(child, path, "categories");
	if (!check_string_list(ctx, json_object_get(v, "categories"), child))
		return false;
	*out = json_object();
	static const char *const filter[] = { "channels", "visibility", "categories" };
	for (size_t i = 0; i < 3; i++)
		if (json_object_get(v, filter[i]) != NULL)
			json_object_set(*out, filter[i], json_object_get(v, filter[i]));
	return true;
}

static bool check_filter(const cfg_ctx *ctx, json_t *v, const char *path, json_t **out)
{
	static const char *const allowed[] = { "channels", "visibility", "categories", NULL };
	return check_filter_keys(ctx, v, path, allowed, out);
}

/* "notices": which kinds of notice go to which notifier, for which
 * conversations. */
static bool parse_notices(const cfg_ctx *ctx, json_t *root, cfg *c)
{
	static const char *const allowed[] = { "notifier", "kinds", "channels", "visibility",
	                                       "categories", NULL };
	static const char *const kinds[] = { CFG_NOTICE_KINDS, NULL };
	json_t *arr = json_object_get(root, "notices");
	c->notices = json_array();
	if (arr == NULL)
		return true;
	if (!json_is_array(arr))
		return fail_type(ctx, "notices", JSON_ARRAY, arr);
	size_t i;
	json_t *rule;
	json_array_foreach(arr, i, rule) {
		char path[CFG_PATH_MAX], child[CFG_PATH_MAX];
		snprintf(path, sizeof(path), "notices[%zu]", i);
		json_t *out;
		if (!check_filter_keys(ctx, rule, path, allowed, &out))
			return false;
		if (out == NULL)
			return fail_type(ctx, path, JSON_OBJECT, rule);
		json_array_append_new(c->notices, out);
		json_t *n = json_object_get(rule, "notifier");
		path_key(child, path, "notifier");
		if (!json_is_string(n))
			return n == NULL ? cfg_fail(ctx, child, "required key missing")
			                 : fail_type(ctx, child, JSON_STRING, n);
		json_object_set(out, "notifier", n);
		json_t *k = json_object_get(rule, "kinds");
		path_key(child, path, "kinds");
		if (!check_string_list(ctx, k, child))
			return false;
		size_t j;
		json_t *e;
		json_array_foreach(k, j, e) {
			bool known = false;
			for (size_t m = 0; kinds[m] != NULL && !known; m++)
				known = strcmp(kinds[m], json_string_value(e)) == 0;
			if (!known) {
				char kp[CFG_PATH_MAX + 24];
				snprintf(kp, sizeof(kp), "%s[%zu]", child, j);
				return cfg_fail(ctx, kp, "unknown notice kind (known: %s)", CFG_NOTICE_KINDS_TEXT);
			}
		}
		if (k != NULL)
			json_object_set(out, "kinds", k);
	}
	return true;
}

static bool parse_instance(const cfg_ctx *ctx, json_t *obj, const char *path, bool channel,
                           cfg_instance *in)
{
	static const char *const keys[] = { "name", "plugin", "config", NULL };
	static const char *const channel_keys[] = { "name", "plugin", "config", "move_to_private_text",
	                                            NULL };
	static const char *const sink_keys[] = { "name", "plugin", "config", "route", NULL };
	bool sink = strncmp(path, "sinks[", 6) == 0;
	char child[CFG_PATH_MAX];

	if (!json_is_object(obj))
		return fail_type(ctx, path, JSON_OBJECT, obj);
	if (!check_known_keys(ctx, obj, path, channel ? channel_keys : sink ? sink_keys : keys))
		return false;

	const char *move_text = NULL;
	if (channel && !get_string(ctx, obj, path, "move_to_private_text", &move_text))
		return false;
	if (move_text != NULL && strlen(move_text) > CFG_MOVE_TEXT_MAX) {
		path_key(child, path, "move_to_private_text");
		return cfg_fail(ctx, child, "at most %d bytes", CFG_MOVE_TEXT_MAX);
	}

	const char *name = NULL, *plugin = NULL;
	if (!get_string(ctx, obj, path, "name", &name))
		return false;
	path_key(child, path, "name");
	if (name == NULL)
		return cfg_fail(ctx, child, "required key missing");
	if (!cfg_name_is_url_safe(name))
		return cfg_fail(ctx, child, "must be 1 to 64 characters from A-Z a-z 0-9 _ -");

	if (!get_string(ctx, obj, path, "plugin", &plugin))
		return false;
	path_key(child, path, "plugin");
	if (plugin == NULL)
		return cfg_fail(ctx, child, "required key missing");
	if (!plugin_name_is_valid(plugin))
		return cfg_fail(ctx, child, "must be 1 to 64 characters from a-z 0-9 _");

	json_t *config = json_object_get(obj, "config");
	path_key(child, path, "config");
	if (config != NULL && !json_is_object(config))
		return fail_type(ctx, child, JSON_OBJECT, config);

	json_t *route = NULL;
	if (sink) {
		path_key(child, path, "route");
		if (!check_filter(ctx, json_object_get(obj, "route"), child, &route))
			return false;
	}
	in->name = xstrdup(name);
	in->plugin = xstrdup(plugin);
	in->path = xstrdup(path);
	in->config = config != NULL ? json_incref(config) : json_object();
	if (channel)
		in->move_to_private_text = xstrdup(move_text != NULL ? move_text : CFG_MOVE_TEXT_DEFAULT);
	if (sink) {
		in->route = route != NULL ? route : json_object();
		json_object_set_new(in->route, "name", json_string(name));
	}
	return true;
}

/* One of "channels", "sinks", "notifiers": an array of instances with
 * names unique within the array. */
static bool parse_instances(const cfg_ctx *ctx, json_t *root, const char *kind,
                            cfg_instance **out, size_t *n_out)
{
	json_t *arr = json_object_get(root, kind);
	if (arr == NULL)
		return true;
	if (!json_is_array(arr))
		return fail_type(ctx, kind, JSON_ARRAY, arr);

	size_t n = json_array_size(arr);
	if (n == 0)
		return true;
	/* Attach the array first so cfg_free releases whatever got parsed. */
	*out = xcalloc(n, sizeof(cfg_instance));
	char path[CFG_PATH_MAX];
	for (size_t i = 0; i < n; i++) {
		path_index(path, kind, i);
		if (!parse_instance(ctx, json_array_get(arr, i), path, strcmp(kind, "channels") == 0,
		                    &(*out)[i]))
			return false;
		*n_out = i + 1;
		for (size_t j = 0; j < i; j++) {
			if (strcmp((*out)[j].name, (*out)[i].name) == 0) {
				char name_path[CFG_PATH_MAX];
				path_key(name_path, path, "name");
				return cfg_fail(ctx, name_path, "duplicate instance name \"%s\" "
				                "(also %s)", (*out)[i].name, (*out)[j].path);
			}
		}
	}
	return true;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */
/* ------------------------------------------------------------------------ */

static void set_defaults(cfg *c)
{
	c->database.pool_size = 4;
	c->database.connect_timeout_ms = 5000;
	c->database.query_timeout_ms = 10000;
	c->database.migrate_on_start = true;
	c->log.level = LOGL_INFO;
	c->log.json = false;
	c->limits.max_body_bytes = 4 * 1024 * 1024;
	c->limits.max_header_bytes = 16 * 1024;
	c->limits.read_timeout_ms = 10000;
	c->limits.write_timeout_ms = 10000;
	c->limits.idle_timeout_ms = 60000;
	c->limits.max_connections = 1024;
	c->limits.shutdown_timeout_ms = 10000;
	c->ingest.batch_max_events = 500;
	c->ingest.batch_max_delay_ms = 2;
	c->ingest.max_inflight_batches = 3;
	c->ingest.reopen_window_s = 7 * 24 * 3600;
	c->ingest.auto_merge_verified_email = true;
	c->ingest.auto_merge_verified_phone = true;
	c->jobs.enabled = true;
	c->jobs.concurrency = 16;
	c->jobs.lease_ms = 60000;
	c->jobs.max_attempts = 10;
	c->jobs.backoff_base_ms = 1000;
	c->jobs.backoff_max_ms = 3600000;
	c->jobs.sweep_interval_ms = 5000;
	c->jobs.unclaimed_notice_ms = 300000;
}

/* Report a JSON syntax error by position. jansson's text ends in
 * " near 'TOKEN'", and that token can be the start of a secret (an
 * unterminated string, say), so it is cut off. A duplicate key is the one
 * case where the token is a key, which is worth naming. */
static void fail_syntax(const cfg_ctx *ctx, const json_error_t *jerr)
{
	char text[sizeof(jerr->text)];
	snprintf(text, sizeof(text), "%s", jerr->text);
	char *near = strstr(text, " near '");
	if (json_error_code(jerr) == json_error_duplicate_key && near != NULL) {
		const char *key = near + strlen(" near '");
		size_t klen = strlen(key);
		if (klen > 0 && key[klen - 1] == '\'')
			klen--;
		util_set_err(ctx->err, ctx->errlen, "%s: line %d, column %d: duplicate key %.*s",
		        ctx->file, jerr->line, jerr->column, (int)klen, key);
		return;
	}
	if (near != NULL)
		*near = '\0';
	util_set_err(ctx->err, ctx->errlen, "%s: line %d, column %d: invalid JSON: %s",
	        ctx->file, jerr->line, jerr->column, text);
}

static json_t *load_json(const cfg_ctx *ctx)
{
	/* Opened here rather than by json_load_file so a missing or unreadable
	 * file is reported with errno's text. */
	FILE *fp = fopen(ctx->file, "re");
	if (fp == NULL) {
		util_set_err(ctx->err, ctx->errlen, "%s: cannot open: %s", ctx->file, strerror(errno));
		return NULL;
	}
	json_error_t jerr;
	json_t *root = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL && ferror(fp))
		util_set_err(ctx->err, ctx->errlen, "%s: cannot read: %s", ctx->file, strerror(errno));
	else if (root == NULL)
		fail_syntax(ctx, &jerr);
	fclose(fp);
	return root;
}

/* Each of names[] is a configured notifier instance. */
static bool check_notifier_names(const cfg_ctx *ctx, const cfg *c, const char *path,
                                 char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bool found = false;
		for (size_t j = 0; j < c->n_notifiers && !found; j++)
			found = strcmp(c->notifiers[j].name, names[i]) == 0;
		if (!found) {
			char child[CFG_PATH_MAX];
			snprintf(child, sizeof(child), "%s[%zu]", path, i);
			return cfg_fail(ctx, child, "no notifier instance of that name");
		}
	}
	return true;
}

/* Routes and notice rules name configured instances. */
static bool check_route_names(const cfg_ctx *ctx, const cfg *c)
{
	for (size_t i = 0; i < json_array_size(c->notices); i++) {
		json_t *rule = json_array_get(c->notices, i);
		const char *n = json_string_value(json_object_get(rule, "notifier"));
		bool found = false;
		for (size_t j = 0; j < c->n_notifiers && !found; j++)
			found = strcmp(c->notifiers[j].name, n) == 0;
		if (!found) {
			char path[CFG_PATH_MAX];
			snprintf(path, sizeof(path), "notices[%zu].notifier", i);
			return cfg_fail(ctx, path, "no notifier instance of that name");
		}
	}
	for (size_t i = 0; i < json_array_size(c->notices) + c->n_sinks; i++) {
		bool is_rule = i < json_array_size(c->notices);
		json_t *f = is_rule ? json_array_get(c->notices, i)
		                    : c->sinks[i - json_array_size(c->notices)].route;
		json_t *chs = json_object_get(f, "channels");
		for (size_t k = 0; k < json_array_size(chs); k++) {
			const char *ch = json_string_value(json_array_get(chs, k));
			bool found = false;
			for (size_t j = 0; j < c->n_channels && !found; j++)
				found = strcmp(c->channels[j].name, ch) == 0;
			if (!found) {
				char path[CFG_PATH_MAX];
				if (is_rule)
					snprintf(path, sizeof(path), "notices[%zu].channels[%zu]", i, k);
				else
					snprintf(path, sizeof(path), "%s.route.channels[%zu]",
					         c->sinks[i - json_array_size(c->notices)].path, k);
				return cfg_fail(ctx, path, "no channel instance of that name");
			}
		}
	}
	return true;
}

/* The notice settings name configured notifiers. */
static bool check_notify_targets(const cfg_ctx *ctx, const cfg *c)
{
	if (!check_route_names(ctx, c))
		return false;
	return check_notifier_names(ctx, c, "ingest.notify_new_conversation",
	                            c->ingest.notify_new_conversation,
	                            c->ingest.n_notify_new_conversation) &&
	       check_notifier_names(ctx, c, "jobs.notify_delivery_failed",
	                            c->jobs.notify_delivery_failed, c->jobs.n_notify_delivery_failed);
}

static bool parse_root(const cfg_ctx *ctx, json_t *root, cfg *c)
{
	static const char *const keys[] = {
		"listen", "public_url", "database", "plugin_dir", "log", "limits",
		"ingest", "jobs", "channels", "sinks", "notifiers", "notices", NULL
	};
	if (!json_is_object(root))
		return cfg_fail(ctx, "(top level)", "expected an object, got %s", type_name(root));
	if (!check_known_keys(ctx, root, "", keys))
		return false;

	const char *listen = "127.0.0.1:8080";
	if (!get_string(ctx, root, "", "listen", &listen) || !parse_listen(ctx, listen, c))
		return false;

	const char *public_url = NULL;
	if (!get_string(ctx, root, "", "public_url", &public_url))
		return false;
	if (public_url != NULL) {
		if (!parse_public_url(ctx, public_url, c))
			return false;
	} else {
		size_t n = strlen("http://") + strlen(listen) + 1;
		c->public_url = xmalloc(n);
		snprintf(c->public_url, n, "http://%s", listen);
	}

	if (!parse_database(ctx, root, c))
		return false;

	const char *plugin_dir = NULL;
	if (!get_string(ctx, root, "", "plugin_dir", &plugin_dir))
		return false;
	if (plugin_dir == NULL)
		c->plugin_dir = xstrdup(PARLEY_PLUGIN_DIR);
	else if (plugin_dir[0] == '\0')
		return cfg_fail(ctx, "plugin_dir", "must not be empty");
	else
		c->plugin_dir = resolve_relative(ctx->base_dir, plugin_dir);

	return parse_log(ctx, root, c) &&
	       parse_limits(ctx, root, c) &&
	       parse_ingest(ctx, root, c) &&
	       parse_jobs(ctx, root, c) &&
	       parse_instances(ctx, root, "channels", &c->channels, &c->n_channels) &&
	       parse_instances(ctx, root, "sinks", &c->sinks, &c->n_sinks) &&
	       parse_instances(ctx, root, "notifiers", &c->notifiers, &c->n_notifiers) &&
	       parse_notices(ctx, root, c) &&
	       check_notify_targets(ctx, c);
}

bool cfg_load(const char *file, cfg **out, char *err, size_t errlen)
{
	*out = NULL;
	if (file == NULL || file[0] == '\0') {
		util_set_err(err, errlen, "no configuration file given");
		return false;
	}
	char *base_dir = dir_of(file);
	cfg_ctx ctx = { .file = file, .base_dir = base_dir, .err = err, .errlen = errlen };

	json_t *root = load_json(&ctx);
	if (root == NULL) {
		free(base_dir);
		return false;
	}

	cfg *c = xcalloc(1, sizeof(*c));
	c->file = xstrdup(file);
	set_defaults(c);
	bool ok = resolve_tree(&ctx, root, "") && parse_root(&ctx, root, c);
	json_decref(root);
	free(base_dir);
	if (!ok) {
		cfg_free(c);
		return false;
	}
	*out = c;
	return true;
}

static void free_instances(cfg_instance *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		instance_clear(&list[i]);
	free(list);
}

void cfg_free(cfg *c)
{
	if (c == NULL)
		return;
	free(c->file);
	free(c->listen_host);
	free(c->public_url);
	free(c->database.dsn);
	free(c->plugin_dir);
	free(c->ingest.case_prefix);
	free(c->ingest.order_number_pattern);
	for (size_t i = 0; i < c->ingest.n_notify_new_conversation; i++)
		free(c->ingest.notify_new_conversation[i]);
	free(c->ingest.notify_new_conversation);
	for (size_t i = 0; i < c->jobs.n_notify_delivery_failed; i++)
		free(c->jobs.notify_delivery_failed[i]);
	free(c->jobs.notify_delivery_failed);
	json_decref(c->notices);
	free_instances(c->channels, c->n_channels);
	free_instances(c->sinks, c->n_sinks);
	free_instances(c->notifiers, c->n_notifiers);
	free(c);
}

/* ------------------------------------------------------------------------ */
/* A plugin instance's "config" against the plugin's declared keys          */
/* ------------------------------------------------------------------------ */

static const parley_config_key *find_key(const parley_config_key *keys, const char *name)
{
	for (const parley_config_key *k = keys; k != NULL && k->name != NULL; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

static bool type_matches(parley_config_type type, const json_t *v)
{
	switch (type) {
	case PARLEY_CONFIG_STRING: return json_is_string(v);
	case PARLEY_CONFIG_INTEGER: return json_is_integer(v);
	case PARLEY_CONFIG_BOOLEAN: return json_is_boolean(v);
	case PARLEY_CONFIG_JSON: return true;
	}
	return false;
}

static const char *config_type_with_article(parley_config_type type)
{
	switch (type) {
	case PARLEY_CONFIG_STRING: return "a string";
	case PARLEY_CONFIG_INTEGER: return "an integer";
	case PARLEY_CONFIG_BOOLEAN: return "a boolean";
	case PARLEY_CONFIG_JSON: return "any JSON value";
	}
	return "a value of an unknown type";
}

bool cfg_validate_plugin_config(const char *file, const char *path, json_t *config,
                                const parley_config_key *keys, char *err, size_t errlen)
{
	cfg_ctx ctx = { .file = file, .base_dir = NULL, .err = err, .errlen = errlen };
	char config_path[CFG_PATH_MAX];
	char child[CFG_PATH_MAX];
	path_key(config_path, path, "config");

	json_t *empty = NULL;
	if (config == NULL)
		config = empty = json_object();
	if (!json_is_object(config))
		return fail_type(&ctx, config_path, JSON_OBJECT, config);

	bool ok = true;
	const char *key;
	json_t *v;
	json_object_foreach(config, key, v) {
		path_key(child, config_path, key);
		const parley_config_key *k = find_key(keys, key);
		if (k == NULL) {
			ok = cfg_fail(&ctx, child, "unknown key");
			break;
		}
		if (!type_matches(k->type, v)) {
			ok = cfg_fail(&ctx, child, "expected %s, got %s",
			              config_type_with_article(k->type), type_name(v));
			break;
		}
	}
	for (const parley_config_key *k = keys; ok && k != NULL && k->name != NULL; k++) {
		if ((k->flags & PARLEY_CONFIG_REQUIRED) && json_object_get(config, k->name) == NULL) {
			path_key(child, config_path, k->name);
			ok = cfg_fail(&ctx, child, "required key missing");
		}
	}
	json_decref(empty);
	return ok;
}

char *cfg_routing_json(const cfg *c)
{
	json_t *sinks = json_array();
	for (size_t i = 0; i < c->n_sinks; i++)
		json_array_append(sinks, c->sinks[i].route);
	json_t *o = json_pack("{s:o, s:O}", "sinks", sinks, "notices",
	                      c->notices != NULL ? c->notices : json_array());
	char *text = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	if (text == NULL)
		abort();
	return text;
}
