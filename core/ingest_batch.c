/* ingest_batch.c - group commit of inbound events across requests.
 *
 * Why batch: a transaction's fixed cost (round trips, the commit's WAL
 * flush) dominates one small event. Gathering the events of concurrent
 * requests for a millisecond or two and writing them with one statement
 * turns thousands of commits per second into hundreds, at the price of that
 * delay on each acknowledgement. */
#include "ingest_batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <jansson.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define IB_LOG "ingest"
#define IB_SQL "SELECT parley_ingest_batch($1::jsonb, $2::jsonb)"
#define IB_STATE_SQL \
	"INSERT INTO plugin_state (instance, key, value) VALUES ($1, $2, $3) " \
	"ON CONFLICT (instance, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"

/* One request's events waiting for (or in) a transaction. */
typedef struct ib_entry {
	ingest_set *set;                 /* owned */
	ingest_done_fn done;
	void *arg;
	bool solo;                       /* already retried alone: never split again */
	TAILQ_ENTRY(ib_entry) link;
} ib_entry;
TAILQ_HEAD(ib_list, ib_entry);

/* A transaction in flight and the requests it answers. */
typedef struct ib_flight {
	struct ib_list entries;
	size_t nsets, nevents;
} ib_flight;

static struct {
	struct event_base *base;         /* borrowed */
	struct event *timer;             /* batch_max_delay_ms after the first waiting set */
	bool timer_armed;
	int max_events, max_delay_ms, max_inflight;
	char *opts_json;                 /* the second argument of parley_ingest_batch */
	struct ib_list waiting;
	size_t waiting_events;
	int inflight;
	size_t pending_sets;             /* waiting + in flight */
} ib = {
	.waiting = TAILQ_HEAD_INITIALIZER(ib.waiting),
};

static void ib_flush(void);

size_t ingest_batch_pending(void) { return ib.pending_sets; }

static void ib_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what; (void)arg;
	ib.timer_armed = false;
	ib_flush();
}

