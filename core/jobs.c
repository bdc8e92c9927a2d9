/* jobs.c - the job runner: claims due jobs from the outbox and hands each one
 * to its target plugin's operation through a delivery.
 *
 * Everything runs on the loop and nothing blocks it:
 *   - claims, outcomes and metrics are db_batch work on the shared pool;
 *   - wake-ups come from a dedicated non-blocking LISTEN connection, a
 *     periodic sweep, a timer for the next known run_at, and every recorded
 *     outcome (a slot is free, and a job's successor may be due);
 *   - a watchdog per delivery records RETRY "timed out" shortly before the
 *     lease ends, so another runner never starts the job while this one
 *     still counts it as running.
 *
 * A job struct is shared by two parties: the plugin, which holds a delivery
 * whose completion calls back with the job, and the database write of the
 * outcome. It is freed when neither holds it any more. After a timeout the
 * plugin may still complete the delivery; that late completion only frees
 * the job, so the delivery handle stays valid for as long as the plugin
 * needs it.
 *
 * The SQL lives in sql/003_jobs.sql and sql/006_job_outcomes.sql (parley_job_claim, parley_job_finish);
 * docs/JOBS.md describes payloads, states and settings. */
#include "jobs.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "db.h"
#include "host_api.h"
#include "log.h"
#include "metrics.h"
#include "plugin_loader.h"
#include "util.h"

#define JOBS_LOG "jobs"
#define JOBS_MAX_CONCURRENCY 10000
#define JOBS_MIN_LEASE_MS 100
#define JOBS_MIN_SWEEP_MS 10
/* The watchdog fires this long before the lease ends (a fifth of the lease
 * at most), leaving time to record the outcome before the job is due again. */
#define JOBS_WATCHDOG_MARGIN_MAX_MS 5000
#define JOBS_LISTEN_BACKOFF_MIN_MS 100
#define JOBS_LISTEN_BACKOFF_MAX_MS 5000
#define JOBS_REASON_MAX 2000          /* bytes of a reason kept in last_error */
#define JOBS_EXTERNAL_ID_MAX 1000
#define JOBS_MAX_GAUGES 4096          /* state/target pairs tracked for parley_jobs */
#define JOBS_WHY_MAX 256
/* A failed outcome write is tried again (250 ms doubling to 2 s) while the
 * lease lasts: a short database outage must not make every job in flight
 * run a second time. */
#define JOBS_REWRITE_MIN_MS 250
#define JOBS_REWRITE_MAX_MS 2000

#define JOBS_CLAIM_SQL \
	"SELECT claimed, id, claim_token, target_kind, target_instance, operation, payload, " \
	"idempotency_key, attempts FROM parley_job_claim($1::int, $2::int, $3, $4::int, $5::jsonb)"
#define JOBS_NEXT_DUE_SQL "SELECT parley_job_next_due_ms()"
#define JOBS_FINISH_SQL \
	"SELECT new_state, retry_in_ms FROM parley_job_finish($1::bigint, $2::uuid, $3, $4, $5, " \
	"to_timestamp($6::double precision / 1000), $7::int, $8::int, $9::int, $10, $11, $12::jsonb)"
#define JOBS_COUNT_SQL \
	"SELECT state, target_kind, target_instance, count(*) FROM job WHERE state <> 'done' " \
	"GROUP BY state, target_kind, target_instance"
#define JOBS_OLDEST_SQL \
	"SELECT coalesce(extract(epoch FROM now() - min(run_at)), 0)::double precision FROM job " \
	"WHERE state = 'queued' AND run_at <= now()"

#define M_JOBS "parley_jobs"
#define M_JOBS_HELP "Jobs by state and target (done jobs are counted by parley_job_attempts_total)."
#define M_OLDEST "parley_jobs_oldest_due_seconds"
#define M_OLDEST_HELP "Age of the oldest queued job that is due."
#define M_ATTEMPTS "parley_job_attempts_total"
#define M_ATTEMPTS_HELP "Job attempts by target and outcome (ok, retry, fail, timeout)."
#define M_DEAD "parley_jobs_dead_total"
#define M_DEAD_HELP "Jobs this process moved to dead, by target."
#define M_IN_FLIGHT "parley_jobs_in_flight"
#define M_IN_FLIGHT_HELP "Jobs this process has claimed and not finished."

typedef struct job {
	char id[24];                  /* decimal, as PostgreSQL returned it */
	char *claim_token;            /* owned */
	parley_kind kind;
	char *instance;               /* owned */
	char *operation;              /* owned */
	char *idempotency_key;        /* owned; handed to the plugin */
	int attempt;                  /* 1 on the first run */
	char *target;                 /* owned: "kind/instance" for logs and labels */
	json_t *payload;              /* owned; the ABI's strings point into it */
	char **owned;                 /* owned: texts made for the plugin (numbers) */
	size_t n_owned;
	struct event *watchdog;       /* owned */
	uint64_t started_us;
	const char *outcome;          /* static: what is being recorded */
	char *reason;                 /* owned: the reason being recorded, or NULL */
	char *external_id;            /* owned: the external id being recorded, or NULL */
	char *thread_id;              /* owned: a private reply's new chat, or NULL */
	char *recipient_id;           /* owned: the customer's id in that chat, or NULL */
	char retry_at[24];            /* the plugin's not-before time in Unix ms, "" for none */
	struct event *rewrite;        /* owned: retries a failed outcome write */
	int rewrite_ms;               /* the last delay before a rewrite */
	bool delivery_open;           /* the plugin holds a delivery that calls back with this job */
	bool write_pending;           /* the outcome is being written */
	bool timed_out;               /* the watchdog recorded RETRY; completion is ignored */
	bool counted;                 /* holds a slot of `concurrency` until written */
	bool orphan;                  /* the runner is freed; only the plugin still holds it */
	TAILQ_ENTRY(job) link;
} job;
TAILQ_HEAD(job_list, job);

typedef enum listen_state {
	LISTEN_DOWN,                  /* closed; the timer reconnects */
	LISTEN_CONNECTING,            /* PQconnectPoll on socket events */
	LISTEN_SUBSCRIBING,           /* LISTEN sent, waiting for its result */
	LISTEN_READY                  /* notifications arrive on the socket */
} listen_state;

