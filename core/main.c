/* main.c - parleyd: command line, start-up, signals, shutdown.
 *
 * Exit codes: 0 clean stop, 1 runtime failure (database, bind, plugin start),
 * 2 configuration or usage error. */
#include "config.h"   /* core/config.h: the configuration */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <jansson.h>

#include "assignment.h"
#include "cli.h"
#include "db.h"
#include "host_api.h"
#include "http_client.h"
#include "http_server.h"
#include "ingest_batch.h"
#include "jobs.h"
#include "live_events.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "plugin_loader.h"
#include "policy.h"
#include "api.h"
#include "api_sends.h"
#include "password_worker.h"
#include "router.h"
#include "util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif

#define EXIT_CONFIG CLI_EXIT_CONFIG
#define DRAIN_POLL_MS 20
#define HTTP_CLIENT_TIMEOUT_MS 30000
#define HTTP_CLIENT_MAX_RESPONSE (16u * 1024 * 1024)

static struct {
	struct event_base *base;
	cfg *config;
	plugin_set *plugins;
	http_server *server;
	struct event *sig_term, *sig_int, *sig_hup, *drain_timer;
	bool stopping;
	uint64_t stop_started_us;
} d;

/* What a job's end may set off (parley_job_finish's p_opts). Owned by the caller. */
static char *finish_opts_json(const cfg *c)
{
	json_t *names = json_array();
	for (size_t i = 0; i < c->jobs.n_notify_delivery_failed; i++)
		json_array_append_new(names, json_string(c->jobs.notify_delivery_failed[i]));
	json_t *o = json_pack("{s:o}", "notify_delivery_failed", names);
	char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (s == NULL)
		abort();
	return s;
}

static http_server_limits limits_from(const cfg *c)
{
	http_server_limits l = {
		.max_body_bytes = c->limits.max_body_bytes,
		.max_header_bytes = c->limits.max_header_bytes,
		.read_timeout_ms = c->limits.read_timeout_ms,
		.write_timeout_ms = c->limits.write_timeout_ms,
		.idle_timeout_ms = c->limits.idle_timeout_ms,
		.max_connections = c->limits.max_connections,
		.max_output_bytes = c->limits.max_output_bytes,
	};
	return l;
}

/* ------------------------------------------------------------ shutdown */

static size_t work_in_flight(void)
{
	return http_server_inflight(d.server) + host_api_requests_pending() + router_pending() +
	       (size_t)db_pool_pending() + http_server_connections(d.server) + jobs_in_flight();
}

static void drain_check(evutil_socket_t fd, short what, void *arg)
{
	size_t left = work_in_flight();
	uint64_t waited_ms = (util_mono_us() - d.stop_started_us) / 1000;
	if (left == 0) {
		log_info("main", "drained; stopping");
		event_base_loopexit(d.base, NULL);
		return;
	}
	if (waited_ms >= (uint64_t)d.config->limits.shutdown_timeout_ms) {
		log_warn("main", "shutdown timeout: %zu requests/connections still open; stopping anyway", left);
		event_base_loopexit(d.base, NULL);
		return;
	}
	struct timeval tv = { 0, DRAIN_POLL_MS * 1000 };
	evtimer_add(d.drain_timer, &tv);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	if (d.stopping) {
		log_warn("main", "second stop signal: exiting now");
		event_base_loopbreak(d.base);
		return;
	}
	d.stopping = true;
	d.stop_started_us = util_mono_us();
	log_info("main", "%s: no new connections; finishing %zu in-flight requests",
	         sig == SIGTERM ? "SIGTERM" : "SIGINT", http_server_inflight(d.server));
	/* Order matters: stop taking work, let in-flight requests commit and be
	 * answered, then close. Plugins stop starting new work now. */
	router_set_draining(true);
	http_server_stop_accepting(d.server);
	jobs_stop();
	assignment_stop();
	live_events_stop();
	policy_stop();
	plugins_stop(d.plugins);
	drain_check(-1, 0, NULL);
}

/* -------------------------------------------------------------- reload */

static live_limits live_limits_from(const cfg *c)
{
	live_limits l = {
		.max_clients = c->live_events.max_clients,
		.heartbeat_ms = c->live_events.heartbeat_ms,
		.replay_max = c->live_events.replay_max,
		.retention_s = c->live_events.retention_s,
	};
	return l;
}

