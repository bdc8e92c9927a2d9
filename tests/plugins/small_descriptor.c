/* small_descriptor.c - a sink whose descriptor claims to be 16 bytes, too
 * small to hold even the ABI v1 fields (name, create, ops). The loader must
 * refuse it rather than read past what the plugin says it provides. */
#include "parley/parley.h"

static void small_descriptor_open_ticket(void *self, const parley_ticket_request *t,
                                         parley_delivery *d)
{
}

static void small_descriptor_append(void *self, const parley_ticket_append *a,
                                    parley_delivery *d)
{
}

static int small_descriptor_create(const parley_host *host, parley_instance *inst,
                                   const parley_config *cfg, void **self)
{
	*self = NULL;
	return 0;
}

static const parley_sink_ops small_descriptor_ops = {
	.size = sizeof(parley_sink_ops),
	.open_ticket = small_descriptor_open_ticket,
	.append_message = small_descriptor_append,
};

static const parley_plugin_descriptor small_descriptor_descriptor = {
	.size = 16,
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_SINK,
	.name = "small_descriptor",
	.version = "1.0.0",
	.description = "test plugin: descriptor size 16",
	.create = small_descriptor_create,
	.sink = &small_descriptor_ops,
};

PARLEY_PLUGIN_ENTRY(&small_descriptor_descriptor)
