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
 * A job struct is shared by two parties: the plugin, which holds a delivery
 * whose completion calls back with the job, and the database write of the
 * outcome. It is freed when neither holds it any more. After a timeout the
 * plugin may still complete the delivery; that late completion only frees
 * the job, so the delivery handle stays valid for as long as the plugin
 * needs it.
 *
 * The payloads are built by job_payload.c, the registry, notice and metrics
 * are job_cluster.c. The SQL lives in sql/003_jobs.sql and
 * sql/006_job_outcomes.sql (parley_job_claim, parley_job_finish,
 * parley_job_runner_seen); docs/JOBS.md describes payloads, states and
 * settings. */
#include "jobs.h"

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

#define JOBS_LOG "jobs"
#define JOBS_MAX_CONCURRENCY 10000
#define JOBS_MIN_LEASE_MS 100
#define JOBS_MIN_SWEEP_MS 10
/* The watchdog fires this long before the lease ends (a fifth of the lease
 * at most), leaving time to record the outcome before the job is due again. */
#define JOBS_WATCHDOG_MARGIN_MAX_MS 5000
#define JOBS_REASON_MAX 2000          /* bytes of a reason kept in last_error */
#define JOBS_EXTERNAL_ID_MAX 1000
#define JOBS_WHY_MAX 256
#define JOBS_DEFAULT_UNCLAIMED_MS 300000
/* A failed outcome write is tried again (250 ms doubling to 2 s) while the
 * lease lasts: a short database outage must not make every job in flight
 * run a second time. */
#define JOBS_REWRITE_MIN_MS 250
#define JOBS_REWRITE_MAX_MS 2000

#define JOBS_CLAIM_SQL \
	"SELECT claimed, id, claim_token, target_kind, target_instance, operation, payload, " \
	"idempotency_key, attempts FROM parley_job_claim($1::int, $2::int, $3, $4::int, $5::jsonb, " \
	"ARRAY(SELECT jsonb_array_elements_text($6::jsonb)))"
#define JOBS_NEXT_DUE_SQL "SELECT parley_job_next_due_ms()"
#define JOBS_FINISH_SQL \
	"SELECT new_state, retry_in_ms FROM parley_job_finish($1::bigint, $2::uuid, $3, $4, $5, " \
	"to_timestamp($6::double precision / 1000), $7::int, $8::int, $9::int, $10, $11, $12::jsonb)"
#define M_IN_FLIGHT "parley_jobs_in_flight"
#define M_IN_FLIGHT_HELP "Jobs this process has claimed and not finished."

typedef struct job {
	char id[24];                  /* decimal, as PostgreSQL returned it */
	char *claim_token;            /* owned */
	const job_op *op;             /* static: its row of the operation table, or NULL */
	char *instance;               /* owned */
	char *operation;              /* owned */
	char *idempotency_key;        /* owned; handed to the plugin */
	int attempt;                  /* 1 on the first run */
	char *target;                 /* owned: "kind/instance" for logs and labels */
	json_t *payload;              /* owned; the ABI's strings point into it */
	struct event *watchdog;       /* owned */
	uint64_t started_us;
	const char *outcome;          /* static: what is being recorded */
	char *reason;                 /* owned: the reason being recorded, or NULL */
	char *external_id;            /* owned: the external id being recorded, or NULL */
	char *thread_id;              /* owned: a private reply's new chat, or NULL */
	char *recipient_id;           /* owned: the customer's id in that chat, or NULL */
	char retry_at[24];            /* the plugin's not-before time in Unix ms, "" for none */
	struct event *rewrite;        /* owned: retries a failed outcome write */
	int rewrite_ms;               /* the last delay before a rewrite */
	bool delivery_open;           /* the plugin holds a delivery that calls back with this job */
	bool write_pending;           /* the outcome is being written */
	bool timed_out;               /* the watchdog recorded RETRY; completion is ignored */
	bool counted;                 /* holds a slot of `concurrency` until written */
	bool orphan;                  /* the runner is freed; only the plugin still holds it */
	TAILQ_ENTRY(job) link;
} job;
TAILQ_HEAD(job_list, job);