void ingest_batch_configure(struct event_base *base, const cfg *c)
{
	ib.base = base;
	if (ib.timer == NULL) {
		ib.timer = evtimer_new(base, ib_timer_cb, NULL);
		if (ib.timer == NULL) {
			fputs("parleyd: out of memory\n", stderr);
			abort();
		}
	}
	ib.max_events = c->ingest.batch_max_events;
	ib.max_delay_ms = c->ingest.batch_max_delay_ms;
	ib.max_inflight = c->ingest.max_inflight_batches;

	/* The rules the database applies per batch (see sql/002_customer_model.sql). */
	char case_pattern[64];
	snprintf(case_pattern, sizeof(case_pattern), "%s[0-9]+", c->ingest.case_prefix);
	json_t *o = json_pack("{s:i, s:b, s:b, s:s, s:s, s:s}",
	                      "reopen_window_s", c->ingest.reopen_window_s,
	                      "auto_merge_verified_email", c->ingest.auto_merge_verified_email,
	                      "auto_merge_verified_phone", c->ingest.auto_merge_verified_phone,
	                      "case_prefix", c->ingest.case_prefix,
	                      "case_pattern", case_pattern,
	                      "order_pattern", c->ingest.order_number_pattern);
	json_t *notify = json_array();
	for (size_t i = 0; i < c->ingest.n_notify_new_conversation; i++)
		json_array_append_new(notify, json_string(c->ingest.notify_new_conversation[i]));
	json_object_set_new(o, "notify_new_conversation", notify);
	/* With the default patterns every reference holds a digit or an '@':
	 * messages without either skip the three regular expressions. */
	if (strcmp(c->ingest.order_number_pattern, CFG_DEFAULT_ORDER_PATTERN) == 0)
		json_object_set_new(o, "reference_filter", json_string("[0-9@]"));
	char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (text == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
	free(ib.opts_json);
	ib.opts_json = text;
}

static void ib_answer(ib_entry *e, bool ok, const char *error);

void ingest_batch_free(void)
{
	/* Sets still waiting when the loop ended (a shutdown that timed out):
	 * their requests get their 503 now rather than never. */
	ib_entry *e;
	while ((e = TAILQ_FIRST(&ib.waiting)) != NULL) {
		TAILQ_REMOVE(&ib.waiting, e, link);
		ib_answer(e, false, DB_ERR_SHUTDOWN);
	}
	ib.waiting_events = 0;
	if (ib.timer != NULL)
		event_free(ib.timer);
	ib.timer = NULL;
	ib.timer_armed = false;
	free(ib.opts_json);
	ib.opts_json = NULL;
}

/* Count what the batch wrote, per instance, from parley_ingest_batch's answer:
 * {"inserted":N,"replays":M,"instances":{"NAME":{"inserted":a,"replays":b}}}. */
static void ib_count(PGresult *r)
{
	if (r == NULL || PQntuples(r) != 1)
		return;
	json_t *o = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
	json_t *per = json_object_get(o, "instances");
	const char *name;
	json_t *v;
	json_object_foreach(per, name, v) {
		char *esc = metrics_escape_label(name);
		char labels[300];
		snprintf(labels, sizeof(labels), "instance=\"%s\"", esc);
		free(esc);
		json_int_t ins = json_integer_value(json_object_get(v, "inserted"));
		json_int_t rep = json_integer_value(json_object_get(v, "replays"));
		metrics_counter_add("parley_ingest_events_total", "Inbound events committed.", labels,
		                    ins > 0 ? (uint64_t)ins : 0);
		metrics_counter_add("parley_ingest_replays_total",
		                    "Inbound events that were replays of committed ones.", labels,
		                    rep > 0 ? (uint64_t)rep : 0);
	}
	json_decref(o);
}

static void ib_answer(ib_entry *e, bool ok, const char *error)
{
	ib.pending_sets--;
	e->done(e->arg, ok, error);
	ingest_set_free(e->set);
	free(e);
}

/* A failure worth retrying request by request: the database answered (so
 * one request's data may be the cause), not an outage or a timeout, where
 * retrying would only add load. */
static bool ib_should_split(const char *error)
{
	return db_pool_ready() && error != NULL && strcmp(error, DB_ERR_TIMEOUT) != 0 &&
	       strcmp(error, DB_ERR_UNAVAILABLE) != 0 && strcmp(error, DB_ERR_SHUTDOWN) != 0;
}

static void ib_flight_done(db_batch *b, bool ok, const char *error, void *arg)
{
	ib_flight *f = arg;
	ib.inflight--;
	metrics_counter_add("parley_ingest_batches_total", "Ingest transactions, by result.",
	                    ok ? "result=\"committed\"" : "result=\"failed\"", 1);
	if (ok) {
		ib_count(db_batch_result(b, 0));
	} else {
		log_warn(IB_LOG, "a batch of %zu events from %zu requests failed: %s", f->nevents,
		         f->nsets, error);
	}

	if (!ok && f->nsets > 1 && ib_should_split(error)) {
		/* Retry each request alone, ahead of newer work, in the same order. */
		ib_entry *e;
		while ((e = TAILQ_LAST(&f->entries, ib_list)) != NULL) {
			TAILQ_REMOVE(&f->entries, e, link);
			e->solo = true;
			TAILQ_INSERT_HEAD(&ib.waiting, e, link);
			ib.waiting_events += ingest_set_count(e->set);
		}
	} else {
		ib_entry *e;
		while ((e = TAILQ_FIRST(&f->entries)) != NULL) {
			TAILQ_REMOVE(&f->entries, e, link);
			ib_answer(e, ok, error);
		}
	}
	free(f);
	/* Whatever gathered while this batch ran has waited long enough. */
	ib_flush();
}

/* Start one transaction with the oldest waiting sets (up to max_events, at
 * least one set; a solo entry goes alone). */
static void ib_start_one(void)
{
	ib_flight *f = xcalloc(1, sizeof(*f));
	TAILQ_INIT(&f->entries);
	struct evbuffer *json = evbuffer_new();
	if (json == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
	evbuffer_add(json, "[", 1);
	ib_entry *e;
	while ((e = TAILQ_FIRST(&ib.waiting)) != NULL) {
		size_t n = ingest_set_count(e->set);
		if (f->nsets > 0 && (e->solo || f->nevents + n > (size_t)ib.max_events))
			break;
		TAILQ_REMOVE(&ib.waiting, e, link);
		ib.waiting_events -= n;
		TAILQ_INSERT_TAIL(&f->entries, e, link);
		for (size_t i = 0; i < n; i++) {
			if (f->nevents + i > 0)
				evbuffer_add(json, ",", 1);
			const char *item = ingest_set_item(e->set, i);
			evbuffer_add(json, item, strlen(item));
		}
		f->nsets++;
		f->nevents += n;
		if (e->solo)
			break;
	}
	evbuffer_add(json, "]", 2); /* with the terminating NUL */
	const char *params[2] = { (const char *)evbuffer_pullup(json, -1), ib.opts_json };
	db_batch *b = db_batch_new();
	db_batch_add(b, IB_SQL, 2, params);
	evbuffer_free(json);
	/* Polling cursors move in the same transaction as their events. */
	TAILQ_FOREACH(e, &f->entries, link) {
		const char *st[3];
		if (ingest_set_state(e->set, &st[0], &st[1], &st[2]))
			db_batch_add(b, IB_STATE_SQL, 3, st);
	}
	ib.inflight++;
	db_batch_submit(b, ib_flight_done, f);
}

static void ib_flush(void)
{
	while (!TAILQ_EMPTY(&ib.waiting) && ib.inflight < ib.max_inflight)
		ib_start_one();
	if (TAILQ_EMPTY(&ib.waiting) && ib.timer_armed) {
		evtimer_del(ib.timer);
		ib.timer_armed = false;
	}
}

void ingest_batch_enqueue(ingest_set *s, ingest_done_fn done, void *arg)
{
	ib_entry *e = xcalloc(1, sizeof(*e));
	e->set = s;
	e->done = done;
	e->arg = arg;
	ib.pending_sets++;
	bool was_empty = TAILQ_EMPTY(&ib.waiting);
	TAILQ_INSERT_TAIL(&ib.waiting, e, link);
	ib.waiting_events += ingest_set_count(s);

	if (ib.waiting_events >= (size_t)ib.max_events || ib.max_delay_ms == 0) {
		ib_flush();
		return;
	}
	if (was_empty && !ib.timer_armed) {
		struct timeval tv = { ib.max_delay_ms / 1000, (ib.max_delay_ms % 1000) * 1000 };
		evtimer_add(ib.timer, &tv);
		ib.timer_armed = true;
	}
}
