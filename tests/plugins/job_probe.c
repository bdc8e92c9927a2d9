/* job_probe.c - a sink for the job runner's tests. The message text (the
 * first message of open_ticket, the message of append_message) scripts
 * what it does:
 *   ok              OK with the external id "T-<idempotency key>"
 *   retry           RETRY, the core's backoff
 *   retry_at:<ms>   RETRY, not before now + ms
 *   fail            FAIL "refused by probe"
 *   hang            never completes (until stop); with "no_hang": true, as ok
 *   slow:<ms>       OK after ms
 *   fail_until:<n>  RETRY on the first n-1 calls with its key, then OK
 * Anything else is treated as ok. On stop everything pending completes at
 * once (slow: OK, hang: RETRY "stopped").
 *
 * POST /sinks/<instance>/events takes a JSON array of ticket events, each
 * {"type": "comment"|"status", "key", "ticket", "comment", "public",
 * "from_parley", "author", "text", "status": "open|pending|solved|closed"},
 * and emits them (a stand-in for a ticket system's webhook; no signature).
 *
 * Each call and each completion is one line, in the daemon's log and, with
 * "log_file", appended to that file in one write (O_APPEND), so daemons can
 * share it and tests can check order, overlap and attempts:
 *   job_probe: <op> key=<key> text=<text> label=<label> t=<unix ms>
 *   job_probe: done key=<key> outcome=<ok|retry|fail> label=<label> t=<unix ms> */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "parley/parley.h"

#define PROBE_LINE_MAX 1024

typedef struct probe_pending {
	struct probe *p;
	parley_delivery *d;          /* owned by the core until completed */
	parley_timer *timer;         /* slow: pending timer; NULL for hang */
	char *key;                   /* owned */
	struct probe_pending *next;
} probe_pending;

typedef struct probe_count {
	char *key;                   /* owned */
	int calls;
	struct probe_count *next;
} probe_count;

typedef struct probe {
	const parley_host *host;     /* owned by the core; valid until destroy */
	parley_instance *inst;       /* owned by the core; valid until destroy */
	char *label;                 /* owned */
	int log_fd;                  /* -1 without log_file */
	int no_hang;
	probe_pending *pending;      /* slow and hanging deliveries */
	probe_count *counts;         /* calls per idempotency key (fail_until) */
} probe;

static const parley_config_key probe_keys[] = {
	{ "log_file", PARLEY_CONFIG_STRING, 0, "append one line per call and completion here" },
	{ "label", PARLEY_CONFIG_STRING, 0, "names this daemon in the lines" },
	{ "no_hang", PARLEY_CONFIG_BOOLEAN, 0, "treat \"hang\" as \"ok\"" },
	{ NULL, 0, 0, NULL }
};

static char *copy(const char *s)
{
	char *c = malloc(strlen(s) + 1);
	if (c != NULL)
		strcpy(c, s);
	return c;
}

/* One line to the daemon's log and the log file. body: the part after
 * "job_probe: ", borrowed. */
static void probe_line(probe *p, const char *body)
{
	char line[PROBE_LINE_MAX];
	int n = snprintf(line, sizeof(line), "job_probe: %s label=%s t=%lld\n", body, p->label,
	                 (long long)p->host->now_ms());

	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	p->host->log(p->inst, PARLEY_LOG_INFO, "%.*s", n - 1, line);
	if (p->log_fd >= 0 && write(p->log_fd, line, (size_t)n) != n)
		p->host->log(p->inst, PARLEY_LOG_WARN, "job_probe: short write to log_file");
}

/* Complete d, logging it. key, reason: borrowed. */
static void probe_complete(probe *p, parley_delivery *d, const char *key, parley_outcome outcome,
                           long long retry_in_ms, const char *reason)
{
	static const char *const names[] = { "ok", "retry", "fail" };
	char id[600], body[PROBE_LINE_MAX];

	snprintf(body, sizeof(body), "done key=%s outcome=%s", key, names[outcome]);
	probe_line(p, body);
	if (outcome == PARLEY_OK) {
		snprintf(id, sizeof(id), "T-%s", key);
		p->host->delivery_set_external_id(d, id);
	}
	p->host->delivery_complete(d, outcome, retry_in_ms > 0 ? p->host->now_ms() + retry_in_ms : 0,
	                           reason);
}

