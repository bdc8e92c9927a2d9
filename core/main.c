/* main.c - parleyd: command line, start-up, signals, shutdown.
 *
 * Exit codes: 0 clean stop, 1 runtime failure (database, bind, plugin start),
 * 2 configuration or usage error. */
#include "config.h"   /* core/config.h: the configuration */

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <jansson.h>

#include "admin.h"
#include "db.h"
#include "host_api.h"
#include "http_client.h"
#include "http_server.h"
#include "ingest_batch.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "plugin_loader.h"
#include "router.h"
#include "util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif
#ifndef PARLEY_PLUGIN_DIR
#define PARLEY_PLUGIN_DIR "/usr/local/lib/parley/plugins"
#endif

#define EXIT_CONFIG 2
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

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: parleyd -c FILE [--check-config | --migrate]\n"
	        "       parleyd -c FILE --merge-customer SOURCE --into TARGET [--actor NAME]\n"
	        "       parleyd -c FILE --unmerge AUDIT_ID [--actor NAME]\n"
	        "       parleyd -c FILE --reply CONVERSATION --text TEXT [--visibility V] [--actor NAME]\n"
	        "       parleyd -c FILE --move-to-private CONVERSATION --text TEXT [--public-text TEXT]\n"
	        "               [--actor NAME]\n"
	        "       parleyd --list-plugins [--plugin-dir DIR | -c FILE] [-v]\n"
	        "       parleyd --version\n"
	        "\n"
	        "  -c, --config FILE    the JSON configuration (see docs/CONFIG.md)\n"
	        "      --check-config   validate the configuration and the plugins' configs, then exit\n"
	        "      --migrate        apply database migrations, then exit\n"
	        "      --merge-customer SOURCE --into TARGET\n"
	        "                       merge customer SOURCE into TARGET (identities, conversations,\n"
	        "                       cases, contacts); prints the audit id that undoes it\n"
	        "      --unmerge AUDIT_ID\n"
	        "                       undo that merge: everything moves back\n"
	        "      --reply CONVERSATION --text TEXT\n"
	        "                       reply on the conversation's channel (queued; the job runner of\n"
	        "                       a running parleyd sends it); --visibility public|private must be\n"
	        "                       the conversation's own\n"
	        "      --move-to-private CONVERSATION --text TEXT\n"
	        "                       send TEXT privately to the author of a public conversation, in a\n"
	        "                       new private conversation of the same case; once it is sent, a\n"
	        "                       public note (--public-text, default the channel's\n"
	        "                       move_to_private_text) says so\n"
	        "      --actor NAME     who is recorded in the audit log (default: cli:$USER)\n"
	        "      --list-plugins   list the plugins in the plugin directory\n"
	        "      --plugin-dir DIR the plugin directory for --list-plugins\n"
	        "  -v, --verbose        with --list-plugins: descriptions and config keys\n"
	        "      --version        print the version and the plugin ABI version\n"
	        "  -h, --help           this text\n");
}

/* {"instance": move_to_private_text, ...} for every channel. Owned by the caller. */
static char *move_texts_json(const cfg *c)
{
	json_t *o = json_object();
	for (size_t i = 0; i < c->n_channels; i++)
		json_object_set_new(o, c->channels[i].name,
		                    json_string(c->channels[i].move_to_private_text));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s == NULL)
		abort();
	return s;
}

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
	plugins_stop(d.plugins);
	drain_check(-1, 0, NULL);
}

/* -------------------------------------------------------------- reload */

static void routing_published(db_batch *b, bool ok, const char *error, void *arg)
{
	(void)b;
	(void)arg;
	if (ok)
		log_info("main", "reload: routing of sinks and notices published");
	else
		log_error("main", "reload: the routing of sinks and notices was not published (%s); "
		          "the previous one stays in force", error ? error : "?");
}