static struct {
	bool started, stopping;
	struct event_base *base;      /* borrowed */
	plugin_set *plugins;          /* borrowed; outlives the runner */
	jobs_options o;               /* o.dsn points at `dsn` */
	char *dsn;                    /* owned; never logged (may hold a password) */
	char *finish_opts;            /* owned: jobs_options.finish_opts_json */
	char *targets;                /* owned: JSON array of the "kind/instance" this node runs */
	char runner_id[320];          /* host:pid, recorded as claimed_by */
	char params[4][24];           /* lease, max attempts, backoff base and max as text */
	int watchdog_ms;
	int held;                     /* jobs holding a slot */
	bool claim_pending, claim_again;
	bool db_outage;               /* a failed claim was logged; log the recovery */
	struct event *sweep;          /* persistent: claim and refresh metrics */
	struct event *wake;           /* one-shot: the next known run_at */
	struct event *kick;           /* one-shot: the first claim, from the loop */
	struct job_list jobs;         /* every job struct alive */
	db_listen *listen;            /* owned: wakes the runner on NOTIFY parley_jobs */
} R = { .jobs = TAILQ_HEAD_INITIALIZER(R.jobs) };

static void runner_claim(void);
static void job_record(job *j, const char *outcome, int64_t retry_at_ms, const char *reason,
                       const char *external_id);

/* ------------------------------------------------------------- helpers */

static struct timeval ms_to_tv(int64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000) };
	return tv;
}

/* A copy of s (may be NULL) that PostgreSQL accepts as text: at most max
 * bytes, cut at a character boundary, and valid UTF-8 (jansson checks); a
 * plugin's reason must never make the outcome unwritable. Owned by the caller. */
static char *clean_text(const char *s, size_t max)
{
	if (s == NULL)
		return NULL;
	size_t n = strlen(s);
	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	json_t *probe = json_stringn(s, n);
	if (probe == NULL)
		return xstrdup("(text is not valid UTF-8)");
	json_decref(probe);
	return xstrndup(s, n);
}

/* ---------------------------------------------------------------- jobs */

/* A job from row i of a claim result. res: borrowed. */
static job *job_new(PGresult *res, int i)
{
	job *j = xcalloc(1, sizeof(*j));
	snprintf(j->id, sizeof(j->id), "%s", PQgetvalue(res, i, 1));
	j->claim_token = xstrdup(PQgetvalue(res, i, 2));
	const char *kind = PQgetvalue(res, i, 3);
	j->instance = xstrdup(PQgetvalue(res, i, 4));
	j->operation = xstrdup(PQgetvalue(res, i, 5));
	j->idempotency_key = xstrdup(PQgetvalue(res, i, 7));
	j->attempt = atoi(PQgetvalue(res, i, 8));
	size_t cap = strlen(kind) + strlen(j->instance) + 2;
	j->target = xmalloc(cap);
	snprintf(j->target, cap, "%s/%s", kind, j->instance);
	j->op = job_op_find(kind, j->instance, j->operation);
	/* jsonb text always parses; a failure (say, an integer beyond 64 bits)
	 * is reported as a bad payload when the job starts. */
	j->payload = json_loads(PQgetvalue(res, i, 6), 0, NULL);
	j->started_us = util_mono_us();
	j->counted = true;
	R.held++;
	TAILQ_INSERT_TAIL(&R.jobs, j, link);
	return j;
}

/* Free a job that is in no list. */
static void job_free_orphan(job *j)
{
	if (j->watchdog != NULL)
		event_free(j->watchdog);
	if (j->rewrite != NULL)
		event_free(j->rewrite);
	json_decref(j->payload);
	free(j->claim_token);
	free(j->instance);
	free(j->operation);
	free(j->idempotency_key);
	free(j->target);
	free(j->reason);
	free(j->external_id);
	free(j->thread_id);
	free(j->recipient_id);
	free(j);
}

static void job_free(job *j)
{
	TAILQ_REMOVE(&R.jobs, j, link);
	if (j->counted)
		R.held--;
	job_free_orphan(j);
}

/* Free once neither the plugin nor a database write refers to it. */
static void job_release_if_unused(job *j)
{
	if (!j->delivery_open && !j->write_pending)
		job_free(j);
}

/* ------------------------------------------------------------ running */

static void job_watchdog_fired(evutil_socket_t fd, short what, void *arg)
{
	job *j = arg;
	if (!j->delivery_open || j->timed_out)
		return;
	j->timed_out = true;
	log_warn(JOBS_LOG, "job %s (%s %s, attempt %d): no completion within %d ms; recorded as RETRY",
	         j->id, j->target, j->operation, j->attempt, R.watchdog_ms);
	job_record(j, "timeout", 0, "timed out", NULL);
}

/* The plugin completed the delivery (possibly from inside the operation
 * call). reason and external_id: borrowed for the call. */
