/* meta_messenger.c - the meta channel's Facebook Page and Instagram items:
 * Messenger and Instagram DMs (entry[].messaging[]: messages, edits,
 * delivery and read receipts), Page feed comments and Instagram comments,
 * each into events. No host calls: see meta_parse.h. */
#include "meta_parse.h"
#include "meta_body.h"
#include "../../common/plugin_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

/* ------------------------------------------------------------------------ */
/* Messenger and Instagram DMs: entry[].messaging[]                         */
/* ------------------------------------------------------------------------ */

/* The text of a message, or for an attachment-only one "[image]" and the
 * like in placeholder (caller's buffer). msg: borrowed. */
static const char *message_text(json_t *msg, char placeholder[PLACEHOLDER_BYTES])
{
	const char *text = mp_text_of(json_object_get(msg, "text"));
	json_t *att = json_array_get(json_object_get(msg, "attachments"), 0);
	char name[41];

	if (text != NULL)
		return text;
	if (att == NULL)
		return NULL;
	snprintf(placeholder, PLACEHOLDER_BYTES, "[%s]",
	         mp_name_of(json_object_get(att, "type"), name));
	return placeholder;
}

typedef struct dm_item {
	meta_thread_kind kind;   /* MESSENGER or INSTAGRAM_DM */
	const char *asset;       /* entry.id: the Page or IG account */
	const char *sender, *recipient;
	int64_t time_ms;
	json_t *item;            /* the messaging object, for raw_json */
} dm_item;

static void dm_message(parse_ctx *pc, const dm_item *it, json_t *msg)
{
	char mbuf[NUM_BUF], dedupe[DEDUPE_BYTES], thread[META_MAX_THREAD_BYTES];
	char placeholder[PLACEHOLDER_BYTES], rbuf[NUM_BUF];
	const char *mid = mp_id_of(json_object_get(msg, "mid"), mbuf);
	parley_event ev;
	int echo;
	const char *customer;

	if (mid == NULL) {
		mp_note(pc, "message without a mid skipped");
		return;
	}
	memset(&ev, 0, sizeof(ev));
	ev.external_id = mid;
	ev.platform_time_ms = it->time_ms;
	ev.author.external_id = it->sender;

	if (json_is_true(json_object_get(msg, "is_deleted"))) {
		/* Instagram's unsend: the core keeps the text as evidence. */
		snprintf(dedupe, sizeof(dedupe), "unsend:%s", mid);
		ev.type = PARLEY_EVENT_MESSAGE_DELETED;
		ev.dedupe_key = dedupe;
		mp_deliver(pc, &ev, it->item);
		return;
	}

	/* An echo is what the Page/account itself sent (from Parley or from
	 * Meta's own inbox): the customer is then the recipient. Instagram has
	 * no separate echo field, so sender == account counts as an echo too. */
	echo = json_is_true(json_object_get(msg, "is_echo")) || strcmp(it->sender, it->asset) == 0;
	customer = echo ? it->recipient : it->sender;
	if (customer == NULL ||
	    !meta_thread_format(it->kind, it->asset, customer, thread, sizeof(thread))) {
		mp_note(pc, "message without a customer id skipped");
		return;
	}
	snprintf(dedupe, sizeof(dedupe), "mid:%s", mid);
	ev.type = PARLEY_EVENT_MESSAGE_CREATED;
	ev.dedupe_key = dedupe;
	ev.visibility = PARLEY_VISIBILITY_PRIVATE;
	ev.thread_id = thread;
	ev.from_brand = echo;
	ev.text = message_text(msg, placeholder);
	ev.in_reply_to = mp_id_of(json_object_get(json_object_get(msg, "reply_to"), "mid"), rbuf);
	mp_deliver(pc, &ev, it->item);
}

static void dm_edit(parse_ctx *pc, const dm_item *it, json_t *edit)
{
	char mbuf[NUM_BUF], nbuf[NUM_BUF], dedupe[DEDUPE_BYTES];
	const char *mid = mp_id_of(json_object_get(edit, "mid"), mbuf);
	const char *num = mp_id_of(json_object_get(edit, "num_edit"), nbuf);
	const char *text = mp_text_of(json_object_get(edit, "text"));
	parley_event ev;

	if (mid == NULL || text == NULL) {
		mp_note(pc, "message_edit without mid or text skipped");
		return;
	}
	/* Each edit is its own event; without num_edit the time tells them apart. */
	if (num != NULL)
		snprintf(dedupe, sizeof(dedupe), "edit:%s:%s", mid, num);
	else
		snprintf(dedupe, sizeof(dedupe), "edit:%s:t%" PRId64, mid, it->time_ms);
	memset(&ev, 0, sizeof(ev));
	ev.type = PARLEY_EVENT_MESSAGE_EDITED;
	ev.dedupe_key = dedupe;
	ev.external_id = mid;
	ev.author.external_id = it->sender;
	ev.text = text;
	ev.platform_time_ms = it->time_ms;
	mp_deliver(pc, &ev, it->item);
}

