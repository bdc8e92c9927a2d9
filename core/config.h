/* config.h - the daemon's JSON configuration: load, validate, resolve secrets.
 *
 * Every error names the file, the JSON path and what is wrong, and never a
 * value (values may be secrets). */
#ifndef PARLEY_CORE_CONFIG_H
#define PARLEY_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <jansson.h>

#include "log.h"
#include "parley/parley.h"

typedef struct cfg_instance {
	char *name;        /* URL-safe: [A-Za-z0-9_-]{1,64} */
	char *plugin;      /* plugin name, looked up in plugin_dir */
	json_t *config;    /* the "config" object, $env/$file resolved; owned */
	char *path;        /* JSON path of the instance, e.g. "channels[2]" */
	/* Channels only: the public reply that says a conversation moved to
	 * private ("" = none); NULL for sinks and notifiers. */
	char *move_to_private_text;
	/* Sinks only: which conversations go to it, {"name", "channels",
	 * "visibility", "categories"} (absent filters take all); NULL otherwise. */
	json_t *route;
} cfg_instance;

/* The notice kinds a "notices" rule may name. */
#define CFG_NOTICE_KINDS "conversation.created", "message.received", "delivery.failed", "sink.failed", \
	"job.unclaimed"
#define CFG_NOTICE_KINDS_TEXT "conversation.created, message.received, delivery.failed, sink.failed, " \
	"job.unclaimed"

#define CFG_MOVE_TEXT_MAX 1000
#define CFG_MOVE_TEXT_DEFAULT \
	"We have sent you a private message so we can look into the details with you."


typedef struct cfg {
	char *file;                 /* path the config was read from */
	char *listen_host;          /* "listen": "HOST:PORT" (IPv6 as [::1]:8080) */
	int listen_port;
	char *public_url;           /* e.g. "https://parley.example.com" */
	struct {
		char *dsn;              /* libpq connection string */
		int pool_size;          /* default 4, 1..64 */
		int connect_timeout_ms; /* default 5000 */
		int query_timeout_ms;   /* default 10000: a batch waiting longer fails */
		bool migrate_on_start;  /* default true */
	} database;
	char *plugin_dir;           /* default: the build's PARLEY_PLUGIN_DIR */
	struct {
		log_level level;        /* default info */
		bool json;              /* "format": "text" (default) | "json" */
	} log;
	struct {
		size_t max_body_bytes;   /* default 4 MiB */
		size_t max_header_bytes; /* default 16 KiB: request line + headers */
		int read_timeout_ms;     /* default 10000: whole request must arrive */
		int write_timeout_ms;    /* default 10000 */
		int idle_timeout_ms;     /* default 60000: keep-alive idle */
		int max_connections;     /* default 1024 */
		int shutdown_timeout_ms; /* default 10000: SIGTERM drain limit */
		size_t max_output_bytes; /* default 1 MiB: unsent answer a client may leave */
	} limits;
	struct {
		int batch_max_events;    /* default 500: flush a batch at this many events */
		int batch_max_delay_ms;  /* default 2: or this long after its first event */
		int max_inflight_batches;/* default 3: batches being committed at once */
		int reopen_window_s;     /* default 7 days: a resolved conversation reopens */
		bool auto_merge_verified_email; /* default true */
		bool auto_merge_verified_phone; /* default true */
		char *case_prefix;       /* default "PC-" */
		char *order_number_pattern; /* a regular expression; default below */
		char **notify_new_conversation; /* notifier instance names */
		size_t n_notify_new_conversation;
	} ingest;
	struct {
		bool enabled;            /* default true: run the job runner */
		int concurrency;         /* default 16 */
		int lease_ms;            /* default 60000 */
		int max_attempts;        /* default 10 */
		int backoff_base_ms;     /* default 1000 */
		int backoff_max_ms;      /* default 3600000 */
		int sweep_interval_ms;   /* default 5000 */
		int unclaimed_notice_ms; /* default 300000: a job no running node can take raises a notice */
		char **notify_delivery_failed; /* notifier instance names */
		size_t n_notify_delivery_failed;
	} jobs;
	struct {
		int session_idle_minutes; /* default 720: a browser session unused this long ends */
		int session_max_hours;   /* default 168: every browser session ends after this */
	} api;
	struct {
		int away_grace_seconds;  /* default 300: an away agent's conversations return to the queue */
		int sweep_interval_ms;   /* default 5000: how often the queues are swept */
	} assignment;
	struct {
		int max_clients;         /* default 2000: event streams on this node */
		int heartbeat_ms;        /* default 15000 */
		int replay_max;          /* default 10000: a resume further behind gets a reset */
		int retention_s;         /* default 86400 */
	} live_events;
	cfg_instance *channels;  size_t n_channels;
	cfg_instance *sinks;     size_t n_sinks;
	cfg_instance *notifiers; size_t n_notifiers;
	json_t *notices;            /* "notices" rules, validated: [{notifier, kinds?, filters...}] */
	/* The file writes a cluster key (a sink's route included): only then can
	 * it disagree with the cluster policy. */
	bool writes_cluster_keys;
} cfg;

