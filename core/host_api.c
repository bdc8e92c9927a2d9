/* host_api.c - the parley_host function table: everything a plugin may ask
 * of the core, implemented on top of the core's subsystems.
 *
 * Plugins hold only opaque handles (parley_instance, parley_request,
 * parley_delivery, parley_timer); the structs behind them live here. */
#include "host_api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "db.h"
#include "http_client.h"
#include "smtp_client.h"
#include "ingest.h"
#include "ingest_batch.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

static struct event_base *loop_base;

void host_api_set_base(struct event_base *base) { loop_base = base; }
struct event_base *host_api_base(void) { return loop_base; }

/* ------------------------------------------------------------------ log */

static void host_log(parley_instance *inst, parley_log_level level, const char *fmt, ...)
{
	va_list ap;
	log_level l = level <= PARLEY_LOG_DEBUG && (int)level >= 0 ? (log_level)level : LOGL_INFO;
	va_start(ap, fmt);
	log_vmsg(l, inst ? inst->component : "plugin", fmt, ap);
	va_end(ap);
}

static const char *host_instance_name(parley_instance *inst) { return inst->name; }

/* --------------------------------------------------------------- config */

static json_t *config_get(const parley_config *pcfg, const char *key)
{
	if (pcfg == NULL || pcfg->obj == NULL || key == NULL)
		return NULL;
	return json_object_get(pcfg->obj, key);
}