static void dm_status(parse_ctx *pc, const dm_item *it, const char *mid,
                      parley_delivery_status status, const char *label)
{
	char dedupe[DEDUPE_BYTES];
	parley_event ev;

	snprintf(dedupe, sizeof(dedupe), "%s:%s", label, mid);
	memset(&ev, 0, sizeof(ev));
	ev.type = PARLEY_EVENT_DELIVERY_STATUS;
	ev.dedupe_key = dedupe;
	ev.external_id = mid;
	ev.delivery_status = status;
	ev.platform_time_ms = it->time_ms;
	mp_deliver(pc, &ev, it->item);
}

static void dm_delivery(parse_ctx *pc, const dm_item *it, json_t *delivery)
{
	json_t *mids = json_object_get(delivery, "mids");
	size_t i, n = json_array_size(mids);
	char mbuf[NUM_BUF];

	if (n == 0) {
		/* Only a watermark: "everything before this time", which names no
		 * message we could mark. */
		mp_note(pc, "delivery with a watermark only accepted; no message named");
		return;
	}
	for (i = 0; i < n; i++) {
		const char *mid = mp_id_of(json_array_get(mids, i), mbuf);
		if (mid != NULL)
			dm_status(pc, it, mid, PARLEY_DELIVERY_DELIVERED, "delivered");
	}
}

static void dm_read(parse_ctx *pc, const dm_item *it, json_t *read)
{
	char mbuf[NUM_BUF];
	const char *mid = mp_id_of(json_object_get(read, "mid"), mbuf);

	/* Instagram's messaging_seen names the message; Messenger's read only
	 * carries a watermark. */
	if (mid == NULL) {
		mp_note(pc, "read with a watermark only accepted; no message named");
		return;
	}
	dm_status(pc, it, mid, PARLEY_DELIVERY_READ, "read");
}

void mp_messaging_item(parse_ctx *pc, meta_thread_kind kind, const char *asset, json_t *item)
{
	char sbuf[NUM_BUF], rbuf[NUM_BUF];
	static const char *const ignored[] = {
		"reaction", "postback", "referral", "optin", "account_linking", "policy_enforcement",
		"pass_thread_control", "take_thread_control", "request_thread_control",
		"app_roles", "game_play", "handover", NULL
	};
	dm_item it;
	json_t *v;

	if (!json_is_object(item)) {
		mp_note(pc, "messaging item that is not an object skipped");
		return;
	}
	it.kind = kind;
	it.item = item;
	it.sender = mp_id_of(json_object_get(json_object_get(item, "sender"), "id"), sbuf);
	it.recipient = mp_id_of(json_object_get(json_object_get(item, "recipient"), "id"), rbuf);
	it.time_ms = mp_time_ms(json_object_get(item, "timestamp"));
	/* entry.id is the Page/account; fall back to the recipient for an
	 * entry that lacks it (then nothing can be an echo but is_echo). */
	it.asset = asset != NULL ? asset : it.recipient;
	if (it.sender == NULL || it.asset == NULL) {
		mp_note(pc, "messaging item without sender or recipient id skipped");
		return;
	}
	if ((v = json_object_get(item, "message")) != NULL && json_is_object(v))
		dm_message(pc, &it, v);
	else if ((v = json_object_get(item, "message_edit")) != NULL && json_is_object(v))
		dm_edit(pc, &it, v);
	else if ((v = json_object_get(item, "delivery")) != NULL && json_is_object(v))
		dm_delivery(pc, &it, v);
	else if ((v = json_object_get(item, "read")) != NULL && json_is_object(v))
		dm_read(pc, &it, v);
	else {
		for (size_t i = 0; ignored[i] != NULL; i++) {
			if (json_object_get(item, ignored[i]) != NULL) {
				mp_note(pc, "messaging event %s accepted and ignored", ignored[i]);
				return;
			}
		}
		mp_note(pc, "unknown messaging event accepted and ignored");
	}
}

/* ------------------------------------------------------------------------ */
/* Page feed comments                                                       */
/* ------------------------------------------------------------------------ */