/* The default ingest.order_number_pattern: "order", up to 12 other
 * characters ("#", " no. ", " number: "), then the number (the capture group). */
#define CFG_DEFAULT_ORDER_PATTERN "order[^0-9]{0,12}([0-9][0-9A-Z-]{3,})"

/* Load and validate `file`. On success returns true and *out (owned by the
 * caller, free with cfg_free). On failure writes "FILE: PATH: reason" into
 * err and returns false. */
PARLEY_MUSTCHECK
bool cfg_load(const char *file, cfg **out, char *err, size_t errlen);
void cfg_free(cfg *c);

/* The settings whose change takes a restart and that differ between the
 * running configuration `cur` and the reloaded `next`, as JSON paths
 * ("listen, jobs.concurrency, sinks (the set of instances)") into out.
 * Returns how many; 0 leaves out empty. */
size_t cfg_restart_changes(const cfg *cur, const cfg *next, char *out, size_t outlen);

/* Print the reference of every core setting (path, type, default, range,
 * whether SIGHUP applies it, meaning): plain text, or the Markdown that
 * docs/CONFIG.md holds. */
void cfg_print_reference(FILE *out, bool markdown);

/* ---- node settings and cluster policy
 *
 * Rows of the settings table marked cluster scope (and sinks' routes) are
 * the cluster policy: stored in PostgreSQL with a version, shared by every
 * node (core/policy.h). A policy file holds only those keys. */

/* Load and validate a policy file: syntax, types, ranges; a node setting in
 * it is an error. Instance names are not checked (each node does). Errors
 * read "FILE: PATH: reason". */
PARLEY_MUSTCHECK
bool cfg_policy_load(const char *file, cfg **out, char *err, size_t errlen);
/* The same for a stored body; `what` starts the errors ("cluster policy version 3"). */
PARLEY_MUSTCHECK
bool cfg_policy_parse(json_t *body, const char *what, cfg **out, char *err, size_t errlen);
/* The cluster part of c, canonical: every cluster key with defaults filled
 * in, sinks' routes sorted by name. A new reference. */
json_t *cfg_cluster_json(const cfg *c);
/* Copy every cluster value of `policy` into the node configuration `node`. */
void cfg_take_cluster(cfg *node, const cfg *policy);
/* The paths ("ingest.case_prefix, notices") where two canonical cluster
 * JSONs differ, into out; returns how many. */
size_t cfg_cluster_differences(const json_t *a, const json_t *b, char *out, size_t outlen);
/* The instance names `policy` uses that `node` does not load
 * ("notices[0].notifier \"ops\""), into out; returns how many. */
size_t cfg_policy_unknown_names(const cfg *node, const cfg *policy, char *out, size_t outlen);
/* The sink instances `node` loads that `policy` gives no route (they take
 * no conversations), comma-separated into out; returns how many. */
size_t cfg_policy_unrouted_sinks(const cfg *node, const cfg *policy, char *out, size_t outlen);

/* Validate a plugin instance's "config" object against the plugin's declared
 * keys: unknown keys, wrong types, missing required keys. `path` is the
 * instance's JSON path ("channels[2]"); errors read
 * "FILE: channels[2].config.KEY: reason". */
PARLEY_MUSTCHECK
bool cfg_validate_plugin_config(const char *file, const char *path, json_t *config,
                                const parley_config_key *keys, char *err, size_t errlen);

/* Resolve a "$env:NAME" / "$file:PATH" string, or copy a plain one.
 * Returns a malloc'd string or NULL with a reason in err (no value in it).
 * $file: values lose one trailing newline. */
char *cfg_resolve_string(const char *value, char *err, size_t errlen);

/* Is `name` a valid instance name ([A-Za-z0-9_-]{1,64})? */
bool cfg_name_is_url_safe(const char *name);

#endif