static struct {
	bool started, stopping;
	struct event_base *base;      /* borrowed */
	plugin_set *plugins;          /* borrowed; outlives the runner */
	jobs_options o;               /* o.dsn points at `dsn` */
	char *dsn;                    /* owned; never logged (may hold a password) */
	char *finish_opts;            /* owned: jobs_options.finish_opts_json */
	char runner_id[320];          /* host:pid, recorded as claimed_by */
	char params[4][24];           /* lease, max attempts, backoff base and max as text */
	int watchdog_ms;
	int held;                     /* jobs holding a slot */
	bool claim_pending, claim_again;
	bool metrics_pending;
	bool db_outage;               /* a failed claim was logged; log the recovery */
	struct event *sweep;          /* persistent: claim and refresh metrics */
	struct event *wake;           /* one-shot: the next known run_at */
	struct event *kick;           /* one-shot: the first claim, from the loop */
	struct job_list jobs;         /* every job struct alive */
	char **gauge_labels;          /* owned: every state/target pair reported */
	double *gauge_values;
	size_t n_gauges;
	uint64_t rng;
	struct {
		listen_state state;
		PGconn *pg;
		struct event *io;         /* re-created when the socket or interest changes */
		evutil_socket_t io_fd;
		short io_what;
		struct event *timer;      /* DOWN: reconnect; CONNECTING: connect timeout */
		int backoff_ms;
		bool outage;              /* a failure was logged; log the recovery */
		bool announced;
		char fatal[512];          /* the FATAL the server sent before hanging up */
	} listen;
} R = { .jobs = TAILQ_HEAD_INITIALIZER(R.jobs) };

static void runner_claim(void);
static void job_record(job *j, const char *outcome, int64_t retry_at_ms, const char *reason,
                       const char *external_id);

/* ------------------------------------------------------------- helpers */

static struct timeval ms_to_tv(int64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000) };
	return tv;
}

static uint64_t jobs_random(void)
{
	/* xorshift64*: only for reconnect jitter, so daemons do not stampede. */
	if (R.rng == 0)
		R.rng = util_mono_us() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
	R.rng ^= R.rng >> 12;
	R.rng ^= R.rng << 25;
	R.rng ^= R.rng >> 27;
	return R.rng * 2685821657736338717ull;
}

/* A copy of s (may be NULL) that PostgreSQL accepts as text: at most max
 * bytes, cut at a character boundary, and valid UTF-8 (jansson checks); a
 * plugin's reason must never make the outcome unwritable. Owned by the caller. */
static char *clean_text(const char *s, size_t max)
{
	if (s == NULL)
		return NULL;
	size_t n = strlen(s);
	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	json_t *probe = json_stringn(s, n);
	if (probe == NULL)
		return xstrdup("(text is not valid UTF-8)");
	json_decref(probe);
	return xstrndup(s, n);
}

static bool kind_from_name(const char *name, parley_kind *out)
{
	if (strcmp(name, "channel") == 0)
		*out = PARLEY_KIND_CHANNEL;
	else if (strcmp(name, "sink") == 0)
		*out = PARLEY_KIND_SINK;
	else if (strcmp(name, "notifier") == 0)
		*out = PARLEY_KIND_NOTIFIER;
	else
		return false;
	return true;
}

/* labels: the inside of {...}, built from a target and optional outcome. */
static char *target_labels(const char *target, const char *outcome)
{
	char *t = metrics_escape_label(target);
	size_t cap = strlen(t) + (outcome ? strlen(outcome) : 0) + 32;
	char *labels = xmalloc(cap);
	if (outcome != NULL)
		snprintf(labels, cap, "target=\"%s\",outcome=\"%s\"", t, outcome);
	else
		snprintf(labels, cap, "target=\"%s\"", t);
	free(t);
	return labels;
}

static void count_attempt(const job *j, const char *outcome)
{
	char *labels = target_labels(j->target, outcome);
	metrics_counter_add(M_ATTEMPTS, M_ATTEMPTS_HELP, labels, 1);
	free(labels);
}

static void count_dead(const char *target)
{
	char *labels = target_labels(target, NULL);
	metrics_counter_add(M_DEAD, M_DEAD_HELP, labels, 1);
	free(labels);
}

/* ---------------------------------------------------------------- jobs */

/* A job from row i of a claim result. res: borrowed. */
static job *job_new(PGresult *res, int i)
{
	job *j = xcalloc(1, sizeof(*j));
	snprintf(j->id, sizeof(j->id), "%s", PQgetvalue(res, i, 1));
	j->claim_token = xstrdup(PQgetvalue(res, i, 2));
	const char *kind = PQgetvalue(res, i, 3);
	j->instance = xstrdup(PQgetvalue(res, i, 4));
	j->operation = xstrdup(PQgetvalue(res, i, 5));
	j->idempotency_key = xstrdup(PQgetvalue(res, i, 7));
	j->attempt = atoi(PQgetvalue(res, i, 8));
	size_t cap = strlen(kind) + strlen(j->instance) + 2;
	j->target = xmalloc(cap);
	snprintf(j->target, cap, "%s/%s", kind, j->instance);
	if (!kind_from_name(kind, &j->kind))
		j->kind = 0;
	/* jsonb text always parses; a failure (say, an integer beyond 64 bits)
	 * is reported as a bad payload when the job starts. */
	j->payload = json_loads(PQgetvalue(res, i, 6), 0, NULL);
	j->started_us = util_mono_us();
	j->counted = true;
	R.held++;
	TAILQ_INSERT_TAIL(&R.jobs, j, link);
	return j;
}

/* Free a job that is in no list. */
static void job_free_orphan(job *j)
{
	if (j->watchdog != NULL)
		event_free(j->watchdog);
	if (j->rewrite != NULL)
		event_free(j->rewrite);
	json_decref(j->payload);
	for (size_t i = 0; i < j->n_owned; i++)
		free(j->owned[i]);
	free(j->owned);
	free(j->claim_token);
	free(j->instance);
	free(j->operation);
	free(j->idempotency_key);
	free(j->target);
	free(j->reason);
	free(j->external_id);
	free(j->thread_id);
	free(j->recipient_id);
	free(j);
}

static void job_free(job *j)
{
	TAILQ_REMOVE(&R.jobs, j, link);
	if (j->counted)
		R.held--;
	job_free_orphan(j);
}

/* Free once neither the plugin nor a database write refers to it. */
static void job_release_if_unused(job *j)
{
	if (!j->delivery_open && !j->write_pending)
		job_free(j);
}

/* Keep `text` (owned, handed over) until the job is freed; returns it. */
static const char *job_keep(job *j, char *text)
{
	j->owned = xrealloc(j->owned, (j->n_owned + 1) * sizeof(char *));
	j->owned[j->n_owned++] = text;
	return text;
}

/* -------------------------------------------------- payload -> ABI structs */

/* Everything a plugin operation is handed; borrowed by the plugin for the
 * call. Strings point into the job's payload or its owned texts. */
typedef struct job_call {
	parley_customer_info customer;
	parley_conversation_info conversation;
	parley_message_info message;
	union {
		parley_outbound_message send;
		parley_ticket_request ticket;
		parley_ticket_append append;
		parley_notice notice;
	} u;
} job_call;

/* Where a field sits in the payload, for error messages: "" or "message.". */
typedef struct field_ctx {
	job *j;
	const char *where;
	char *why;
	size_t whylen;
} field_ctx;

/* obj[key] as text for the plugin: borrowed from the payload, or a number
 * written out (ids may be JSON numbers). NULL when absent or null. false
 * with a reason when required and missing, or of another type. */
