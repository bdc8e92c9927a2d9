/* wrong_major.c - a sink built against a future ABI major (99). The loader
 * must refuse it, naming the file and both versions, without reading any
 * field past the version numbers. */
#include "parley/parley.h"

static void wrong_major_open_ticket(void *self, const parley_ticket_request *t,
                                    parley_delivery *d)
{
}

static void wrong_major_append(void *self, const parley_ticket_append *a, parley_delivery *d)
{
}

static int wrong_major_create(const parley_host *host, parley_instance *inst,
                              const parley_config *cfg, void **self)
{
	*self = NULL;
	return 0;
}

static const parley_sink_ops wrong_major_ops = {
	.size = sizeof(parley_sink_ops),
	.open_ticket = wrong_major_open_ticket,
	.append_message = wrong_major_append,
};

static const parley_plugin_descriptor wrong_major_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = 99,
	.abi_minor = 0,
	.kind = PARLEY_KIND_SINK,
	.name = "wrong_major",
	.version = "1.0.0",
	.description = "test plugin: claims ABI 99.0",
	.create = wrong_major_create,
	.sink = &wrong_major_ops,
};

PARLEY_PLUGIN_ENTRY(&wrong_major_descriptor)
