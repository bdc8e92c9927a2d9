/* wrong_kind.c - a valid notifier. The loader tests configure it as a sink:
 * the loader must refuse it, naming the kind it has and the kind expected. */
#include "parley/parley.h"

static void wrong_kind_deliver(void *self, const parley_notice *n, parley_delivery *d)
{
}

static int wrong_kind_create(const parley_host *host, parley_instance *inst,
                             const parley_config *cfg, void **self)
{
	*self = NULL;
	return 0;
}

static const parley_notifier_ops wrong_kind_ops = {
	.size = sizeof(parley_notifier_ops),
	.deliver = wrong_kind_deliver,
};

static const parley_plugin_descriptor wrong_kind_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_NOTIFIER,
	.name = "wrong_kind",
	.version = "1.0.0",
	.description = "test plugin: a notifier, configured as a sink by the tests",
	.create = wrong_kind_create,
	.notifier = &wrong_kind_ops,
};

PARLEY_PLUGIN_ENTRY(&wrong_kind_descriptor)
