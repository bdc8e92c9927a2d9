/* jobs.h - the job runner: the outbox every outbound action goes through.
 *
 * Jobs are rows in the `job` table, written in the same transaction as the
 * data that caused them. Every parleyd runs a runner: it claims due jobs for
 * the targets it has loaded (its plugin instances and the core operations) with
 * FOR UPDATE SKIP LOCKED (so several processes share the work and never run
 * one job twice at once), is woken by LISTEN/NOTIFY and a periodic sweep, and
 * hands each job to its operation (job_ops.h) through a delivery.
 * OK completes the job; RETRY reschedules it (exponential backoff with full
 * jitter, never before the plugin's retry time); FAIL or too many attempts
 * make it dead. A job whose runner died is claimed again when its lease ends.
 * Jobs sharing an ordering key run one at a time, in creation order. */
#ifndef PARLEY_CORE_JOBS_H
#define PARLEY_CORE_JOBS_H

#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

/* The runner's bounds, which the jobs.* settings table uses too (one place). */
#define JOBS_MAX_CONCURRENCY 1000
#define JOBS_MIN_LEASE_MS 500
#define JOBS_MIN_SWEEP_MS 50

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>

struct plugin_set;

typedef struct jobs_options {
	const char *dsn;          /* for the LISTEN connection; borrowed, copied */
	int connect_timeout_ms;
	int concurrency;          /* deliveries in flight in this process */
	int lease_ms;             /* a claimed job is reclaimable after this */
	int max_attempts;         /* default for jobs that do not set their own */
	int backoff_base_ms;      /* first retry delay cap; doubles per attempt */
	int backoff_max_ms;       /* cap of the backoff */
	int sweep_interval_ms;    /* look for due jobs at least this often */
	/* A job no running node can take (its target is loaded nowhere) for
	 * this long raises a job.unclaimed notice; 0 = the default, 5 minutes. */
	int unclaimed_notice_ms;
	/* What a job's end may set off, as a JSON object text handed to
	 * parley_job_finish (e.g. {"notify_delivery_failed": ["slack"]});
	 * borrowed, copied; NULL = "{}". */
	const char *finish_opts_json;
} jobs_options;

/* Start the runner on `base`. plugins: borrowed, must outlive the runner.
 * false (with a reason) only on bad options. */
PARLEY_MUSTCHECK bool jobs_start(struct event_base *base, const jobs_options *opts,
                                 struct plugin_set *plugins, char *err, size_t errlen);
/* Replace jobs_options.finish_opts_json (a new cluster policy); copied.
 * Nothing without a started runner. */
void jobs_set_finish_opts(const char *finish_opts_json);
/* Stop claiming; deliveries in flight still complete and are recorded. */
void jobs_stop(void);
/* Deliveries in flight plus their pending database writes (shutdown drain). */
size_t jobs_in_flight(void);
/* Free everything: after db_pool_stop and the loop has drained, before
 * plugins_free (a job a plugin still holds frees itself if the plugin
 * completes it later). */
void jobs_free(void);

#endif
