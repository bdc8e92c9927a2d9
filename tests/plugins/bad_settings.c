/* bad_settings.c - a 1.3 plugin whose settings table is broken: a default
 * outside its own range. The loader must refuse it when it opens it. */
#include <stddef.h>
#include <stdint.h>

#include "parley/parley.h"

typedef struct bad_settings { int64_t timeout_ms; } bad_settings;

static const parley_setting bad_rows[] = {
	{ .name = "timeout_ms", .type = PARLEY_SETTING_INTEGER, .default_value = "0", .min = 1,
	  .max = 10, .offset = offsetof(bad_settings, timeout_ms), .description = "broken default" },
};

static int bad_create(const parley_host *host, parley_instance *inst, const parley_config *cfg,
                      void **self)
{
	(void)host; (void)inst; (void)cfg;
	*self = NULL;
	return 0;
}

static void bad_deliver(void *self, const parley_notice *n, parley_delivery *d)
{
	(void)self; (void)n; (void)d;
}

static const parley_notifier_ops bad_ops = { .size = sizeof(parley_notifier_ops),
                                             .deliver = bad_deliver };

static const parley_plugin_descriptor bad_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_NOTIFIER,
	.name = "bad_settings",
	.version = "1.0.0",
	.create = bad_create,
	.notifier = &bad_ops,
	PARLEY_SETTINGS(bad_rows, bad_settings),
};

PARLEY_PLUGIN_ENTRY(&bad_descriptor)
