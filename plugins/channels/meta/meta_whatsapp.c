/* meta_whatsapp.c - the meta channel's WhatsApp Cloud API items: messages
 * (text, media captions, placeholders for the rest) and delivery statuses
 * of a changes[].value, with the sender's profile from contacts[]. No host
 * calls: see meta_parse.h. */
#include "meta_parse.h"
#include "meta_body.h"
#include "../../common/plugin_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

/* ------------------------------------------------------------------------ */
/* WhatsApp                                                                 */
/* ------------------------------------------------------------------------ */

/* The contacts[] entry for a customer id (wa_id or user_id), or NULL. */
static json_t *wa_contact(json_t *contacts, const char *who)
{
	size_t i;
	json_t *c;

	json_array_foreach(contacts, i, c) {
		const char *wa = json_string_value(json_object_get(c, "wa_id"));
		const char *uid = json_string_value(json_object_get(c, "user_id"));
		if ((wa != NULL && strcmp(wa, who) == 0) || (uid != NULL && strcmp(uid, who) == 0))
			return c;
	}
	return NULL;
}

/* Text of a WhatsApp message: text.body, a media caption, or "[type]". */
static const char *wa_text(json_t *msg, const char *type, char placeholder[PLACEHOLDER_BYTES])
{
	json_t *part = json_object_get(msg, type);
	const char *s = mp_text_of(json_object_get(part, strcmp(type, "text") == 0 ? "body" : "caption"));
	char name[41];

	if (s != NULL)
		return s;
	snprintf(placeholder, PLACEHOLDER_BYTES, "[%s]",
	         mp_name_of(json_object_get(msg, "type"), name));
	return placeholder;
}

static void wa_message(parse_ctx *pc, const char *number, json_t *contacts, json_t *msg)
{
	char ibuf[NUM_BUF], fbuf[NUM_BUF], cbuf[NUM_BUF], name[41];
	char dedupe[DEDUPE_BYTES], thread[META_MAX_THREAD_BYTES], phone[META_MAX_ID_BYTES + 2];
	char placeholder[PLACEHOLDER_BYTES];
	const char *id = mp_id_of(json_object_get(msg, "id"), ibuf);
	const char *from = mp_id_of(json_object_get(msg, "from"), fbuf);
	const char *type = json_string_value(json_object_get(msg, "type"));
	json_t *contact, *profile;
	parley_event ev;

	/* A user with a username may come with a business-scoped user id and
	 * no phone number at all. */
	const char *customer = from != NULL ? from
	                                    : mp_id_of(json_object_get(msg, "from_user_id"), cbuf);
	if (id == NULL || customer == NULL ||
	    !meta_thread_format(META_THREAD_WHATSAPP, number, customer, thread, sizeof(thread))) {
		mp_note(pc, "whatsapp message without id or sender skipped");
		return;
	}
	if (type != NULL && strcmp(type, "reaction") == 0) {
		mp_note(pc, "whatsapp message type %s accepted and ignored",
		     mp_name_of(json_object_get(msg, "type"), name));
		return;
	}
	contact = wa_contact(contacts, customer);
	profile = json_object_get(contact, "profile");

	snprintf(dedupe, sizeof(dedupe), "wamid:%s", id);
	memset(&ev, 0, sizeof(ev));
	ev.type = PARLEY_EVENT_MESSAGE_CREATED;
	ev.dedupe_key = dedupe;
	ev.external_id = id;
	ev.visibility = PARLEY_VISIBILITY_PRIVATE;
	ev.thread_id = thread;
	ev.text = wa_text(msg, type != NULL ? type : "text", placeholder);
	ev.in_reply_to = json_string_value(json_object_get(json_object_get(msg, "context"), "id"));
	ev.platform_time_ms = mp_time_ms(json_object_get(msg, "timestamp"));
	ev.author.external_id = customer;
	ev.author.display_name = mp_text_of(json_object_get(profile, "name"));
	ev.author.handle = mp_text_of(json_object_get(profile, "username"));
	if (from != NULL && from[strspn(from, "0123456789")] == '\0') {
		/* WhatsApp accounts are tied to the phone number they send from. */
		snprintf(phone, sizeof(phone), "+%s", from);
		ev.author.phone = phone;
		ev.author.phone_verified = 1;
	}
	mp_deliver(pc, &ev, msg);
}

