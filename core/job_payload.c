/* job_payload.c - a job's payload (JSON) into the ABI structures.
 *
 * Ids may be JSON strings or integers (an integer is handed over as its
 * decimal text, kept in the call). Absent and null are the same. The first
 * bad field ends the build with a reason naming it by its path, written by
 * the JSON field reader the configuration uses too. */
#include "job_payload.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_field.h"
#include "util.h"

/* One build: the call being filled and where errors go. Reasons come from
 * the JSON field reader (json_field.h), as for the configuration:
 * "invalid payload: PATH: reason". */
typedef struct field_ctx {
	job_call *call;
	jf_ctx jf;                 /* prefix "invalid payload" */
	const char *path;          /* the object being read: "", "conversation", ... */
} field_ctx;

/* Keep `text` (owned, handed over) until job_call_clear; returns it. */
static const char *call_keep(job_call *call, char *text)
{
	call->owned = xrealloc(call->owned, (call->n_owned + 1) * sizeof(char *));
	call->owned[call->n_owned++] = text;
	return text;
}

void job_call_clear(job_call *call)
{
	for (size_t i = 0; i < call->n_owned; i++)
		free(call->owned[i]);
	free(call->owned);
	memset(call, 0, sizeof(*call));
}

/* Start a build: a zeroed call and an object payload. */
static bool begin(json_t *payload, job_call *call, field_ctx *f, char *why, size_t whylen)
{
	memset(call, 0, sizeof(*call));
	*f = (field_ctx){ .call = call, .jf = { "invalid payload", why, whylen }, .path = "" };
	call->payload = payload;
	if (!json_is_object(payload))
		return jf_fail_type(&f->jf, "(top level)", JSON_OBJECT, payload);
	return true;
}

/* f at the object `key` of the one it reads now; path: room for the path. */
static field_ctx inside(const field_ctx *f, const char *key, char path[JF_PATH_MAX])
{
	field_ctx in = *f;
	jf_path_key(path, f->path, key);
	in.path = path;
	return in;
}

static bool missing(field_ctx *f, const char *key)
{
	char child[JF_PATH_MAX];
	jf_path_key(child, f->path, key);
	return jf_fail(&f->jf, child, "required key missing");
}

static bool wrong_type(field_ctx *f, const char *key, json_type want, const json_t *got)
{
	char child[JF_PATH_MAX];
	jf_path_key(child, f->path, key);
	return jf_fail_type(&f->jf, child, want, got);
}

static bool not_one_of(field_ctx *f, const char *key, const char *allowed)
{
	char child[JF_PATH_MAX];
	jf_path_key(child, f->path, key);
	return jf_fail(&f->jf, child, "must be %s", allowed);
}

/* obj[key], NULL when absent or null: a payload writes null for "none". */
static json_t *present(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return v == NULL || json_is_null(v) ? NULL : v;
}

/* obj[key] as text: borrowed from the payload, or a number written out (ids
 * may be integers). NULL when absent or null (an error when required). */
static bool field_text(field_ctx *f, json_t *obj, const char *key, bool required, const char **out)
{
	json_t *v = present(obj, key);
	*out = NULL;
	if (v == NULL)
		return required ? missing(f, key) : true;
	if (json_is_integer(v)) {
		char num[32];
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		*out = call_keep(f->call, xstrdup(num));
		return true;
	}
	return jf_get_string(&f->jf, obj, f->path, key, out);
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
	if (strcmp(v, "public") == 0)
		*out = PARLEY_VISIBILITY_PUBLIC;
	else if (strcmp(v, "private") == 0)
		*out = PARLEY_VISIBILITY_PRIVATE;
	else
		return not_one_of(f, key, "\"public\" or \"private\"");
	return true;
}

/* obj[key] as an object; NULL when absent or null (an error when required). */
static bool field_object(field_ctx *f, json_t *obj, const char *key, bool required, json_t **out)
{
	*out = NULL;
	if (present(obj, key) == NULL)
		return required ? missing(f, key) : true;
	return jf_get_object(&f->jf, obj, f->path, key, out);
}

/* obj[key] as an integer; 0 when absent or null. */
static bool field_int64(field_ctx *f, json_t *obj, const char *key, int64_t *out)
{
	json_int_t n = 0;
	*out = 0;
	if (present(obj, key) == NULL)
		return true;
	if (!jf_get_int(&f->jf, obj, f->path, key, LLONG_MIN, LLONG_MAX, &n))
		return false;
	*out = (int64_t)n;
	return true;
}

/* obj[key] as a boolean (an integer 0/1 is accepted); false when absent. */
static bool field_flag(field_ctx *f, json_t *obj, const char *key, int *out)
{
	json_t *v = present(obj, key);
	*out = 0;
	if (v == NULL)
		return true;
	if (json_is_boolean(v))
		*out = json_is_true(v);
	else if (json_is_integer(v))
		*out = json_integer_value(v) != 0;
	else
		return wrong_type(f, key, JSON_TRUE, v);
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

/* parent.conversation into call->conversation (and its customer); *present
 * says whether there was one. */
static bool build_conversation(field_ctx *f, json_t *parent, bool required, bool *found)
{
	json_t *obj, *cust;
	char at[JF_PATH_MAX], at_customer[JF_PATH_MAX];
	field_ctx in;
	job_call *call = f->call;
	parley_conversation_info *c = &call->conversation;

	*found = false;
	if (!field_object(f, parent, "conversation", required, &obj))
		return false;
	if (obj == NULL)
		return true;
	*found = true;
	in = inside(f, "conversation", at);
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
		field_ctx in_customer = inside(&in, "customer", at_customer);
		if (!build_customer(&in_customer, cust, &call->customer))
			return false;
		c->customer = &call->customer;
	}
	return true;
}

