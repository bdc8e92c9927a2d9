/* ingest.c - durable intake of the events a channel emits for one request.
 *
 * The event is checked and turned into JSON as it is emitted (so a bad event
 * is refused while the plugin can still answer 400), and the whole set is
 * written in one transaction on commit. ON CONFLICT DO NOTHING on the
 * (instance, dedupe key) constraint makes replays no-ops. */
#include "ingest.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define INGEST_MAX_KEY 512
#define INGEST_MAX_TEXT (1024 * 1024)

/* The size a plugin built against ABI 1.0 reports for parley_event. */
#define EVENT_V1_SIZE (offsetof(parley_event, raw_json_len) + sizeof(size_t))

typedef struct ingest_row {
	char *dedupe_key;
	const char *type_name;      /* static */
	char *external_id;
	char *author_id;
	char *event_json;
	char *raw_json;             /* NULL = SQL NULL */
	char platform_time_ms[24];  /* "" = SQL NULL */
} ingest_row;

struct ingest_set {
	char *instance;
	ingest_row *rows;
	size_t n, cap;
};

struct commit_ctx {
	ingest_done_fn done;
	void *arg;
	char *instance;
	size_t n;
};

ingest_set *ingest_set_new(const char *instance)
{
	ingest_set *s = xcalloc(1, sizeof(*s));
	s->instance = xstrdup(instance);
	return s;
}

size_t ingest_set_count(const ingest_set *s) { return s ? s->n : 0; }

void ingest_set_free(ingest_set *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->rows[i].dedupe_key);
		free(s->rows[i].external_id);
		free(s->rows[i].author_id);
		free(s->rows[i].event_json);
		free(s->rows[i].raw_json);
	}
	free(s->rows);
	free(s->instance);
	free(s);
}

static const char *type_name(parley_event_type t)
{
	switch (t) {
	case PARLEY_EVENT_MESSAGE_CREATED: return "message_created";
	case PARLEY_EVENT_MESSAGE_EDITED: return "message_edited";
	case PARLEY_EVENT_MESSAGE_DELETED: return "message_deleted";
	case PARLEY_EVENT_DELIVERY_STATUS: return "delivery_status";
	}
	return NULL;
}

static const char *delivery_name(parley_delivery_status s)
{
	switch (s) {
	case PARLEY_DELIVERY_SENT: return "sent";
	case PARLEY_DELIVERY_DELIVERED: return "delivered";
	case PARLEY_DELIVERY_READ: return "read";
	case PARLEY_DELIVERY_FAILED: return "failed";
	case PARLEY_DELIVERY_NONE: break;
	}
	return NULL;
}

/* Add a string field; false when it is not valid UTF-8 (jansson checks). */
static bool put_str(json_t *o, const char *key, const char *value, char *err, size_t errlen)
{
	if (value == NULL)
		return true;
	if (strlen(value) > INGEST_MAX_TEXT) {
		snprintf(err, errlen, "%s is longer than %d bytes", key, INGEST_MAX_TEXT);
		return false;
	}
	json_t *v = json_string(value);
	if (v == NULL) {
		snprintf(err, errlen, "%s is not valid UTF-8", key);
		return false;
	}
	json_object_set_new(o, key, v);
	return true;
}

static bool nonempty(const char *s) { return s != NULL && *s != '\0'; }