/* A new cluster policy version is in d.config: what SQL gets from it. */
static void policy_applied(void)
{
	ingest_batch_configure(d.base, d.config);
	assignment_configure(d.config);
	char *finish_opts = finish_opts_json(d.config);
	jobs_set_finish_opts(finish_opts);
	free(finish_opts);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	char err[2048];
	cfg *next = NULL;
	log_info("main", "SIGHUP: reloading %s", d.config->file);
	if (!cfg_load(d.config->file, &next, err, sizeof(err))) {
		log_error("main", "reload failed, keeping the old configuration: %s", err);
		return;
	}
	char changed[1024];
	if (cfg_restart_changes(d.config, next, changed, sizeof(changed)) > 0)
		log_warn("main", "reload: these changes take a restart and are ignored until then: %s",
		         changed);
	if (!plugins_reload(d.plugins, next, err, sizeof(err))) {
		log_error("main", "reload failed, keeping the old configuration: %s", err);
		cfg_free(next);
		return;
	}
	log_set_level(next->log.level);
	log_set_json(next->log.json);
	http_server_limits l = limits_from(next);
	http_server_set_limits(d.server, &l);
	live_limits ll = live_limits_from(next);
	live_events_set_limits(&ll);
	/* Cluster keys come from the cluster policy, not the file (policy.h). */
	policy_node_reloaded(next);
	ingest_batch_configure(d.base, next);
	assignment_configure(next);
	cfg_free(d.config);
	d.config = next;
	log_info("main", "reloaded: log level %s", log_level_name(next->log.level));
}

/* ----------------------------------------------------------------- run */

