/* config_settings.c - every core setting, declared once.
 *
 * One table per section: key, type, where it lives in `cfg`, default,
 * range, whether SIGHUP applies a change, and what it means. The loader
 * (config_schema.c) reads, defaults and range-checks from these rows, the
 * reload names the restart-only keys that changed from them, and
 * `parleyd --help-config` prints them; docs/CONFIG.md holds that print
 * (a test compares the two). A setting whose value needs more than a type
 * and a range has a `parse` function here, next to its row. */
#include "config_internal.h"

#include <ctype.h>
#include <limits.h>
#include <regex.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "jobs.h"
#include "util.h"

#ifndef PARLEY_PLUGIN_DIR
#define PARLEY_PLUGIN_DIR "/usr/local/lib/parley/plugins"
#endif

#define NO_MAX INT_MAX
#define OFF(field) offsetof(cfg, field)

/* ------------------------------------------------------------------------ */
/* Values that need more than a type and a range                            */
/* ------------------------------------------------------------------------ */

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool parse_port(const char *s, int *port)
{
	if (*s == '\0' || strlen(s) > 5)
		return false;
	int n = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		n = n * 10 + (*p - '0');
	}
	if (n < 1 || n > 65535)
		return false;
	*port = n;
	return true;
}

/* "HOST:PORT" or "[IPV6]:PORT". The value is not echoed: messages say
 * what shape is expected instead. */
static bool parse_listen(const cfg_ctx *ctx, const char *path, const char *listen, cfg *c)
{
	static const char shape[] = "expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080";
	const char *host_start, *host_end, *port;

	if (listen[0] == '[') {
		host_start = listen + 1;
		host_end = strchr(host_start, ']');
		if (host_end == NULL || host_end[1] != ':')
			return cfg_fail(ctx, path, "%s", shape);
		port = host_end + 2;
	} else {
		host_start = listen;
		host_end = strrchr(listen, ':');
		if (host_end == NULL)
			return cfg_fail(ctx, path, "%s", shape);
		if (memchr(listen, ':', (size_t)(host_end - listen)) != NULL)
			return cfg_fail(ctx, path, "an IPv6 address goes in brackets, e.g. [::1]:8080");
		port = host_end + 1;
	}
	if (host_end == host_start)
		return cfg_fail(ctx, path, "%s", shape);
	for (const char *p = host_start; p < host_end; p++)
		if ((unsigned char)*p <= ' ' || *p == '/' || *p == '[' || *p == ']')
			return cfg_fail(ctx, path, "%s", shape);
	if (!parse_port(port, &c->listen_port))
		return cfg_fail(ctx, path, "port must be between 1 and 65535");
	free(c->listen_host);
	c->listen_host = xstrndup(host_start, (size_t)(host_end - host_start));
	return true;
}

static bool same_listen(const cfg *a, const cfg *b)
{
	return strcmp(a->listen_host, b->listen_host) == 0 && a->listen_port == b->listen_port;
}

/* Stored without trailing slashes, so "public_url + /webhooks/x" is right. */
static bool parse_public_url(const cfg_ctx *ctx, const char *path, const char *url, cfg *c)
{
	const char *rest;
	if (starts_with(url, "https://"))
		rest = url + strlen("https://");
	else if (starts_with(url, "http://"))
		rest = url + strlen("http://");
	else
		return cfg_fail(ctx, path, "must start with http:// or https://");
	if (rest[0] == '\0' || rest[0] == '/')
		return cfg_fail(ctx, path, "has no host after the scheme");
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return cfg_fail(ctx, path, "must not contain spaces or control characters");
	size_t len = strlen(url);
	while (len > 0 && url[len - 1] == '/')
		len--;
	free(c->public_url);
	c->public_url = xstrndup(url, len);
	return true;
}

static bool parse_plugin_dir(const cfg_ctx *ctx, const char *path, const char *dir, cfg *c)
{
	if (dir[0] == '\0')
		return cfg_fail(ctx, path, "must not be empty");
	free(c->plugin_dir);
	c->plugin_dir = cfg_resolve_relative(ctx->base_dir, dir);
	return true;
}

static bool parse_log_level(const cfg_ctx *ctx, const char *path, const char *level, cfg *c)
{
	if (!log_parse_level(level, &c->log.level))
		return cfg_fail(ctx, path, "must be one of error, warn, info, debug");
	return true;
}

