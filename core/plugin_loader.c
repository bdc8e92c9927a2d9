/* plugin_loader.c - open plugin shared objects, check them against ABI v1,
 * and create their configured instances.
 *
 * A plugin is trusted code, but a wrong one must never crash the daemon at
 * start: every check reads only what the descriptor's size says exists, and
 * every rejection names the file and the reason. */
#include "plugin_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "plugin_settings.h"
#include "util.h"

/* The descriptor as ABI 1.0 defines it: everything up to `notifier`. */
#define DESCRIPTOR_V1_SIZE (offsetof(parley_plugin_descriptor, notifier) + sizeof(void *))
/* Enough of it to read the ABI version. */
#define DESCRIPTOR_VERSION_SIZE (offsetof(parley_plugin_descriptor, abi_minor) + sizeof(uint16_t))

const char *loader_kind_name(parley_kind kind)
{
	switch (kind) {
	case PARLEY_KIND_CHANNEL: return "channel";
	case PARLEY_KIND_SINK: return "sink";
	case PARLEY_KIND_NOTIFIER: return "notifier";
	}
	return "unknown";
}

/* Check the kind's operation table: present, big enough, mandatory ops set. */
static bool check_ops(const parley_plugin_descriptor *d, const char **missing)
{
	switch (d->kind) {
	case PARLEY_KIND_CHANNEL:
		if (d->channel == NULL) { *missing = "channel operations"; return false; }
		if (d->channel->size < offsetof(parley_channel_ops, send) + sizeof(void *)) {
			*missing = "channel operations (table too small)"; return false;
		}
		if (d->channel->handle_request == NULL) { *missing = "channel.handle_request"; return false; }
		if (d->channel->send == NULL) { *missing = "channel.send"; return false; }
		return true;
	case PARLEY_KIND_SINK:
		if (d->sink == NULL) { *missing = "sink operations"; return false; }
		if (d->sink->size < offsetof(parley_sink_ops, handle_request) + sizeof(void *)) {
			*missing = "sink operations (table too small)"; return false;
		}
		if (d->sink->open_ticket == NULL) { *missing = "sink.open_ticket"; return false; }
		if (d->sink->append_message == NULL) { *missing = "sink.append_message"; return false; }
		return true;
	case PARLEY_KIND_NOTIFIER:
		if (d->notifier == NULL) { *missing = "notifier operations"; return false; }
		if (d->notifier->size < offsetof(parley_notifier_ops, deliver) + sizeof(void *)) {
			*missing = "notifier operations (table too small)"; return false;
		}
		if (d->notifier->deliver == NULL) { *missing = "notifier.deliver"; return false; }
		return true;
	}
	*missing = "a known kind";
	return false;
}

