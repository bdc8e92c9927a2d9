/* job_cluster.c - the runner registry, the job.unclaimed notice and the job
 * metrics (see job_cluster.h; the SQL is parley_job_runner_seen). */
#include "job_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define CLUSTER_LOG "jobs"
#define CLUSTER_MAX_GAUGES 4096       /* state/target pairs tracked for parley_jobs */

#define SEEN_SQL \
	"SELECT reporter, array_to_json(unclaimed)::text FROM parley_job_runner_seen($1, " \
	"ARRAY(SELECT jsonb_array_elements_text($2::jsonb)), $3::int, $4::int)"
#define COUNT_SQL \
	"SELECT state, target_kind, target_instance, count(*) FROM job WHERE state <> 'done' " \
	"GROUP BY state, target_kind, target_instance"
#define OLDEST_SQL \
	"SELECT coalesce(extract(epoch FROM now() - min(run_at)), 0)::double precision FROM job " \
	"WHERE state = 'queued' AND run_at <= now()"

#define M_JOBS "parley_jobs"
#define M_JOBS_HELP "Jobs by state and target, exported by one node of the cluster (done jobs " \
	"are counted by parley_job_attempts_total)."
#define M_OLDEST "parley_jobs_oldest_due_seconds"
#define M_OLDEST_HELP "Age of the oldest queued job that is due, exported by one node of the cluster."
#define M_REPORTER "parley_jobs_reporter"
#define M_REPORTER_HELP "1 on the node that exports the cluster-wide job gauges, else 0."
#define M_ATTEMPTS "parley_job_attempts_total"
#define M_ATTEMPTS_HELP "Job attempts by target and outcome (ok, retry, fail, timeout)."
#define M_DEAD "parley_jobs_dead_total"
#define M_DEAD_HELP "Jobs this process moved to dead, by target."

static struct {
	bool started, pending, reporter;
	char *runner_id, *targets;    /* owned */
	char params[2][16];           /* alive_ms, notice_ms as text */
	char **gauge_labels;          /* owned: every state/target pair reported */
	double *gauge_values;
	size_t n_gauges;
} C;

/* ------------------------------------------------------------ counters */

/* labels: the inside of {...}, built from a target and optional outcome. */
static char *target_labels(const char *target, const char *outcome)
{
	char *t = metrics_escape_label(target);
	size_t cap = strlen(t) + (outcome ? strlen(outcome) : 0) + 32;
	char *labels = xmalloc(cap);
	if (outcome != NULL)
		snprintf(labels, cap, "target=\"%s\",outcome=\"%s\"", t, outcome);
	else
		snprintf(labels, cap, "target=\"%s\"", t);
	free(t);
	return labels;
}

void job_metrics_attempt(const char *target, const char *outcome)
{
	char *labels = target_labels(target, outcome);
	metrics_counter_add(M_ATTEMPTS, M_ATTEMPTS_HELP, labels, 1);
	free(labels);
}

void job_metrics_dead(const char *target)
{
	char *labels = target_labels(target, NULL);
	metrics_counter_add(M_DEAD, M_DEAD_HELP, labels, 1);
	free(labels);
}

/* -------------------------------------------------------------- gauges */

static size_t gauge_slot(const char *labels)
{
	for (size_t i = 0; i < C.n_gauges; i++)
		if (strcmp(C.gauge_labels[i], labels) == 0)
			return i;
	if (C.n_gauges >= CLUSTER_MAX_GAUGES)
		return SIZE_MAX;
	C.gauge_labels = xrealloc(C.gauge_labels, (C.n_gauges + 1) * sizeof(char *));
	C.gauge_values = xrealloc(C.gauge_values, (C.n_gauges + 1) * sizeof(double));
	C.gauge_labels[C.n_gauges] = xstrdup(labels);
	C.gauge_values[C.n_gauges] = 0;
	return C.n_gauges++;
}

static void forget_gauges(void)
{
	for (size_t i = 0; i < C.n_gauges; i++)
		free(C.gauge_labels[i]);
	free(C.gauge_labels);
	free(C.gauge_values);
	C.gauge_labels = NULL;
	C.gauge_values = NULL;
	C.n_gauges = 0;
}