/* Calls so far with this key, this one included. 0 when out of memory. */
static int probe_count_call(probe *p, const char *key)
{
	probe_count *c;

	for (c = p->counts; c != NULL; c = c->next)
		if (strcmp(c->key, key) == 0)
			return ++c->calls;
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->key = copy(key)) == NULL) {
		free(c);
		return 0;
	}
	c->calls = 1;
	c->next = p->counts;
	p->counts = c;
	return 1;
}

static void probe_unlink(probe_pending *w)
{
	probe_pending **pp = &w->p->pending;
	while (*pp != w)
		pp = &(*pp)->next;
	*pp = w->next;
}

static void probe_slow_fired(void *arg)
{
	probe_pending *w = arg;
	probe_unlink(w);
	probe_complete(w->p, w->d, w->key, PARLEY_OK, 0, NULL);
	free(w->key);
	free(w);
}

/* Keep d pending: after delay_ms (slow) or until stop (delay_ms < 0). */
static void probe_hold(probe *p, parley_delivery *d, const char *key, long long delay_ms)
{
	probe_pending *w = calloc(1, sizeof(*w));

	if (w == NULL || (w->key = copy(key)) == NULL) {
		free(w);
		p->host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
		return;
	}
	w->p = p;
	w->d = d;
	if (delay_ms >= 0) {
		w->timer = p->host->timer_start(p->inst, (uint64_t)delay_ms, probe_slow_fired, w);
		if (w->timer == NULL) {
			free(w->key);
			free(w);
			p->host->delivery_complete(d, PARLEY_RETRY, 0, "no timer");
			return;
		}
	}
	w->next = p->pending;
	p->pending = w;
}

/* Do what `text` says with d. op, key, text: borrowed. */
static void probe_act(probe *p, const char *op, const char *key, const char *text,
                      parley_delivery *d)
{
	long long n = 0;
	char body[PROBE_LINE_MAX];

	if (text == NULL)
		text = "ok";
	snprintf(body, sizeof(body), "%s key=%s text=%s", op, key, text);
	probe_line(p, body);
	if (strcmp(text, "retry") == 0) {
		probe_complete(p, d, key, PARLEY_RETRY, 0, "probe says retry");
	} else if (sscanf(text, "retry_at:%lld", &n) == 1) {
		probe_complete(p, d, key, PARLEY_RETRY, n, "probe says retry later");
	} else if (strcmp(text, "fail") == 0) {
		probe_complete(p, d, key, PARLEY_FAIL, 0, "refused by probe");
	} else if (strcmp(text, "hang") == 0 && !p->no_hang) {
		probe_hold(p, d, key, -1);
	} else if (sscanf(text, "slow:%lld", &n) == 1 && n >= 0) {
		probe_hold(p, d, key, n);
	} else if (sscanf(text, "fail_until:%lld", &n) == 1 && probe_count_call(p, key) < n) {
		probe_complete(p, d, key, PARLEY_RETRY, 0, "probe fails until later");
	} else {
		probe_complete(p, d, key, PARLEY_OK, 0, NULL);
	}
}

/* t: borrowed. d: completed now or later. */
static void probe_open_ticket(void *self, const parley_ticket_request *t, parley_delivery *d)
{
	probe_act(self, "open_ticket", t->idempotency_key,
	          t->first_message != NULL ? t->first_message->text : NULL, d);
}

/* a: borrowed. d: completed now or later. */
static void probe_append(void *self, const parley_ticket_append *a, parley_delivery *d)
{
	probe_act(self, "append_message", a->idempotency_key,
	          a->message != NULL ? a->message->text : NULL, d);
}

static int probe_create(const parley_host *host, parley_instance *inst, const parley_config *cfg,
                        void **self)
{
	probe *p = calloc(1, sizeof(*p));
	const char *label = host->config_string(cfg, "label");
	const char *file = host->config_string(cfg, "log_file");

	if (p == NULL)
		return -1;
	p->host = host;
	p->inst = inst;
	p->log_fd = -1;
	p->label = copy(label != NULL ? label : "-");
	if (p->label == NULL) {
		free(p);
		return -1;
	}
	host->config_boolean(cfg, "no_hang", &p->no_hang);
	if (file != NULL) {
		p->log_fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (p->log_fd < 0) {
			host->config_error(inst, "log_file", "cannot open for appending");
			free(p->label);
			free(p);
			return -1;
		}
	}
	*self = p;
	return 0;
}