static bool field_text(field_ctx *f, json_t *obj, const char *key, bool required, const char **out)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (!required)
			return true;
		snprintf(f->why, f->whylen, "invalid payload: %s%s is missing", f->where, key);
		return false;
	}
	if (json_is_string(v)) {
		*out = json_string_value(v);
		return true;
	}
	if (json_is_integer(v)) {
		char num[32];
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		*out = job_keep(f->j, xstrdup(num));
		return true;
	}
	snprintf(f->why, f->whylen, "invalid payload: %s%s must be a string", f->where, key);
	return false;
}

/* obj[key] as "public" or "private"; absent leaves *out alone unless required. */
static bool field_visibility(field_ctx *f, json_t *obj, const char *key, bool required,
                             parley_visibility *out)
{
	const char *v;
	if (!field_text(f, obj, key, required, &v))
		return false;
	if (v == NULL)
		return true;
	if (strcmp(v, "public") == 0) {
		*out = PARLEY_VISIBILITY_PUBLIC;
	} else if (strcmp(v, "private") == 0) {
		*out = PARLEY_VISIBILITY_PRIVATE;
	} else {
		snprintf(f->why, f->whylen, "invalid payload: %s%s must be \"public\" or \"private\"",
		         f->where, key);
		return false;
	}
	return true;
}

/* obj[key] as an object; NULL when absent or null. */
static bool field_object(field_ctx *f, json_t *obj, const char *key, bool required, json_t **out)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (!required)
			return true;
		snprintf(f->why, f->whylen, "invalid payload: %s%s is missing", f->where, key);
		return false;
	}
	if (!json_is_object(v)) {
		snprintf(f->why, f->whylen, "invalid payload: %s%s must be an object", f->where, key);
		return false;
	}
	*out = v;
	return true;
}

static bool build_customer(field_ctx *f, json_t *obj, parley_customer_info *c)
{
	c->size = sizeof(*c);
	return field_text(f, obj, "customer_id", true, &c->customer_id) &&
	       field_text(f, obj, "display_name", false, &c->display_name) &&
	       field_text(f, obj, "email", false, &c->email) &&
	       field_text(f, obj, "phone", false, &c->phone) &&
	       field_text(f, obj, "external_id", false, &c->external_id) &&
	       field_text(f, obj, "handle", false, &c->handle);
}

/* The "conversation" object of `parent` into call->conversation (and its
 * customer). */
static bool build_conversation(field_ctx *f, json_t *parent, bool required, job_call *call,
                               bool *present)
{
	json_t *obj, *cust;
	field_ctx in = *f;
	parley_conversation_info *c = &call->conversation;

	*present = false;
	if (!field_object(f, parent, "conversation", required, &obj))
		return false;
	if (obj == NULL)
		return true;
	*present = true;
	in.where = "conversation.";
	c->size = sizeof(*c);
	if (!field_text(&in, obj, "conversation_id", true, &c->conversation_id) ||
	    !field_text(&in, obj, "case_number", false, &c->case_number) ||
	    !field_text(&in, obj, "channel_instance", false, &c->channel_instance) ||
	    !field_text(&in, obj, "channel_kind", false, &c->channel_kind) ||
	    !field_visibility(&in, obj, "visibility", true, &c->visibility) ||
	    !field_text(&in, obj, "category", false, &c->category) ||
	    !field_text(&in, obj, "status", false, &c->status) ||
	    !field_object(&in, obj, "customer", false, &cust))
		return false;
	if (cust != NULL) {
		in.where = "conversation.customer.";
		if (!build_customer(&in, cust, &call->customer))
			return false;
		c->customer = &call->customer;
	}
	return true;
}

/* The "message" object of `parent` into call->message. Its visibility
 * defaults to the conversation's. */
static bool build_message(field_ctx *f, json_t *parent, job_call *call)
{
	json_t *obj, *v;
	field_ctx in = *f;
	parley_message_info *m = &call->message;

	if (!field_object(f, parent, "message", true, &obj))
		return false;
	in.where = "message.";
	m->size = sizeof(*m);
	m->visibility = call->conversation.visibility;
	if (!field_text(&in, obj, "message_id", true, &m->message_id) ||
	    !field_text(&in, obj, "external_id", false, &m->external_id) ||
	    !field_text(&in, obj, "author_name", false, &m->author_name) ||
	    !field_text(&in, obj, "text", false, &m->text) ||
	    !field_visibility(&in, obj, "visibility", false, &m->visibility))
		return false;
	v = json_object_get(obj, "inbound");
	if (json_is_boolean(v) || json_is_integer(v)) {
		m->inbound = json_is_true(v) || (json_is_integer(v) && json_integer_value(v) != 0);
	} else if (v != NULL && !json_is_null(v)) {
		snprintf(f->why, f->whylen, "invalid payload: message.inbound must be a boolean");
		return false;
	}
	v = json_object_get(obj, "created_ms");
	if (json_is_integer(v)) {
		m->created_ms = (int64_t)json_integer_value(v);
	} else if (v != NULL && !json_is_null(v)) {
		snprintf(f->why, f->whylen, "invalid payload: message.created_ms must be an integer");
		return false;
	}
	return true;
}

/* obj.kind of a send: absent or "message", or "private_reply". */
static bool field_send_kind(field_ctx *f, json_t *obj, parley_send_kind *out)
{
	json_t *v = json_object_get(obj, "kind");
	*out = PARLEY_SEND_MESSAGE;
	if (v == NULL || json_is_null(v))
		return true;
	if (json_is_string(v) && strcmp(json_string_value(v), "message") == 0)
		return true;
	if (json_is_string(v) && strcmp(json_string_value(v), "private_reply") == 0) {
		*out = PARLEY_SEND_PRIVATE_REPLY;
		return true;
	}
	snprintf(f->why, f->whylen, "invalid payload: %skind must be \"message\" or \"private_reply\"",
	         f->where);
	return false;
}

/* obj[key] as an integer; 0 when absent or null. */
static bool field_int64(field_ctx *f, json_t *obj, const char *key, int64_t *out)
{
	json_t *v = json_object_get(obj, key);
	*out = 0;
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_integer(v)) {
		snprintf(f->why, f->whylen, "invalid payload: %s%s must be an integer", f->where, key);
		return false;
	}
	*out = (int64_t)json_integer_value(v);
	return true;
}

static bool build_send(field_ctx *f, json_t *p, job_call *call)
{
	parley_outbound_message *m = &call->u.send;
	m->size = sizeof(*m);
	m->idempotency_key = f->j->idempotency_key;
	return field_text(f, p, "conversation_id", true, &m->conversation_id) &&
	       field_visibility(f, p, "visibility", true, &m->visibility) &&
	       field_text(f, p, "recipient_id", false, &m->recipient_id) &&
	       field_text(f, p, "thread_id", false, &m->thread_id) &&
	       field_text(f, p, "in_reply_to", false, &m->in_reply_to) &&
	       field_text(f, p, "text", true, &m->text) &&
	       field_text(f, p, "message_id", false, &m->message_id) &&
	       field_send_kind(f, p, &m->kind) &&
	       field_int64(f, p, "last_inbound_ms", &m->last_inbound_ms);
}

