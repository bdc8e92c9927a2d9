/* plugin_loader.h - find, open and check plugin shared objects, and create
 * their configured instances.
 *
 * Every rejection names the file and the reason: no entry symbol, another ABI
 * major, a descriptor too small for ABI v1, a kind other than configured, a
 * missing mandatory operation, an unresolved symbol (plugins must not use the
 * core's internals), or create() failing. */
#ifndef PARLEY_CORE_PLUGIN_LOADER_H
#define PARLEY_CORE_PLUGIN_LOADER_H

#include <stdbool.h>
#include <stdio.h>
#include "parley/parley.h"
#include "config.h"
#include "host_api.h"

typedef struct loaded_plugin {
	char *path;                              /* the .so file */
	void *dl;                                /* dlopen handle */
	const parley_plugin_descriptor *desc;    /* owned by the .so */
} loaded_plugin;

typedef struct plugin_set {
	loaded_plugin **plugins; size_t n_plugins;
	parley_instance **instances; size_t n_instances;
} plugin_set;

/* Open `path` and validate its descriptor. expected_kind 0 accepts any kind. */
PARLEY_MUSTCHECK
bool loader_open_file(const char *path, parley_kind expected_kind, loaded_plugin **out,
                      char *err, size_t errlen);
void loader_close(loaded_plugin *p);
const char *loader_kind_name(parley_kind kind);

/* For every configured channel, sink and notifier: open plugin_dir/PLUGIN.so
 * (each file once), validate the instance config against the plugin's keys,
 * and call create(). On failure everything created is destroyed. */
PARLEY_MUSTCHECK bool plugins_load(const cfg *c, plugin_set **out, char *err, size_t errlen);
PARLEY_MUSTCHECK bool plugins_start(plugin_set *s, char *err, size_t errlen);
/* SIGHUP: validate and hand each instance its new config. Instances must be
 * the same set (names, plugins); otherwise false and nothing changes. */
PARLEY_MUSTCHECK bool plugins_reload(plugin_set *s, const cfg *c, char *err, size_t errlen);
void plugins_stop(plugin_set *s);
void plugins_free(plugin_set *s);
parley_instance *plugins_find(const plugin_set *s, parley_kind kind, const char *name);

/* parleyd --list-plugins: one line per .so in dir. Returns false if dir unreadable. */
PARLEY_MUSTCHECK bool loader_list_dir(const char *dir, FILE *out, bool verbose);

#endif
