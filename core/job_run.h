/* job_run.h - one claimed job, from its start to its recorded outcome,
 * and the runner state it shares with jobs.c. Internal to the job runner:
 * only jobs.c and job_run.c include it. */
#ifndef PARLEY_CORE_JOB_RUN_H
#define PARLEY_CORE_JOB_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <event2/event.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "db_listen.h"
#include "job_ops.h"
#include "jobs.h"
#include "plugin_loader.h"

#define JOBS_LOG "jobs"

struct job_runner;

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
	struct job_runner *r;         /* borrowed: the runner that claimed it */
	TAILQ_ENTRY(job) link;
} job;
TAILQ_HEAD(job_list, job);

/* The runner: one per process, owned by jobs.c. */
typedef struct job_runner {
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
} job_runner;

/* A job from row i of a claim result (res: borrowed), holding a slot. */
job *job_new(job_runner *r, PGresult *res, int i);
/* Hand a freshly claimed job to its operation. Nothing may touch j after:
 * the operation can complete it inside the call. */
void job_start(job *j);
/* Record an outcome ("ok", "retry", "fail", "timeout" or "release"; static)
 * for the current claim of j. reason, external_id: borrowed, may be NULL.
 * Nothing may touch j afterwards. */
void job_record(job *j, const char *outcome, int64_t retry_at_ms, const char *reason,
                const char *external_id);
/* Free j now (jobs_free): it leaves the runner's list. */
void job_free(job *j);

/* In jobs.c: claim as many due jobs as there are free slots (a slot was
 * freed, or an ordering key's next job may be due). */
void jobs_runner_claim(job_runner *r);

static inline struct timeval job_ms_tv(int64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
	                      .tv_usec = (suseconds_t)((ms % 1000) * 1000) };
	return tv;
}

#endif
