/* settings_probe.c - a notifier built against ABI 1.3 with a settings table
 * holding every setting type, defaults, ranges, a required key, a secret,
 * a nested object and a restart-only key. The core fills and checks them;
 * the plugin keeps one cross-field check and refuses a reload whose label
 * is "refuse", so tests can watch the old settings stay in force. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "parley/parley.h"
#include "settings_probe.h"

#define S(field) offsetof(settings_probe_settings, field)
#define RELOAD PARLEY_SETTING_FLAG_RELOADABLE

static const parley_setting probe_settings[] = {
	{ .name = "label", .type = PARLEY_SETTING_STRING,
	  .flags = PARLEY_SETTING_FLAG_PRINTABLE | RELOAD, .default_value = "none",
	  .min = 1, .max = 32, .offset = S(label), .description = "any text" },
	{ .name = "token", .type = PARLEY_SETTING_SECRET,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | RELOAD, .min = 8, .max = 64, .offset = S(token),
	  .description = "a secret" },
	{ .name = "timeout_ms", .type = PARLEY_SETTING_INTEGER, .flags = RELOAD,
	  .default_value = "5000", .min = 100, .max = 60000, .offset = S(timeout_ms),
	  .description = "a bounded integer" },
	{ .name = "verbose", .type = PARLEY_SETTING_BOOLEAN, .flags = RELOAD, .default_value = "true",
	  .offset = S(verbose), .description = "a boolean" },
	{ .name = "endpoint", .type = PARLEY_SETTING_URL, .flags = RELOAD,
	  .default_value = "https://api.example.com/v1", .offset = S(endpoint),
	  .description = "an http(s) URL" },
	{ .name = "tags", .type = PARLEY_SETTING_STRING_LIST,
	  .flags = PARLEY_SETTING_FLAG_PRINTABLE | RELOAD,
	  .default_value = "[\"a\", \"b\"]", .min = 1, .max = 16, .offset = S(tags),
	  .description = "a list of strings" },
	{ .name = "extra", .type = PARLEY_SETTING_JSON, .flags = RELOAD, .offset = S(extra),
	  .description = "any JSON" },
	{ .name = "auth.user", .type = PARLEY_SETTING_STRING, .flags = RELOAD,
	  .offset = S(auth_user), .description = "a key of a nested object" },
	{ .name = "auth.key", .type = PARLEY_SETTING_STRING,
	  .flags = PARLEY_SETTING_FLAG_SECRET | RELOAD, .default_value = "probe-default-key",
	  .offset = S(auth_key), .description = "a secret with a default" },
	{ .name = "port", .type = PARLEY_SETTING_INTEGER, .default_value = "8080", .min = 1,
	  .max = 65535, .offset = S(port), .description = "takes a restart" },
};

/* The one check the table cannot express: it involves two settings. */
static int cross_check(const parley_host *host, parley_instance *inst,
                       const settings_probe_settings *s)
{
	if (s->extra != NULL && !s->verbose) {
		host->config_error(inst, "extra", "needs verbose");
		return -1;
	}
	return 0;
}

static int probe_create(const parley_host *host, parley_instance *inst,
                        const parley_config *cfg, void **self)
{
	if (!PARLEY_HAS_FIELD(host, parley_host, config_settings))
		return -1;
	const settings_probe_settings *s = host->config_settings(cfg);
	if (s == NULL || cross_check(host, inst, s) != 0)
		return -1;
	settings_probe *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -1;
	p->host = host;
	p->inst = inst;
	p->settings = s;
	*self = p;
	return 0;
}

static int probe_reload(void *self, const parley_config *cfg)
{
	settings_probe *p = self;
	const settings_probe_settings *s = p->host->config_settings(cfg);
	if (cross_check(p->host, p->inst, s) != 0)
		return -1;
	if (strcmp(s->label, "refuse") == 0) {
		p->host->config_error(p->inst, "label", "refused by the plugin");
		return -1;
	}
	p->settings = s;   /* the core frees the previous struct after we return */
	p->reloads++;
	return 0;
}

static void probe_destroy(void *self)
{
	free(self);
}

static void probe_deliver(void *self, const parley_notice *n, parley_delivery *d)
{
	settings_probe *p = self;
	(void)n;
	p->host->delivery_complete(d, PARLEY_OK, 0, NULL);
}

static const parley_notifier_ops probe_ops = {
	.size = sizeof(parley_notifier_ops),
	.deliver = probe_deliver,
};

static const parley_plugin_descriptor probe_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_NOTIFIER,
	.name = "settings_probe",
	.version = "1.3.0",
	.description = "test notifier with an ABI 1.3 settings table",
	.create = probe_create,
	.reload = probe_reload,
	.destroy = probe_destroy,
	.notifier = &probe_ops,
	PARLEY_SETTINGS(probe_settings, settings_probe_settings),
};

PARLEY_PLUGIN_ENTRY(&probe_descriptor)
