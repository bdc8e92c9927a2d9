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
