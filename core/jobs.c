/* jobs.c - the job runner: claims due jobs for the targets this node runs
 * and hands each one to its operation (job_ops.c) through a delivery.
 *
 * Everything runs on the loop and nothing blocks it:
 *   - claims, outcomes and metrics are db_batch work on the shared pool;
 *   - wake-ups come from a LISTEN subscription (db_listen.c), a
 *     periodic sweep, a timer for the next known run_at, and every recorded
 *     outcome (a slot is free, and a job's successor may be due);
 *   - a watchdog per delivery records RETRY "timed out" shortly before the
 *     lease ends, so another runner never starts the job while this one
 *     still counts it as running.
 *
 * One job's run and outcome are job_run.c, the payloads job_payload.c, the
 * registry, notice and metrics job_cluster.c. The SQL lives in sql/003_jobs.sql and
 * sql/006_job_outcomes.sql (parley_job_claim, parley_job_finish,
 * parley_job_runner_seen); docs/JOBS.md describes payloads, states and
 * settings. */
#include "jobs.h"
#include "job_run.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "db.h"
#include "db_listen.h"
#include "host_api.h"
#include "job_cluster.h"
#include "job_ops.h"
#include "log.h"
#include "metrics.h"
#include "plugin_loader.h"
#include "util.h"

/* The watchdog fires this long before the lease ends (a fifth of the lease
 * at most), leaving time to record the outcome before the job is due again. */
#define JOBS_WATCHDOG_MARGIN_MAX_MS 5000
#define JOBS_DEFAULT_UNCLAIMED_MS 300000

#define JOBS_CLAIM_SQL \
	"SELECT claimed, id, claim_token, target_kind, target_instance, operation, payload, " \
	"idempotency_key, attempts FROM parley_job_claim($1::int, $2::int, $3, $4::int, $5::jsonb, " \
	"ARRAY(SELECT jsonb_array_elements_text($6::jsonb)))"
#define JOBS_NEXT_DUE_SQL "SELECT parley_job_next_due_ms()"
#define M_IN_FLIGHT "parley_jobs_in_flight"
#define M_IN_FLIGHT_HELP "Jobs this process has claimed and not finished."

static job_runner R = { .jobs = TAILQ_HEAD_INITIALIZER(R.jobs) };

static void runner_claim(void);

/* --------------------------------------------------------------- claims */

static void note_db_failure(const char *what, const char *error)
{
	/* One warning per outage; the pool logs the details. */
	if (!R.db_outage) {
		log_warn(JOBS_LOG, "%s: %s", what, error ? error : "unknown error");
		R.db_outage = true;
	} else {
		log_debug(JOBS_LOG, "%s: %s", what, error ? error : "unknown error");
	}
}

static void note_db_success(void)
{
	if (R.db_outage) {
		log_info(JOBS_LOG, "claiming jobs again");
		R.db_outage = false;
	}
}

/* Wake for the next queued job's run_at when that comes before the sweep. */
static void arm_wake(PGresult *res)
{
	if (res == NULL || PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		return;
	long long ms = atoll(PQgetvalue(res, 0, 0));
	if (ms >= R.o.sweep_interval_ms)
		return;
	struct timeval tv = job_ms_tv(ms < 0 ? 0 : ms);
	evtimer_add(R.wake, &tv);   /* replaces an earlier, later wake-up */
}

static void claim_done(db_batch *b, bool ok, const char *error, void *arg)
{
	int want = (int)(intptr_t)arg, claimed = 0;
	R.claim_pending = false;
	if (!ok) {
		note_db_failure("cannot claim jobs", error);
		return;
	}
	note_db_success();
	PGresult *res = db_batch_result(b, 0);
	int n = res ? PQntuples(res) : 0;
	for (int i = 0; i < n; i++) {
		if (strcmp(PQgetvalue(res, i, 0), "t") != 0) {
			/* A runner died holding it, and it had no attempts left. */
			char target[300];
			snprintf(target, sizeof(target), "%s/%s", PQgetvalue(res, i, 3), PQgetvalue(res, i, 4));
			job_metrics_dead(target);
			log_warn(JOBS_LOG, "job %s (%s %s) is dead after %s attempt(s): its lease expired",
			         PQgetvalue(res, i, 1), target, PQgetvalue(res, i, 5), PQgetvalue(res, i, 8));
			continue;
		}
		claimed++;
		job *j = job_new(&R, res, i);
		if (R.stopping)
			job_record(j, "release", 0, NULL, NULL);
		else
			job_start(j);
	}
	arm_wake(db_batch_result(b, 1));
	/* A full claim means more may be due right now. */
	if (claimed >= want)
		R.claim_again = true;
	if (R.claim_again)
		runner_claim();
}

/* Claim as many due jobs as there are free slots. At most one claim runs at
 * a time; a wake-up during it claims again when it returns. */
static void runner_claim(void)
{
	if (!R.started || R.stopping)
		return;
	if (R.claim_pending) {
		R.claim_again = true;
		return;
	}
	R.claim_again = false;
	int want = R.o.concurrency - R.held;
	if (want <= 0)
		return;
	char limit[16];
	snprintf(limit, sizeof(limit), "%d", want);
	const char *params[] = { limit, R.params[0], R.runner_id, R.params[1], R.finish_opts,
	                         R.targets };
	db_batch *b = db_batch_new();
	db_batch_add(b, JOBS_CLAIM_SQL, 6, params);
	db_batch_add(b, JOBS_NEXT_DUE_SQL, 0, NULL);
	R.claim_pending = true;
	db_batch_set_background(b);
	db_batch_submit(b, claim_done, (void *)(intptr_t)want);
}

void jobs_runner_claim(job_runner *r)
{
	(void)r;   /* one runner per process: R */
	runner_claim();
}

/* -------------------------------------------------------------- metrics */

static void jobs_metrics_collect(void *arg)
{
	if (R.started)
		metrics_gauge_set(M_IN_FLIGHT, M_IN_FLIGHT_HELP, NULL, R.held);
}

/* --------------------------------------------------------------- timers */

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	runner_claim();
	if (!R.stopping)
		job_cluster_sweep();
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	runner_claim();
}

