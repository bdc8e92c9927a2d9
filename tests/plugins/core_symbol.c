/* core_symbol.c - a notifier that calls a core-internal function directly
 * instead of going through the host table. parleyd exports no such symbol,
 * so opening this file with RTLD_NOW must fail with an unresolved symbol,
 * which the loader reports instead of crashing later. */
#include "parley/parley.h"

/* Deliberately declared by hand: plugins have no core header to include. */
extern void log_msg(int level, const char *component, const char *fmt, ...);

static void core_symbol_deliver(void *self, const parley_notice *n, parley_delivery *d)
{
}

static int core_symbol_create(const parley_host *host, parley_instance *inst,
                              const parley_config *cfg, void **self)
{
	log_msg(2, "core_symbol", "this call must never link");
	*self = NULL;
	return 0;
}

static const parley_notifier_ops core_symbol_ops = {
	.size = sizeof(parley_notifier_ops),
	.deliver = core_symbol_deliver,
};

static const parley_plugin_descriptor core_symbol_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_NOTIFIER,
	.name = "core_symbol",
	.version = "1.0.0",
	.description = "test plugin: links against a core-internal symbol",
	.create = core_symbol_create,
	.notifier = &core_symbol_ops,
};

PARLEY_PLUGIN_ENTRY(&core_symbol_descriptor)