static bool build_open_ticket(field_ctx *f, json_t *p, job_call *call)
{
	parley_ticket_request *t = &call->u.ticket;
	bool present;
	t->size = sizeof(*t);
	t->idempotency_key = f->j->idempotency_key;
	t->conversation = &call->conversation;
	t->first_message = &call->message;
	return build_conversation(f, p, true, call, &present) && build_message(f, p, call) &&
	       field_text(f, p, "follow_up_of", false, &t->follow_up_of);
}

static bool build_append(field_ctx *f, json_t *p, job_call *call)
{
	parley_ticket_append *a = &call->u.append;
	bool present;
	a->size = sizeof(*a);
	a->idempotency_key = f->j->idempotency_key;
	a->conversation = &call->conversation;
	a->message = &call->message;
	return field_text(f, p, "external_ticket_id", true, &a->external_ticket_id) &&
	       build_conversation(f, p, true, call, &present) && build_message(f, p, call);
}

static bool build_deliver(field_ctx *f, json_t *p, job_call *call)
{
	parley_notice *n = &call->u.notice;
	json_t *inner;
	bool present;
	n->size = sizeof(*n);
	n->idempotency_key = f->j->idempotency_key;
	if (!field_text(f, p, "kind", true, &n->kind) || !field_text(f, p, "title", true, &n->title) ||
	    !field_text(f, p, "text", true, &n->text) || !field_text(f, p, "url", false, &n->url) ||
	    !build_conversation(f, p, false, call, &present) ||
	    !field_object(f, p, "payload", false, &inner))
		return false;
	n->conversation = present ? &call->conversation : NULL;
	/* The notice as JSON: its own "payload" object if it has one, else the
	 * whole job payload. */
	char *text = json_dumps(inner != NULL ? inner : p, JSON_COMPACT);
	if (text == NULL) {
		snprintf(f->why, f->whylen, "invalid payload: cannot be serialized");
		return false;
	}
	n->payload_json = job_keep(f->j, text);
	return true;
}

/* Fill `call` for the job's operation. false with a reason for a payload
 * the operation cannot be called with (the job then fails for good). */
static bool build_call(job *j, job_call *call, char *why, size_t whylen)
{
	field_ctx f = { .j = j, .where = "", .why = why, .whylen = whylen };
	memset(call, 0, sizeof(*call));
	if (!json_is_object(j->payload)) {
		snprintf(why, whylen, "invalid payload: not a JSON object");
		return false;
	}
	if (j->kind == PARLEY_KIND_CHANNEL && strcmp(j->operation, "send") == 0)
		return build_send(&f, j->payload, call);
	if (j->kind == PARLEY_KIND_SINK && strcmp(j->operation, "open_ticket") == 0)
		return build_open_ticket(&f, j->payload, call);
	if (j->kind == PARLEY_KIND_SINK && strcmp(j->operation, "append_message") == 0)
		return build_append(&f, j->payload, call);
	if (j->kind == PARLEY_KIND_NOTIFIER && strcmp(j->operation, "deliver") == 0)
		return build_deliver(&f, j->payload, call);
	snprintf(why, whylen, "operation %s is not supported for target %s", j->operation, j->target);
	return false;
}

/* ------------------------------------------------------------ running */

static void job_watchdog_fired(evutil_socket_t fd, short what, void *arg)
{
	job *j = arg;
	if (!j->delivery_open || j->timed_out)
		return;
	j->timed_out = true;
	log_warn(JOBS_LOG, "job %s (%s %s, attempt %d): no completion within %d ms; recorded as RETRY",
	         j->id, j->target, j->operation, j->attempt, R.watchdog_ms);
	job_record(j, "timeout", 0, "timed out", NULL);
}

/* The plugin completed the delivery (possibly from inside the operation
 * call). reason and external_id: borrowed for the call. */
static void job_delivery_done(void *arg, const host_delivery_result *r)
{
	job *j = arg;
	parley_outcome outcome = r->outcome;
	j->delivery_open = false;
	if (j->orphan) {
		/* Completed from a plugin's destroy, after jobs_free: nothing to record. */
		job_free_orphan(j);
		return;
	}
	if (j->timed_out) {
		log_info(JOBS_LOG, "job %s (%s %s, attempt %d): completed after its timeout; ignored",
		         j->id, j->target, j->operation, j->attempt);
		job_release_if_unused(j);
		return;
	}
	evtimer_del(j->watchdog);
	const char *name = outcome == PARLEY_OK ? "ok" : outcome == PARLEY_RETRY ? "retry" : "fail";
	free(j->thread_id);
	free(j->recipient_id);
	j->thread_id = outcome == PARLEY_OK ? clean_text(r->thread_id, JOBS_EXTERNAL_ID_MAX) : NULL;
	j->recipient_id = outcome == PARLEY_OK ? clean_text(r->recipient_id, JOBS_EXTERNAL_ID_MAX) : NULL;
	job_record(j, name, r->retry_at_ms, r->reason, r->external_id);
}

/* Hand a freshly claimed job to its plugin. Nothing may touch j after the
 * operation is called: the plugin can complete it inside the call. */
static void job_start(job *j)
{
	char why[JOBS_WHY_MAX];
	job_call call;
	parley_instance *inst;

	if (!build_call(j, &call, why, sizeof(why))) {
		job_record(j, "fail", 0, why, NULL);
		return;
	}
	inst = plugins_find(R.plugins, j->kind, j->instance);
	if (inst == NULL) {
		job_record(j, "fail", 0, "unknown instance", NULL);
		return;
	}
	j->watchdog = evtimer_new(R.base, job_watchdog_fired, j);
	if (j->watchdog == NULL) {
		job_record(j, "retry", 0, "out of memory", NULL);
		return;
	}
	struct timeval tv = ms_to_tv(R.watchdog_ms);
	evtimer_add(j->watchdog, &tv);
	j->delivery_open = true;
	log_debug(JOBS_LOG, "job %s (%s %s, attempt %d): started", j->id, j->target, j->operation,
	          j->attempt);
	parley_delivery *d = host_delivery_new(inst, job_delivery_done, j);
	const parley_plugin_descriptor *desc = inst->desc;
	if (j->kind == PARLEY_KIND_CHANNEL)
		desc->channel->send(inst->self, &call.u.send, d);
	else if (j->kind == PARLEY_KIND_NOTIFIER)
		desc->notifier->deliver(inst->self, &call.u.notice, d);
	else if (strcmp(j->operation, "open_ticket") == 0)
		desc->sink->open_ticket(inst->self, &call.u.ticket, d);
	else
		desc->sink->append_message(inst->self, &call.u.append, d);
}