static void set_reporter(bool reporter)
{
	if (C.reporter && !reporter) {
		/* Another node reports now: stale values here would count twice. */
		metrics_gauge_clear(M_JOBS);
		metrics_gauge_clear(M_OLDEST);
		forget_gauges();
		log_info(CLUSTER_LOG, "another node exports the cluster's job gauges now");
	} else if (!C.reporter && reporter) {
		log_info(CLUSTER_LOG, "this node exports the cluster's job gauges");
	}
	C.reporter = reporter;
	metrics_gauge_set(M_REPORTER, M_REPORTER_HELP, NULL, reporter ? 1 : 0);
}

static void counts_done(PGresult *counts, PGresult *oldest)
{
	/* Pairs that vanished (all finished) must read 0, not their last count. */
	for (size_t i = 0; i < C.n_gauges; i++)
		C.gauge_values[i] = 0;
	for (int i = 0; counts != NULL && i < PQntuples(counts); i++) {
		char target[300];
		snprintf(target, sizeof(target), "%s/%s", PQgetvalue(counts, i, 1), PQgetvalue(counts, i, 2));
		char *t = metrics_escape_label(target), *s = metrics_escape_label(PQgetvalue(counts, i, 0));
		size_t cap = strlen(t) + strlen(s) + 32;
		char *labels = xmalloc(cap);
		snprintf(labels, cap, "state=\"%s\",target=\"%s\"", s, t);
		size_t slot = gauge_slot(labels);
		if (slot != SIZE_MAX)
			C.gauge_values[slot] = atof(PQgetvalue(counts, i, 3));
		free(labels);
		free(t);
		free(s);
	}
	for (size_t i = 0; i < C.n_gauges; i++)
		metrics_gauge_set(M_JOBS, M_JOBS_HELP, C.gauge_labels[i], C.gauge_values[i]);
	if (oldest != NULL && PQntuples(oldest) == 1)
		metrics_gauge_set(M_OLDEST, M_OLDEST_HELP, NULL, atof(PQgetvalue(oldest, 0, 0)));
}

/* --------------------------------------------------------------- sweep */

static void log_unclaimed(const char *json_text)
{
	json_t *a = json_loads(json_text, 0, NULL);
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
		log_warn(CLUSTER_LOG, "jobs for %s have waited longer than %s ms and no running node "
		         "loads that target; raised a job.unclaimed notice", json_string_value(v),
		         C.params[1]);
	json_decref(a);
}

static void sweep_done(db_batch *b, bool ok, const char *error, void *arg)
{
	C.pending = false;
	if (!C.started)
		return;
	if (!ok) {
		log_debug(CLUSTER_LOG, "cannot record the runner or count jobs: %s", error);
		return;
	}
	PGresult *seen = db_batch_result(b, 0);
	if (seen == NULL || PQntuples(seen) != 1)
		return;
	set_reporter(strcmp(PQgetvalue(seen, 0, 0), "t") == 0);
	if (!PQgetisnull(seen, 0, 1))
		log_unclaimed(PQgetvalue(seen, 0, 1));
	/* Only the reporter asked for the counts (see job_cluster_sweep). */
	if (C.reporter && db_batch_result(b, 1) != NULL)
		counts_done(db_batch_result(b, 1), db_batch_result(b, 2));
}

void job_cluster_sweep(void)
{
	if (!C.started || C.pending)
		return;
	const char *params[] = { C.runner_id, C.targets, C.params[0], C.params[1] };
	db_batch *b = db_batch_new();
	db_batch_add(b, SEEN_SQL, 4, params);
	/* Counted by the node that was the reporter at the last sweep; a node
	 * that becomes it starts one sweep later. */
	if (C.reporter) {
		db_batch_add(b, COUNT_SQL, 0, NULL);
		db_batch_add(b, OLDEST_SQL, 0, NULL);
	}
	C.pending = true;
	db_batch_set_background(b);
	db_batch_submit(b, sweep_done, NULL);
}

void job_cluster_start(const char *runner_id, const char *targets_json, int alive_ms,
                       int notice_ms)
{
	job_cluster_free();
	C.runner_id = xstrdup(runner_id);
	C.targets = xstrdup(targets_json);
	snprintf(C.params[0], sizeof(C.params[0]), "%d", alive_ms);
	snprintf(C.params[1], sizeof(C.params[1]), "%d", notice_ms);
	C.started = true;
}

void job_cluster_free(void)
{
	free(C.runner_id);
	free(C.targets);
	forget_gauges();
	memset(&C, 0, sizeof(C));
}