static bool parse_log_format(const cfg_ctx *ctx, const char *path, const char *format, cfg *c)
{
	if (strcmp(format, "text") == 0)
		c->log.json = false;
	else if (strcmp(format, "json") == 0)
		c->log.json = true;
	else
		return cfg_fail(ctx, path, "must be text or json");
	return true;
}

static bool parse_case_prefix(const cfg_ctx *ctx, const char *path, const char *prefix, cfg *c)
{
	size_t n = strlen(prefix);
	bool ok = n >= 1 && n <= 16;
	for (size_t i = 0; ok && i < n; i++)
		ok = isalnum((unsigned char)prefix[i]) || prefix[i] == '-' || prefix[i] == '_';
	if (!ok)
		return cfg_fail(ctx, path, "must be 1..16 of A-Z a-z 0-9 - _");
	free(c->ingest.case_prefix);
	c->ingest.case_prefix = xstrdup(prefix);
	return true;
}

/* A regular expression the database evaluates (PostgreSQL's flavour is a
 * superset of POSIX extended syntax): checked here so a typo is a config
 * error at start-up, not a failing batch later. */
static bool parse_order_pattern(const cfg_ctx *ctx, const char *path, const char *pattern, cfg *c)
{
	if (pattern[0] == '\0')
		return cfg_fail(ctx, path, "must not be empty");
	regex_t re;
	int rc = regcomp(&re, pattern, REG_EXTENDED | REG_ICASE);
	if (rc != 0) {
		char why[128];
		regerror(rc, &re, why, sizeof(why));
		return cfg_fail(ctx, path, "invalid regular expression: %s", why);
	}
	regfree(&re);
	free(c->ingest.order_number_pattern);
	c->ingest.order_number_pattern = xstrdup(pattern);
	return true;
}

/* ------------------------------------------------------------------------ */
/* The tables                                                               */
/* ------------------------------------------------------------------------ */

static const cfg_setting database_rows[] = {
	{ .key = "dsn", .type = CFG_T_STRING, .offset = OFF(database.dsn), .flags = CFG_REQUIRED,
	  .doc = "libpq connection string, either `key=value` pairs (`\"host=db dbname=parley "
	         "user=parley\"`) or a URI (`\"postgresql://parley@db/parley\"`). Put the password "
	         "in `$env:`/`$file:`, or in `~/.pgpass` / `PGPASSWORD`, not in the file. libpq "
	         "resolves a host *name* with a blocking lookup while connecting (which stalls the "
	         "event loop for that long, also on every reconnect): give an IP address "
	         "(`host=10.0.0.5`), `hostaddr=`, or a Unix socket directory." },
	{ .key = "pool_size", .type = CFG_T_INT, .offset = OFF(database.pool_size),
	  .def = 4, .min = 1, .max = DB_MAX_POOL,
	  .doc = "Connections kept open. All work shares them; batches queue when all are busy." },
	{ .key = "connect_timeout_ms", .type = CFG_T_INT, .offset = OFF(database.connect_timeout_ms),
	  .def = 5000, .min = 100, .max = NO_MAX,
	  .doc = "Time allowed to establish one connection." },
	{ .key = "query_timeout_ms", .type = CFG_T_INT, .offset = OFF(database.query_timeout_ms),
	  .def = 10000, .min = 100, .max = NO_MAX,
	  .doc = "A batch of statements waiting or running longer fails. A webhook whose batch "
	         "fails is answered 503 so the platform retries." },
	{ .key = "migrate_on_start", .type = CFG_T_BOOL, .offset = OFF(database.migrate_on_start),
	  .def = true,
	  .doc = "Apply the embedded `sql/` migrations at start, under an advisory lock so several "
	         "daemons starting together apply each one once. With `false`, run "
	         "`parleyd -c FILE --migrate` yourself before starting a new version." },
	{ .key = NULL },
};

static const cfg_setting log_rows[] = {
	{ .key = "level", .type = CFG_T_STRING, .def_str = "info", .parse = parse_log_level,
	  .flags = CFG_RELOAD, .doc_range = "`\"error\"`, `\"warn\"`, `\"info\"`, `\"debug\"`",
	  .doc = "The least severe messages written. Secrets are never logged at any level." },
	{ .key = "format", .type = CFG_T_STRING, .def_str = "text", .parse = parse_log_format,
	  .flags = CFG_RELOAD, .doc_range = "`\"text\"`, `\"json\"`",
	  .doc = "`\"text\"`: one readable line per event; `\"json\"`: one JSON object per line. "
	         "Logs go to standard error." },
	{ .key = NULL },
};