/* -------------------------------------------------- recording outcomes */

static void log_written(job *j, const char *state, const char *retry_in_ms)
{
	double ms = (double)(util_mono_us() - j->started_us) / 1000.0;
	const char *reason = j->reason ? j->reason : "no reason given";
	if (strcmp(state, "done") == 0) {
		log_debug(JOBS_LOG, "job %s (%s %s, attempt %d): done in %.0f ms", j->id, j->target,
		          j->operation, j->attempt, ms);
	} else if (strcmp(j->outcome, "release") == 0) {
		log_debug(JOBS_LOG, "job %s (%s %s): released unstarted (stopping)", j->id, j->target,
		          j->operation);
	} else if (strcmp(state, "queued") == 0) {
		log_info(JOBS_LOG, "job %s (%s %s, attempt %d): %s, retry in %s ms: %s", j->id, j->target,
		         j->operation, j->attempt, j->outcome, retry_in_ms, reason);
	} else {
		count_dead(j->target);
		log_warn(JOBS_LOG, "job %s (%s %s) is dead after %d attempt(s) (%s): %s", j->id, j->target,
		         j->operation, j->attempt, j->outcome, reason);
	}
}

static void job_write(job *j);
static void on_rewrite(evutil_socket_t fd, short what, void *arg);

/* A failed outcome write is worth repeating while the claim still holds. */
static bool job_rewrite_later(job *j)
{
	uint64_t deadline_us = j->started_us + (uint64_t)R.watchdog_ms * 1000;
	if (j->rewrite_ms == 0)
		j->rewrite_ms = JOBS_REWRITE_MIN_MS;
	else if (j->rewrite_ms < JOBS_REWRITE_MAX_MS)
		j->rewrite_ms *= 2;
	if (util_mono_us() + (uint64_t)j->rewrite_ms * 1000 >= deadline_us)
		return false;
	if (j->rewrite == NULL)
		j->rewrite = evtimer_new(R.base, on_rewrite, j);
	if (j->rewrite == NULL)
		return false;
	struct timeval tv = ms_to_tv(j->rewrite_ms);
	evtimer_add(j->rewrite, &tv);
	j->write_pending = true;
	return true;
}

