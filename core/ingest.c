/* ingest.c - the events a channel emits for one request.
 *
 * Each event is checked and turned into the JSON item the database's
 * parley_ingest_batch() reads as it is emitted, so a bad event is refused
 * while the plugin can still answer 400. On commit the set joins the
 * batcher (ingest_batch.c), which writes the sets of many requests in one
 * transaction. */
#include "ingest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "util.h"

#define INGEST_MAX_KEY 512
#define INGEST_MAX_TEXT (1024 * 1024)

/* The size a plugin built against ABI 1.0 reports for parley_event. */
#define EVENT_V1_SIZE (offsetof(parley_event, raw_json_len) + sizeof(size_t))

struct ingest_set {
	char *instance;
	char *channel;              /* the plugin's name */
	char **items;               /* one serialized batch item per event */
	size_t n, cap;
	char *state_key;            /* plugin_state written with the events, or NULL */
	char *state_value;
};

ingest_set *ingest_set_new(const char *instance, const char *channel)
{
	ingest_set *s = xcalloc(1, sizeof(*s));
	s->instance = xstrdup(instance);
	s->channel = xstrdup(channel);
	return s;
}

size_t ingest_set_count(const ingest_set *s) { return s ? s->n : 0; }
const char *ingest_set_item(const ingest_set *s, size_t i) { return s->items[i]; }

void ingest_set_set_state(ingest_set *s, const char *key, const char *value)
{
	free(s->state_key);
	free(s->state_value);
	s->state_key = xstrdup(key);
	s->state_value = xstrdup(value);
}

bool ingest_set_state(const ingest_set *s, const char **instance, const char **key,
                      const char **value)
{
	if (s == NULL || s->state_key == NULL)
		return false;
	*instance = s->instance;
	*key = s->state_key;
	*value = s->state_value;
	return true;
}

void ingest_set_free(ingest_set *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->items[i]);
	free(s->items);
	free(s->state_key);
	free(s->state_value);
	free(s->instance);
	free(s->channel);
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

/* raw_json of an event as jsonb-ready JSON (null when absent); NULL with a
 * reason when it is not JSON. */
static json_t *raw_value(const char *raw_json, size_t len, char *err, size_t errlen)
{
	if (raw_json == NULL || len == 0)
		return json_null();
	json_error_t jerr;
	json_t *raw = json_loadb(raw_json, len, JSON_DECODE_ANY, &jerr);
	if (raw == NULL)
		snprintf(err, errlen, "raw_json is not valid JSON: %s", jerr.text);
	return raw;
}

static const char *ticket_status_name(parley_ticket_status st)
{
	switch (st) {
	case PARLEY_TICKET_OPEN: return "open";
	case PARLEY_TICKET_PENDING: return "pending";
	case PARLEY_TICKET_SOLVED: return "solved";
	case PARLEY_TICKET_CLOSED: return "closed";
	}
	return NULL;
}

/* Serialize one batch item {"instance", "channel", KEY: o, "raw": raw} into
 * s. o and raw: owned, consumed. */
static bool set_append(ingest_set *s, const char *key, json_t *o, json_t *raw, char *err,
                       size_t errlen)
{
	json_t *item = json_object();
	json_object_set_new(item, "instance", json_string(s->instance));
	json_object_set_new(item, "channel", json_string(s->channel));
	json_object_set_new(item, key, o);
	json_object_set_new(item, "raw", raw);
	char *text = json_dumps(item, JSON_COMPACT);
	json_decref(item);
	if (text == NULL) {
		snprintf(err, errlen, "event could not be serialized");
		return false;
	}
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4;
		s->items = xrealloc(s->items, s->cap * sizeof(char *));
	}
	s->items[s->n++] = text;
	return true;
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

	/* Store the platform's item as jsonb. It must be JSON; jansson also refuses
	 * \u0000, which PostgreSQL's jsonb cannot hold either. */
	json_t *raw = raw_value(ev->raw_json, ev->raw_json_len, err, errlen);
	if (raw == NULL)
		goto fail;

	/* The item as parley_ingest_batch() reads it (sql/002_customer_model.sql). */
	return set_append(s, "event", o, raw, err, errlen);
fail:
	json_decref(o);
	return false;
}

bool ingest_set_add_ticket_event(ingest_set *s, const parley_ticket_event *ev, char *err,
                                 size_t errlen)
{
	if (ev == NULL || !PARLEY_HAS_FIELD(ev, parley_ticket_event, raw_json_len)) {
		snprintf(err, errlen, "ticket event struct too small");
		return false;
	}
	if (ev->type != PARLEY_TICKET_COMMENT && ev->type != PARLEY_TICKET_STATUS) {
		snprintf(err, errlen, "unknown ticket event type %d", (int)ev->type);
		return false;
	}
	if (!nonempty(ev->dedupe_key) || strlen(ev->dedupe_key) > INGEST_MAX_KEY) {
		snprintf(err, errlen, "dedupe_key must be 1..%d bytes", INGEST_MAX_KEY);
		return false;
	}
	if (!nonempty(ev->external_ticket_id) || strlen(ev->external_ticket_id) > INGEST_MAX_KEY) {
		snprintf(err, errlen, "external_ticket_id is required");
		return false;
	}
	if (ev->type == PARLEY_TICKET_COMMENT && (!nonempty(ev->comment_id) || ev->text == NULL)) {
		snprintf(err, errlen, "a comment needs comment_id and text");
		return false;
	}
	if (ev->type == PARLEY_TICKET_STATUS && ticket_status_name(ev->status) == NULL) {
		snprintf(err, errlen, "a status event needs a known status");
		return false;
	}
	if (ev->text != NULL && strlen(ev->text) > INGEST_MAX_TEXT) {
		snprintf(err, errlen, "text is longer than %d bytes", INGEST_MAX_TEXT);
		return false;
	}
	json_t *o = json_object();
	json_object_set_new(o, "type", json_string(ev->type == PARLEY_TICKET_COMMENT ? "comment"
	                                                                             : "status"));
	if (!put_str(o, "dedupe_key", ev->dedupe_key, err, errlen) ||
	    !put_str(o, "external_ticket_id", ev->external_ticket_id, err, errlen) ||
	    !put_str(o, "comment_id", ev->comment_id, err, errlen) ||
	    !put_str(o, "author_name", ev->author_name, err, errlen) ||
	    !put_str(o, "text", ev->text, err, errlen))
		goto fail;
	if (ev->type == PARLEY_TICKET_COMMENT) {
		json_object_set_new(o, "is_public", json_boolean(ev->is_public));
		json_object_set_new(o, "from_parley", json_boolean(ev->from_parley));
	} else {
		json_object_set_new(o, "status", json_string(ticket_status_name(ev->status)));
	}
	if (ev->time_ms > 0)
		json_object_set_new(o, "time_ms", json_integer(ev->time_ms));
	json_t *raw = raw_value(ev->raw_json, ev->raw_json_len, err, errlen);
	if (raw == NULL)
		goto fail;
	return set_append(s, "ticket_event", o, raw, err, errlen);
fail:
	json_decref(o);
	return false;
}
