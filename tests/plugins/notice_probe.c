/* notice_probe.c - a notifier for the end-to-end tests: every notice it is
 * handed is appended as one JSON line to the file named by "log_file"
 * ({"key":..., "kind":..., "title":..., "text":..., "conversation_id":..., "payload":...})
 * and completed OK at once. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>

#include "parley/parley.h"

typedef struct notice_probe {
	const parley_host *host;   /* owned by the core; valid until destroy */
	parley_instance *inst;     /* owned by the core; valid until destroy */
	int fd;                    /* owned; the log file */
} notice_probe;

static const parley_config_key notice_probe_keys[] = {
	{ "log_file", PARLEY_CONFIG_STRING, PARLEY_CONFIG_REQUIRED, "append one JSON line per notice" },
	{ NULL, 0, 0, NULL }
};

static int np_create(const parley_host *host, parley_instance *inst, const parley_config *cfg,
                     void **self)
{
	notice_probe *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -1;
	p->host = host;
	p->inst = inst;
	p->fd = open(host->config_string(cfg, "log_file"), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (p->fd < 0) {
		host->config_error(inst, "log_file", "cannot open for appending");
		free(p);
		return -1;
	}
	*self = p;
	return 0;
}

static void np_destroy(void *self)
{
	notice_probe *p = self;
	close(p->fd);
	free(p);
}

/* n: borrowed for the call; d: completed here. */
static void np_deliver(void *self, const parley_notice *n, parley_delivery *d)
{
	notice_probe *p = self;
	json_t *line = json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?}", "key", n->idempotency_key,
	                         "kind", n->kind, "title", n->title, "text", n->text, "conversation_id",
	                         n->conversation != NULL ? n->conversation->conversation_id : NULL);
	if (n->payload_json != NULL)
		json_object_set_new(line, "payload", json_loads(n->payload_json, 0, NULL));
	char *text = json_dumps(line, JSON_COMPACT);
	json_decref(line);
	if (text != NULL) {
		/* One write per line (O_APPEND keeps lines whole): the NUL becomes the newline. */
		size_t len = strlen(text);
		text[len] = '\n';
		if (write(p->fd, text, len + 1) != (ssize_t)(len + 1))
			p->host->log(p->inst, PARLEY_LOG_WARN, "notice_probe: short write");
		free(text);
	}
	p->host->delivery_complete(d, PARLEY_OK, 0, NULL);
}

static const parley_notifier_ops np_ops = {
	.size = sizeof(parley_notifier_ops),
	.deliver = np_deliver,
};

static const parley_plugin_descriptor np_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_NOTIFIER,
	.name = "notice_probe",
	.version = "1",
	.description = "test notifier: appends each notice to a file",
	.config_keys = notice_probe_keys,
	.create = np_create,
	.destroy = np_destroy,
	.notifier = &np_ops,
};

PARLEY_PLUGIN_ENTRY(&np_descriptor)