bool loader_open_file(const char *path, parley_kind expected_kind, loaded_plugin **out,
                      char *err, size_t errlen)
{
	/* RTLD_NOW: an unresolved symbol (say, a core internal the plugin should
	 * not use) fails here, not later in the middle of a request. */
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL) {
		const char *why = dlerror();
		snprintf(err, errlen, "%s: cannot load: %s", path, why ? why : "unknown error");
		return false;
	}
	dlerror();
	parley_plugin_entry_fn entry;
	*(void **)(&entry) = dlsym(dl, PARLEY_PLUGIN_ENTRY_SYMBOL);
	if (entry == NULL) {
		snprintf(err, errlen, "%s: no entry symbol %s (not a Parley plugin?)", path,
		         PARLEY_PLUGIN_ENTRY_SYMBOL);
		goto fail;
	}
	const parley_plugin_descriptor *d = entry();
	if (d == NULL) {
		snprintf(err, errlen, "%s: %s returned no descriptor", path, PARLEY_PLUGIN_ENTRY_SYMBOL);
		goto fail;
	}
	if (d->size < DESCRIPTOR_VERSION_SIZE) {
		snprintf(err, errlen, "%s: descriptor is %u bytes, too small to hold an ABI version", path,
		         (unsigned)d->size);
		goto fail;
	}
	if (d->abi_major != PARLEY_ABI_MAJOR) {
		snprintf(err, errlen,
		         "%s: built for plugin ABI %u.%u, this parleyd speaks ABI %d.%d (major versions must match)",
		         path, (unsigned)d->abi_major, (unsigned)d->abi_minor, PARLEY_ABI_MAJOR, PARLEY_ABI_MINOR);
		goto fail;
	}
	if (d->size < DESCRIPTOR_V1_SIZE) {
		snprintf(err, errlen, "%s: descriptor is %u bytes, ABI %d needs at least %zu", path,
		         (unsigned)d->size, PARLEY_ABI_MAJOR, (size_t)DESCRIPTOR_V1_SIZE);
		goto fail;
	}
	if (d->kind != PARLEY_KIND_CHANNEL && d->kind != PARLEY_KIND_SINK && d->kind != PARLEY_KIND_NOTIFIER) {
		snprintf(err, errlen, "%s: unknown plugin kind %d", path, (int)d->kind);
		goto fail;
	}
	if (expected_kind != 0 && d->kind != expected_kind) {
		snprintf(err, errlen, "%s: is a %s plugin, configured as a %s", path, loader_kind_name(d->kind),
		         loader_kind_name(expected_kind));
		goto fail;
	}
	if (d->name == NULL || d->version == NULL) {
		snprintf(err, errlen, "%s: descriptor has no name or version", path);
		goto fail;
	}
	if (d->create == NULL) {
		snprintf(err, errlen, "%s: missing mandatory operation create", path);
		goto fail;
	}
	const char *missing = NULL;
	if (!check_ops(d, &missing)) {
		snprintf(err, errlen, "%s: missing mandatory operation %s", path, missing);
		goto fail;
	}
	/* ABI 1.3 settings table: a broken one (a default out of its own range,
	 * a field outside the struct) is the plugin's bug; say so at load, not
	 * when an instance happens to leave a key out. */
	char why[768];
	if (psettings_present(d) && !psettings_check_table(d, why, sizeof(why))) {
		snprintf(err, errlen, "%s: %s", path, why);
		goto fail;
	}
	loaded_plugin *p = xcalloc(1, sizeof(*p));
	p->path = xstrdup(path);
	p->dl = dl;
	p->desc = d;
	*out = p;
	return true;
fail:
	dlclose(dl);
	return false;
}

void loader_close(loaded_plugin *p)
{
	if (p == NULL)
		return;
	dlclose(p->dl);
	free(p->path);
	free(p);
}

/* ------------------------------------------------------------ instances */

static void instance_free(parley_instance *inst)
{
	if (inst == NULL)
		return;
	free(inst->name);
	free(inst->component);
	free(inst->cfg_file);
	free(inst->cfg_path);
	free(inst->config_error);
	free(inst->metric_labels);
	psettings_free(inst->desc, inst->settings);
	free(inst);
}

static loaded_plugin *set_find_plugin(plugin_set *s, const char *path)
{
	for (size_t i = 0; i < s->n_plugins; i++)
		if (strcmp(s->plugins[i]->path, path) == 0)
			return s->plugins[i];
	return NULL;
}