/* The outcome write returned. */
static void job_written(db_batch *b, bool ok, const char *error, void *arg)
{
	job *j = arg;
	PGresult *res = ok ? db_batch_result(b, 0) : NULL;
	j->write_pending = false;
	if (!ok) {
		if (job_rewrite_later(j)) {
			log_debug(JOBS_LOG, "job %s: outcome %s not recorded yet (%s); trying again in %d ms",
			          j->id, j->outcome, error, j->rewrite_ms);
			return;
		}
		log_warn(JOBS_LOG, "job %s (%s %s, attempt %d): outcome %s not recorded (%s); it runs "
		         "again when its lease ends", j->id, j->target, j->operation, j->attempt,
		         j->outcome, error);
	} else if (res == NULL || PQntuples(res) == 0) {
		log_info(JOBS_LOG, "job %s (%s %s, attempt %d): its lease ended and it was claimed "
		         "again; outcome %s discarded", j->id, j->target, j->operation, j->attempt,
		         j->outcome);
	} else {
		log_written(j, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
	}
	if (j->counted) {
		j->counted = false;
		R.held--;
	}
	job_release_if_unused(j);
	/* A slot is free, and the job's successor in its ordering key may be
	 * due only now that this outcome is committed. */
	runner_claim();
}

/* Submit the recorded outcome for the current claim of j. The write may
 * call back before this returns (pool stopped): nothing may touch j after. */
static void job_write(job *j)
{
	const char *sql_outcome = strcmp(j->outcome, "timeout") == 0 ? "retry" : j->outcome;
	const char *params[] = {
		j->id, j->claim_token, sql_outcome, j->reason, j->external_id,
		j->retry_at[0] ? j->retry_at : NULL, R.params[2], R.params[3], R.params[1],
		strcmp(j->outcome, "ok") == 0 ? j->thread_id : NULL,
		strcmp(j->outcome, "ok") == 0 ? j->recipient_id : NULL, R.finish_opts,
	};
	db_batch *b = db_batch_new();
	db_batch_add(b, JOBS_FINISH_SQL, 12, params);
	j->write_pending = true;
	db_batch_set_background(b);
	db_batch_submit(b, job_written, j);
}

static void on_rewrite(evutil_socket_t fd, short what, void *arg)
{
	job_write(arg);
}

/* Record an outcome ("ok", "retry", "fail", "timeout" or "release"; static)
 * for the current claim of j. reason, external_id: borrowed, may be NULL.
 * Nothing may touch j afterwards (see job_write). */
static void job_record(job *j, const char *outcome, int64_t retry_at_ms, const char *reason,
                       const char *external_id)
{
	if (strcmp(outcome, "release") != 0)
		count_attempt(j, outcome);
	j->outcome = outcome;
	free(j->reason);
	j->reason = clean_text(reason, JOBS_REASON_MAX);
	free(j->external_id);
	j->external_id = clean_text(external_id, JOBS_EXTERNAL_ID_MAX);
	j->retry_at[0] = '\0';
	if (retry_at_ms > 0)
		snprintf(j->retry_at, sizeof(j->retry_at), "%" PRId64, retry_at_ms);
	job_write(j);
}

/* --------------------------------------------------------------- claims */

static void note_db_failure(const char *what, const char *error)
{
	/* One warning per outage; the pool logs the details. */
	if (!R.db_outage) {
		log_warn(JOBS_LOG, "%s: %s", what, error ? error : "unknown error");
		R.db_outage = true;
	} else {
		log_debug(JOBS_LOG, "%s: %s", what, error ? error : "unknown error");
	}
}

static void note_db_success(void)
{
	if (R.db_outage) {
		log_info(JOBS_LOG, "claiming jobs again");
		R.db_outage = false;
	}
}

/* Wake for the next queued job's run_at when that comes before the sweep. */
static void arm_wake(PGresult *res)
{
	if (res == NULL || PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		return;
	long long ms = atoll(PQgetvalue(res, 0, 0));
	if (ms >= R.o.sweep_interval_ms)
		return;
	struct timeval tv = ms_to_tv(ms < 0 ? 0 : ms);
	evtimer_add(R.wake, &tv);   /* replaces an earlier, later wake-up */
}

static void claim_done(db_batch *b, bool ok, const char *error, void *arg)
{
	int want = (int)(intptr_t)arg, claimed = 0;
	R.claim_pending = false;
	if (!ok) {
		note_db_failure("cannot claim jobs", error);
		return;
	}
	note_db_success();
	PGresult *res = db_batch_result(b, 0);
	int n = res ? PQntuples(res) : 0;
	for (int i = 0; i < n; i++) {
		if (strcmp(PQgetvalue(res, i, 0), "t") != 0) {
			/* A runner died holding it, and it had no attempts left. */
			char target[300];
			snprintf(target, sizeof(target), "%s/%s", PQgetvalue(res, i, 3), PQgetvalue(res, i, 4));
			count_dead(target);
			log_warn(JOBS_LOG, "job %s (%s %s) is dead after %s attempt(s): its lease expired",
			         PQgetvalue(res, i, 1), target, PQgetvalue(res, i, 5), PQgetvalue(res, i, 8));
			continue;
		}
		claimed++;
		job *j = job_new(res, i);
		if (R.stopping)
			job_record(j, "release", 0, NULL, NULL);
		else
			job_start(j);
	}
	arm_wake(db_batch_result(b, 1));
	/* A full claim means more may be due right now. */
	if (claimed >= want)
		R.claim_again = true;
	if (R.claim_again)
		runner_claim();
}

/* Claim as many due jobs as there are free slots. At most one claim runs at
 * a time; a wake-up during it claims again when it returns. */
static void runner_claim(void)
{
	if (!R.started || R.stopping)
		return;
	if (R.claim_pending) {
		R.claim_again = true;
		return;
	}
	R.claim_again = false;
	int want = R.o.concurrency - R.held;
	if (want <= 0)
		return;
	char limit[16];
	snprintf(limit, sizeof(limit), "%d", want);
	const char *params[] = { limit, R.params[0], R.runner_id, R.params[1], R.finish_opts };
	db_batch *b = db_batch_new();
	db_batch_add(b, JOBS_CLAIM_SQL, 5, params);
	db_batch_add(b, JOBS_NEXT_DUE_SQL, 0, NULL);
	R.claim_pending = true;
	db_batch_set_background(b);
	db_batch_submit(b, claim_done, (void *)(intptr_t)want);
}

/* -------------------------------------------------------------- metrics */

static size_t gauge_slot(const char *labels)
{
	for (size_t i = 0; i < R.n_gauges; i++)
		if (strcmp(R.gauge_labels[i], labels) == 0)
			return i;
	if (R.n_gauges >= JOBS_MAX_GAUGES)
		return SIZE_MAX;
	R.gauge_labels = xrealloc(R.gauge_labels, (R.n_gauges + 1) * sizeof(char *));
	R.gauge_values = xrealloc(R.gauge_values, (R.n_gauges + 1) * sizeof(double));
	R.gauge_labels[R.n_gauges] = xstrdup(labels);
	R.gauge_values[R.n_gauges] = 0;
	return R.n_gauges++;
}

static void metrics_done(db_batch *b, bool ok, const char *error, void *arg)
{
	R.metrics_pending = false;
	if (!ok) {
		log_debug(JOBS_LOG, "cannot count jobs: %s", error);
		return;
	}
	PGresult *counts = db_batch_result(b, 0), *oldest = db_batch_result(b, 1);
	/* Pairs that vanished (all finished) must read 0, not their last count. */
	for (size_t i = 0; i < R.n_gauges; i++)
		R.gauge_values[i] = 0;
	for (int i = 0; counts != NULL && i < PQntuples(counts); i++) {
		char target[300];
		snprintf(target, sizeof(target), "%s/%s", PQgetvalue(counts, i, 1), PQgetvalue(counts, i, 2));
		char *t = metrics_escape_label(target), *s = metrics_escape_label(PQgetvalue(counts, i, 0));
		size_t cap = strlen(t) + strlen(s) + 32;
		char *labels = xmalloc(cap);
		snprintf(labels, cap, "state=\"%s\",target=\"%s\"", s, t);
		size_t slot = gauge_slot(labels);
		if (slot != SIZE_MAX)
			R.gauge_values[slot] = atof(PQgetvalue(counts, i, 3));
		free(labels);
		free(t);
		free(s);
	}
	for (size_t i = 0; i < R.n_gauges; i++)
		metrics_gauge_set(M_JOBS, M_JOBS_HELP, R.gauge_labels[i], R.gauge_values[i]);
	if (oldest != NULL && PQntuples(oldest) == 1)
		metrics_gauge_set(M_OLDEST, M_OLDEST_HELP, NULL, atof(PQgetvalue(oldest, 0, 0)));
}

static void metrics_refresh(void)
{
	if (R.metrics_pending || R.stopping)
		return;
	db_batch *b = db_batch_new();
	db_batch_add(b, JOBS_COUNT_SQL, 0, NULL);
	db_batch_add(b, JOBS_OLDEST_SQL, 0, NULL);
	R.metrics_pending = true;
	db_batch_set_background(b);
	db_batch_submit(b, metrics_done, NULL);
}

static void jobs_metrics_collect(void *arg)
{
	if (R.started)
		metrics_gauge_set(M_IN_FLIGHT, M_IN_FLIGHT_HELP, NULL, R.held);
}

/* --------------------------------------------------------------- timers */

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	runner_claim();
	metrics_refresh();
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	runner_claim();
}

/* ------------------------------------------------------------ LISTEN */

static void listen_io_cb(evutil_socket_t fd, short what, void *arg);
static void listen_connect(void);

/* Watch the LISTEN socket for `what`; libpq may replace the socket while
 * connecting, so `force` re-registers even when the number is the same. */
static bool listen_watch(short what, bool force)
{
	evutil_socket_t fd = PQsocket(R.listen.pg);
	if (fd < 0)
		return false;
	if (R.listen.io != NULL && !force && fd == R.listen.io_fd && what == R.listen.io_what)
		return true;
	if (R.listen.io != NULL) {
		event_free(R.listen.io);
		R.listen.io = NULL;
	}
	R.listen.io = event_new(R.base, fd, what, listen_io_cb, NULL);
	if (R.listen.io == NULL)
		return false;
	if (event_add(R.listen.io, NULL) != 0) {
		event_free(R.listen.io);
		R.listen.io = NULL;
		return false;
	}
	R.listen.io_fd = fd;
	R.listen.io_what = what;
	return true;
}

static void listen_close(void)
{
	if (R.listen.io != NULL) {
		event_free(R.listen.io);
		R.listen.io = NULL;
	}
	if (R.listen.pg != NULL) {
		PQfinish(R.listen.pg);
		R.listen.pg = NULL;
	}
	if (R.listen.timer != NULL)
		evtimer_del(R.listen.timer);
	R.listen.io_fd = -1;
	R.listen.io_what = 0;
	R.listen.fatal[0] = '\0';
	R.listen.state = LISTEN_DOWN;
}

/* The connection failed or dropped: close it and reconnect after a backoff
 * (100 ms doubling to 5 s, drawn from the upper half of the step). The
 * sweep keeps the runner going meanwhile. */
static void listen_failed_because(const char *what, const char *detail)
{
	char msg[512];
	if (detail != NULL)
		snprintf(msg, sizeof(msg), "%s", detail);
	else if (R.listen.fatal[0] != '\0')
		snprintf(msg, sizeof(msg), "%s", R.listen.fatal);
	else
		util_one_line(R.listen.pg ? PQerrorMessage(R.listen.pg) : "out of memory", msg, sizeof(msg));
	if (!R.listen.outage) {
		log_warn(JOBS_LOG, "%s: %s; waking on the %d ms sweep until it is back", what,
		         msg[0] ? msg : "unknown error", R.o.sweep_interval_ms);
		R.listen.outage = true;
	} else {
		log_debug(JOBS_LOG, "%s: %s", what, msg);
	}
	listen_close();
	if (R.stopping)
		return;
	if (R.listen.backoff_ms == 0)
		R.listen.backoff_ms = JOBS_LISTEN_BACKOFF_MIN_MS;
	else if (R.listen.backoff_ms < JOBS_LISTEN_BACKOFF_MAX_MS)
		R.listen.backoff_ms = R.listen.backoff_ms * 2 > JOBS_LISTEN_BACKOFF_MAX_MS
		                      ? JOBS_LISTEN_BACKOFF_MAX_MS : R.listen.backoff_ms * 2;
	int half = R.listen.backoff_ms / 2;
	struct timeval tv = ms_to_tv(half + (int)(jobs_random() % (uint64_t)(half + 1)));
	evtimer_add(R.listen.timer, &tv);
}

/* libpq says why. */
static void listen_failed(const char *what)
{
	listen_failed_because(what, NULL);
}

/* Notices, and the FATAL a server sends before it hangs up (which says
 * why better than libpq's "server closed the connection"). */
static void listen_notice(void *arg, const PGresult *res)
{
	const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	char msg[512];
	util_one_line(primary ? primary : PQresultErrorMessage(res), msg, sizeof(msg));
	if (severity != NULL && (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0))
		snprintf(R.listen.fatal, sizeof(R.listen.fatal), "%s", msg);
	log_debug(JOBS_LOG, "server %s on the LISTEN connection: %s", severity ? severity : "notice", msg);
}

static void listen_established(void)
{
	evtimer_del(R.listen.timer);
	if (PQsetnonblocking(R.listen.pg, 1) != 0 ||
	    PQsendQuery(R.listen.pg, "LISTEN parley_jobs") != 1) {
		listen_failed("cannot LISTEN for jobs");
		return;
	}
	int flushed = PQflush(R.listen.pg);
	if (flushed < 0 || !listen_watch(EV_READ | EV_PERSIST | (flushed == 1 ? EV_WRITE : 0), true)) {
		listen_failed("cannot LISTEN for jobs");
		return;
	}
	R.listen.state = LISTEN_SUBSCRIBING;
}

static void listen_subscribed(void)
{
	R.listen.state = LISTEN_READY;
	R.listen.backoff_ms = 0;
	if (R.listen.outage) {
		log_info(JOBS_LOG, "listening for new jobs again");
		R.listen.outage = false;
	} else if (!R.listen.announced) {
		log_info(JOBS_LOG, "listening for new jobs");
	}
	R.listen.announced = true;
	/* Jobs enqueued while nobody listened sent their notifications to no one. */
	runner_claim();
}

static void listen_connect_step(void)
{
	switch (PQconnectPoll(R.listen.pg)) {
	case PGRES_POLLING_OK:
		listen_established();
		return;
	case PGRES_POLLING_READING:
		if (!listen_watch(EV_READ, true))
			listen_failed("cannot connect the LISTEN connection");
		return;
	case PGRES_POLLING_WRITING:
		if (!listen_watch(EV_WRITE, true))
			listen_failed("cannot connect the LISTEN connection");
		return;
	default:
		listen_failed("cannot connect the LISTEN connection");
		return;
	}
}

/* Input on an established connection: the LISTEN result, then notifications. */
static void listen_input(short what)
{
	PGconn *pg = R.listen.pg;
	bool wake = false;

	if ((what & EV_WRITE) != 0) {
		int flushed = PQflush(pg);
		if (flushed < 0 || !listen_watch(EV_READ | EV_PERSIST | (flushed == 1 ? EV_WRITE : 0), false)) {
			listen_failed("lost the LISTEN connection");
			return;
		}
	}
	if (PQconsumeInput(pg) != 1 || PQstatus(pg) == CONNECTION_BAD) {
		listen_failed("lost the LISTEN connection");
		return;
	}
	while (!PQisBusy(pg)) {
		PGresult *r = PQgetResult(pg);
		if (r == NULL)
			break;
		ExecStatusType st = PQresultStatus(r);
		PQclear(r);
		if (st != PGRES_COMMAND_OK) {
			listen_failed("LISTEN failed");
			return;
		}
		if (R.listen.state == LISTEN_SUBSCRIBING)
			listen_subscribed();
	}
	PGnotify *n;
	while ((n = PQnotifies(pg)) != NULL) {
		wake = true;
		PQfreemem(n);
	}
	if (wake)
		runner_claim();
}

static void listen_io_cb(evutil_socket_t fd, short what, void *arg)
{
	switch (R.listen.state) {
	case LISTEN_CONNECTING:
		listen_connect_step();
		return;
	case LISTEN_SUBSCRIBING:
	case LISTEN_READY:
		listen_input(what);
		return;
	case LISTEN_DOWN:
		return;
	}
}

static void listen_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	if (R.listen.state == LISTEN_DOWN) {
		listen_connect();
	} else if (R.listen.state == LISTEN_CONNECTING) {
		char why[64];
		snprintf(why, sizeof(why), "no connection within %d ms", R.o.connect_timeout_ms);
		listen_failed_because("cannot connect the LISTEN connection", why);
	}
}

