/* config_instances.c - the parts of the configuration with a structure of
 * their own: the plugin instances ("channels", "sinks", "notifiers"), a
 * sink's "route", the "notices" rules, the checks that names used in them
 * exist, and an instance's "config" against the keys its plugin declares.
 *
 * Their scalar fields are read with the same typed readers (json_field.h)
 * as the settings table, so errors have the same shape:
 * "FILE: channels[2].name: required key missing". */
#include "config_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

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
		return jf_fail_type(&ctx->jf, path, JSON_OBJECT, v);
	if (!jf_check_keys(&ctx->jf, v, path, allowed))
		return false;
	char child[JF_PATH_MAX];
	json_t *vis = json_object_get(v, "visibility");
	jf_path_key(child, path, "visibility");
	if (vis != NULL && (!json_is_string(vis) || (strcmp(json_string_value(vis), "public") != 0 &&
	                                             strcmp(json_string_value(vis), "private") != 0)))
		return cfg_fail(ctx, child, "must be \"public\" or \"private\"");
	json_t *list = NULL;
	if (!jf_get_string_array(&ctx->jf, v, path, "channels", 1, CFG_NAME_MAX, &list) ||
	    !jf_get_string_array(&ctx->jf, v, path, "categories", 1, CFG_NAME_MAX, &list))
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
bool cfg_read_notices(const cfg_ctx *ctx, json_t *root, cfg *c)
{
	static const char *const allowed[] = { "notifier", "kinds", "channels", "visibility",
	                                       "categories", NULL };
	static const char *const kinds[] = { CFG_NOTICE_KINDS, NULL };
	json_t *arr = NULL;
	c->notices = json_array();
	if (!jf_get_array(&ctx->jf, root, "", "notices", &arr))
		return false;
	if (arr == NULL)
		return true;
	size_t i;
	json_t *rule;
	json_array_foreach(arr, i, rule) {
		char path[JF_PATH_MAX], child[JF_PATH_MAX];
		jf_path_index(path, "notices", i);
		json_t *out;
		if (!check_filter_keys(ctx, rule, path, allowed, &out))
			return false;
		if (out == NULL)
			return jf_fail_type(&ctx->jf, path, JSON_OBJECT, rule);
		json_array_append_new(c->notices, out);
		const char *notifier = NULL;
		if (!jf_get_string(&ctx->jf, rule, path, "notifier", &notifier) ||
		    !jf_require(&ctx->jf, rule, path, "notifier"))
			return false;
		json_object_set_new(out, "notifier", json_string(notifier));
		json_t *k = NULL;
		jf_path_key(child, path, "kinds");
		if (!jf_get_string_array(&ctx->jf, rule, path, "kinds", 1, CFG_NAME_MAX, &k))
			return false;
		size_t j;
		json_t *e;
		json_array_foreach(k, j, e) {
			bool known = false;
			for (size_t m = 0; kinds[m] != NULL && !known; m++)
				known = strcmp(kinds[m], json_string_value(e)) == 0;
			if (!known) {
				char kp[JF_PATH_MAX];
				jf_path_index(kp, child, j);
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
	char child[JF_PATH_MAX];

	if (!json_is_object(obj))
		return jf_fail_type(&ctx->jf, path, JSON_OBJECT, obj);
	if (!jf_check_keys(&ctx->jf, obj, path, channel ? channel_keys : sink ? sink_keys : keys))
		return false;

	const char *move_text = NULL;
	if (channel && !jf_get_string(&ctx->jf, obj, path, "move_to_private_text", &move_text))
		return false;
	if (move_text != NULL && strlen(move_text) > CFG_MOVE_TEXT_MAX) {
		jf_path_key(child, path, "move_to_private_text");
		return cfg_fail(ctx, child, "at most %d bytes", CFG_MOVE_TEXT_MAX);
	}

	const char *name = NULL, *plugin = NULL;
	if (!jf_get_string(&ctx->jf, obj, path, "name", &name) ||
	    !jf_require(&ctx->jf, obj, path, "name"))
		return false;
	jf_path_key(child, path, "name");
	if (!cfg_name_is_url_safe(name))
		return cfg_fail(ctx, child, "must be 1 to 64 characters from A-Z a-z 0-9 _ -");

	if (!jf_get_string(&ctx->jf, obj, path, "plugin", &plugin) ||
	    !jf_require(&ctx->jf, obj, path, "plugin"))
		return false;
	jf_path_key(child, path, "plugin");
	if (!plugin_name_is_valid(plugin))
		return cfg_fail(ctx, child, "must be 1 to 64 characters from a-z 0-9 _");

	json_t *config = NULL;
	if (!jf_get_object(&ctx->jf, obj, path, "config", &config))
		return false;

	json_t *route = NULL;
	if (sink) {
		jf_path_key(child, path, "route");
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
	json_t *arr = NULL;
	if (!jf_get_array(&ctx->jf, root, "", kind, &arr))
		return false;
	if (arr == NULL)
		return true;

	size_t n = json_array_size(arr);
	if (n == 0)
		return true;
	/* Attach the array first so cfg_free releases whatever got parsed. */
	*out = xcalloc(n, sizeof(cfg_instance));
	char path[JF_PATH_MAX];
	for (size_t i = 0; i < n; i++) {
		jf_path_index(path, kind, i);
		if (!parse_instance(ctx, json_array_get(arr, i), path, strcmp(kind, "channels") == 0,
		                    &(*out)[i]))
			return false;
		*n_out = i + 1;
		for (size_t j = 0; j < i; j++) {
			if (strcmp((*out)[j].name, (*out)[i].name) == 0) {
				char name_path[JF_PATH_MAX];
				jf_path_key(name_path, path, "name");
				return cfg_fail(ctx, name_path, "duplicate instance name \"%s\" "
				                "(also %s)", (*out)[i].name, (*out)[j].path);
			}
		}
	}
	return true;
}

/* ------------------------------------------------------------------------ */
/* Names used across lists                                                  */
/* ------------------------------------------------------------------------ */

/* Each of names[] is a configured notifier instance. */
static bool check_notifier_names(const cfg_ctx *ctx, const cfg *c, const char *path,
                                 char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bool found = false;
		for (size_t j = 0; j < c->n_notifiers && !found; j++)
			found = strcmp(c->notifiers[j].name, names[i]) == 0;
		if (!found) {
			char child[JF_PATH_MAX];
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
			char path[JF_PATH_MAX];
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
				char path[JF_PATH_MAX];
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
bool cfg_check_instance_names(const cfg_ctx *ctx, const cfg *c)
{
	if (!check_route_names(ctx, c))
		return false;
	return check_notifier_names(ctx, c, "ingest.notify_new_conversation",
	                            c->ingest.notify_new_conversation,
	                            c->ingest.n_notify_new_conversation) &&
	       check_notifier_names(ctx, c, "jobs.notify_delivery_failed",
	                            c->jobs.notify_delivery_failed, c->jobs.n_notify_delivery_failed);
}


static void free_instances(cfg_instance *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		instance_clear(&list[i]);
	free(list);
}

void cfg_instances_free(cfg *c)
{
	json_decref(c->notices);
	free_instances(c->channels, c->n_channels);
	free_instances(c->sinks, c->n_sinks);
	free_instances(c->notifiers, c->n_notifiers);
}

bool cfg_read_channels(const cfg_ctx *ctx, json_t *root, cfg *c)
{
	return parse_instances(ctx, root, "channels", &c->channels, &c->n_channels);
}

bool cfg_read_sinks(const cfg_ctx *ctx, json_t *root, cfg *c)
{
	if (!parse_instances(ctx, root, "sinks", &c->sinks, &c->n_sinks))
		return false;
	/* A route is a cluster key; the instance itself is not. */
	size_t i;
	json_t *in;
	json_array_foreach(json_object_get(root, "sinks"), i, in)
		if (json_object_get(in, "route") != NULL)
			c->writes_cluster_keys = true;
	return true;
}

bool cfg_read_notifiers(const cfg_ctx *ctx, json_t *root, cfg *c)
{
	return parse_instances(ctx, root, "notifiers", &c->notifiers, &c->n_notifiers);
}

/* The same instances, by name and plugin, in any order: what a reload
 * cannot change without a restart. */
static bool same_instances(const cfg_instance *a, size_t na, const cfg_instance *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) {
		bool found = false;
		for (size_t j = 0; j < nb && !found; j++)
			found = strcmp(a[i].name, b[j].name) == 0 && strcmp(a[i].plugin, b[j].plugin) == 0;
		if (!found)
			return false;
	}
	return true;
}

bool cfg_same_channels(const cfg *a, const cfg *b)
{
	return same_instances(a->channels, a->n_channels, b->channels, b->n_channels);
}

bool cfg_same_sinks(const cfg *a, const cfg *b)
{
	return same_instances(a->sinks, a->n_sinks, b->sinks, b->n_sinks);
}

bool cfg_same_notifiers(const cfg *a, const cfg *b)
{
	return same_instances(a->notifiers, a->n_notifiers, b->notifiers, b->n_notifiers);
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
	cfg_ctx ctx = { .jf = { .prefix = file, .err = err, .errlen = errlen }, .base_dir = NULL };
	char config_path[JF_PATH_MAX];
	char child[JF_PATH_MAX];
	jf_path_key(config_path, path, "config");

	json_t *empty = NULL;
	if (config == NULL)
		config = empty = json_object();
	if (!json_is_object(config))
		return jf_fail_type(&ctx.jf, config_path, JSON_OBJECT, config);

	bool ok = true;
	const char *key;
	json_t *v;
	json_object_foreach(config, key, v) {
		jf_path_key(child, config_path, key);
		const parley_config_key *k = find_key(keys, key);
		if (k == NULL) {
			ok = cfg_fail(&ctx, child, "unknown key");
			break;
		}
		if (!type_matches(k->type, v)) {
			ok = cfg_fail(&ctx, child, "expected %s, got %s",
			              config_type_with_article(k->type), jf_type_name(v));
			break;
		}
	}
	for (const parley_config_key *k = keys; ok && k != NULL && k->name != NULL; k++) {
		if ((k->flags & PARLEY_CONFIG_REQUIRED) && json_object_get(config, k->name) == NULL) {
			jf_path_key(child, config_path, k->name);
			ok = cfg_fail(&ctx, child, "required key missing");
		}
	}
	json_decref(empty);
	return ok;
}


/* ------------------------------------------------------------------------ */
/* The cluster part: notice rules and sinks' routes                         */
/* ------------------------------------------------------------------------ */

/* A cluster policy's "sinks": [{"name": "zendesk", "route": {...}}] — the
 * routes of sink instances the nodes load (a sink without an entry takes no
 * conversations). Names are checked by each node against what it loads. */
bool cfg_read_sink_routes(const cfg_ctx *ctx, json_t *root, cfg *c)
{
	static const char *const keys[] = { "name", "route", NULL };
	json_t *arr = NULL;
	if (!jf_get_array(&ctx->jf, root, "", "sinks", &arr))
		return false;
	size_t n = json_array_size(arr);
	if (n == 0)
		return true;
	c->sinks = xcalloc(n, sizeof(cfg_instance));
	for (size_t i = 0; i < n; i++) {
		char path[JF_PATH_MAX], child[JF_PATH_MAX];
		json_t *obj = json_array_get(arr, i);
		jf_path_index(path, "sinks", i);
		if (!json_is_object(obj))
			return jf_fail_type(&ctx->jf, path, JSON_OBJECT, obj);
		if (!jf_check_keys(&ctx->jf, obj, path, keys))
			return false;
		const char *name = NULL;
		if (!jf_get_string(&ctx->jf, obj, path, "name", &name) ||
		    !jf_require(&ctx->jf, obj, path, "name"))
			return false;
		jf_path_key(child, path, "name");
		if (!cfg_name_is_url_safe(name))
			return cfg_fail(ctx, child, "must be 1 to 64 characters from A-Z a-z 0-9 _ -");
		for (size_t j = 0; j < i; j++)
			if (strcmp(c->sinks[j].name, name) == 0)
				return cfg_fail(ctx, child, "duplicate sink name \"%s\" (also %s)", name,
				                c->sinks[j].path);
		json_t *route = NULL;
		jf_path_key(child, path, "route");
		if (!check_filter(ctx, json_object_get(obj, "route"), child, &route))
			return false;
		cfg_instance *in = &c->sinks[i];
		in->name = xstrdup(name);
		in->path = xstrdup(path);
		in->route = route != NULL ? route : json_object();
		json_object_set_new(in->route, "name", json_string(name));
		c->n_sinks = i + 1;
	}
	return true;
}

json_t *cfg_dump_notices(const cfg *c)
{
	return c->notices != NULL ? json_deep_copy(c->notices) : json_array();
}

static int by_name(const void *a, const void *b)
{
	const cfg_instance *x = *(const cfg_instance *const *)a, *y = *(const cfg_instance *const *)b;
	return strcmp(x->name, y->name);
}

/* [{"name", "route": filter}] sorted by name, so the order sinks are
 * written in does not make two policies differ. */
json_t *cfg_dump_sink_routes(const cfg *c)
{
	json_t *arr = json_array();
	if (c->n_sinks == 0)
		return arr;
	const cfg_instance **sorted = xcalloc(c->n_sinks, sizeof(*sorted));
	for (size_t i = 0; i < c->n_sinks; i++)
		sorted[i] = &c->sinks[i];
	qsort(sorted, c->n_sinks, sizeof(*sorted), by_name);
	for (size_t i = 0; i < c->n_sinks; i++) {
		json_t *route = json_deep_copy(sorted[i]->route);
		json_object_del(route, "name");
		json_array_append_new(arr, json_pack("{s:s, s:o}", "name", sorted[i]->name, "route", route));
	}
	free(sorted);
	return arr;
}

void cfg_copy_notices(cfg *dst, const cfg *src)
{
	json_decref(dst->notices);
	dst->notices = cfg_dump_notices(src);
}

/* Each of dst's sinks takes the route src has for its name; one src does not
 * name takes no conversations (an empty channel list matches none). */
void cfg_copy_sink_routes(cfg *dst, const cfg *src)
{
	for (size_t i = 0; i < dst->n_sinks; i++) {
		cfg_instance *in = &dst->sinks[i];
		json_t *route = NULL;
		for (size_t j = 0; j < src->n_sinks && route == NULL; j++)
			if (strcmp(src->sinks[j].name, in->name) == 0)
				route = json_deep_copy(src->sinks[j].route);
		if (route == NULL)
			route = json_pack("{s:s, s:[]}", "name", in->name, "channels");
		json_decref(in->route);
		in->route = route;
	}
}