static bool load_instance(plugin_set *s, const cfg *c, const cfg_instance *ci, parley_kind kind,
                          char *err, size_t errlen)
{
	char path[4096];
	/* A kind's own folder first (plugin_dir/notifiers/webhook.so), so a
	 * notifier may share its name with a channel; then plugin_dir itself. */
	if ((size_t)snprintf(path, sizeof(path), "%s/%ss/%s.so", c->plugin_dir, loader_kind_name(kind),
	                     ci->plugin) >= sizeof(path) ||
	    (access(path, F_OK) != 0 &&
	     (size_t)snprintf(path, sizeof(path), "%s/%s.so", c->plugin_dir, ci->plugin) >= sizeof(path))) {
		snprintf(err, errlen, "%s: %s.plugin: plugin path too long", c->file, ci->path);
		return false;
	}
	loaded_plugin *p = set_find_plugin(s, path);
	if (p == NULL) {
		if (access(path, F_OK) != 0) {
			snprintf(err, errlen, "%s: %s.plugin: plugin \"%s\" not found (no %s)", c->file, ci->path,
			         ci->plugin, path);
			return false;
		}
		char why[1024];
		if (!loader_open_file(path, kind, &p, why, sizeof(why))) {
			snprintf(err, errlen, "%s: %s.plugin: %s", c->file, ci->path, why);
			return false;
		}
		if (strcmp(p->desc->name, ci->plugin) != 0) {
			snprintf(err, errlen, "%s: %s.plugin: %s declares the name \"%s\", not \"%s\"", c->file,
			         ci->path, path, p->desc->name, ci->plugin);
			loader_close(p);
			return false;
		}
		s->plugins = xrealloc(s->plugins, (s->n_plugins + 1) * sizeof(*s->plugins));
		s->plugins[s->n_plugins++] = p;
	} else if (p->desc->kind != kind) {
		snprintf(err, errlen, "%s: %s.plugin: %s: is a %s plugin, configured as a %s", c->file, ci->path,
		         path, loader_kind_name(p->desc->kind), loader_kind_name(kind));
		return false;
	}

	/* A 1.3 plugin's table fills its settings struct; an older one has its
	 * declared keys checked and reads them itself. */
	void *settings = NULL;
	if (psettings_present(p->desc)) {
		if (!psettings_fill(p->desc, c->file, ci->path, ci->config, &settings, err, errlen))
			return false;
	} else if (!cfg_validate_plugin_config(c->file, ci->path, ci->config, p->desc->config_keys,
	                                       err, errlen)) {
		return false;
	}

	parley_instance *inst = xcalloc(1, sizeof(*inst));
	inst->settings = settings;
	inst->name = xstrdup(ci->name);
	inst->kind = kind;
	inst->plugin = p;
	inst->desc = p->desc;
	inst->cfg_file = xstrdup(c->file);
	inst->cfg_path = xstrdup(ci->path);
	size_t clen = strlen(ci->name) + 16;
	inst->component = xmalloc(clen);
	snprintf(inst->component, clen, "%s/%s", loader_kind_name(kind), ci->name);
	char *esc = metrics_escape_label(ci->name);
	size_t llen = strlen(esc) + 16;
	inst->metric_labels = xmalloc(llen);
	snprintf(inst->metric_labels, llen, "instance=\"%s\"", esc);
	free(esc);

	struct parley_config pc = { .obj = ci->config, .settings = inst->settings };
	int rc = p->desc->create(host_api_table(), inst, &pc, &inst->self);
	host_config_release(&pc);
	if (rc != 0 || inst->config_error != NULL) {
		if (inst->config_error != NULL)
			snprintf(err, errlen, "%s (plugin %s)", inst->config_error, p->path);
		else
			snprintf(err, errlen, "%s: %s: plugin %s: create failed (see the log above)", c->file,
			         ci->path, p->path);
		/* A create that failed after allocating is the plugin's to clean up;
		 * call destroy only if it handed back state. */
		if (rc == 0 && p->desc->destroy != NULL)
			p->desc->destroy(inst->self);
		instance_free(inst);
		return false;
	}
	s->instances = xrealloc(s->instances, (s->n_instances + 1) * sizeof(*s->instances));
	s->instances[s->n_instances++] = inst;
	log_info(inst->component, "created (plugin %s %s)", p->desc->name, p->desc->version);
	return true;
}

static void plugins_metrics(void *arg)
{
	plugin_set *s = arg;
	int counts[4] = { 0 };
	for (size_t i = 0; i < s->n_instances; i++)
		counts[s->instances[i]->kind]++;
	for (int k = PARLEY_KIND_CHANNEL; k <= PARLEY_KIND_NOTIFIER; k++) {
		char labels[64];
		snprintf(labels, sizeof(labels), "kind=\"%s\"", loader_kind_name((parley_kind)k));
		metrics_gauge_set("parley_plugin_instances", "Plugin instances loaded, by kind.", labels,
		                  counts[k]);
	}
}

bool plugins_load(const cfg *c, plugin_set **out, char *err, size_t errlen)
{
	plugin_set *s = xcalloc(1, sizeof(*s));
	struct { cfg_instance *list; size_t n; parley_kind kind; } sections[] = {
		{ c->channels, c->n_channels, PARLEY_KIND_CHANNEL },
		{ c->sinks, c->n_sinks, PARLEY_KIND_SINK },
		{ c->notifiers, c->n_notifiers, PARLEY_KIND_NOTIFIER },
	};
	for (size_t k = 0; k < sizeof(sections) / sizeof(sections[0]); k++) {
		for (size_t i = 0; i < sections[k].n; i++) {
			if (!load_instance(s, c, &sections[k].list[i], sections[k].kind, err, errlen)) {
				plugins_free(s);
				return false;
			}
		}
	}
	metrics_add_collector(plugins_metrics, s);
	*out = s;
	return true;
}