/* Complete everything pending: in-flight deliveries finish on stop. (The
 * core stops every plugin before destroying it.) */
static void probe_stop(void *self)
{
	probe *p = self;

	while (p->pending != NULL) {
		probe_pending *w = p->pending;
		p->pending = w->next;
		if (w->timer != NULL) {
			p->host->timer_cancel(w->timer);
			probe_complete(p, w->d, w->key, PARLEY_OK, 0, NULL);
		} else {
			probe_complete(p, w->d, w->key, PARLEY_RETRY, 0, "stopped");
		}
		free(w->key);
		free(w);
	}
}

static void probe_destroy(void *self)
{
	probe *p = self;

	while (p->pending != NULL) {
		probe_pending *w = p->pending;
		p->pending = w->next;
		if (w->timer != NULL)
			p->host->timer_cancel(w->timer);
		free(w->key);
		free(w);
	}
	while (p->counts != NULL) {
		probe_count *c = p->counts;
		p->counts = c->next;
		free(c->key);
		free(c);
	}
	if (p->log_fd >= 0)
		close(p->log_fd);
	free(p->label);
	free(p);
}

static parley_ticket_status probe_status(const char *s)
{
	if (s == NULL)
		return 0;
	return strcmp(s, "open") == 0 ? PARLEY_TICKET_OPEN : strcmp(s, "pending") == 0
	       ? PARLEY_TICKET_PENDING : strcmp(s, "solved") == 0 ? PARLEY_TICKET_SOLVED
	       : strcmp(s, "closed") == 0 ? PARLEY_TICKET_CLOSED : 0;
}

static void probe_request(void *self, parley_request *req)
{
	probe *p = self;
	size_t len = 0;
	const unsigned char *body = p->host->request_body(req, &len);
	json_t *root = json_loadb((const char *)body, len, 0, NULL), *e;
	size_t i;

	if (!json_is_array(root)) {
		json_decref(root);
		p->host->respond_error(req, 400, "invalid_json", "expected an array of ticket events");
		return;
	}
	json_array_foreach(root, i, e) {
		const char *type = json_string_value(json_object_get(e, "type"));
		parley_ticket_event ev = {
			.size = sizeof(ev),
			.type = type != NULL && strcmp(type, "status") == 0 ? PARLEY_TICKET_STATUS
			                                                    : PARLEY_TICKET_COMMENT,
			.dedupe_key = json_string_value(json_object_get(e, "key")),
			.external_ticket_id = json_string_value(json_object_get(e, "ticket")),
			.comment_id = json_string_value(json_object_get(e, "comment")),
			.is_public = json_is_true(json_object_get(e, "public")),
			.from_parley = json_is_true(json_object_get(e, "from_parley")),
			.author_name = json_string_value(json_object_get(e, "author")),
			.text = json_string_value(json_object_get(e, "text")),
			.status = probe_status(json_string_value(json_object_get(e, "status"))),
		};
		if (p->host->request_emit_ticket_event(req, &ev) != 0) {
			json_decref(root);
			p->host->respond_error(req, 400, "invalid_event", "an event was refused");
			return;
		}
	}
	json_decref(root);
	p->host->respond(req, 200, "application/json", "{}", 2);
}

static const parley_sink_ops probe_ops = {
	.size = sizeof(parley_sink_ops),
	.open_ticket = probe_open_ticket,
	.append_message = probe_append,
	.handle_request = probe_request,
};

static const parley_plugin_descriptor probe_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_SINK,
	.name = "job_probe",
	.version = "1.0.0",
	.description = "test plugin: a sink whose outcomes the message text scripts",
	.config_keys = probe_keys,
	.create = probe_create,
	.stop = probe_stop,
	.destroy = probe_destroy,
	.sink = &probe_ops,
};

PARLEY_PLUGIN_ENTRY(&probe_descriptor)