/* parent.message into call->message; its visibility defaults to the
 * conversation's (build the conversation first). */
static bool build_message(field_ctx *f, json_t *parent)
{
	json_t *obj;
	char at[JF_PATH_MAX];
	field_ctx in = inside(f, "message", at);
	parley_message_info *m = &f->call->message;

	if (!field_object(f, parent, "message", true, &obj))
		return false;
	m->size = sizeof(*m);
	m->visibility = f->call->conversation.visibility;
	return field_text(&in, obj, "message_id", true, &m->message_id) &&
	       field_text(&in, obj, "external_id", false, &m->external_id) &&
	       field_text(&in, obj, "author_name", false, &m->author_name) &&
	       field_text(&in, obj, "text", false, &m->text) &&
	       field_visibility(&in, obj, "visibility", false, &m->visibility) &&
	       field_flag(&in, obj, "inbound", &m->inbound) &&
	       field_int64(&in, obj, "created_ms", &m->created_ms);
}

/* obj.kind of a send: absent or "message", or "private_reply". */
static bool field_send_kind(field_ctx *f, json_t *obj, parley_send_kind *out)
{
	const char *v;
	*out = PARLEY_SEND_MESSAGE;
	if (!field_text(f, obj, "kind", false, &v))
		return false;
	if (v == NULL || strcmp(v, "message") == 0)
		return true;
	if (strcmp(v, "private_reply") == 0) {
		*out = PARLEY_SEND_PRIVATE_REPLY;
		return true;
	}
	return not_one_of(f, "kind", "\"message\" or \"private_reply\"");
}

bool job_payload_send(json_t *p, const char *idempotency_key, job_call *call, char *why,
                      size_t whylen)
{
	field_ctx f;
	parley_outbound_message *m = &call->u.send;
	if (!begin(p, call, &f, why, whylen))
		return false;
	m->size = sizeof(*m);
	m->idempotency_key = idempotency_key;
	return field_text(&f, p, "conversation_id", true, &m->conversation_id) &&
	       field_visibility(&f, p, "visibility", true, &m->visibility) &&
	       field_text(&f, p, "recipient_id", false, &m->recipient_id) &&
	       field_text(&f, p, "thread_id", false, &m->thread_id) &&
	       field_text(&f, p, "in_reply_to", false, &m->in_reply_to) &&
	       field_text(&f, p, "text", true, &m->text) &&
	       field_text(&f, p, "message_id", false, &m->message_id) &&
	       field_send_kind(&f, p, &m->kind) &&
	       field_int64(&f, p, "last_inbound_ms", &m->last_inbound_ms);
}

bool job_payload_open_ticket(json_t *p, const char *idempotency_key, job_call *call, char *why,
                             size_t whylen)
{
	field_ctx f;
	bool present;
	parley_ticket_request *t = &call->u.ticket;
	if (!begin(p, call, &f, why, whylen))
		return false;
	t->size = sizeof(*t);
	t->idempotency_key = idempotency_key;
	t->conversation = &call->conversation;
	t->first_message = &call->message;
	return build_conversation(&f, p, true, &present) && build_message(&f, p) &&
	       field_text(&f, p, "follow_up_of", false, &t->follow_up_of);
}

bool job_payload_append(json_t *p, const char *idempotency_key, job_call *call, char *why,
                        size_t whylen)
{
	field_ctx f;
	bool present;
	parley_ticket_append *a = &call->u.append;
	if (!begin(p, call, &f, why, whylen))
		return false;
	a->size = sizeof(*a);
	a->idempotency_key = idempotency_key;
	a->conversation = &call->conversation;
	a->message = &call->message;
	return field_text(&f, p, "external_ticket_id", true, &a->external_ticket_id) &&
	       build_conversation(&f, p, true, &present) && build_message(&f, p);
}

bool job_payload_notice(json_t *p, const char *idempotency_key, job_call *call, char *why,
                        size_t whylen)
{
	field_ctx f;
	json_t *inner;
	bool present;
	parley_notice *n = &call->u.notice;
	if (!begin(p, call, &f, why, whylen))
		return false;
	n->size = sizeof(*n);
	n->idempotency_key = idempotency_key;
	if (!field_text(&f, p, "kind", true, &n->kind) || !field_text(&f, p, "title", true, &n->title) ||
	    !field_text(&f, p, "text", true, &n->text) || !field_text(&f, p, "url", false, &n->url) ||
	    !build_conversation(&f, p, false, &present) ||
	    !field_object(&f, p, "payload", false, &inner))
		return false;
	n->conversation = present ? &call->conversation : NULL;
	/* The notice as JSON: its own "payload" object if it has one, else the
	 * whole job payload. */
	char *text = json_dumps(inner != NULL ? inner : p, JSON_COMPACT);
	if (text == NULL) {
		return jf_fail(&f.jf, "(top level)", "cannot be serialized");
	}
	n->payload_json = call_keep(call, text);
	return true;
}

bool job_payload_object(json_t *p, const char *idempotency_key, job_call *call, char *why,
                        size_t whylen)
{
	field_ctx f;
	(void)idempotency_key;
	return begin(p, call, &f, why, whylen);
}
