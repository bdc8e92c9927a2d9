/* job_run.c - one claimed job: build its call, start its operation with a
 * watchdog, take the delivery's completion, and write the outcome
 * (parley_job_finish), trying a failed write again while the lease lasts.
 *
 * A job struct is shared by two parties: the operation, which holds a
 * delivery whose completion calls back with the job, and the database write
 * of the outcome. It is freed when neither holds it any more. After a
 * timeout the plugin may still complete the delivery; that late completion
 * only frees the job, so the delivery handle stays valid for as long as the
 * plugin needs it. */
#include "job_run.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "host_api.h"
#include "job_cluster.h"
#include "log.h"
#include "util.h"

#define JOBS_REASON_MAX 2000          /* bytes of a reason kept in last_error */
#define JOBS_EXTERNAL_ID_MAX 1000
#define JOBS_WHY_MAX 256
/* A failed outcome write is tried again (250 ms doubling to 2 s) while the
 * lease lasts: a short database outage must not make every job in flight
 * run a second time. */
#define JOBS_REWRITE_MIN_MS 250
#define JOBS_REWRITE_MAX_MS 2000

#define JOBS_FINISH_SQL \
	"SELECT new_state, retry_in_ms FROM parley_job_finish($1::bigint, $2::uuid, $3, $4, $5, " \
	"to_timestamp($6::double precision / 1000), $7::int, $8::int, $9::int, $10, $11, $12::jsonb)"

/* ------------------------------------------------------------- helpers */

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

job *job_new(job_runner *r, PGresult *res, int i)
{
	job *j = xcalloc(1, sizeof(*j));
	j->r = r;
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
	j->r->held++;
	TAILQ_INSERT_TAIL(&j->r->jobs, j, link);
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

void job_free(job *j)
{
	TAILQ_REMOVE(&j->r->jobs, j, link);
	if (j->counted)
		j->r->held--;
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
	         j->id, j->target, j->operation, j->attempt, j->r->watchdog_ms);
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
	*out = plugins_find(j->r->plugins, j->op->plugin_kind, j->instance);
	return *out != NULL;
}

void job_start(job *j)
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
	j->watchdog = evtimer_new(j->r->base, job_watchdog_fired, j);
	if (j->watchdog == NULL) {
		job_call_clear(&call);
		job_record(j, "retry", 0, "out of memory", NULL);
		return;
	}
	struct timeval tv = job_ms_tv(j->r->watchdog_ms);
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
	uint64_t deadline_us = j->started_us + (uint64_t)j->r->watchdog_ms * 1000;
	if (j->rewrite_ms == 0)
		j->rewrite_ms = JOBS_REWRITE_MIN_MS;
	else if (j->rewrite_ms < JOBS_REWRITE_MAX_MS)
		j->rewrite_ms *= 2;
	if (util_mono_us() + (uint64_t)j->rewrite_ms * 1000 >= deadline_us)
		return false;
	if (j->rewrite == NULL)
		j->rewrite = evtimer_new(j->r->base, on_rewrite, j);
	if (j->rewrite == NULL)
		return false;
	struct timeval tv = job_ms_tv(j->rewrite_ms);
	evtimer_add(j->rewrite, &tv);
	j->write_pending = true;
	return true;
}

/* The outcome write returned. */
static void job_written(db_batch *b, bool ok, const char *error, void *arg)
{
	job *j = arg;
	job_runner *r = j->r;     /* j may be freed below */
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
		j->r->held--;
	}
	job_release_if_unused(j);
	/* A slot is free, and the job's successor in its ordering key may be
	 * due only now that this outcome is committed. */
	jobs_runner_claim(r);
}

/* Submit the recorded outcome for the current claim of j. The write may
 * call back before this returns (pool stopped): nothing may touch j after. */
static void job_write(job *j)
{
	const char *sql_outcome = strcmp(j->outcome, "timeout") == 0 ? "retry" : j->outcome;
	const char *params[] = {
		j->id, j->claim_token, sql_outcome, j->reason, j->external_id,
		j->retry_at[0] ? j->retry_at : NULL, j->r->params[2], j->r->params[3], j->r->params[1],
		strcmp(j->outcome, "ok") == 0 ? j->thread_id : NULL,
		strcmp(j->outcome, "ok") == 0 ? j->recipient_id : NULL, j->r->finish_opts,
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
void job_record(job *j, const char *outcome, int64_t retry_at_ms, const char *reason,
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