static void job_delivery_done(void *arg, const host_delivery_result *r)
{
	job *j = arg;
	parley_outcome outcome = r->outcome;
	j->delivery_open = false;
	if (j->orphan) {
		/* Completed from a plugin's destroy, after jobs_free: nothing to record. */
		job_free_orphan(j);
		return;
	}
	if (j->timed_out) {
		log_info(JOBS_LOG, "job %s (%s %s, attempt %d): completed after its timeout; ignored",
		         j->id, j->target, j->operation, j->attempt);
		job_release_if_unused(j);
		return;
	}
	evtimer_del(j->watchdog);
	const char *name = outcome == PARLEY_OK ? "ok" : outcome == PARLEY_RETRY ? "retry" : "fail";
	free(j->thread_id);
	free(j->recipient_id);
	j->thread_id = outcome == PARLEY_OK ? clean_text(r->thread_id, JOBS_EXTERNAL_ID_MAX) : NULL;
	j->recipient_id = outcome == PARLEY_OK ? clean_text(r->recipient_id, JOBS_EXTERNAL_ID_MAX) : NULL;
	job_record(j, name, r->retry_at_ms, r->reason, r->external_id);
}

/* The plugin instance that runs j; NULL for a core operation. false when
 * this node has no such instance (the claim takes only loaded targets, so
 * only a configuration changed under a running node gets here). */
static bool job_instance(const job *j, parley_instance **out)
{
	*out = NULL;
	if (j->op->plugin_kind == 0)
		return true;
	*out = plugins_find(R.plugins, j->op->plugin_kind, j->instance);
	return *out != NULL;
}

/* Hand a freshly claimed job to its operation. Nothing may touch j after
 * the operation is called: it can complete the delivery inside the call. */
static void job_start(job *j)
{
	char why[JOBS_WHY_MAX];
	job_call call;
	parley_instance *inst;

	if (j->op == NULL) {
		snprintf(why, sizeof(why), "operation %s is not supported for target %s", j->operation,
		         j->target);
		job_record(j, "fail", 0, why, NULL);
		return;
	}
	if (!j->op->build(j->payload, j->idempotency_key, &call, why, sizeof(why))) {
		job_call_clear(&call);
		job_record(j, "fail", 0, why, NULL);
		return;
	}
	if (!job_instance(j, &inst)) {
		job_call_clear(&call);
		job_record(j, "fail", 0, "unknown instance", NULL);
		return;
	}
	j->watchdog = evtimer_new(R.base, job_watchdog_fired, j);
	if (j->watchdog == NULL) {
		job_call_clear(&call);
		job_record(j, "retry", 0, "out of memory", NULL);
		return;
	}
	struct timeval tv = ms_to_tv(R.watchdog_ms);
	evtimer_add(j->watchdog, &tv);
	j->delivery_open = true;
	log_debug(JOBS_LOG, "job %s (%s %s, attempt %d): started", j->id, j->target, j->operation,
	          j->attempt);
	/* The call's structures are borrowed for the call only. */
	j->op->invoke(inst, &call, host_delivery_new(inst, job_delivery_done, j));
	job_call_clear(&call);
}

/* -------------------------------------------------- recording outcomes */

static void log_written(job *j, const char *state, const char *retry_in_ms)
{
	double ms = (double)(util_mono_us() - j->started_us) / 1000.0;
	const char *reason = j->reason ? j->reason : "no reason given";
	if (strcmp(state, "done") == 0) {
		log_debug(JOBS_LOG, "job %s (%s %s, attempt %d): done in %.0f ms", j->id, j->target,
		          j->operation, j->attempt, ms);
	} else if (strcmp(j->outcome, "release") == 0) {
		log_debug(JOBS_LOG, "job %s (%s %s): released unstarted (stopping)", j->id, j->target,
		          j->operation);
	} else if (strcmp(state, "queued") == 0) {
		log_info(JOBS_LOG, "job %s (%s %s, attempt %d): %s, retry in %s ms: %s", j->id, j->target,
		         j->operation, j->attempt, j->outcome, retry_in_ms, reason);
	} else {
		job_metrics_dead(j->target);
		log_warn(JOBS_LOG, "job %s (%s %s) is dead after %d attempt(s) (%s): %s", j->id, j->target,
		         j->operation, j->attempt, j->outcome, reason);
	}
}

static void job_write(job *j);
static void on_rewrite(evutil_socket_t fd, short what, void *arg);

