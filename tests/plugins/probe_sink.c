/* probe_sink.c - a working sink that reports each call it receives, so the
 * end-to-end tests can watch the lifecycle from the daemon's log:
 *   probe_sink: create label=<label>      (and start, reload, stop, destroy)
 *   probe_sink: open_ticket key=<idempotency key>
 *   probe_sink: append_message ticket=<external ticket id>
 * Tickets are "opened" at once with the external id "T-<idempotency key>".
 * Its webhook answers 200 {"probe":"<label>"}. It declares ABI 1.2. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley/parley.h"

typedef struct probe_sink {
	const parley_host *host;   /* owned by the core; valid until destroy */
	parley_instance *inst;     /* owned by the core; valid until destroy */
	char *label;               /* owned; NULL when not configured */
} probe_sink;

static const parley_config_key probe_sink_keys[] = {
	{ "label", PARLEY_CONFIG_STRING, 0, "any text; echoed in logs and by the webhook" },
	{ NULL, 0, 0, NULL }
};

/* The configured label or NULL, copied (owned by the caller). cfg: borrowed.
 * *ok is cleared when out of memory. */
static char *read_label(const parley_host *host, const parley_config *cfg, int *ok)
{
	const char *label = host->config_string(cfg, "label");
	char *copy;

	*ok = 1;
	if (label == NULL)
		return NULL;
	copy = malloc(strlen(label) + 1);
	if (copy == NULL)
		*ok = 0;
	else
		strcpy(copy, label);
	return copy;
}

static void probe_log(const probe_sink *p, const char *op)
{
	p->host->log(p->inst, PARLEY_LOG_INFO, "probe_sink: %s label=%s", op,
	             p->label != NULL ? p->label : "(none)");
}

static int probe_create(const parley_host *host, parley_instance *inst,
                        const parley_config *cfg, void **self)
{
	probe_sink *p = calloc(1, sizeof(*p));
	int ok;

	if (p == NULL)
		return -1;
	p->host = host;
	p->inst = inst;
	p->label = read_label(host, cfg, &ok);
	if (!ok) {
		free(p);
		return -1;
	}
	probe_log(p, "create");
	*self = p;
	return 0;
}

static int probe_start(void *self)
{
	probe_log(self, "start");
	return 0;
}

static int probe_reload(void *self, const parley_config *cfg)
{
	probe_sink *p = self;
	int ok;
	char *label = read_label(p->host, cfg, &ok);

	if (!ok)
		return -1;
	free(p->label);
	p->label = label;
	probe_log(p, "reload");
	return 0;
}

static void probe_stop(void *self)
{
	probe_log(self, "stop");
}

static void probe_destroy(void *self)
{
	probe_sink *p = self;

	probe_log(p, "destroy");
	free(p->label);
	free(p);
}

/* t: borrowed. d: completed here. */
static void probe_open_ticket(void *self, const parley_ticket_request *t, parley_delivery *d)
{
	probe_sink *p = self;
	const char *key = t->idempotency_key != NULL ? t->idempotency_key : "";
	char *id = malloc(strlen(key) + 3);

	p->host->log(p->inst, PARLEY_LOG_INFO, "probe_sink: open_ticket key=%s", key);
	if (id == NULL) {
		p->host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
		return;
	}
	sprintf(id, "T-%s", key);
	p->host->delivery_set_external_id(d, id);
	p->host->delivery_complete(d, PARLEY_OK, 0, NULL);
	free(id);
}

/* a: borrowed. d: completed here. */
static void probe_append(void *self, const parley_ticket_append *a, parley_delivery *d)
{
	probe_sink *p = self;

	p->host->log(p->inst, PARLEY_LOG_INFO, "probe_sink: append_message ticket=%s",
	             a->external_ticket_id != NULL ? a->external_ticket_id : "");
	p->host->delivery_complete(d, PARLEY_OK, 0, NULL);
}

/* s as a JSON string body (without quotes) into out, which holds at least
 * 6 * strlen(s) + 1 bytes. */
static void json_escape(const char *s, char *out)
{
	for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++) {
		if (*c == '"' || *c == '\\') {
			*out++ = '\\';
			*out++ = (char)*c;
		} else if (*c < 0x20) {
			out += sprintf(out, "\\u%04x", *c);
		} else {
			*out++ = (char)*c;
		}
	}
	*out = '\0';
}

/* req: owned by the core; answered here. */
static void probe_handle_request(void *self, parley_request *req)
{
	probe_sink *p = self;
	const char *label = p->label != NULL ? p->label : "";
	size_t cap = 6 * strlen(label) + sizeof("{\"probe\":\"\"}");
	char *escaped = malloc(6 * strlen(label) + 1), *body = malloc(cap);
	int n;

	if (escaped == NULL || body == NULL) {
		p->host->respond_error(req, 500, "internal_error", "out of memory");
	} else {
		json_escape(label, escaped);
		n = snprintf(body, cap, "{\"probe\":\"%s\"}", escaped);
		p->host->respond(req, 200, "application/json", body, (size_t)n);
	}
	free(escaped);
	free(body);
}

static const parley_sink_ops probe_sink_ops = {
	.size = sizeof(parley_sink_ops),
	.open_ticket = probe_open_ticket,
	.append_message = probe_append,
	.handle_request = probe_handle_request,
};

/* Built as an ABI 1.2 plugin would be: its descriptor ends before the 1.3
 * settings table and it reads its declared keys itself, so the tests that
 * use it prove such plugins keep loading and working. */
static const parley_plugin_descriptor probe_sink_descriptor = {
	.size = offsetof(parley_plugin_descriptor, settings),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = 2,
	.kind = PARLEY_KIND_SINK,
	.name = "probe_sink",
	.version = "1.0.0",
	.description = "test plugin: a sink that logs every lifecycle call",
	.config_keys = probe_sink_keys,
	.create = probe_create,
	.start = probe_start,
	.reload = probe_reload,
	.stop = probe_stop,
	.destroy = probe_destroy,
	.sink = &probe_sink_ops,
};

PARLEY_PLUGIN_ENTRY(&probe_sink_descriptor)