static void listen_connect(void)
{
	/* Like the pool: the DSN as "dbname" with expand_dbname, so a key=value
	 * string and a URI both work. */
	static const char *const keys[] = { "fallback_application_name", "dbname", NULL };
	const char *values[] = { "parleyd-jobs", R.dsn, NULL };

	if (R.stopping)
		return;
	R.listen.pg = PQconnectStartParams(keys, values, 1);
	if (R.listen.pg == NULL || PQstatus(R.listen.pg) == CONNECTION_BAD) {
		listen_failed("cannot connect the LISTEN connection");
		return;
	}
	PQsetNoticeReceiver(R.listen.pg, listen_notice, NULL);
	R.listen.state = LISTEN_CONNECTING;
	if (R.o.connect_timeout_ms > 0) {
		struct timeval tv = ms_to_tv(R.o.connect_timeout_ms);
		evtimer_add(R.listen.timer, &tv);
	}
	/* Before the first PQconnectPoll, libpq says to wait for writability. */
	if (!listen_watch(EV_WRITE, true))
		listen_failed("cannot connect the LISTEN connection");
}

/* ----------------------------------------------------------------- API */

static bool check_options(const jobs_options *o, char *err, size_t errlen)
{
	if (o->dsn == NULL) {
		util_set_err(err, errlen, "jobs: no database connection string");
		return false;
	}
	if (o->concurrency < 1 || o->concurrency > JOBS_MAX_CONCURRENCY) {
		util_set_err(err, errlen, "jobs: concurrency must be between 1 and %d", JOBS_MAX_CONCURRENCY);
		return false;
	}
	if (o->lease_ms < JOBS_MIN_LEASE_MS) {
		util_set_err(err, errlen, "jobs: lease_ms must be at least %d", JOBS_MIN_LEASE_MS);
		return false;
	}
	if (o->max_attempts < 1) {
		util_set_err(err, errlen, "jobs: max_attempts must be at least 1");
		return false;
	}
	if (o->backoff_base_ms < 0 || o->backoff_max_ms < o->backoff_base_ms) {
		util_set_err(err, errlen, "jobs: backoff_base_ms must be 0 or more and backoff_max_ms at "
		             "least backoff_base_ms");
		return false;
	}
	if (o->sweep_interval_ms < JOBS_MIN_SWEEP_MS) {
		util_set_err(err, errlen, "jobs: sweep_interval_ms must be at least %d", JOBS_MIN_SWEEP_MS);
		return false;
	}
	if (o->connect_timeout_ms < 0) {
		util_set_err(err, errlen, "jobs: connect_timeout_ms must not be negative");
		return false;
	}
	/* Like the pool, never repeat libpq's parse error: it may quote a password. */
	char *perr = NULL;
	PQconninfoOption *parsed = PQconninfoParse(o->dsn, &perr);
	if (parsed == NULL) {
		PQfreemem(perr);
		util_set_err(err, errlen, "jobs: invalid database connection string (not shown: it may "
		             "hold a password)");
		return false;
	}
	PQconninfoFree(parsed);
	return true;
}