/* A failed outcome write is worth repeating while the claim still holds. */
static bool job_rewrite_later(job *j)
{
	uint64_t deadline_us = j->started_us + (uint64_t)R.watchdog_ms * 1000;
	if (j->rewrite_ms == 0)
		j->rewrite_ms = JOBS_REWRITE_MIN_MS;
	else if (j->rewrite_ms < JOBS_REWRITE_MAX_MS)
		j->rewrite_ms *= 2;
	if (util_mono_us() + (uint64_t)j->rewrite_ms * 1000 >= deadline_us)
		return false;
	if (j->rewrite == NULL)
		j->rewrite = evtimer_new(R.base, on_rewrite, j);
	if (j->rewrite == NULL)
		return false;
	struct timeval tv = ms_to_tv(j->rewrite_ms);
	evtimer_add(j->rewrite, &tv);
	j->write_pending = true;
	return true;
}

/* The outcome write returned. */
static void job_written(db_batch *b, bool ok, const char *error, void *arg)
{
	job *j = arg;
	PGresult *res = ok ? db_batch_result(b, 0) : NULL;
	j->write_pending = false;
	if (!ok) {
		if (job_rewrite_later(j)) {
			log_debug(JOBS_LOG, "job %s: outcome %s not recorded yet (%s); trying again in %d ms",
			          j->id, j->outcome, error, j->rewrite_ms);
			return;
		}
		log_warn(JOBS_LOG, "job %s (%s %s, attempt %d): outcome %s not recorded (%s); it runs "
		         "again when its lease ends", j->id, j->target, j->operation, j->attempt,
		         j->outcome, error);
	} else if (res == NULL || PQntuples(res) == 0) {
		log_info(JOBS_LOG, "job %s (%s %s, attempt %d): its lease ended and it was claimed "
		         "again; outcome %s discarded", j->id, j->target, j->operation, j->attempt,
		         j->outcome);
	} else {
		log_written(j, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
	}
	if (j->counted) {
		j->counted = false;
		R.held--;
	}
	job_release_if_unused(j);
	/* A slot is free, and the job's successor in its ordering key may be
	 * due only now that this outcome is committed. */
	runner_claim();
}

/* Submit the recorded outcome for the current claim of j. The write may
 * call back before this returns (pool stopped): nothing may touch j after. */
static void job_write(job *j)
{
	const char *sql_outcome = strcmp(j->outcome, "timeout") == 0 ? "retry" : j->outcome;
	const char *params[] = {
		j->id, j->claim_token, sql_outcome, j->reason, j->external_id,
		j->retry_at[0] ? j->retry_at : NULL, R.params[2], R.params[3], R.params[1],
		strcmp(j->outcome, "ok") == 0 ? j->thread_id : NULL,
		strcmp(j->outcome, "ok") == 0 ? j->recipient_id : NULL, R.finish_opts,
	};
	db_batch *b = db_batch_new();
	db_batch_add(b, JOBS_FINISH_SQL, 12, params);
	j->write_pending = true;
	db_batch_set_background(b);
	db_batch_submit(b, job_written, j);
}

static void on_rewrite(evutil_socket_t fd, short what, void *arg)
{
	job_write(arg);
}

/* Record an outcome ("ok", "retry", "fail", "timeout" or "release"; static)
 * for the current claim of j. reason, external_id: borrowed, may be NULL.
 * Nothing may touch j afterwards (see job_write). */
static void job_record(job *j, const char *outcome, int64_t retry_at_ms, const char *reason,
                       const char *external_id)
{
	if (strcmp(outcome, "release") != 0)
		job_metrics_attempt(j->target, outcome);
	j->outcome = outcome;
	free(j->reason);
	j->reason = clean_text(reason, JOBS_REASON_MAX);
	free(j->external_id);
	j->external_id = clean_text(external_id, JOBS_EXTERNAL_ID_MAX);
	j->retry_at[0] = '\0';
	if (retry_at_ms > 0)
		snprintf(j->retry_at, sizeof(j->retry_at), "%" PRId64, retry_at_ms);
	job_write(j);
}

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
	struct timeval tv = ms_to_tv(ms < 0 ? 0 : ms);
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
		job *j = job_new(res, i);
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

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
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
	if (o->backoff_base_ms < 0 || o->backoff_max_ms < o->backoff_base_ms) {
		util_set_err(err, errlen, "jobs: backoff_base_ms must be 0 or more and backoff_max_ms at "
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

	struct timeval sweep = ms_to_tv(R.o.sweep_interval_ms), now = { 0, 0 };
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