static const cfg_setting limits_rows[] = {
	{ .key = "max_body_bytes", .type = CFG_T_SIZE, .offset = OFF(limits.max_body_bytes),
	  .def = 4 * 1024 * 1024, .min = 1024, .max = NO_MAX, .flags = CFG_RELOAD,
	  .doc_default = "`4194304` (4 MiB)",
	  .doc = "Largest request body. Larger ones are answered 413; the rest of the body is read "
	         "and discarded for up to 5 s and 64 MiB (so a client that did not wait for "
	         "`100 Continue` still reads the answer), then the connection is closed." },
	{ .key = "max_header_bytes", .type = CFG_T_SIZE, .offset = OFF(limits.max_header_bytes),
	  .def = 16 * 1024, .min = 1024, .max = NO_MAX, .flags = CFG_RELOAD,
	  .doc_default = "`16384` (16 KiB)",
	  .doc = "Largest request line plus headers. Larger ones are answered 431." },
	{ .key = "read_timeout_ms", .type = CFG_T_INT, .offset = OFF(limits.read_timeout_ms),
	  .def = 10000, .min = 100, .max = NO_MAX, .flags = CFG_RELOAD,
	  .doc = "The whole request must arrive within this time; a half-sent request is answered "
	         "408 and closed." },
	{ .key = "write_timeout_ms", .type = CFG_T_INT, .offset = OFF(limits.write_timeout_ms),
	  .def = 10000, .min = 100, .max = NO_MAX, .flags = CFG_RELOAD,
	  .doc = "Time allowed for a client to take the response." },
	{ .key = "idle_timeout_ms", .type = CFG_T_INT, .offset = OFF(limits.idle_timeout_ms),
	  .def = 60000, .min = 100, .max = NO_MAX, .flags = CFG_RELOAD,
	  .doc = "A keep-alive connection with no request for this long is closed." },
	{ .key = "max_connections", .type = CFG_T_INT, .offset = OFF(limits.max_connections),
	  .def = 1024, .min = 1, .max = 100000, .flags = CFG_RELOAD,
	  .doc = "Client connections open at once." },
	{ .key = "shutdown_timeout_ms", .type = CFG_T_INT, .offset = OFF(limits.shutdown_timeout_ms),
	  .def = 10000, .min = 0, .max = NO_MAX, .flags = CFG_RELOAD,
	  .doc = "On SIGTERM/SIGINT the daemon stops accepting connections and lets in-flight "
	         "requests commit and be answered; after this long it stops anyway. `0` stops at "
	         "once." },
	{ .key = "max_output_bytes", .type = CFG_T_SIZE, .offset = OFF(limits.max_output_bytes),
	  .def = 1024 * 1024, .min = 4096, .max = NO_MAX, .flags = CFG_RELOAD,
	  .doc_default = "`1048576` (1 MiB)",
	  .doc = "Answer bytes a client may leave unread on one connection. A streamed answer "
	         "(live events) to a client that reads slower than it is written is ended and the "
	         "connection closed, instead of buffering without bound." },
	{ .key = NULL },
};

