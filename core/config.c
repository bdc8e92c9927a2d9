/* config.c - the daemon's JSON configuration: load, validate, resolve secrets.
 *
 * Loading happens in three passes over one jansson tree:
 *   1. parse the file (duplicate keys rejected),
 *   2. replace every "$env:NAME" / "$file:PATH" string in place
 *      (config_refs.c), so that
 *   3. validation checks types and ranges on the values actually used: the
 *      settings table (config_settings.c, read by config_schema.c) drives it,
 *      with the instance lists and notice rules read by config_instances.c.
 *
 * Every error is one line "FILE: PATH: reason". Reasons name keys, types,
 * environment variables and files, never a value: any string may be a secret
 * once references are resolved, and even before that a typo'd secret pasted
 * into the wrong key must not end up in a log.
 *
 * cfg_load reads local files synchronously. It runs before the event loop
 * starts and again on SIGHUP; the files are small and bounded. */
#include "config_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Report a JSON syntax error by position. jansson's text ends in
 * " near 'TOKEN'", and that token can be the start of a secret (an
 * unterminated string, say), so it is cut off. A duplicate key is the one
 * case where the token is a key, which is worth naming. */
static void fail_syntax(const cfg_ctx *ctx, const json_error_t *jerr)
{
	const char *file = ctx->jf.prefix;
	char text[sizeof(jerr->text)];
	snprintf(text, sizeof(text), "%s", jerr->text);
	char *near = strstr(text, " near '");
	if (json_error_code(jerr) == json_error_duplicate_key && near != NULL) {
		const char *key = near + strlen(" near '");
		size_t klen = strlen(key);
		if (klen > 0 && key[klen - 1] == '\'')
			klen--;
		util_set_err(ctx->jf.err, ctx->jf.errlen, "%s: line %d, column %d: duplicate key %.*s",
		             file, jerr->line, jerr->column, (int)klen, key);
		return;
	}
	if (near != NULL)
		*near = '\0';
	util_set_err(ctx->jf.err, ctx->jf.errlen, "%s: line %d, column %d: invalid JSON: %s",
	             file, jerr->line, jerr->column, text);
}

static json_t *load_json(const cfg_ctx *ctx)
{
	const char *file = ctx->jf.prefix;
	/* Opened here rather than by json_load_file so a missing or unreadable
	 * file is reported with errno's text. */
	FILE *fp = fopen(file, "re");
	if (fp == NULL) {
		util_set_err(ctx->jf.err, ctx->jf.errlen, "%s: cannot open: %s", file, strerror(errno));
		return NULL;
	}
	json_error_t jerr;
	json_t *root = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL && ferror(fp))
		util_set_err(ctx->jf.err, ctx->jf.errlen, "%s: cannot read: %s", file, strerror(errno));
	else if (root == NULL)
		fail_syntax(ctx, &jerr);
	fclose(fp);
	return root;
}

/* Without public_url, the server is reached where it listens. */
static void default_public_url(cfg *c)
{
	bool v6 = strchr(c->listen_host, ':') != NULL;
	size_t n = strlen("http://[]:65535") + strlen(c->listen_host) + 1;
	c->public_url = xmalloc(n);
	snprintf(c->public_url, n, v6 ? "http://[%s]:%d" : "http://%s:%d", c->listen_host,
	         c->listen_port);
}

static bool parse_root(const cfg_ctx *ctx, json_t *root, cfg *c)
{
	if (!json_is_object(root))
		return cfg_fail(ctx, "(top level)", "expected an object, got %s", jf_type_name(root));
	if (!cfg_schema_read(ctx, root, c))
		return false;
	if (c->public_url == NULL)
		default_public_url(c);
	/* The one rule across two settings; each one's own range is in the table. */
	if (c->jobs.backoff_max_ms < c->jobs.backoff_base_ms)
		return cfg_fail(ctx, "jobs.backoff_max_ms", "must be at least jobs.backoff_base_ms");
	return cfg_check_instance_names(ctx, c);
}

bool cfg_load(const char *file, cfg **out, char *err, size_t errlen)
{
	*out = NULL;
	if (file == NULL || file[0] == '\0') {
		util_set_err(err, errlen, "no configuration file given");
		return false;
	}
	char *base_dir = cfg_dir_of(file);
	cfg_ctx ctx = { .jf = { .prefix = file, .err = err, .errlen = errlen }, .base_dir = base_dir };

	json_t *root = load_json(&ctx);
	if (root == NULL) {
		free(base_dir);
		return false;
	}

	cfg *c = xcalloc(1, sizeof(*c));
	c->file = xstrdup(file);
	bool ok = cfg_schema_defaults(&ctx, c) && cfg_resolve_tree(&ctx, root, "") &&
	          parse_root(&ctx, root, c);
	json_decref(root);
	free(base_dir);
	if (!ok) {
		cfg_free(c);
		return false;
	}
	*out = c;
	return true;
}

void cfg_free(cfg *c)
{
	if (c == NULL)
		return;
	cfg_schema_free(c);
	cfg_instances_free(c);
	free(c->file);
	free(c->listen_host);
	free(c);
}

/* ------------------------------------------------------------------------ */
/* The cluster policy                                                       */
/* ------------------------------------------------------------------------ */

static bool policy_from(const cfg_ctx *ctx, json_t *root, cfg **out)
{
	*out = NULL;
	if (!json_is_object(root))
		return cfg_fail(ctx, "(top level)", "expected an object, got %s", jf_type_name(root));
	cfg *c = xcalloc(1, sizeof(*c));
	c->file = xstrdup(ctx->jf.prefix);
	if (!cfg_schema_defaults(ctx, c) || !cfg_schema_read(ctx, root, c)) {
		cfg_free(c);
		return false;
	}
	if (c->notices == NULL)
		c->notices = json_array();
	*out = c;
	return true;
}