static void publish_routing_async(const cfg *c)
{
	char *routing = cfg_routing_json(c);
	const char *params[] = { routing };
	db_batch *b = db_batch_new();
	db_batch_add(b, "INSERT INTO parley_settings (key, value) VALUES ('routing', $1::jsonb) "
	                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
	             1, params);
	free(routing);
	db_batch_submit(b, routing_published, NULL);
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
	if (strcmp(next->listen_host, d.config->listen_host) != 0 || next->listen_port != d.config->listen_port)
		log_warn("main", "reload: listen changed; that takes a restart (ignored)");
	if (strcmp(next->database.dsn, d.config->database.dsn) != 0 ||
	    next->database.pool_size != d.config->database.pool_size)
		log_warn("main", "reload: database settings changed; that takes a restart (ignored)");
	if (strcmp(next->plugin_dir, d.config->plugin_dir) != 0)
		log_warn("main", "reload: plugin_dir changed; that takes a restart (ignored)");
	if (!plugins_reload(d.plugins, next, err, sizeof(err))) {
		log_error("main", "reload failed, keeping the old configuration: %s", err);
		cfg_free(next);
		return;
	}
	log_set_level(next->log.level);
	log_set_json(next->log.json);
	http_server_limits l = limits_from(next);
	http_server_set_limits(d.server, &l);
	ingest_batch_configure(d.base, next);
	publish_routing_async(next);
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

	/* Before any event can be ingested: what goes to which sink and notifier.
	 * A schema too old for it (not migrated yet) is not fatal: the server
	 * still answers /healthz and /readyz says why it is not ready; SIGHUP
	 * publishes again. */
	char *routing = cfg_routing_json(d.config);
	if (!admin_publish_routing(d.config->database.dsn, routing, err, sizeof(err)))
		log_error("main", "the routing of sinks and notices is not published: %s", err);
	free(routing);

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
	if (!plugins_load(d.config, &d.plugins, err, sizeof(err))) {
		fprintf(stderr, "parleyd: %s\n", err);
		rc = EXIT_CONFIG;
		goto out;
	}
	router_init(d.plugins);
	http_server_limits l = limits_from(d.config);
	d.server = http_server_new(d.base, d.config->listen_host, d.config->listen_port, &l, router_handle,
	                           NULL, err, sizeof(err));
	if (d.server == NULL) {
		log_error("main", "cannot listen on %s:%d: %s", d.config->listen_host, d.config->listen_port, err);
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
		if (d.plugins != NULL)
			plugins_stop(d.plugins);
	}
	http_client_shutdown();
	db_pool_stop();
	event_base_loop(d.base, EVLOOP_NONBLOCK);
	host_api_cancel_timers();
	jobs_free();
	ingest_batch_free();
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

int main(int argc, char **argv)
{
	enum { OPT_CHECK = 1000, OPT_MIGRATE, OPT_LIST, OPT_PLUGIN_DIR, OPT_VERSION, OPT_MERGE,
	       OPT_INTO, OPT_UNMERGE, OPT_ACTOR, OPT_REPLY, OPT_MOVE, OPT_TEXT, OPT_PUBLIC_TEXT,
	       OPT_VISIBILITY };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, OPT_CHECK },
		{ "migrate", no_argument, NULL, OPT_MIGRATE },
		{ "list-plugins", no_argument, NULL, OPT_LIST },
		{ "merge-customer", required_argument, NULL, OPT_MERGE },
		{ "into", required_argument, NULL, OPT_INTO },
		{ "unmerge", required_argument, NULL, OPT_UNMERGE },
		{ "actor", required_argument, NULL, OPT_ACTOR },
		{ "reply", required_argument, NULL, OPT_REPLY },
		{ "move-to-private", required_argument, NULL, OPT_MOVE },
		{ "text", required_argument, NULL, OPT_TEXT },
		{ "public-text", required_argument, NULL, OPT_PUBLIC_TEXT },
		{ "visibility", required_argument, NULL, OPT_VISIBILITY },
		{ "plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_file = NULL, *plugin_dir = NULL;
	const char *merge_source = NULL, *merge_target = NULL, *unmerge_id = NULL, *actor = NULL;
	const char *reply_conv = NULL, *move_conv = NULL, *text = NULL, *public_text = NULL;
	const char *visibility = NULL;
	bool check = false, migrate = false, list = false, verbose = false;
	int c;
	while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config_file = optarg; break;
		case OPT_CHECK: check = true; break;
		case OPT_MIGRATE: migrate = true; break;
		case OPT_LIST: list = true; break;
		case OPT_PLUGIN_DIR: plugin_dir = optarg; break;
		case OPT_MERGE: merge_source = optarg; break;
		case OPT_INTO: merge_target = optarg; break;
		case OPT_UNMERGE: unmerge_id = optarg; break;
		case OPT_ACTOR: actor = optarg; break;
		case OPT_REPLY: reply_conv = optarg; break;
		case OPT_MOVE: move_conv = optarg; break;
		case OPT_TEXT: text = optarg; break;
		case OPT_PUBLIC_TEXT: public_text = optarg; break;
		case OPT_VISIBILITY: visibility = optarg; break;
		case 'v': verbose = true; break;
		case OPT_VERSION:
			printf("parleyd %s (plugin ABI %d.%d, schema version %d)\n", PACKAGE_VERSION,
			       PARLEY_ABI_MAJOR, PARLEY_ABI_MINOR, migrate_latest_version());
			return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_CONFIG;
		}
	}
	if ((merge_source != NULL) != (merge_target != NULL)) {
		fprintf(stderr, "parleyd: --merge-customer and --into go together\n");
		return EXIT_CONFIG;
	}
	if ((reply_conv != NULL || move_conv != NULL) != (text != NULL)) {
		fprintf(stderr, "parleyd: --text goes with --reply or --move-to-private\n");
		return EXIT_CONFIG;
	}
	if ((public_text != NULL && move_conv == NULL) || (visibility != NULL && reply_conv == NULL)) {
		fprintf(stderr, "parleyd: --public-text goes with --move-to-private, --visibility with "
		        "--reply\n");
		return EXIT_CONFIG;
	}
	if (optind < argc) {
		fprintf(stderr, "parleyd: unexpected argument: %s\n", argv[optind]);
		usage(stderr);
		return EXIT_CONFIG;
	}
	signal(SIGPIPE, SIG_IGN);

	char err[2048];
	if (list) {
		if (plugin_dir == NULL && config_file != NULL) {
			if (!cfg_load(config_file, &d.config, err, sizeof(err))) {
				fprintf(stderr, "parleyd: %s\n", err);
				return EXIT_CONFIG;
			}
			plugin_dir = d.config->plugin_dir;
		}
		bool ok = loader_list_dir(plugin_dir ? plugin_dir : PARLEY_PLUGIN_DIR, stdout, verbose);
		cfg_free(d.config);
		return ok ? 0 : 1;
	}
	if (config_file == NULL) {
		fprintf(stderr, "parleyd: no configuration given (-c FILE)\n");
		usage(stderr);
		return EXIT_CONFIG;
	}
	if (!cfg_load(config_file, &d.config, err, sizeof(err))) {
		fprintf(stderr, "parleyd: %s\n", err);
		return EXIT_CONFIG;
	}
	log_set_level(d.config->log.level);
	log_set_json(d.config->log.json);

	char actor_buf[128];
	if (actor == NULL) {
		const char *user = getenv("USER");
		snprintf(actor_buf, sizeof(actor_buf), "cli:%s", user != NULL ? user : "unknown");
		actor = actor_buf;
	}

	int rc;
	if (merge_source != NULL) {
		long long audit_id = 0;
		if (admin_merge_customers(d.config->database.dsn, merge_source, merge_target, actor,
		                          &audit_id, err, sizeof(err))) {
			printf("merged customer %s into %s (audit %lld; undo with --unmerge %lld)\n",
			       merge_source, merge_target, audit_id, audit_id);
			rc = 0;
		} else {
			fprintf(stderr, "parleyd: merge: %s\n", err);
			rc = 1;
		}
	} else if (unmerge_id != NULL) {
		if (admin_unmerge(d.config->database.dsn, unmerge_id, actor, err, sizeof(err))) {
			printf("unmerged (audit %s)\n", unmerge_id);
			rc = 0;
		} else {
			fprintf(stderr, "parleyd: unmerge: %s\n", err);
			rc = 1;
		}
	} else if (reply_conv != NULL) {
		long long message_id = 0;
		if (admin_reply(d.config->database.dsn, reply_conv, text, visibility, actor, &message_id,
		                err, sizeof(err))) {
			printf("reply queued as message %lld\n", message_id);
			rc = 0;
		} else {
			fprintf(stderr, "parleyd: reply: %s\n", err);
			rc = 1;
		}
	} else if (move_conv != NULL) {
		long long private_id = 0;
		char *texts = move_texts_json(d.config);
		if (admin_move_to_private(d.config->database.dsn, move_conv, text, public_text, texts,
		                          actor, &private_id, err, sizeof(err))) {
			printf("moved to private conversation %lld\n", private_id);
			rc = 0;
		} else {
			fprintf(stderr, "parleyd: move to private: %s\n", err);
			rc = 1;
		}
		free(texts);
	} else if (check) {
		/* Load every plugin and create every instance: that validates the
		 * plugins' own configs too. Nothing is started. */
		plugin_set *ps = NULL;
		if (plugins_load(d.config, &ps, err, sizeof(err))) {
			plugins_free(ps);
			metrics_reset();
			printf("%s: configuration OK\n", config_file);
			rc = 0;
		} else {
			fprintf(stderr, "parleyd: %s\n", err);
			rc = EXIT_CONFIG;
		}
	} else if (migrate) {
		int applied = 0;
		if (migrate_apply(d.config->database.dsn, &applied, err, sizeof(err))) {
			printf("applied %d migration(s); schema version %d\n", applied, migrate_latest_version());
			rc = 0;
		} else {
			fprintf(stderr, "parleyd: migrations: %s\n", err);
			rc = 1;
		}
	} else {
		rc = run();
	}
	cfg_free(d.config);
	return rc;
}