static const cfg_setting ingest_rows[] = {
	{ .key = "batch_max_events", .type = CFG_T_INT, .offset = OFF(ingest.batch_max_events),
	  .def = 500, .min = 1, .max = 10000, .flags = CFG_RELOAD,
	  .doc = "A batch is flushed as soon as it holds this many events (a request's events are "
	         "never split). A batch holds about two advisory locks per event until it commits; "
	         "PostgreSQL's lock table has room for `max_locks_per_transaction × max_connections` "
	         "(64 × 100 by default), so above ~1000 raise `max_locks_per_transaction`. A batch "
	         "that runs out is retried request by request." },
	{ .key = "batch_max_delay_ms", .type = CFG_T_INT, .offset = OFF(ingest.batch_max_delay_ms),
	  .def = 2, .min = 0, .max = 1000, .flags = CFG_RELOAD,
	  .doc = "…or this long after its first request arrived. `0` flushes every request at once "
	         "(no gathering). The delay is added to each acknowledgement at low load; at high "
	         "load batches fill up before it ends." },
	{ .key = "max_inflight_batches", .type = CFG_T_INT, .offset = OFF(ingest.max_inflight_batches),
	  .def = 3, .min = 1, .max = 64, .flags = CFG_RELOAD,
	  .doc = "Batches being committed at once. While all are busy, new requests gather into the "
	         "next batch. Keep it below `database.pool_size` so the job runner keeps a "
	         "connection. (In a `bench/ingest/run.sh --sweep` on 2 cores, 3 gave the best "
	         "throughput and the lowest acknowledgement latency at a steady 800 events/s.)" },
	{ .key = "reopen_window_s", .type = CFG_T_INT, .offset = OFF(ingest.reopen_window_s),
	  .def = 7 * 24 * 3600, .min = 0, .max = NO_MAX, .flags = CFG_RELOAD | CFG_CLUSTER,
	  .doc_default = "`604800` (7 days)",
	  .doc = "A customer's new private message (or public reply in the same thread) reopens "
	         "their conversation if it was resolved less than this long ago; otherwise it starts "
	         "a new conversation." },
	{ .key = "auto_merge_verified_email", .type = CFG_T_BOOL,
	  .offset = OFF(ingest.auto_merge_verified_email), .def = true, .flags = CFG_RELOAD | CFG_CLUSTER,
	  .doc = "A new identity whose platform vouches for its e-mail address (the e-mail channel) "
	         "joins the existing customer who has the same *verified* address. Unverified "
	         "addresses never merge." },
	{ .key = "auto_merge_verified_phone", .type = CFG_T_BOOL,
	  .offset = OFF(ingest.auto_merge_verified_phone), .def = true, .flags = CFG_RELOAD | CFG_CLUSTER,
	  .doc = "The same for a verified phone number (WhatsApp)." },
	{ .key = "case_prefix", .type = CFG_T_STRING, .offset = OFF(ingest.case_prefix),
	  .def_str = "PC-", .parse = parse_case_prefix,
	  .flags = CFG_RELOAD | CFG_CLUSTER, .doc_range = "1..16 of `A-Z a-z 0-9 - _`",
	  .doc = "Case numbers are this prefix and a number, e.g. `PC-10234`. A message that "
	         "mentions one links its conversation to that case." },
	{ .key = "order_number_pattern", .type = CFG_T_STRING,
	  .offset = OFF(ingest.order_number_pattern), .def_str = CFG_DEFAULT_ORDER_PATTERN,
	  .parse = parse_order_pattern, .flags = CFG_RELOAD | CFG_CLUSTER,
	  .doc = "A regular expression (POSIX extended syntax, matched case-insensitively by "
	         "PostgreSQL) finding order numbers in messages; if it has a capture group, the "
	         "group is the number. A message mentioning an order number seen in an earlier case "
	         "links to that case. Checked at start-up." },
	{ .key = "notify_new_conversation", .type = CFG_T_NAMES,
	  .offset = OFF(ingest.notify_new_conversation),
	  .offset_n = OFF(ingest.n_notify_new_conversation), .flags = CFG_RELOAD | CFG_CLUSTER,
	  .doc_range = "notifier instance names",
	  .doc = "For each new conversation a customer starts, a `deliver` job (`kind` "
	         "`conversation.created`) for each of these notifiers, written in the same "
	         "transaction as the message. Echoes of the brand's own messages never start one. "
	         "Each name must be a configured notifier." },
	{ .key = NULL },
};