bool plugins_start(plugin_set *s, char *err, size_t errlen)
{
	for (size_t i = 0; i < s->n_instances; i++) {
		parley_instance *inst = s->instances[i];
		if (inst->desc->start != NULL && inst->desc->start(inst->self) != 0) {
			snprintf(err, errlen, "%s: %s: plugin %s: start failed (see the log above)", inst->cfg_file,
			         inst->cfg_path, inst->desc->name);
			return false;
		}
	}
	return true;
}

static const cfg_instance *find_cfg_instance(const cfg *c, parley_kind kind, const char *name)
{
	const cfg_instance *list = kind == PARLEY_KIND_CHANNEL ? c->channels
	                         : kind == PARLEY_KIND_SINK ? c->sinks : c->notifiers;
	size_t n = kind == PARLEY_KIND_CHANNEL ? c->n_channels
	         : kind == PARLEY_KIND_SINK ? c->n_sinks : c->n_notifiers;
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].name, name) == 0)
			return &list[i];
	return NULL;
}

/* Check the new config of one instance; for a 1.3 plugin fill its new
 * settings struct into *next (owned by the caller, NULL otherwise). */
static bool check_new_config(const parley_instance *inst, const cfg *c, const cfg_instance *ci,
                             void **next, char *err, size_t errlen)
{
	*next = NULL;
	if (!psettings_present(inst->desc))
		return cfg_validate_plugin_config(c->file, ci->path, ci->config, inst->desc->config_keys,
		                                  err, errlen);
	if (!psettings_fill(inst->desc, c->file, ci->path, ci->config, next, err, errlen))
		return false;
	char held[1024];
	if (psettings_hold_restart_only(inst->desc, ci->path, inst->settings, *next, held,
	                                sizeof(held)) > 0)
		log_warn(inst->component, "reload: these changes take a restart and are ignored until "
		         "then: %s", held);
	return true;
}

static void free_new_settings(plugin_set *s, void **next)
{
	for (size_t i = 0; i < s->n_instances; i++)
		psettings_free(s->instances[i]->desc, next[i]);
	free(next);
}

bool plugins_reload(plugin_set *s, const cfg *c, char *err, size_t errlen)
{
	/* First check everything, so an invalid new config changes nothing. */
	size_t total = c->n_channels + c->n_sinks + c->n_notifiers;
	if (total != s->n_instances) {
		snprintf(err, errlen, "%s: the set of instances changed; that needs a restart", c->file);
		return false;
	}
	void **next = xcalloc(s->n_instances + 1, sizeof(void *));
	for (size_t i = 0; i < s->n_instances; i++) {
		parley_instance *inst = s->instances[i];
		const cfg_instance *ci = find_cfg_instance(c, inst->kind, inst->name);
		if (ci == NULL || strcmp(ci->plugin, inst->desc->name) != 0) {
			snprintf(err, errlen, "%s: the set of instances changed (%s); that needs a restart", c->file,
			         inst->component);
			free_new_settings(s, next);
			return false;
		}
		if (!check_new_config(inst, c, ci, &next[i], err, errlen)) {
			free_new_settings(s, next);
			return false;
		}
	}
	bool all_ok = true;
	for (size_t i = 0; i < s->n_instances; i++) {
		parley_instance *inst = s->instances[i];
		if (inst->desc->reload == NULL)
			continue;   /* keeps its settings; next[i] is freed below */
		const cfg_instance *ci = find_cfg_instance(c, inst->kind, inst->name);
		free(inst->cfg_path);
		inst->cfg_path = xstrdup(ci->path);
		free(inst->config_error);
		inst->config_error = NULL;
		struct parley_config pc = { .obj = ci->config, .settings = next[i] };
		int rc = inst->desc->reload(inst->self, &pc);
		host_config_release(&pc);
		if (rc != 0 || inst->config_error != NULL) {
			/* The plugin keeps its old config; report, carry on with the others. */
			if (all_ok)
				snprintf(err, errlen, "%s", inst->config_error ? inst->config_error
				                                                : "a plugin refused its new config");
			all_ok = false;
			log_warn(inst->component, "reload refused: keeping the old config");
		} else {
			/* The plugin now reads the new struct: the old one goes. */
			void *old = inst->settings;
			inst->settings = next[i];
			next[i] = old;
			log_info(inst->component, "reloaded");
		}
	}
	free_new_settings(s, next);
	return all_ok;
}

