/* meta_settings.h - the meta channel's settings (filled by the core from
 * the table in meta.c) and what the plugin parses from them. Not part of
 * any ABI. */
#ifndef PARLEY_META_SETTINGS_H
#define PARLEY_META_SETTINGS_H

#include <stdint.h>

#include "parley/parley.h"
#include "meta_parse.h"
#include "meta_graph.h"

#define META_MAX_URL_BYTES 2048

/* One instance's settings, filled and checked by the core from the table
 * in meta.c (ABI 1.3); every field is owned by the core (which wipes the
 * secrets) and replaced as a whole on reload. */
typedef struct meta_settings {
	const char *app_secret;
	const char *verify_token;
	const char *graph_url;          /* trailing '/' dropped when URLs are built */
	const char *graph_version;      /* vNN.N (meta_settings_check) */
	const char *pages;              /* JSON text or NULL: parsed into meta_assets */
	const char *instagram_accounts; /* the same */
	const char *whatsapp_numbers;   /* the same */
	const char *whatsapp_template;  /* the same */
	int human_agent_tag;
	int appsecret_proof;            /* send appsecret_proof with every Graph call */
	int64_t timeout_ms;
} meta_settings;

/* What the plugin parses from the JSON settings (a table has no type for a
 * list of objects). Owned by the instance; replaced with the settings. */
typedef struct meta_assets {
	meta_asset_list pages;
	meta_asset_list instagram;
	meta_asset_list whatsapp;
	char *template_name;            /* owned; NULL: none */
	char *template_language;        /* owned; NULL with template_name */
} meta_assets;

typedef struct meta_channel {
	const parley_host *host;   /* owned by the core; valid until destroy */
	parley_instance *inst;     /* owned by the core; valid until destroy */
	meta_settings cfg;         /* the core's struct, copied by the skeleton */
	meta_assets assets;        /* owned: parsed from cfg */
	meta_assets pending;       /* owned: parsed from a reload's settings until swapped in */
} meta_channel;

/* What the table cannot say: the version's format and the JSON settings'
 * shape. settings: a meta_settings, borrowed. 0, or -1 after config_error. */
META_INTERNAL int meta_settings_check(const parley_host *host, parley_instance *inst,
                                      const void *settings);
/* The JSON settings of s (borrowed) into *out (zeroed here; owned by the
 * caller: meta_assets_release). -1 after config_error, with *out freed. */
META_INTERNAL int meta_assets_read(const parley_host *host, parley_instance *inst,
                                   const meta_settings *s, meta_assets *out);
/* Free what *a holds (the tokens wiped) and zero it. */
META_INTERNAL void meta_assets_release(meta_assets *a);

#endif