static const cfg_setting jobs_rows[] = {
	{ .key = "enabled", .type = CFG_T_BOOL, .offset = OFF(jobs.enabled), .def = true,
	  .doc = "Run the job runner in this process." },
	{ .key = "concurrency", .type = CFG_T_INT, .offset = OFF(jobs.concurrency),
	  .def = 16, .min = 1, .max = JOBS_MAX_CONCURRENCY,
	  .doc = "Jobs being carried out at once by this process." },
	{ .key = "lease_ms", .type = CFG_T_INT, .offset = OFF(jobs.lease_ms),
	  .def = 60000, .min = JOBS_MIN_LEASE_MS, .max = NO_MAX,
	  .doc = "A claimed job belongs to its runner for this long; if the runner dies, another "
	         "one claims it after the lease. A plugin that has not finished a job before its "
	         "lease ends is treated as a timeout (retry)." },
	{ .key = "max_attempts", .type = CFG_T_INT, .offset = OFF(jobs.max_attempts),
	  .def = 10, .min = 1, .max = 1000,
	  .doc = "Attempts before a retried job is moved to `dead` (a job may set its own)." },
	{ .key = "backoff_base_ms", .type = CFG_T_INT, .offset = OFF(jobs.backoff_base_ms),
	  .def = 1000, .min = 1, .max = NO_MAX,
	  .doc = "Retries wait a random time between 0 and `backoff_base_ms × 2^(attempt-1)` "
	         "(full jitter)…" },
	{ .key = "backoff_max_ms", .type = CFG_T_INT, .offset = OFF(jobs.backoff_max_ms),
	  .def = 3600000, .min = 1, .max = NO_MAX, .doc_range = "≥ `backoff_base_ms`",
	  .doc = "…capped at this. A plugin's own retry time (Retry-After) is honoured: a job never "
	         "runs before it." },
	{ .key = "sweep_interval_ms", .type = CFG_T_INT, .offset = OFF(jobs.sweep_interval_ms),
	  .def = 5000, .min = JOBS_MIN_SWEEP_MS, .max = NO_MAX,
	  .doc = "The runner is woken by `LISTEN/NOTIFY` when jobs are added; it also looks for due "
	         "jobs (retries, expired leases) this often." },
	{ .key = "unclaimed_notice_ms", .type = CFG_T_INT, .offset = OFF(jobs.unclaimed_notice_ms),
	  .def = 300000, .min = 100, .max = NO_MAX,
	  .doc = "A queued job whose target (`kind/instance`) no running node has loaded, due for "
	         "longer than this, raises one `job.unclaimed` notice for that target "
	         "([JOBS.md](JOBS.md#targets-and-nodes)). The job keeps waiting for a node that has "
	         "the instance." },
	{ .key = "notify_delivery_failed", .type = CFG_T_NAMES,
	  .offset = OFF(jobs.notify_delivery_failed), .offset_n = OFF(jobs.n_notify_delivery_failed),
	  .flags = CFG_CLUSTER,
	  .doc_range = "notifier instance names",
	  .doc = "Each gets a `delivery.failed` notice when a reply to a customer does not go out "
	         "(its send job is dead: refused by the channel, e.g. outside a messaging window, or "
	         "by the platform, or out of attempts)." },
	{ .key = NULL },
};

static const cfg_setting api_rows[] = {
	{ .key = "session_idle_minutes", .type = CFG_T_INT, .offset = OFF(api.session_idle_minutes),
	  .def = 720, .min = 1, .max = 525600,
	  .doc_default = "`720` (12 hours)",
	  .doc = "A browser session (`POST /api/v1/session`) that makes no request for this long "
	         "ends; the agent logs in again. Each session keeps the value of the node that "
	         "logged it in (checked to the minute)." },
	{ .key = "session_max_hours", .type = CFG_T_INT, .offset = OFF(api.session_max_hours),
	  .def = 168, .min = 1, .max = 8760,
	  .doc_default = "`168` (7 days)",
	  .doc = "Every browser session ends this long after the login, used or not (also the "
	         "cookie's `Max-Age`). Disabling an agent or changing their password ends their "
	         "sessions at once." },
	{ .key = NULL },
};

static const cfg_setting assignment_rows[] = {
	{ .key = "away_grace_seconds", .type = CFG_T_INT, .offset = OFF(assignment.away_grace_seconds),
	  .def = 300, .min = 0, .max = NO_MAX, .flags = CFG_RELOAD | CFG_CLUSTER,
	  .doc = "When an agent has been `away` or `offline` this long, the open and pending "
	         "conversations assigned to them before they left return to their team's queue "
	         "(a disabled agent's at once). `0` returns them at the next sweep." },
	{ .key = "sweep_interval_ms", .type = CFG_T_INT, .offset = OFF(assignment.sweep_interval_ms),
	  .def = 5000, .min = JOBS_MIN_SWEEP_MS, .max = NO_MAX, .flags = CFG_RELOAD,
	  .doc = "The queues are swept (the `core/assignment/sweep` job: conversations of agents "
	         "away past the grace period go back to the queue, and the queues are served where "
	         "agents have room) at least this often, and at once when an API call frees an "
	         "agent's capacity. One sweep runs at a time in the cluster, on any node; give the "
	         "nodes the same value. Only nodes with `jobs.enabled` schedule it." },
	{ .key = NULL },
};

