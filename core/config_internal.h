/* config_internal.h - what the files of the configuration loader share.
 *
 *   config.c            load a file, free, publish routing, the top level
 *   config_refs.c       $env:/$file: references and paths relative to the file
 *   config_settings.c   the declarative table of core settings
 *   config_schema.c     reading, defaults, restart check and reference from that table
 *   config_instances.c  channels, sinks, notifiers, notices: structure parsers
 *
 * Not installed and not for other subsystems: they use config.h. */
#ifndef PARLEY_CORE_CONFIG_INTERNAL_H
#define PARLEY_CORE_CONFIG_INTERNAL_H

#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "config.h"
#include "json_field.h"

#define CFG_NAME_MAX 64

/* What every pass needs to report an error and resolve relative paths.
 * Errors are "FILE: PATH: reason" (jf.prefix is the file). */
typedef struct cfg_ctx {
	jf_ctx jf;
	const char *base_dir;  /* borrowed: absolute directory of the file; NULL = cwd */
	bool policy;           /* reading a cluster policy: node settings are refused */
} cfg_ctx;

#define cfg_fail(ctx, path, ...) jf_fail(&(ctx)->jf, (path), __VA_ARGS__)

/* ---- config_refs.c */

/* Absolute directory of `file`, owned by the caller. */
char *cfg_dir_of(const char *file);
/* `path` if absolute, else base_dir/path. Owned by the caller. */
char *cfg_resolve_relative(const char *base_dir, const char *path);
/* Replace every "$env:"/"$file:" string under node in place. */
PARLEY_MUSTCHECK
bool cfg_resolve_tree(const cfg_ctx *ctx, json_t *node, const char *path);

/* ---- the table (config_settings.c) and its reader (config_schema.c) */

typedef enum cfg_type {
	CFG_T_INT,      /* int at offset, in [min, max] */
	CFG_T_SIZE,     /* size_t at offset, in [min, max] */
	CFG_T_BOOL,     /* bool at offset */
	CFG_T_STRING,   /* char * at offset (owned), or converted by `parse` */
	CFG_T_NAMES,    /* char ** at offset, size_t count at offset_n: instance names */
	CFG_T_SECTION,  /* an object holding the rows of `section` */
	CFG_T_LIST,     /* an array with its own structure, read by `parse_list` */
} cfg_type;

#define CFG_RELOAD   0x1u  /* SIGHUP applies a change */
#define CFG_REQUIRED 0x2u  /* no default: the key must be written */
#define CFG_CLUSTER  0x4u  /* cluster scope: the value comes from the cluster policy */

typedef struct cfg_section cfg_section;

/* Check, convert and store a string value (the written one or the default)
 * at JSON path `path`. */
typedef bool (*cfg_parse_fn)(const cfg_ctx *ctx, const char *path, const char *value, cfg *c);
/* Read an array key of `parent` with its own structure. */
typedef bool (*cfg_list_fn)(const cfg_ctx *ctx, json_t *parent, cfg *c);
/* For the restart check of a value not stored at `offset`. */
typedef bool (*cfg_same_fn)(const cfg *a, const cfg *b);
/* A LIST row's cluster part as JSON (new reference), and copying it from a
 * policy `src` into a node's `dst`. */
typedef json_t *(*cfg_dump_fn)(const cfg *c);
typedef void (*cfg_copy_fn)(cfg *dst, const cfg *src);

typedef struct cfg_setting {
	const char *key;            /* NULL ends a section's rows */
	cfg_type type;
	size_t offset;
	size_t offset_n;            /* CFG_T_NAMES: the count */
	long long def;              /* INT, SIZE, BOOL */
	const char *def_str;        /* STRING: default, checked like a written value; NULL = none */
	long long min, max;         /* INT, SIZE; max INT_MAX = no upper bound */
	unsigned flags;             /* CFG_RELOAD, CFG_REQUIRED */
	cfg_parse_fn parse;         /* STRING: instead of copying */
	cfg_list_fn parse_list;     /* LIST */
	const cfg_section *section; /* SECTION */
	cfg_same_fn same;           /* restart check where offset does not hold the value */
	/* LIST rows with a cluster part: how a policy file writes it (NULL: as
	 * in the node file), its canonical JSON, and copying it from a policy. */
	cfg_list_fn parse_policy;
	cfg_dump_fn dump;
	cfg_copy_fn copy;
	/* The reference: each overrides what would be derived from the fields. */
	const char *doc_type, *doc_default, *doc_range, *doc_reload, *doc_scope;
	const char *doc;            /* what the setting means (Markdown, no "|") */
} cfg_setting;

struct cfg_section {
	const char *path;           /* "" for the top level, else the key: "limits" */
	const char *title;          /* the reference's heading */
	const char *intro;          /* a paragraph before the table, or NULL */
	const cfg_setting *rows;
};

extern const cfg_section cfg_root_section;

/* Set every default of the table; fails only on a broken built-in default. */
PARLEY_MUSTCHECK
bool cfg_schema_defaults(const cfg_ctx *ctx, cfg *c);
/* Read the top level `root` (an object) by the table, in table order. */
PARLEY_MUSTCHECK
bool cfg_schema_read(const cfg_ctx *ctx, json_t *root, cfg *c);
/* Free what the table's STRING and NAMES fields own. */
void cfg_schema_free(cfg *c);
/* The cluster part of c as canonical JSON (every cluster key, defaults
 * included); a new reference. */
json_t *cfg_schema_cluster_json(const cfg *c);
/* Copy every cluster value of src into dst. */
void cfg_schema_take_cluster(cfg *dst, const cfg *src);

/* ---- config_instances.c: the LIST readers and checks across lists */

PARLEY_MUSTCHECK
bool cfg_read_channels(const cfg_ctx *ctx, json_t *root, cfg *c);
PARLEY_MUSTCHECK
bool cfg_read_sinks(const cfg_ctx *ctx, json_t *root, cfg *c);
PARLEY_MUSTCHECK
bool cfg_read_notifiers(const cfg_ctx *ctx, json_t *root, cfg *c);
PARLEY_MUSTCHECK
bool cfg_read_notices(const cfg_ctx *ctx, json_t *root, cfg *c);
/* A policy's "sinks": [{"name", "route"}], the routes only. */
PARLEY_MUSTCHECK
bool cfg_read_sink_routes(const cfg_ctx *ctx, json_t *root, cfg *c);
json_t *cfg_dump_notices(const cfg *c);
json_t *cfg_dump_sink_routes(const cfg *c);
void cfg_copy_notices(cfg *dst, const cfg *src);
void cfg_copy_sink_routes(cfg *dst, const cfg *src);
/* Routes, rules and notify_* lists name configured instances. */
PARLEY_MUSTCHECK
bool cfg_check_instance_names(const cfg_ctx *ctx, const cfg *c);
/* The same instances (kind, name, plugin) in a and b. */
bool cfg_same_channels(const cfg *a, const cfg *b);
bool cfg_same_sinks(const cfg *a, const cfg *b);
bool cfg_same_notifiers(const cfg *a, const cfg *b);
void cfg_instances_free(cfg *c);

#endif