void mp_feed_change(parse_ctx *pc, const char *page, json_t *value)
{
	char cbuf[NUM_BUF], pbuf[NUM_BUF], abuf[NUM_BUF], rbuf[NUM_BUF], tbuf[NUM_BUF];
	char name1[41], name2[41];
	char dedupe[DEDUPE_BYTES], thread[META_MAX_THREAD_BYTES];
	json_t *item = json_object_get(value, "item"), *verb = json_object_get(value, "verb");
	json_t *from = json_object_get(value, "from");
	const char *verb_s = json_string_value(verb);
	const char *comment, *post, *author, *parent, *name;
	int64_t created;
	parley_event ev;

	if (!json_is_string(item) || strcmp(json_string_value(item), "comment") != 0 ||
	    verb_s == NULL) {
		mp_note(pc, "feed item %s verb %s accepted and ignored", mp_name_of(item, name1),
		     mp_name_of(verb, name2));
		return;
	}
	comment = mp_id_of(json_object_get(value, "comment_id"), cbuf);
	post = mp_id_of(json_object_get(value, "post_id"), pbuf);
	parent = mp_id_of(json_object_get(value, "parent_id"), rbuf);
	/* Current payloads carry from{id,name}; older ones sender_id (a number)
	 * and sender_name. */
	author = mp_id_of(json_object_get(from, "id"), abuf);
	name = mp_text_of(json_object_get(from, "name"));
	if (author == NULL) {
		author = mp_id_of(json_object_get(value, "sender_id"), abuf);
		name = mp_text_of(json_object_get(value, "sender_name"));
	}
	created = mp_time_ms(json_object_get(value, "created_time"));
	if (comment == NULL) {
		mp_note(pc, "feed comment without comment_id skipped");
		return;
	}
	/* Meta documents (comment_id, verb, created_time) as the identity of
	 * a feed event: an edit at another time is another event. */
	snprintf(tbuf, sizeof(tbuf), "%" PRId64, created / 1000);
	snprintf(dedupe, sizeof(dedupe), "comment:%s:%s:%s", comment, mp_name_of(verb, name1), tbuf);

	memset(&ev, 0, sizeof(ev));
	ev.dedupe_key = dedupe;
	ev.external_id = comment;
	ev.platform_time_ms = created;
	ev.author.external_id = author;
	ev.author.display_name = name;
	ev.from_brand = author != NULL && strcmp(author, page) == 0;

	if (strcmp(verb_s, "add") == 0) {
		if (author == NULL || post == NULL ||
		    !meta_thread_format(META_THREAD_FACEBOOK_POST, page, post, thread, sizeof(thread))) {
			mp_note(pc, "feed comment without author or post id skipped");
			return;
		}
		ev.type = PARLEY_EVENT_MESSAGE_CREATED;
		ev.visibility = PARLEY_VISIBILITY_PUBLIC;
		ev.thread_id = thread;
		ev.in_reply_to = parent;
		ev.text = mp_text_of(json_object_get(value, "message"));
	} else if (strcmp(verb_s, "edited") == 0) {
		ev.type = PARLEY_EVENT_MESSAGE_EDITED;
		ev.text = mp_text_of(json_object_get(value, "message"));
		if (ev.text == NULL) {
			mp_note(pc, "feed comment edit without a message skipped");
			return;
		}
	} else if (strcmp(verb_s, "remove") == 0 || strcmp(verb_s, "hide") == 0) {
		/* A hidden comment is gone from public view just like a removed
		 * one; both keep their text as evidence. */
		ev.type = PARLEY_EVENT_MESSAGE_DELETED;
	} else {
		mp_note(pc, "feed comment verb %s accepted and ignored", mp_name_of(verb, name1));
		return;
	}
	mp_deliver(pc, &ev, value);
}

/* ------------------------------------------------------------------------ */
/* Instagram comments                                                       */
/* ------------------------------------------------------------------------ */

void mp_ig_comment(parse_ctx *pc, const char *account, int64_t entry_ms, json_t *value)
{
	char cbuf[NUM_BUF], mbuf[NUM_BUF], abuf[NUM_BUF], pbuf[NUM_BUF];
	char dedupe[DEDUPE_BYTES], thread[META_MAX_THREAD_BYTES];
	json_t *from = json_object_get(value, "from");
	const char *comment = mp_id_of(json_object_get(value, "id"), cbuf);
	const char *media = mp_id_of(json_object_get(json_object_get(value, "media"), "id"), mbuf);
	const char *author = mp_id_of(json_object_get(from, "id"), abuf);
	const char *parent = mp_id_of(json_object_get(value, "parent_id"), pbuf);
	parley_event ev;

	if (comment == NULL || media == NULL || author == NULL ||
	    !meta_thread_format(META_THREAD_INSTAGRAM_MEDIA, account, media, thread, sizeof(thread))) {
		mp_note(pc, "instagram comment without id, media or author skipped");
		return;
	}
	/* Instagram sends comments only when added (no edit or delete webhook)
	 * and carries no created time, so the id alone names the event. */
	snprintf(dedupe, sizeof(dedupe), "igcomment:%s:add", comment);
	memset(&ev, 0, sizeof(ev));
	ev.type = PARLEY_EVENT_MESSAGE_CREATED;
	ev.dedupe_key = dedupe;
	ev.external_id = comment;
	ev.visibility = PARLEY_VISIBILITY_PUBLIC;
	ev.thread_id = thread;
	ev.in_reply_to = parent;
	ev.text = mp_text_of(json_object_get(value, "text"));
	ev.platform_time_ms = entry_ms;
	ev.author.external_id = author;
	ev.author.handle = mp_text_of(json_object_get(from, "username"));
	ev.from_brand = strcmp(author, account) == 0;
	mp_deliver(pc, &ev, value);
}
