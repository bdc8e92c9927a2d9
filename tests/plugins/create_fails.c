/* create_fails.c - a channel whose create() refuses every config with a
 * config_error on "token". The core must print it with the file and JSON path
 * of the key and refuse to start. */
#include "parley/parley.h"

static void create_fails_handle_request(void *self, parley_request *req)
{
}

static void create_fails_send(void *self, const parley_outbound_message *msg,
                              parley_delivery *d)
{
}

static const parley_config_key create_fails_keys[] = {
	{ "token", PARLEY_CONFIG_STRING, PARLEY_CONFIG_SECRET, "any value; always refused" },
	{ NULL, 0, 0, NULL }
};

static int create_fails_create(const parley_host *host, parley_instance *inst,
                               const parley_config *cfg, void **self)
{
	host->config_error(inst, "token", "is not accepted by this test plugin");
	return -1;
}

static const parley_channel_ops create_fails_ops = {
	.size = sizeof(parley_channel_ops),
	.handle_request = create_fails_handle_request,
	.send = create_fails_send,
};

static const parley_plugin_descriptor create_fails_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_CHANNEL,
	.name = "create_fails",
	.version = "1.0.0",
	.description = "test plugin: create() always fails with a config error",
	.config_keys = create_fails_keys,
	.create = create_fails_create,
	.channel = &create_fails_ops,
};

PARLEY_PLUGIN_ENTRY(&create_fails_descriptor)