static const cfg_setting live_events_rows[] = {
	{ .key = "max_clients", .type = CFG_T_INT, .offset = OFF(live_events.max_clients),
	  .def = 2000, .min = 1, .max = 100000, .flags = CFG_RELOAD,
	  .doc = "Event streams (`GET /api/v1/events`) this node serves at once; more are answered "
	         "503 with `Retry-After`. Each stream is also a connection (`limits.max_connections`)." },
	{ .key = "heartbeat_ms", .type = CFG_T_INT, .offset = OFF(live_events.heartbeat_ms),
	  .def = 15000, .min = 100, .max = 3600000, .flags = CFG_RELOAD,
	  .doc = "A comment line (`: ping`) goes to every stream this often, so proxies keep idle "
	         "streams open and clients notice a dead one." },
	{ .key = "replay_max", .type = CFG_T_INT, .offset = OFF(live_events.replay_max),
	  .def = 10000, .min = 1, .max = 10000000, .flags = CFG_RELOAD,
	  .doc = "A client resuming with `Last-Event-ID` more than this many events behind gets an "
	         "event `reset` (reload) instead of the missed events; a connected client that falls "
	         "this far behind is dropped." },
	{ .key = "retention_s", .type = CFG_T_INT, .offset = OFF(live_events.retention_s),
	  .def = 86400, .min = 60, .max = NO_MAX, .flags = CFG_RELOAD,
	  .doc_default = "`86400` (24 h)",
	  .doc = "Events older than this are deleted (a few at a time, once a minute), and so can no "
	         "longer be resumed from: such a client gets `reset`. Every node deletes with its "
	         "own value, so set the same on all of them." },
	{ .key = NULL },
};

static const cfg_section database_section = {
	.path = "database", .title = "`database`", .rows = database_rows,
};

static const cfg_section log_section = {
	.path = "log", .title = "`log`", .rows = log_rows,
};

static const cfg_section limits_section = {
	.path = "limits", .title = "`limits`", .rows = limits_rows,
	.intro = "Integers written as \"≥ N\" accept values up to 2147483647.",
};

static const cfg_section ingest_section = {
	.path = "ingest", .title = "`ingest`", .rows = ingest_rows,
	.intro = "Inbound events from concurrent requests are committed together: the core gathers "
	         "them into a batch and writes the batch in one transaction; every request of the "
	         "batch is answered after the commit (503 with `Retry-After` if it fails, and then "
	         "nothing of it is written). If a batch of several requests fails while the database "
	         "is up, each of its requests is retried alone, so one request the database refuses "
	         "cannot fail its neighbours. The rules applied to each event are described in "
	         "[DATA_MODEL.md](DATA_MODEL.md).",
};

static const cfg_section api_section = {
	.path = "api", .title = "`api`", .rows = api_rows,
	.intro = "The agent API under `/api/v1` (docs/api/openapi.yaml). Cookies get `Secure` when "
	         "`public_url` starts with `https://`.",
};

static const cfg_section assignment_section = {
	.path = "assignment", .title = "`assignment`", .rows = assignment_rows,
	.intro = "Conversations that need an agent wait in their team's queue and go to an `online` "
	         "agent of the team with room under their capacity. See "
	         "[DATA_MODEL.md](DATA_MODEL.md#assignment).",
};

static const cfg_section jobs_section = {
	.path = "jobs", .title = "`jobs`", .rows = jobs_rows,
	.intro = "Every outbound action (a reply, a ticket, a notice) is a row in the `job` table "
	         "written in the same transaction as what caused it; every running `parleyd` claims "
	         "due jobs (several daemons share the work and never run one job twice at once). "
	         "See [JOBS.md](JOBS.md).",
};

static const cfg_section live_events_section = {
	.path = "live_events", .title = "`live_events`", .rows = live_events_rows,
	.intro = "The agent API's event stream: Server-Sent Events whose ids are kept in PostgreSQL, "
	         "so a client resumes with `Last-Event-ID` on any node. Nothing beyond "
	         "`limits.max_output_bytes` is ever buffered for a client: one that falls behind "
	         "catches up from the database at the pace it reads, and one that takes nothing for "
	         "`limits.write_timeout_ms` is dropped.",
};

