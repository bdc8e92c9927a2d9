/* config_refs.c - "$env:NAME" and "$file:PATH" references, and paths
 * relative to the configuration file.
 *
 * References are resolved in place in the parsed tree before anything is
 * checked, so types and ranges are checked on the values actually used.
 * Reasons name the variable or the file, never a value.
 *
 * Files are read synchronously: this runs before the event loop starts and
 * on SIGHUP, and a $file: reference is capped at CFG_FILE_MAX, so the pause
 * is bounded. */
#include "config_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "util.h"

#define CFG_ENV_PREFIX "$env:"
#define CFG_FILE_PREFIX "$file:"
#define CFG_FILE_MAX (1024 * 1024)  /* a secret or a certificate, not a data set */

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Absolute directory of `file`. Owned by the caller. Relative config files
 * are anchored to the current directory now, so a later chdir does not move
 * what "$file:secret" or "plugin_dir": "plugins" point at. */
char *cfg_dir_of(const char *file)
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
char *cfg_resolve_relative(const char *base_dir, const char *path)
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
		char *path = cfg_resolve_relative(base_dir, rel);
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

/* One member or element v at `path`: a reference string is resolved into
 * *replacement (owned by the caller), anything else is walked in place and
 * *replacement stays NULL. False (reported) when a reference cannot be
 * resolved. */
static bool resolve_child(const cfg_ctx *ctx, json_t *v, const char *path, json_t **replacement)
{
	char reason[JF_REASON_MAX];

	*replacement = NULL;
	if (!json_is_string(v))
		return cfg_resolve_tree(ctx, v, path);
	if (!is_reference(json_string_value(v)))
		return true;
	*replacement = resolve_to_json(json_string_value(v), ctx->base_dir, reason, sizeof(reason));
	if (*replacement == NULL)
		return cfg_fail(ctx, path, "%s", reason);
	return true;
}

/* Walk the whole tree and replace every reference in place. `path` is the
 * JSON path of `node` ("" for the root). */
bool cfg_resolve_tree(const cfg_ctx *ctx, json_t *node, const char *path)
{
	char child[JF_PATH_MAX];
	json_t *r;

	if (json_is_object(node)) {
		for (void *it = json_object_iter(node); it != NULL;
		     it = json_object_iter_next(node, it)) {
			jf_path_key(child, path, json_object_iter_key(it));
			if (!resolve_child(ctx, json_object_iter_value(it), child, &r))
				return false;
			if (r != NULL)
				json_object_iter_set_new(node, it, r);
		}
	} else if (json_is_array(node)) {
		for (size_t i = 0; i < json_array_size(node); i++) {
			jf_path_index(child, path, i);
			if (!resolve_child(ctx, json_array_get(node, i), child, &r))
				return false;
			if (r != NULL)
				json_array_set_new(node, i, r);
		}
	}
	return true;
}
