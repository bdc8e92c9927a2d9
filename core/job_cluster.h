/* job_cluster.h - the job runner's view of the cluster: the runner registry
 * (which node runs which targets), the job.unclaimed notice, and the job
 * metrics.
 *
 * Every sweep records this runner and its targets (parley_job_runner_seen).
 * Jobs for a target no live runner has, due for longer than the configured
 * time, raise one job.unclaimed notice per target. The cluster-wide gauges
 * (parley_jobs by state and target, parley_jobs_oldest_due_seconds) are
 * exported only by the reporter, the live runner with the least name, so a
 * sum over the nodes counts every job once; the other nodes export none. */
#ifndef PARLEY_CORE_JOB_CLUSTER_H
#define PARLEY_CORE_JOB_CLUSTER_H

#include <stdbool.h>

/* runner_id, targets_json (a JSON array of "kind/instance"): borrowed,
 * copied. alive_ms: a runner not seen for this long is gone; notice_ms:
 * how long a job may wait for a runner before the notice. */
void job_cluster_start(const char *runner_id, const char *targets_json, int alive_ms,
                       int notice_ms);
/* Record this runner, notice unclaimable jobs, refresh the gauges if this
 * runner is the reporter. Background work on the pool; one at a time. */
void job_cluster_sweep(void);
void job_cluster_free(void);

/* Per-process counters: an attempt finished with `outcome`, a job made
 * dead. Strings borrowed. */
void job_metrics_attempt(const char *target, const char *outcome);
void job_metrics_dead(const char *target);

#endif