#define INSTANCE_RELOAD "the set of instances: restart; each `config`: yes"

static const cfg_setting root_rows[] = {
	{ .key = "listen", .type = CFG_T_STRING, .def_str = "127.0.0.1:8080", .parse = parse_listen,
	  .same = same_listen,
	  .doc = "Address and port the HTTP server binds: `\"HOST:PORT\"`. IPv6 addresses go in "
	         "brackets: `\"[::1]:8080\"`, `\"[::]:8080\"`. HOST may be an IP literal or a name "
	         "such as `localhost`. PORT is 1..65535." },
	{ .key = "public_url", .type = CFG_T_STRING, .offset = OFF(public_url),
	  .parse = parse_public_url, .doc_default = "`\"http://\"` + `listen`",
	  .doc = "The base URL platforms and people use to reach this server, e.g. "
	         "`\"https://parley.example.com\"` behind a reverse proxy. Must start with `http://` "
	         "or `https://` and have a host. Trailing slashes are removed." },
	{ .key = "database", .type = CFG_T_SECTION, .section = &database_section,
	  .flags = CFG_REQUIRED, .doc = "PostgreSQL; see [`database`](#database)." },
	{ .key = "plugin_dir", .type = CFG_T_STRING, .offset = OFF(plugin_dir),
	  .def_str = PARLEY_PLUGIN_DIR, .parse = parse_plugin_dir,
	  .doc_default = "set at build time (`$(libdir)/parley/plugins`, e.g. "
	                 "`/usr/local/lib/parley/plugins`)",
	  .doc = "Folder holding the plugins' `.so` files. A relative path is relative to the config "
	         "file's folder. Must not be empty." },
	{ .key = "log", .type = CFG_T_SECTION, .section = &log_section,
	  .doc = "Log level and format." },
	{ .key = "limits", .type = CFG_T_SECTION, .section = &limits_section,
	  .doc = "Sizes and timeouts for inbound HTTP and shutdown." },
	{ .key = "ingest", .type = CFG_T_SECTION, .section = &ingest_section,
	  .doc = "Batching of inbound events, threading, identity merging, case linking." },
	{ .key = "jobs", .type = CFG_T_SECTION, .section = &jobs_section,
	  .doc = "The job runner (outbox) that carries out every outbound action." },
	{ .key = "api", .type = CFG_T_SECTION, .section = &api_section,
	  .doc = "Browser sessions of the agent API." },
	{ .key = "assignment", .type = CFG_T_SECTION, .section = &assignment_section,
	  .doc = "Team queues and automatic assignment to agents." },
	{ .key = "live_events", .type = CFG_T_SECTION, .section = &live_events_section,
	  .doc = "The agent API's event stream: streams per node, heartbeat, resume, retention." },
	{ .key = "channels", .type = CFG_T_LIST, .parse_list = cfg_read_channels,
	  .same = cfg_same_channels, .doc_reload = INSTANCE_RELOAD,
	  .doc = "Channel plugin instances (platforms talking to Parley); see "
	         "[Plugin instances](#plugin-instances-channels-sinks-notifiers)." },
	{ .key = "sinks", .type = CFG_T_LIST, .parse_list = cfg_read_sinks,
	  .same = cfg_same_sinks, .parse_policy = cfg_read_sink_routes, .dump = cfg_dump_sink_routes,
	  .copy = cfg_copy_sink_routes, .doc_reload = INSTANCE_RELOAD,
	  .doc_scope = "node; each `route`: cluster",
	  .doc = "Sink plugin instances (ticket systems)." },
	{ .key = "notifiers", .type = CFG_T_LIST, .parse_list = cfg_read_notifiers,
	  .same = cfg_same_notifiers, .doc_reload = INSTANCE_RELOAD,
	  .doc = "Notifier plugin instances (Slack, e-mail, webhooks)." },
	{ .key = "notices", .type = CFG_T_LIST, .parse_list = cfg_read_notices,
	  .flags = CFG_RELOAD | CFG_CLUSTER, .dump = cfg_dump_notices, .copy = cfg_copy_notices,
	  .doc = "Which notices go to which notifier; see [`notices`](#notices)." },
	{ .key = NULL },
};

const cfg_section cfg_root_section = {
	.path = "", .title = "Top-level keys", .rows = root_rows,
};