static void wa_status(parse_ctx *pc, json_t *st)
{
	static const struct { const char *name; parley_delivery_status status; } map[] = {
		{ "sent", PARLEY_DELIVERY_SENT }, { "delivered", PARLEY_DELIVERY_DELIVERED },
		{ "read", PARLEY_DELIVERY_READ }, { "failed", PARLEY_DELIVERY_FAILED },
	};
	char ibuf[NUM_BUF], name[41], dedupe[DEDUPE_BYTES], detail[512];
	const char *id = mp_id_of(json_object_get(st, "id"), ibuf);
	const char *status = json_string_value(json_object_get(st, "status"));
	json_t *error = json_array_get(json_object_get(st, "errors"), 0);
	parley_event ev;

	memset(&ev, 0, sizeof(ev));
	for (size_t i = 0; status != NULL && i < sizeof(map) / sizeof(map[0]); i++) {
		if (strcmp(map[i].name, status) == 0)
			ev.delivery_status = map[i].status;
	}
	if (id == NULL || ev.delivery_status == PARLEY_DELIVERY_NONE) {
		mp_note(pc, "whatsapp status %s accepted and ignored",
		     mp_name_of(json_object_get(st, "status"), name));
		return;
	}
	/* One event per (message, status): statuses may arrive out of order and
	 * the core keeps the highest; a replay changes nothing. */
	snprintf(dedupe, sizeof(dedupe), "status:%s:%s", id, status);
	ev.type = PARLEY_EVENT_DELIVERY_STATUS;
	ev.dedupe_key = dedupe;
	ev.external_id = id;
	ev.platform_time_ms = mp_time_ms(json_object_get(st, "timestamp"));
	if (error != NULL) {
		const char *title = mp_text_of(json_object_get(error, "title"));
		const char *more = mp_text_of(json_object_get(json_object_get(error, "error_data"),
		                                           "details"));
		json_t *code = json_object_get(error, "code");
		snprintf(detail, sizeof(detail), "%s%s%s (code %" PRId64 ")",
		         title != NULL ? title : "failed", more != NULL ? ": " : "",
		         more != NULL ? more : "",
		         json_is_integer(code) ? (int64_t)json_integer_value(code) : (int64_t)0);
		ev.detail = detail;
	}
	mp_deliver(pc, &ev, st);
}

void mp_wa_change(parse_ctx *pc, json_t *value)
{
	char nbuf[NUM_BUF];
	const char *number = mp_id_of(json_object_get(json_object_get(value, "metadata"),
	                                           "phone_number_id"), nbuf);
	json_t *contacts = json_object_get(value, "contacts");
	json_t *messages = json_object_get(value, "messages");
	json_t *statuses = json_object_get(value, "statuses");
	json_t *v;
	size_t i;

	if (number == NULL) {
		mp_note(pc, "whatsapp change without metadata.phone_number_id skipped");
		return;
	}
	/* A status-only post has neither contacts nor messages. */
	json_array_foreach(messages, i, v) {
		if (json_is_object(v))
			wa_message(pc, number, contacts, v);
		else
			mp_note(pc, "whatsapp message that is not an object skipped");
	}
	json_array_foreach(statuses, i, v) {
		if (json_is_object(v))
			wa_status(pc, v);
		else
			mp_note(pc, "whatsapp status that is not an object skipped");
	}
	if (json_array_size(messages) == 0 && json_array_size(statuses) == 0)
		mp_note(pc, "whatsapp change without messages or statuses accepted");
}
