/* job_ops.h - what the job runner can run: one row per (target kind,
 * operation), with the builder that turns the payload into the operation's
 * arguments and the function that starts it.
 *
 * Plugin kinds (channel, sink, notifier) run on any configured instance of
 * that kind; the `core` kind names the daemon's own operations, grouped by
 * the subsystem that provides them (the job's target_instance, e.g.
 * core/jobs). Core operations use the same durable jobs, leases, retries and
 * deliveries as plugins: they complete a parley_delivery like a plugin does.
 * Adding an operation is adding a row (and its payload builder). */
#ifndef PARLEY_CORE_JOB_OPS_H
#define PARLEY_CORE_JOB_OPS_H

#include <stdbool.h>
#include <stddef.h>

#include "job_payload.h"
#include "parley/parley.h"

typedef struct job_op {
	const char *kind;             /* "channel", "sink", "notifier" or "core" */
	const char *instance;         /* core: the subsystem; plugin kinds: NULL (any instance) */
	const char *operation;
	parley_kind plugin_kind;      /* the plugin kind that runs it; 0 for core */
	job_payload_build_fn build;
	/* Start the operation. inst: the plugin instance (NULL for core);
	 * call: borrowed for the call; d: complete it exactly once, possibly
	 * before this returns. */
	void (*invoke)(parley_instance *inst, job_call *call, parley_delivery *d);
} job_op;

/* The row for a job's target and operation; NULL when there is none. */
const job_op *job_op_find(const char *kind, const char *instance, const char *operation);

/* The core targets ("core/<subsystem>") every runner can run; the array is
 * static, *n its length. */
const char *const *job_op_core_targets(size_t *n);

#endif
