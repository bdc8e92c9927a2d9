/* job_ops.c - the operation table and the core operations. */
#include "job_ops.h"

#include <string.h>

#include "assignment.h"
#include "host_api.h"

/* ------------------------------------------------------------ plugins */

static void invoke_send(parley_instance *inst, job_call *call, parley_delivery *d)
{
	inst->desc->channel->send(inst->self, &call->u.send, d);
}

static void invoke_open_ticket(parley_instance *inst, job_call *call, parley_delivery *d)
{
	inst->desc->sink->open_ticket(inst->self, &call->u.ticket, d);
}

static void invoke_append(parley_instance *inst, job_call *call, parley_delivery *d)
{
	inst->desc->sink->append_message(inst->self, &call->u.append, d);
}

static void invoke_deliver(parley_instance *inst, job_call *call, parley_delivery *d)
{
	inst->desc->notifier->deliver(inst->self, &call->u.notice, d);
}

/* --------------------------------------------------------------- core */

/* core/jobs noop: does nothing and ends as the payload says
 * ({"outcome": "ok"|"retry"|"fail", "reason": "..."}; default ok). It proves
 * the core path end to end and lets operators test a node's runner. */
static void core_noop(parley_instance *inst, job_call *call, parley_delivery *d)
{
	const char *outcome = json_string_value(json_object_get(call->payload, "outcome"));
	const char *reason = json_string_value(json_object_get(call->payload, "reason"));
	parley_outcome o = PARLEY_OK;
	(void)inst;
	if (outcome != NULL && strcmp(outcome, "retry") == 0)
		o = PARLEY_RETRY;
	else if (outcome != NULL && strcmp(outcome, "fail") == 0)
		o = PARLEY_FAIL;
	host_api_table()->delivery_complete(d, o, 0, o == PARLEY_OK ? NULL
	                                              : reason ? reason : "noop told to");
}

/* -------------------------------------------------------------- table */

static const job_op ops[] = {
	{ "channel", NULL, "send", PARLEY_KIND_CHANNEL, job_payload_send, invoke_send },
	{ "sink", NULL, "open_ticket", PARLEY_KIND_SINK, job_payload_open_ticket, invoke_open_ticket },
	{ "sink", NULL, "append_message", PARLEY_KIND_SINK, job_payload_append, invoke_append },
	{ "notifier", NULL, "deliver", PARLEY_KIND_NOTIFIER, job_payload_notice, invoke_deliver },
	{ "core", "jobs", "noop", 0, job_payload_object, core_noop },
	/* The assignment sweep (assignment.c): one job for the cluster,
	 * scheduled by every node's timer. */
	{ "core", "assignment", "sweep", 0, job_payload_object, assignment_job_sweep },
};

static const char *const core_targets[] = { "core/jobs", "core/assignment" };

const job_op *job_op_find(const char *kind, const char *instance, const char *operation)
{
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		const job_op *op = &ops[i];
		if (strcmp(op->kind, kind) == 0 && strcmp(op->operation, operation) == 0 &&
		    (op->instance == NULL || strcmp(op->instance, instance) == 0))
			return op;
	}
	return NULL;
}

const char *const *job_op_core_targets(size_t *n)
{
	*n = sizeof(core_targets) / sizeof(core_targets[0]);
	return core_targets;
}