static const char *host_config_string(const parley_config *pcfg, const char *key)
{
	json_t *v = config_get(pcfg, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int host_config_integer(const parley_config *pcfg, const char *key, int64_t *out)
{
	json_t *v = config_get(pcfg, key);
	if (!json_is_integer(v))
		return 0;
	*out = (int64_t)json_integer_value(v);
	return 1;
}

static int host_config_boolean(const parley_config *pcfg, const char *key, int *out)
{
	json_t *v = config_get(pcfg, key);
	if (!json_is_boolean(v))
		return 0;
	*out = json_is_true(v);
	return 1;
}

static const char *host_config_json(const parley_config *pcfg, const char *key)
{
	json_t *v = config_get(pcfg, key);
	if (v == NULL)
		return NULL;
	char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (text == NULL)
		return NULL;
	/* The handle is const to the plugin but owns what it hands out. */
	struct parley_config *pc = (struct parley_config *)pcfg;
	pc->owned = xrealloc(pc->owned, (pc->n_owned + 1) * sizeof(char *));
	pc->owned[pc->n_owned++] = text;
	return text;
}

void host_config_release(struct parley_config *pc)
{
	for (size_t i = 0; i < pc->n_owned; i++)
		free(pc->owned[i]);
	free(pc->owned);
	pc->owned = NULL;
	pc->n_owned = 0;
}

/* The struct the loader filled (plugin_settings.c); its lifetime is the
 * loader's: until destroy, or until a successful reload hands a new one. */
static const void *host_config_settings(const parley_config *pcfg)
{
	return pcfg != NULL ? pcfg->settings : NULL;
}

static void host_config_error(parley_instance *inst, const char *key, const char *reason)
{
	char msg[1024];
	snprintf(msg, sizeof(msg), "%s: %s.config%s%s: %s", inst->cfg_file ? inst->cfg_file : "config",
	         inst->cfg_path ? inst->cfg_path : inst->name, key ? "." : "", key ? key : "",
	         reason ? reason : "invalid");
	log_error(inst->component, "%s", msg);
	if (inst->config_error == NULL)
		inst->config_error = xstrdup(msg);
}

/* ------------------------------------------------------------- requests */

struct parley_request {
	parley_instance *inst;
	http_request *http;
	char *subpath;
	ingest_set *events;
	bool answered;
	/* The plugin's 2xx, held until the events are committed. */
	int status;
	char *content_type;
	void *body;
	size_t body_len;
};

static size_t requests_pending;

size_t host_api_requests_pending(void) { return requests_pending; }

parley_request *host_request_new(parley_instance *inst, http_request *http, const char *subpath)
{
	parley_request *r = xcalloc(1, sizeof(*r));
	r->inst = inst;
	r->http = http;
	r->subpath = xstrdup(subpath ? subpath : "");
	r->events = ingest_set_new(inst->name, inst->desc->name);
	requests_pending++;
	return r;
}

static void request_free(parley_request *r)
{
	if (r->events != NULL)
		ingest_set_free(r->events);
	free(r->subpath);
	free(r->content_type);
	free(r->body);
	free(r);
	requests_pending--;
}

static const char *host_request_method(const parley_request *r) { return http_req_method(r->http); }
static const char *host_request_subpath(const parley_request *r) { return r->subpath; }
static const char *host_request_query(const parley_request *r, const char *name)
{
	return http_req_query(r->http, name);
}
static const char *host_request_header(const parley_request *r, const char *name)
{
	return http_req_header(r->http, name);
}
static const unsigned char *host_request_body(const parley_request *r, size_t *len)
{
	return http_req_body(r->http, len);
}

static int host_request_emit(parley_request *r, const parley_event *ev)
{
	char err[256];
	if (r->answered) {
		log_warn(r->inst->component, "event emitted after the request was answered: ignored");
		return -1;
	}
	if (!ingest_set_add(r->events, ev, err, sizeof(err))) {
		log_warn(r->inst->component, "invalid event: %s", err);
		return -1;
	}
	return 0;
}

static int host_request_emit_ticket_event(parley_request *r, const parley_ticket_event *ev)
{
	char err[256];
	if (r->answered) {
		log_warn(r->inst->component, "ticket event emitted after the request was answered: ignored");
		return -1;
	}
	if (r->inst->kind != PARLEY_KIND_SINK) {
		log_warn(r->inst->component, "ticket events come from sinks only: ignored");
		return -1;
	}
	if (!ingest_set_add_ticket_event(r->events, ev, err, sizeof(err))) {
		log_warn(r->inst->component, "invalid ticket event: %s", err);
		return -1;
	}
	return 0;
}

static void request_committed(void *arg, bool ok, const char *error)
{
	parley_request *r = arg;
	if (ok) {
		http_req_respond(r->http, r->status, r->content_type, r->body, r->body_len, NULL);
	} else {
		/* Nothing was committed: the platform must retry, never believe it landed. */
		static const char *const retry[] = { "Retry-After: 5", NULL };
		log_warn(r->inst->component, "commit failed, answering 503: %s", error ? error : "?");
		http_req_respond_error(r->http, 503, "database_unavailable",
		                       "the event could not be stored; retry later", retry);
	}
	request_free(r);
}

static void host_respond(parley_request *r, int status, const char *content_type, const void *body,
                         size_t len)
{
	if (r->answered) {
		log_error(r->inst->component, "request answered twice: second answer ignored");
		return;
	}
	r->answered = true;
	if (status < 200 || status > 599)
		status = 500;
	if (status >= 300 || ingest_set_count(r->events) == 0) {
		/* Not a success, or nothing to store: answer now, store nothing. */
		http_req_respond(r->http, status, content_type, body, len, NULL);
		request_free(r);
		return;
	}
	r->status = status;
	r->content_type = xstrdup(content_type);
	r->body = len ? xmalloc(len) : NULL;
	if (len)
		memcpy(r->body, body, len);
	r->body_len = len;
	ingest_set *events = r->events;
	r->events = NULL;  /* ingest owns it now */
	ingest_batch_enqueue(events, request_committed, r);
}

static void host_respond_error(parley_request *r, int status, const char *code, const char *detail)
{
	if (r->answered) {
		log_error(r->inst->component, "request answered twice: second answer ignored");
		return;
	}
	r->answered = true;
	if (status < 400 || status > 599)
		status = 500;
	http_req_respond_error(r->http, status, code ? code : "error", detail, NULL);
	request_free(r);
}

/* ------------------------------------------ events without a request */

/* A batch of polled events, committed like a request's (ingest_batch.c). */
struct parley_emit_batch {
	parley_instance *inst;
	ingest_set *events;
	parley_state_put_fn done;
	void *arg;
};

static parley_emit_batch *host_emit_begin(parley_instance *inst)
{
	parley_emit_batch *b = xcalloc(1, sizeof(*b));
	b->inst = inst;
	b->events = ingest_set_new(inst->name, inst->desc->name);
	requests_pending++;
	return b;
}

static int host_emit_event(parley_emit_batch *b, const parley_event *ev)
{
	char err[256];
	if (!ingest_set_add(b->events, ev, err, sizeof(err))) {
		log_warn(b->inst->component, "invalid event: %s", err);
		return -1;
	}
	return 0;
}

static void emit_batch_free(parley_emit_batch *b)
{
	if (b->events != NULL)
		ingest_set_free(b->events);
	free(b);
	requests_pending--;
}

static void emit_committed(void *arg, bool ok, const char *error)
{
	parley_emit_batch *b = arg;
	if (!ok)
		log_warn(b->inst->component, "polled events not stored: %s", error ? error : "?");
	b->done(b->arg, ok ? 1 : 0);
	emit_batch_free(b);
}

static void emit_nothing_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	emit_committed(arg, true, NULL);
}

static void host_emit_commit(parley_emit_batch *b, const char *state_key, const char *state_value,
                             parley_state_put_fn done, void *arg)
{
	b->done = done;
	b->arg = arg;
	if (state_key != NULL)
		ingest_set_set_state(b->events, state_key, state_value ? state_value : "");
	if (ingest_set_count(b->events) == 0 && state_key == NULL) {
		/* Nothing to write; still answer from the loop, never inside the call. */
		if (event_base_once(loop_base, -1, EV_TIMEOUT, emit_nothing_done, b, NULL) != 0)
			abort();
		return;
	}
	ingest_set *events = b->events;
	b->events = NULL;  /* the batcher owns it now */
	ingest_batch_enqueue(events, emit_committed, b);
}

static void host_emit_abort(parley_emit_batch *b)
{
	if (b != NULL)
		emit_batch_free(b);
}

/* ----------------------------------------------------------- deliveries */

struct parley_delivery {
	parley_instance *inst;
	host_delivery_done_fn done;
	void *arg;
	char *external_id;
	char *thread_id;
	char *recipient_id;
};

parley_delivery *host_delivery_new(parley_instance *inst, host_delivery_done_fn done, void *arg)
{
	parley_delivery *d = xcalloc(1, sizeof(*d));
	d->inst = inst;
	d->done = done;
	d->arg = arg;
	return d;
}

static void host_delivery_set_external_id(parley_delivery *d, const char *external_id)
{
	free(d->external_id);
	d->external_id = xstrdup(external_id);
}

static void host_delivery_set_thread_id(parley_delivery *d, const char *thread_id)
{
	free(d->thread_id);
	d->thread_id = xstrdup(thread_id);
}

static void host_delivery_set_recipient_id(parley_delivery *d, const char *recipient_id)
{
	free(d->recipient_id);
	d->recipient_id = xstrdup(recipient_id);
}

static void host_delivery_complete(parley_delivery *d, parley_outcome outcome, int64_t retry_at_ms,
                                   const char *reason)
{
	if (outcome != PARLEY_OK && outcome != PARLEY_RETRY && outcome != PARLEY_FAIL) {
		log_error(d->inst->component, "delivery completed with unknown outcome %d: treated as FAIL",
		          (int)outcome);
		outcome = PARLEY_FAIL;
	}
	if (d->done != NULL) {
		host_delivery_result r = { .outcome = outcome, .retry_at_ms = retry_at_ms,
		                           .reason = reason, .external_id = d->external_id,
		                           .thread_id = d->thread_id,
		                           .recipient_id = d->recipient_id };
		d->done(d->arg, &r);
	}
	free(d->external_id);
	free(d->thread_id);
	free(d->recipient_id);
	free(d);
}

/* ----------------------------------------------------------------- HTTP */

static int host_http_request(parley_instance *inst, const parley_http_call *call,
                             parley_http_done_fn done, void *arg)
{
	if (call == NULL || call->size < offsetof(parley_http_call, insecure_skip_verify) ||
	    call->url == NULL || done == NULL) {
		log_error(inst ? inst->component : "plugin", "http_request: invalid call");
		return -1;
	}
	return http_client_request(call, done, arg);
}

static int host_smtp_send(parley_instance *inst, const parley_smtp_call *call,
                          parley_http_done_fn done, void *arg)
{
	if (call == NULL || !PARLEY_HAS_FIELD(call, parley_smtp_call, insecure_skip_verify) ||
	    done == NULL) {
		log_error(inst ? inst->component : "plugin", "smtp_send: invalid call");
		return -1;
	}
	return smtp_client_send(call, done, arg);
}

static long host_http_status(const parley_http_response *r) { return r->status; }
static const char *host_http_error(const parley_http_response *r) { return r->error; }
static const char *host_http_header(const parley_http_response *r, const char *name)
{
	return http_client_response_header(r, name);
}
static const unsigned char *host_http_body(const parley_http_response *r, size_t *len)
{
	if (len)
		*len = r->body_len;
	return r->body;
}

/* --------------------------------------------------------------- timers */

struct parley_timer {
	struct event *ev;
	parley_timer_fn fn;
	void *arg;
	struct parley_timer *prev, *next;   /* all pending timers, for shutdown */
};

static struct parley_timer *timers;
static size_t n_timers;

static void timer_unlink_free(struct parley_timer *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		timers = t->next;
	if (t->next)
		t->next->prev = t->prev;
	event_free(t->ev);
	free(t);
	n_timers--;
}

static void timer_fired(evutil_socket_t fd, short what, void *arg)
{
	struct parley_timer *t = arg;
	parley_timer_fn fn = t->fn;
	void *fn_arg = t->arg;
	timer_unlink_free(t);   /* a fired timer is gone: the plugin must not cancel it */
	fn(fn_arg);
}

static parley_timer *host_timer_start(parley_instance *inst, uint64_t delay_ms, parley_timer_fn fn,
                                      void *arg)
{
	if (fn == NULL || loop_base == NULL)
		return NULL;
	struct parley_timer *t = xcalloc(1, sizeof(*t));
	t->fn = fn;
	t->arg = arg;
	t->ev = evtimer_new(loop_base, timer_fired, t);
	if (t->ev == NULL) {
		free(t);
		return NULL;
	}
	struct timeval tv = { (time_t)(delay_ms / 1000), (suseconds_t)((delay_ms % 1000) * 1000) };
	evtimer_add(t->ev, &tv);
	t->next = timers;
	if (timers)
		timers->prev = t;
	timers = t;
	n_timers++;
	return t;
}

static void host_timer_cancel(parley_timer *t)
{
	if (t != NULL)
		timer_unlink_free(t);
}

void host_api_cancel_timers(void)
{
	while (timers != NULL)
		timer_unlink_free(timers);
}

size_t host_api_timer_count(void) { return n_timers; }

/* ---------------------------------------------------------------- state */

struct state_call {
	parley_state_get_fn get_done;
	parley_state_put_fn put_done;
	void *arg;
};

static void state_get_done(db_batch *b, bool ok, const char *error, void *arg)
{
	struct state_call *c = arg;
	const char *value = NULL;
	if (ok) {
		PGresult *res = db_batch_result(b, 0);
		if (res != NULL && PQntuples(res) > 0)
			value = PQgetvalue(res, 0, 0);
	}
	c->get_done(c->arg, ok, value);
	free(c);
}

static void host_state_get(parley_instance *inst, const char *key, parley_state_get_fn done, void *arg)
{
	struct state_call *c = xcalloc(1, sizeof(*c));
	c->get_done = done;
	c->arg = arg;
	const char *params[] = { inst->name, key };
	db_batch *b = db_batch_new();
	db_batch_add(b, "SELECT value FROM plugin_state WHERE instance = $1 AND key = $2", 2, params);
	db_batch_submit(b, state_get_done, c);
}

static void state_put_done(db_batch *b, bool ok, const char *error, void *arg)
{
	struct state_call *c = arg;
	if (c->put_done)
		c->put_done(c->arg, ok);
	free(c);
}

static void host_state_put(parley_instance *inst, const char *key, const char *value,
                           parley_state_put_fn done, void *arg)
{
	struct state_call *c = xcalloc(1, sizeof(*c));
	c->put_done = done;
	c->arg = arg;
	const char *params[] = { inst->name, key, value };
	db_batch *b = db_batch_new();
	db_batch_add(b,
	             "INSERT INTO plugin_state (instance, key, value) VALUES ($1, $2, $3) "
	             "ON CONFLICT (instance, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
	             3, params);
	db_batch_submit(b, state_put_done, c);
}

/* -------------------------------------------------------------- metrics */

static void host_counter_add(parley_instance *inst, const char *name, uint64_t delta)
{
	if (name == NULL || *name == '\0' || strlen(name) > 100)
		goto bad;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_'))
			goto bad;
	char full[160];
	snprintf(full, sizeof(full), "parley_plugin_%s", name);
	metrics_counter_add(full, "Counter reported by a plugin instance.", inst->metric_labels, delta);
	return;
bad:
	log_warn(inst->component, "counter_add: invalid metric name ignored");
}

/* ---------------------------------------------------------------- table */

static const parley_host host_table = {
	.size = sizeof(parley_host),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.log = host_log,
	.instance_name = host_instance_name,
	.config_string = host_config_string,
	.config_integer = host_config_integer,
	.config_boolean = host_config_boolean,
	.config_json = host_config_json,
	.config_error = host_config_error,
	.request_method = host_request_method,
	.request_subpath = host_request_subpath,
	.request_query = host_request_query,
	.request_header = host_request_header,
	.request_body = host_request_body,
	.request_emit = host_request_emit,
	.respond = host_respond,
	.respond_error = host_respond_error,
	.delivery_set_external_id = host_delivery_set_external_id,
	.delivery_complete = host_delivery_complete,
	.http_request = host_http_request,
	.http_response_status = host_http_status,
	.http_response_error = host_http_error,
	.http_response_header = host_http_header,
	.http_response_body = host_http_body,
	.timer_start = host_timer_start,
	.timer_cancel = host_timer_cancel,
	.state_get = host_state_get,
	.state_put = host_state_put,
	.counter_add = host_counter_add,
	.hmac_sha256 = util_hmac_sha256,
	.secure_equals = util_secure_equals,
	.now_ms = util_now_ms,
	.emit_begin = host_emit_begin,
	.emit_event = host_emit_event,
	.emit_commit = host_emit_commit,
	.emit_abort = host_emit_abort,
	.delivery_set_thread_id = host_delivery_set_thread_id,
	.delivery_set_recipient_id = host_delivery_set_recipient_id,
	.request_emit_ticket_event = host_request_emit_ticket_event,
	.smtp_send = host_smtp_send,
	.config_settings = host_config_settings,
};

const parley_host *host_api_table(void) { return &host_table; }