void plugins_stop(plugin_set *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n_instances; i++)
		if (s->instances[i]->desc->stop != NULL)
			s->instances[i]->desc->stop(s->instances[i]->self);
}

void plugins_free(plugin_set *s)
{
	if (s == NULL)
		return;
	for (size_t i = s->n_instances; i-- > 0;) {
		parley_instance *inst = s->instances[i];
		if (inst->desc->destroy != NULL)
			inst->desc->destroy(inst->self);
		instance_free(inst);
	}
	free(s->instances);
	for (size_t i = 0; i < s->n_plugins; i++)
		loader_close(s->plugins[i]);
	free(s->plugins);
	free(s);
}

parley_instance *plugins_find(const plugin_set *s, parley_kind kind, const char *name)
{
	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < s->n_instances; i++)
		if (s->instances[i]->kind == kind && strcmp(s->instances[i]->name, name) == 0)
			return s->instances[i];
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Append the .so files of dir/sub (sub "" = dir itself) to names, as
 * "sub/file.so". A missing subfolder is no error. */
static bool collect_plugins(const char *dir, const char *sub, char ***names, size_t *n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s%s%s", dir, *sub ? "/" : "", sub);
	DIR *d = opendir(path);
	if (d == NULL) {
		if (*sub)
			return true;
		fprintf(stderr, "parleyd: %s: %s\n", dir, strerror(errno));
		return false;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len > 3 && strcmp(e->d_name + len - 3, ".so") == 0) {
			char name[1024];
			snprintf(name, sizeof(name), "%s%s%s", sub, *sub ? "/" : "", e->d_name);
			*names = xrealloc(*names, (*n + 1) * sizeof(char *));
			(*names)[(*n)++] = xstrdup(name);
		}
	}
	closedir(d);
	return true;
}

bool loader_list_dir(const char *dir, FILE *out, bool verbose)
{
	char **names = NULL;
	size_t n = 0;
	if (!collect_plugins(dir, "", &names, &n))
		return false;
	static const char *const subs[] = { "channels", "sinks", "notifiers" };
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		collect_plugins(dir, subs[i], &names, &n);
	qsort(names, n, sizeof(char *), cmp_str);
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		loaded_plugin *p = NULL;
		char err[1024];
		if (!loader_open_file(path, 0, &p, err, sizeof(err))) {
			fprintf(out, "%s  error: %s\n", names[i], err);
		} else {
			const parley_plugin_descriptor *pd = p->desc;
			fprintf(out, "%s  %s  %s  %s  abi %u.%u\n", names[i], loader_kind_name(pd->kind), pd->name,
			        pd->version, (unsigned)pd->abi_major, (unsigned)pd->abi_minor);
			if (verbose && pd->description)
				fprintf(out, "    %s\n", pd->description);
			if (verbose && psettings_present(pd))
				psettings_describe(pd, out);
			else if (verbose && pd->config_keys) {
				for (const parley_config_key *k = pd->config_keys; k->name; k++)
					fprintf(out, "    config.%s (%s%s%s)%s%s\n", k->name,
					        k->type == PARLEY_CONFIG_STRING ? "string"
					        : k->type == PARLEY_CONFIG_INTEGER ? "integer"
					        : k->type == PARLEY_CONFIG_BOOLEAN ? "boolean" : "json",
					        (k->flags & PARLEY_CONFIG_REQUIRED) ? ", required" : "",
					        (k->flags & PARLEY_CONFIG_SECRET) ? ", secret" : "",
					        k->description ? ": " : "", k->description ? k->description : "");
			}
			loader_close(p);
		}
		free(names[i]);
	}
	free(names);
	return true;
}