static int run(void)
{
	char err[2048];
	int rc = 1;

	if (d.config->database.migrate_on_start) {
		int applied = 0;
		if (!migrate_apply(d.config->database.dsn, &applied, err, sizeof(err))) {
			log_error("main", "migrations: %s", err);
			return 1;
		}
		if (applied > 0)
			log_info("main", "applied %d migration(s); schema version %d", applied, migrate_latest_version());
	}

	/* Before any event can be ingested: the cluster policy in force (ingest
	 * rules, what goes to which sink and notifier). A schema too old for it
	 * (not migrated yet) is not fatal: the server still answers /healthz and
	 * /readyz says why it is not ready. */
	policy_start(d.config->database.dsn, d.config);

	d.base = event_base_new();
	if (d.base == NULL) {
		log_error("main", "cannot create the event loop");
		return 1;
	}
	host_api_set_base(d.base);
	if (!http_client_init(d.base, HTTP_CLIENT_TIMEOUT_MS, HTTP_CLIENT_MAX_RESPONSE)) {
		log_error("main", "cannot initialise the HTTP client");
		goto out;
	}
	db_pool_options dbo = {
		.dsn = d.config->database.dsn,
		.pool_size = d.config->database.pool_size,
		.connect_timeout_ms = d.config->database.connect_timeout_ms,
		.query_timeout_ms = d.config->database.query_timeout_ms,
	};
	if (!db_pool_start(d.base, &dbo)) {
		log_error("main", "cannot start the database pool");
		goto out;
	}
	ingest_batch_configure(d.base, d.config);
	if (!policy_watch(d.base, &d.config, policy_applied))
		goto out;
	if (!plugins_load(d.config, &d.plugins, err, sizeof(err))) {
		fprintf(stderr, "parleyd: %s\n", err);
		rc = EXIT_CONFIG;
		goto out;
	}
	router_init(d.plugins);
	api_sends_init(d.plugins, &d.config);
	api_options api_opts = {
		.cookie_secure = d.config->public_url != NULL && strncmp(d.config->public_url, "https:", 6) == 0,
		.session_idle_minutes = d.config->api.session_idle_minutes,
		.session_max_hours = d.config->api.session_max_hours,
	};
	api_init(&api_opts);
	/* Logins check passwords on a thread of their own, never on the loop. */
	if (!password_worker_start(d.base))
		goto out;
	http_server_limits l = limits_from(d.config);
	d.server = http_server_new(d.base, d.config->listen_host, d.config->listen_port, &l, router_handle,
	                           NULL, err, sizeof(err));
	if (d.server == NULL) {
		log_error("main", "cannot listen on %s:%d: %s", d.config->listen_host, d.config->listen_port, err);
		goto out;
	}
	live_options lo = {
		.dsn = d.config->database.dsn,
		.connect_timeout_ms = d.config->database.connect_timeout_ms,
		.limits = live_limits_from(d.config),
	};
	if (!live_events_start(d.base, &lo, err, sizeof(err))) {
		log_error("main", "%s", err);
		goto out;
	}
	if (!plugins_start(d.plugins, err, sizeof(err))) {
		log_error("main", "%s", err);
		goto out;
	}
	if (d.config->jobs.enabled) {
		char *finish_opts = finish_opts_json(d.config);
		jobs_options jo = {
			.dsn = d.config->database.dsn,
			.connect_timeout_ms = d.config->database.connect_timeout_ms,
			.concurrency = d.config->jobs.concurrency,
			.lease_ms = d.config->jobs.lease_ms,
			.max_attempts = d.config->jobs.max_attempts,
			.backoff_base_ms = d.config->jobs.backoff_base_ms,
			.backoff_max_ms = d.config->jobs.backoff_max_ms,
			.sweep_interval_ms = d.config->jobs.sweep_interval_ms,
			.unclaimed_notice_ms = d.config->jobs.unclaimed_notice_ms,
			.finish_opts_json = finish_opts,
		};
		bool started = jobs_start(d.base, &jo, d.plugins, err, sizeof(err));
		free(finish_opts);  /* copied by the runner */
		if (!started) {
			log_error("main", "job runner: %s", err);
			goto out;
		}
		assignment_configure(d.config);
		if (!assignment_start(d.base)) {
			log_error("main", "cannot start the assignment sweep timer");
			goto out;
		}
	}

	d.sig_term = evsignal_new(d.base, SIGTERM, on_stop_signal, NULL);
	d.sig_int = evsignal_new(d.base, SIGINT, on_stop_signal, NULL);
	d.sig_hup = evsignal_new(d.base, SIGHUP, on_hup, NULL);
	d.drain_timer = evtimer_new(d.base, drain_check, NULL);
	evsignal_add(d.sig_term, NULL);
	evsignal_add(d.sig_int, NULL);
	evsignal_add(d.sig_hup, NULL);

	log_info("main", "parleyd %s listening on %s:%d (%zu channel, %zu sink, %zu notifier instances)",
	         PACKAGE_VERSION, d.config->listen_host, http_server_port(d.server), d.config->n_channels,
	         d.config->n_sinks, d.config->n_notifiers);
	event_base_dispatch(d.base);
	rc = 0;
	log_info("main", "stopped");

out:
	/* Tear down in dependency order. Plugins stop first (they cancel their own
	 * timers). Then outbound transfers are aborted and database work fails,
	 * while plugins and HTTP requests still exist to receive those callbacks
	 * (a request still waiting on a commit gets its 503). Only then do the
	 * server, the plugins and the pool go away. */
	if (!d.stopping) {
		jobs_stop();
		assignment_stop();
		live_events_stop();
		if (d.plugins != NULL)
			plugins_stop(d.plugins);
	}
	http_client_shutdown();
	/* Before the pool: a login whose check ends now still gets its answer. */
	password_worker_stop();
	db_pool_stop();
	event_base_loop(d.base, EVLOOP_NONBLOCK);
	host_api_cancel_timers();
	jobs_free();
	assignment_free();
	live_events_free();
	ingest_batch_free();
	policy_free();
	if (d.server != NULL)
		http_server_free(d.server);
	if (d.plugins != NULL)
		plugins_free(d.plugins);
	if (d.sig_term) event_free(d.sig_term);
	if (d.sig_int) event_free(d.sig_int);
	if (d.sig_hup) event_free(d.sig_hup);
	if (d.drain_timer) event_free(d.drain_timer);
	event_base_loop(d.base, EVLOOP_NONBLOCK);
	metrics_reset();
	event_base_free(d.base);
	return rc;
}

/* The daemon: takes c; a SIGHUP swaps in the next one (d.config). */
static int run_daemon(cfg *c)
{
	d.config = c;
	int rc = run();
	cfg_free(d.config);
	d.config = NULL;
	return rc;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	return cli_main(argc, argv, run_daemon);
}
