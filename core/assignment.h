/* assignment.h - the periodic side of automatic assignment.
 *
 * The rules live in SQL (sql/functions/assignment.sql): team queues, who
 * gets a conversation, and the sweep that returns the conversations of
 * agents who went away and serves the queues when capacity frees up. The
 * sweep is one durable job, core/assignment/sweep, for the whole cluster:
 * every node's timer asks PostgreSQL to run it again when its last run
 * ended at least sweep_interval_ms ago (parley_assignment_schedule), and
 * whichever node's job runner claims it runs it (assignment_job_sweep). */
#ifndef PARLEY_CORE_ASSIGNMENT_H
#define PARLEY_CORE_ASSIGNMENT_H

#include <stdbool.h>
#include <event2/event.h>

#include "config.h"
#include "job_payload.h"
#include "parley/parley.h"

/* Take the assignment settings of c (at start, on SIGHUP, on a new
 * cluster policy); c: borrowed for the call. A running timer takes a new
 * interval at once. */
void assignment_configure(const cfg *c);
/* Start scheduling the sweep on base (call on nodes that run jobs, after
 * assignment_configure). */
PARLEY_MUSTCHECK bool assignment_start(struct event_base *base);
/* Stop scheduling (shutdown); a sweep in flight completes. */
void assignment_stop(void);
/* Free the timer (after the loop drained). */
void assignment_free(void);

/* The job operation core/assignment/sweep (job_ops.c): runs
 * parley_assignment_sweep, again while it says there is more, and
 * completes d: OK, or RETRY with the database's reason. */
void assignment_job_sweep(parley_instance *inst, job_call *call, parley_delivery *d);

#endif