static json_t *identity_json(const parley_identity *a, char *err, size_t errlen)
{
	json_t *o = json_object();
	if (!put_str(o, "external_id", a->external_id, err, errlen) ||
	    !put_str(o, "handle", a->handle, err, errlen) ||
	    !put_str(o, "display_name", a->display_name, err, errlen) ||
	    !put_str(o, "email", a->email, err, errlen) ||
	    !put_str(o, "phone", a->phone, err, errlen))
		goto fail;
	if (a->email)
		json_object_set_new(o, "email_verified", json_boolean(a->email_verified));
	if (a->phone)
		json_object_set_new(o, "phone_verified", json_boolean(a->phone_verified));
	if (a->profile_json != NULL) {
		json_t *p = json_loads(a->profile_json, 0, NULL);
		if (!json_is_object(p)) {
			json_decref(p);
			snprintf(err, errlen, "author.profile_json is not a JSON object");
			goto fail;
		}
		json_object_set_new(o, "profile", p);
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

bool ingest_set_add(ingest_set *s, const parley_event *ev, char *err, size_t errlen)
{
	if (ev == NULL || ev->size < EVENT_V1_SIZE) {
		snprintf(err, errlen, "event struct too small (size %u)", ev ? (unsigned)ev->size : 0u);
		return false;
	}
	const char *tname = type_name(ev->type);
	if (tname == NULL) {
		snprintf(err, errlen, "unknown event type %d", (int)ev->type);
		return false;
	}
	if (!nonempty(ev->dedupe_key) || strlen(ev->dedupe_key) > INGEST_MAX_KEY) {
		snprintf(err, errlen, "dedupe_key must be 1..%d bytes", INGEST_MAX_KEY);
		return false;
	}
	if (!nonempty(ev->external_id)) {
		snprintf(err, errlen, "external_id is required");
		return false;
	}
	if (ev->type == PARLEY_EVENT_MESSAGE_CREATED) {
		if (!nonempty(ev->author.external_id)) {
			snprintf(err, errlen, "author.external_id is required for a new message");
			return false;
		}
		if (ev->visibility != PARLEY_VISIBILITY_PUBLIC && ev->visibility != PARLEY_VISIBILITY_PRIVATE) {
			snprintf(err, errlen, "visibility must be public or private");
			return false;
		}
	}
	if (ev->type == PARLEY_EVENT_DELIVERY_STATUS && delivery_name(ev->delivery_status) == NULL) {
		snprintf(err, errlen, "delivery_status is required for a delivery status event");
		return false;
	}

	json_t *o = json_object();
	json_object_set_new(o, "type", json_string(tname));
	if (!put_str(o, "dedupe_key", ev->dedupe_key, err, errlen) ||
	    !put_str(o, "external_id", ev->external_id, err, errlen) ||
	    !put_str(o, "text", ev->text, err, errlen) ||
	    !put_str(o, "thread_id", ev->thread_id, err, errlen) ||
	    !put_str(o, "in_reply_to", ev->in_reply_to, err, errlen) ||
	    !put_str(o, "detail", ev->detail, err, errlen))
		goto fail;
	if (ev->author.external_id != NULL || ev->type == PARLEY_EVENT_MESSAGE_CREATED) {
		json_t *a = identity_json(&ev->author, err, errlen);
		if (a == NULL)
			goto fail;
		json_object_set_new(o, "author", a);
	}
	if (ev->visibility == PARLEY_VISIBILITY_PUBLIC || ev->visibility == PARLEY_VISIBILITY_PRIVATE)
		json_object_set_new(o, "visibility",
		                    json_string(ev->visibility == PARLEY_VISIBILITY_PUBLIC ? "public" : "private"));
	json_object_set_new(o, "from_brand", json_boolean(ev->from_brand));
	if (ev->type == PARLEY_EVENT_DELIVERY_STATUS)
		json_object_set_new(o, "delivery_status", json_string(delivery_name(ev->delivery_status)));
	if (ev->platform_time_ms > 0)
		json_object_set_new(o, "platform_time_ms", json_integer(ev->platform_time_ms));

	char *raw = NULL;
	if (ev->raw_json != NULL && ev->raw_json_len > 0) {
		/* Store the platform's item as jsonb. It must be JSON; jansson also refuses
		 * \u0000, which PostgreSQL's jsonb cannot hold either. */
		json_error_t jerr;
		json_t *r = json_loadb(ev->raw_json, ev->raw_json_len, JSON_DECODE_ANY, &jerr);
		if (r == NULL) {
			snprintf(err, errlen, "raw_json is not valid JSON: %s", jerr.text);
			goto fail;
		}
		raw = json_dumps(r, JSON_COMPACT | JSON_ENCODE_ANY);
		json_decref(r);
	}

	char *event_text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (event_text == NULL) {
		free(raw);
		snprintf(err, errlen, "event could not be serialized");
		return false;
	}

	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4;
		s->rows = xrealloc(s->rows, s->cap * sizeof(ingest_row));
	}
	ingest_row *row = &s->rows[s->n++];
	memset(row, 0, sizeof(*row));
	row->dedupe_key = xstrdup(ev->dedupe_key);
	row->type_name = tname;
	row->external_id = xstrdup(ev->external_id);
	row->author_id = xstrdup(ev->author.external_id);
	row->event_json = event_text;
	row->raw_json = raw;
	if (ev->platform_time_ms > 0)
		snprintf(row->platform_time_ms, sizeof(row->platform_time_ms), "%" PRId64,
		         ev->platform_time_ms);
	return true;
fail:
	json_decref(o);
	return false;
}

static void commit_done(db_batch *b, bool ok, const char *error, void *arg)
{
	struct commit_ctx *c = arg;
	if (ok) {
		/* Rows actually inserted; the rest were replays. */
		uint64_t inserted = 0;
		for (int i = 0; i < db_batch_count(b); i++) {
			PGresult *r = db_batch_result(b, i);
			if (r != NULL)
				inserted += (uint64_t)strtoull(PQcmdTuples(r), NULL, 10);
		}
		char *esc = metrics_escape_label(c->instance);
		char labels[300];
		snprintf(labels, sizeof(labels), "instance=\"%s\"", esc);
		free(esc);
		metrics_counter_add("parley_ingest_events_total", "Inbound events committed.", labels, inserted);
		metrics_counter_add("parley_ingest_replays_total",
		                    "Inbound events that were replays of committed ones.", labels,
		                    (uint64_t)c->n - inserted);
	}
	c->done(c->arg, ok, error);
	free(c->instance);
	free(c);
}

void ingest_set_commit(ingest_set *s, ingest_done_fn done, void *arg)
{
	struct commit_ctx *c = xcalloc(1, sizeof(*c));
	c->done = done;
	c->arg = arg;
	c->instance = xstrdup(s->instance);
	c->n = s->n;
	db_batch *b = db_batch_new();
	for (size_t i = 0; i < s->n; i++) {
		ingest_row *r = &s->rows[i];
		const char *params[] = {
			s->instance, r->dedupe_key, r->type_name, r->external_id, r->author_id,
			r->event_json, r->raw_json, r->platform_time_ms[0] ? r->platform_time_ms : NULL,
		};
		db_batch_add(b,
		             "INSERT INTO inbound_event (channel_instance, dedupe_key, event_type, external_id, "
		             "author_external_id, event, raw, platform_time) "
		             "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, "
		             "to_timestamp($8::bigint / 1000.0)) "
		             "ON CONFLICT ON CONSTRAINT inbound_event_dedupe DO NOTHING",
		             8, params);
	}
	ingest_set_free(s);
	db_batch_submit(b, commit_done, c);
}
