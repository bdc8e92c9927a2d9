/* no_entry.c - a plugin that forgot its entry point: it exports a function
 * returning a valid descriptor, but not under the name parley_plugin_entry.
 * The loader must refuse it, naming the file and the missing symbol. */
#include "parley/parley.h"

static void no_entry_open_ticket(void *self, const parley_ticket_request *t, parley_delivery *d)
{
}

static void no_entry_append(void *self, const parley_ticket_append *a, parley_delivery *d)
{
}

static int no_entry_create(const parley_host *host, parley_instance *inst,
                           const parley_config *cfg, void **self)
{
	*self = NULL;
	return 0;
}

static const parley_sink_ops no_entry_ops = {
	.size = sizeof(parley_sink_ops),
	.open_ticket = no_entry_open_ticket,
	.append_message = no_entry_append,
};

static const parley_plugin_descriptor no_entry_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_SINK,
	.name = "no_entry",
	.version = "1.0.0",
	.description = "test plugin: exports its descriptor under the wrong name",
	.create = no_entry_create,
	.sink = &no_entry_ops,
};

/* Exported, but not the symbol the loader looks up. */
PARLEY_EXPORT const parley_plugin_descriptor *parley_plugin_entry_v0(void);
PARLEY_EXPORT const parley_plugin_descriptor *parley_plugin_entry_v0(void)
{
	return &no_entry_descriptor;
}