/* ------------------------------------------------------------- LISTEN */

static void on_notify(void *arg, const char *channel, const char *payload)
{
	runner_claim();
}

static void on_listening(void *arg, bool again)
{
	log_info(JOBS_LOG, again ? "listening for new jobs again" : "listening for new jobs");
	/* Jobs enqueued while nobody listened sent their notifications to no one. */
	runner_claim();
}

/* ----------------------------------------------------------------- API */

static bool check_options(const jobs_options *o, char *err, size_t errlen)
{
	if (o->dsn == NULL) {
		util_set_err(err, errlen, "jobs: no database connection string");
		return false;
	}
	if (o->concurrency < 1 || o->concurrency > JOBS_MAX_CONCURRENCY) {
		util_set_err(err, errlen, "jobs: concurrency must be between 1 and %d", JOBS_MAX_CONCURRENCY);
		return false;
	}
	if (o->lease_ms < JOBS_MIN_LEASE_MS) {
		util_set_err(err, errlen, "jobs: lease_ms must be at least %d", JOBS_MIN_LEASE_MS);
		return false;
	}
	if (o->max_attempts < 1) {
		util_set_err(err, errlen, "jobs: max_attempts must be at least 1");
		return false;
	}
	if (o->backoff_base_ms < 1 || o->backoff_max_ms < o->backoff_base_ms) {
		util_set_err(err, errlen, "jobs: backoff_base_ms must be at least 1 and backoff_max_ms at "
		             "least backoff_base_ms");
		return false;
	}
	if (o->sweep_interval_ms < JOBS_MIN_SWEEP_MS) {
		util_set_err(err, errlen, "jobs: sweep_interval_ms must be at least %d", JOBS_MIN_SWEEP_MS);
		return false;
	}
	if (o->unclaimed_notice_ms < 0) {
		util_set_err(err, errlen, "jobs: unclaimed_notice_ms must not be negative");
		return false;
	}
	return true;
}

/* The targets this node runs, as a JSON array of "kind/instance": every
 * loaded plugin instance and the core subsystems. Owned by the caller. */