bool cfg_policy_load(const char *file, cfg **out, char *err, size_t errlen)
{
	*out = NULL;
	cfg_ctx ctx = { .jf = { .prefix = file, .err = err, .errlen = errlen }, .policy = true };
	json_t *root = load_json(&ctx);
	if (root == NULL)
		return false;
	bool ok = policy_from(&ctx, root, out);
	json_decref(root);
	return ok;
}

bool cfg_policy_parse(json_t *body, const char *what, cfg **out, char *err, size_t errlen)
{
	cfg_ctx ctx = { .jf = { .prefix = what, .err = err, .errlen = errlen }, .policy = true };
	return policy_from(&ctx, body, out);
}

json_t *cfg_cluster_json(const cfg *c)
{
	return cfg_schema_cluster_json(c);
}

void cfg_take_cluster(cfg *dst, const cfg *src)
{
	cfg_schema_take_cluster(dst, src);
}

static void add_path(char *out, size_t outlen, size_t *used, size_t *count, const char *path)
{
	int n = snprintf(out + *used, outlen - *used, "%s%s", *count > 0 ? ", " : "", path);
	if (n > 0)
		*used = *used + (size_t)n < outlen ? *used + (size_t)n : outlen - 1;
	(*count)++;
}

size_t cfg_cluster_differences(const json_t *a, const json_t *b, char *out, size_t outlen)
{
	size_t count = 0, used = 0;
	if (outlen == 0)
		return 0;
	out[0] = '\0';
	const char *key;
	json_t *va;
	/* Both are canonical (cfg_cluster_json): the same keys, sections one deep. */
	json_object_foreach((json_t *)a, key, va) {
		json_t *vb = json_object_get(b, key);
		if (json_is_object(va) && json_is_object(vb)) {
			const char *sub;
			json_t *sa;
			json_object_foreach(va, sub, sa) {
				if (!json_equal(sa, json_object_get(vb, sub))) {
					char path[JF_PATH_MAX];
					jf_path_key(path, key, sub);
					add_path(out, outlen, &used, &count, path);
				}
			}
		} else if (!json_equal(va, vb)) {
			add_path(out, outlen, &used, &count, key);
		}
	}
	return count;
}

static bool has_instance(const cfg_instance *list, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].name, name) == 0)
			return true;
	return false;
}

static void check_names(const char *path, char *const *names, size_t n, const cfg_instance *list,
                        size_t nlist, char *out, size_t outlen, size_t *used, size_t *count)
{
	for (size_t i = 0; i < n; i++) {
		if (has_instance(list, nlist, names[i]))
			continue;
		char p[JF_PATH_MAX + 80];
		snprintf(p, sizeof(p), "%s \"%s\"", path, names[i]);
		add_path(out, outlen, used, count, p);
	}
}

static void check_filter_channels(const char *path, json_t *filter, const cfg *node, char *out,
                                  size_t outlen, size_t *used, size_t *count)
{
	json_t *chs = json_object_get(filter, "channels");
	for (size_t k = 0; k < json_array_size(chs); k++) {
		const char *ch = json_string_value(json_array_get(chs, k));
		check_names(path, (char *const *)&ch, 1, node->channels, node->n_channels, out, outlen,
		            used, count);
	}
}

size_t cfg_policy_unknown_names(const cfg *node, const cfg *policy, char *out, size_t outlen)
{
	size_t count = 0, used = 0;
	if (outlen == 0)
		return 0;
	out[0] = '\0';
	check_names("ingest.notify_new_conversation", policy->ingest.notify_new_conversation,
	            policy->ingest.n_notify_new_conversation, node->notifiers, node->n_notifiers, out,
	            outlen, &used, &count);
	check_names("jobs.notify_delivery_failed", policy->jobs.notify_delivery_failed,
	            policy->jobs.n_notify_delivery_failed, node->notifiers, node->n_notifiers, out,
	            outlen, &used, &count);
	for (size_t i = 0; i < json_array_size(policy->notices); i++) {
		json_t *rule = json_array_get(policy->notices, i);
		char path[JF_PATH_MAX];
		const char *n = json_string_value(json_object_get(rule, "notifier"));
		snprintf(path, sizeof(path), "notices[%zu].notifier", i);
		check_names(path, (char *const *)&n, 1, node->notifiers, node->n_notifiers, out, outlen,
		            &used, &count);
		snprintf(path, sizeof(path), "notices[%zu].channels", i);
		check_filter_channels(path, rule, node, out, outlen, &used, &count);
	}
	for (size_t i = 0; i < policy->n_sinks; i++) {
		char path[JF_PATH_MAX];
		snprintf(path, sizeof(path), "%s.name", policy->sinks[i].path);
		check_names(path, &policy->sinks[i].name, 1, node->sinks, node->n_sinks, out, outlen,
		            &used, &count);
		snprintf(path, sizeof(path), "%s.route.channels", policy->sinks[i].path);
		check_filter_channels(path, policy->sinks[i].route, node, out, outlen, &used, &count);
	}
	return count;
}

size_t cfg_policy_unrouted_sinks(const cfg *node, const cfg *policy, char *out, size_t outlen)
{
	size_t count = 0, used = 0;
	if (outlen == 0)
		return 0;
	out[0] = '\0';
	for (size_t i = 0; i < node->n_sinks; i++)
		if (!has_instance(policy->sinks, policy->n_sinks, node->sinks[i].name))
			add_path(out, outlen, &used, &count, node->sinks[i].name);
	return count;
}
