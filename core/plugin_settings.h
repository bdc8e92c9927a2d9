/* plugin_settings.h - a plugin's settings table (ABI 1.3): check the table
 * when the plugin is opened, fill and validate the plugin's settings struct
 * from an instance's "config", free it, name the restart-only settings a
 * reload would change, and describe the table for --list-plugins -v.
 *
 * Values are read with the core's JSON field readers (json_field.h), so
 * errors have the shape of every other configuration error:
 *     parley.json: channels[0].config.timeout_ms: must be between 100 and 60000
 * and, like them, never contain a value. */
#ifndef PARLEY_CORE_PLUGIN_SETTINGS_H
#define PARLEY_CORE_PLUGIN_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <jansson.h>

#include "parley/parley.h"

/* True when the descriptor is large enough to carry a settings table and
 * has one. d: borrowed. */
bool psettings_present(const parley_plugin_descriptor *d);

/* The table is usable: rows large enough for ABI 1.3, names unique and well
 * formed, known types and flags, fields inside the struct, bounds in order,
 * defaults valid. On failure a reason (naming the row) in err. */
PARLEY_MUSTCHECK
bool psettings_check_table(const parley_plugin_descriptor *d, char *err, size_t errlen);

/* Validate `config` (an object, or NULL for none; borrowed) of the instance
 * at JSON path `path` ("channels[0]") in `file`, and fill a new settings
 * struct: defaults for absent keys, every key known, types and ranges
 * checked, required keys present. On success *out is owned by the caller
 * (psettings_free); on failure "FILE: PATH.config.KEY: reason" in err. */
PARLEY_MUSTCHECK
bool psettings_fill(const parley_plugin_descriptor *d, const char *file, const char *path,
                    json_t *config, void **out, char *err, size_t errlen);

/* Free a struct from psettings_fill, overwriting secrets first. NULL is a no-op. */
void psettings_free(const parley_plugin_descriptor *d, void *settings);

/* SIGHUP: the settings without PARLEY_SETTING_FLAG_RELOADABLE whose values
 * differ between the running `cur` and the reloaded `next` (both from
 * psettings_fill) keep their running values in `next`, and are named as
 * config paths ("channels[0].config.port, ...") below the instance path
 * `path` in out, like the core's own restart-only settings. Returns how many. */
size_t psettings_hold_restart_only(const parley_plugin_descriptor *d, const char *path,
                                   const void *cur, void *next, char *out, size_t outlen);

/* One line per setting for parleyd --list-plugins -v:
 *     config.timeout_ms (integer, default 10000, range 100..60000, reloadable): ...
 * A secret's default is never printed. */
void psettings_describe(const parley_plugin_descriptor *d, FILE *out);

#endif