static char *targets_json(const plugin_set *plugins)
{
	json_t *a = json_array();
	size_t n_core;
	const char *const *core = job_op_core_targets(&n_core);
	for (size_t i = 0; plugins != NULL && i < plugins->n_instances; i++) {
		const parley_instance *inst = plugins->instances[i];
		char target[300];
		snprintf(target, sizeof(target), "%s/%s", loader_kind_name(inst->kind), inst->name);
		json_array_append_new(a, json_string(target));
	}
	for (size_t i = 0; i < n_core; i++)
		json_array_append_new(a, json_string(core[i]));
	char *text = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	if (text == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
	return text;
}

static struct event *new_timer(event_callback_fn fn, short flags)
{
	struct event *ev = event_new(R.base, -1, flags, fn, NULL);
	if (ev == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
	return ev;
}

void jobs_set_finish_opts(const char *finish_opts_json)
{
	if (!R.started)
		return;   /* no runner in this process (jobs.enabled false) */
	free(R.finish_opts);
	R.finish_opts = xstrdup(finish_opts_json ? finish_opts_json : "{}");
	R.o.finish_opts_json = R.finish_opts;
}

bool jobs_start(struct event_base *base, const jobs_options *opts, struct plugin_set *plugins,
                char *err, size_t errlen)
{
	char why[256];
	if (R.started) {
		util_set_err(err, errlen, "jobs: the runner is already running");
		return false;
	}
	if (base == NULL || opts == NULL) {
		util_set_err(err, errlen, "jobs: invalid arguments");
		return false;
	}
	if (!check_options(opts, err, errlen))
		return false;
	db_listen_options lo = {
		.dsn = opts->dsn, .connect_timeout_ms = opts->connect_timeout_ms,
		.application_name = "parleyd-jobs", .log_component = JOBS_LOG,
		.what = "the LISTEN connection",
	};
	R.listen = db_listen_new(base, &lo, why, sizeof(why));
	if (R.listen == NULL) {
		util_set_err(err, errlen, "jobs: %s", why);
		return false;
	}
	if (!db_listen_subscribe(R.listen, "parley_jobs", on_notify, on_listening, NULL)) {
		db_listen_free(R.listen);
		R.listen = NULL;
		util_set_err(err, errlen, "jobs: cannot subscribe to parley_jobs");
		return false;
	}

	R.base = base;
	R.plugins = plugins;
	R.o = *opts;
	R.dsn = xstrdup(opts->dsn);
	R.o.dsn = R.dsn;
	free(R.finish_opts);
	R.finish_opts = xstrdup(opts->finish_opts_json ? opts->finish_opts_json : "{}");
	R.o.finish_opts_json = R.finish_opts;
	free(R.targets);
	R.targets = targets_json(plugins);
	if (R.o.unclaimed_notice_ms == 0)
		R.o.unclaimed_notice_ms = JOBS_DEFAULT_UNCLAIMED_MS;
	int margin = R.o.lease_ms / 5;
	R.watchdog_ms = R.o.lease_ms - (margin > JOBS_WATCHDOG_MARGIN_MAX_MS ? JOBS_WATCHDOG_MARGIN_MAX_MS
	                                                                     : margin);
	snprintf(R.params[0], sizeof(R.params[0]), "%d", R.o.lease_ms);
	snprintf(R.params[1], sizeof(R.params[1]), "%d", R.o.max_attempts);
	snprintf(R.params[2], sizeof(R.params[2]), "%d", R.o.backoff_base_ms);
	snprintf(R.params[3], sizeof(R.params[3]), "%d", R.o.backoff_max_ms);
	char host[256];
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = '\0';
	snprintf(R.runner_id, sizeof(R.runner_id), "%s:%ld", host, (long)getpid());
	/* A runner is alive while it sweeps: gone after three missed sweeps (at
	 * least a second), so the gauges move to another node soon after. */
	int64_t alive = (int64_t)R.o.sweep_interval_ms * 3;
	if (alive < 1000)
		alive = 1000;
	job_cluster_start(R.runner_id, R.targets, alive > INT_MAX ? INT_MAX : (int)alive,
	                  R.o.unclaimed_notice_ms);

	R.held = 0;
	R.claim_pending = R.claim_again = false;
	R.db_outage = false;
	R.stopping = false;
	R.sweep = new_timer(on_sweep, EV_PERSIST);
	R.wake = new_timer(on_wake, 0);
	R.kick = new_timer(on_sweep, 0);
	R.started = true;

	struct timeval sweep = job_ms_tv(R.o.sweep_interval_ms), now = { 0, 0 };
	evtimer_add(R.sweep, &sweep);
	evtimer_add(R.kick, &now);
	db_listen_start(R.listen);
	/* Registered per start because metrics_reset() forgets collectors. */
	metrics_add_collector(jobs_metrics_collect, NULL);
	log_info(JOBS_LOG, "job runner %s: concurrency %d, lease %d ms, max attempts %d, targets %s",
	         R.runner_id, R.o.concurrency, R.o.lease_ms, R.o.max_attempts, R.targets);
	return true;
}

void jobs_stop(void)
{
	if (!R.started || R.stopping)
		return;
	R.stopping = true;
	evtimer_del(R.sweep);
	evtimer_del(R.wake);
	evtimer_del(R.kick);
	db_listen_stop(R.listen);
	log_info(JOBS_LOG, "job runner stopping: no new jobs; %d in flight", R.held);
}

size_t jobs_in_flight(void)
{
	return (size_t)R.held + (R.claim_pending ? 1u : 0u);
}

void jobs_free(void)
{
	if (!R.started)
		return;
	db_listen_free(R.listen);
	R.listen = NULL;
	/* The pool is stopped, so no write is in flight; a write waiting to be
	 * tried again is dropped (the job runs again after its lease). Jobs
	 * whose delivery a plugin has not completed may still be completed (from
	 * the plugin's stop or destroy), so they stay allocated, as orphans that
	 * free themselves on completion. The rest go now. */
	while (!TAILQ_EMPTY(&R.jobs)) {
		job *j = TAILQ_FIRST(&R.jobs);
		if (!j->delivery_open) {
			job_free(j);
			continue;
		}
		TAILQ_REMOVE(&R.jobs, j, link);
		j->orphan = true;
		j->write_pending = false;
		/* The loop goes away after this. */
		if (j->watchdog != NULL) {
			event_free(j->watchdog);
			j->watchdog = NULL;
		}
		if (j->rewrite != NULL) {
			event_free(j->rewrite);
			j->rewrite = NULL;
		}
	}
	event_free(R.sweep);
	event_free(R.wake);
	event_free(R.kick);
	job_cluster_free();
	free(R.dsn);
	free(R.finish_opts);
	free(R.targets);
	memset(&R, 0, sizeof(R));
	TAILQ_INIT(&R.jobs);
}
