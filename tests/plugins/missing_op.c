/* missing_op.c - a sink without its mandatory append_message operation. The
 * loader must refuse it and name the missing operation. */
#include "parley/parley.h"

static void missing_op_open_ticket(void *self, const parley_ticket_request *t,
                                   parley_delivery *d)
{
}

static int missing_op_create(const parley_host *host, parley_instance *inst,
                             const parley_config *cfg, void **self)
{
	*self = NULL;
	return 0;
}

static const parley_sink_ops missing_op_ops = {
	.size = sizeof(parley_sink_ops),
	.open_ticket = missing_op_open_ticket,
	.append_message = NULL,   /* the point of this plugin */
};

static const parley_plugin_descriptor missing_op_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_SINK,
	.name = "missing_op",
	.version = "1.0.0",
	.description = "test plugin: a sink without append_message",
	.create = missing_op_create,
	.sink = &missing_op_ops,
};

PARLEY_PLUGIN_ENTRY(&missing_op_descriptor)