static struct event *new_timer(event_callback_fn fn, short flags)
{
	struct event *ev = event_new(R.base, -1, flags, fn, NULL);
	if (ev == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
	return ev;
}

void jobs_set_finish_opts(const char *finish_opts_json)
{
	if (!R.started)
		return;   /* no runner in this process (jobs.enabled false) */
	free(R.finish_opts);
	R.finish_opts = xstrdup(finish_opts_json ? finish_opts_json : "{}");
	R.o.finish_opts_json = R.finish_opts;
}

bool jobs_start(struct event_base *base, const jobs_options *opts, struct plugin_set *plugins,
                char *err, size_t errlen)
{
	if (R.started) {
		util_set_err(err, errlen, "jobs: the runner is already running");
		return false;
	}
	if (base == NULL || opts == NULL) {
		util_set_err(err, errlen, "jobs: invalid arguments");
		return false;
	}
	if (!check_options(opts, err, errlen))
		return false;

	R.base = base;
	R.plugins = plugins;
	R.o = *opts;
	R.dsn = xstrdup(opts->dsn);
	R.o.dsn = R.dsn;
	free(R.finish_opts);
	R.finish_opts = xstrdup(opts->finish_opts_json ? opts->finish_opts_json : "{}");
	R.o.finish_opts_json = R.finish_opts;
	int margin = R.o.lease_ms / 5;
	R.watchdog_ms = R.o.lease_ms - (margin > JOBS_WATCHDOG_MARGIN_MAX_MS ? JOBS_WATCHDOG_MARGIN_MAX_MS
	                                                                     : margin);
	snprintf(R.params[0], sizeof(R.params[0]), "%d", R.o.lease_ms);
	snprintf(R.params[1], sizeof(R.params[1]), "%d", R.o.max_attempts);
	snprintf(R.params[2], sizeof(R.params[2]), "%d", R.o.backoff_base_ms);
	snprintf(R.params[3], sizeof(R.params[3]), "%d", R.o.backoff_max_ms);
	char host[256];
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = '\0';
	snprintf(R.runner_id, sizeof(R.runner_id), "%s:%ld", host, (long)getpid());

	R.held = 0;
	R.claim_pending = R.claim_again = R.metrics_pending = false;
	R.db_outage = false;
	R.stopping = false;
	R.sweep = new_timer(on_sweep, EV_PERSIST);
	R.wake = new_timer(on_wake, 0);
	R.kick = new_timer(on_sweep, 0);
	R.listen.timer = new_timer(listen_timer_cb, 0);
	R.listen.io_fd = -1;
	R.listen.state = LISTEN_DOWN;
	R.listen.backoff_ms = 0;
	R.listen.outage = R.listen.announced = false;
	R.started = true;

	struct timeval sweep = ms_to_tv(R.o.sweep_interval_ms), now = { 0, 0 };
	evtimer_add(R.sweep, &sweep);
	evtimer_add(R.kick, &now);
	listen_connect();
	/* Registered per start because metrics_reset() forgets collectors. */
	metrics_add_collector(jobs_metrics_collect, NULL);
	log_info(JOBS_LOG, "job runner %s: concurrency %d, lease %d ms, max attempts %d",
	         R.runner_id, R.o.concurrency, R.o.lease_ms, R.o.max_attempts);
	return true;
}

void jobs_stop(void)
{
	if (!R.started || R.stopping)
		return;
	R.stopping = true;
	evtimer_del(R.sweep);
	evtimer_del(R.wake);
	evtimer_del(R.kick);
	listen_close();
	log_info(JOBS_LOG, "job runner stopping: no new jobs; %d in flight", R.held);
}

size_t jobs_in_flight(void)
{
	return (size_t)R.held + (R.claim_pending ? 1u : 0u);
}

void jobs_free(void)
{
	if (!R.started)
		return;
	listen_close();
	/* The pool is stopped, so no write is in flight; a write waiting to be
	 * tried again is dropped (the job runs again after its lease). Jobs
	 * whose delivery a plugin has not completed may still be completed (from
	 * the plugin's stop or destroy), so they stay allocated, as orphans that
	 * free themselves on completion. The rest go now. */
	while (!TAILQ_EMPTY(&R.jobs)) {
		job *j = TAILQ_FIRST(&R.jobs);
		if (!j->delivery_open) {
			job_free(j);
			continue;
		}
		TAILQ_REMOVE(&R.jobs, j, link);
		j->orphan = true;
		j->write_pending = false;
		/* The loop goes away after this. */
		if (j->watchdog != NULL) {
			event_free(j->watchdog);
			j->watchdog = NULL;
		}
		if (j->rewrite != NULL) {
			event_free(j->rewrite);
			j->rewrite = NULL;
		}
	}
	event_free(R.sweep);
	event_free(R.wake);
	event_free(R.kick);
	event_free(R.listen.timer);
	for (size_t i = 0; i < R.n_gauges; i++)
		free(R.gauge_labels[i]);
	free(R.gauge_labels);
	free(R.gauge_values);
	free(R.dsn);
	free(R.finish_opts);
	R.finish_opts = NULL;
	memset(&R, 0, sizeof(R));
	TAILQ_INIT(&R.jobs);
}
