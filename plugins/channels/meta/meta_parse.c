/* meta_parse.c - handshake, signatures and webhook bodies of the meta
 * channel. No host calls: see meta_parse.h. */
#include "meta_parse.h"
#include "../../common/plugin_util.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#define SIG_PREFIX "sha256="
#define SIG_PREFIX_LEN (sizeof(SIG_PREFIX) - 1)
#define SECONDS_BELOW 100000000000LL   /* see meta_time_ms */
#define NUM_BUF 24                     /* an int64 in decimal, sign and NUL */
#define NOTE_BYTES 160
#define DEDUPE_BYTES (48 + 2 * META_MAX_ID_BYTES)
#define PLACEHOLDER_BYTES 48

/* ------------------------------------------------------------------------ */
/* Signatures and the handshake                                             */
/* ------------------------------------------------------------------------ */

meta_sig_result meta_verify_signature(const char *header, const void *secret, size_t secret_len,
                                      const void *body, size_t body_len,
                                      meta_hmac_fn hmac, meta_equals_fn equals)
{
	unsigned char given[32], expected[32];

	if (header == NULL)
		return META_SIG_MISSING;
	/* The header's shape is public: ordinary branches are fine here; only
	 * the comparison with the expected MAC must not leak timing. */
	if (strlen(header) != SIG_PREFIX_LEN + 64 ||
	    strncmp(header, SIG_PREFIX, SIG_PREFIX_LEN) != 0)
		return META_SIG_BAD;
	if (!pu_hex_decode(header + SIG_PREFIX_LEN, given, sizeof(given)))
		return META_SIG_BAD;
	hmac(secret, secret_len, body, body_len, expected);
	return equals(given, sizeof(given), expected, sizeof(expected)) ? META_SIG_OK : META_SIG_BAD;
}

meta_handshake_result meta_check_handshake(const char *mode, const char *token,
                                           const char *challenge, const char *verify_token,
                                           meta_equals_fn equals)
{
	if (mode == NULL || strcmp(mode, "subscribe") != 0 || challenge == NULL ||
	    challenge[0] == '\0' || strlen(challenge) > META_MAX_CHALLENGE_BYTES)
		return META_HANDSHAKE_BAD_REQUEST;
	if (token == NULL ||
	    !equals(token, strlen(token), verify_token, strlen(verify_token)))
		return META_HANDSHAKE_FORBIDDEN;
	return META_HANDSHAKE_OK;
}

/* ------------------------------------------------------------------------ */
/* Thread ids                                                               */
/* ------------------------------------------------------------------------ */

static const char *const thread_prefix[] = {
	[META_THREAD_NONE] = NULL,
	[META_THREAD_MESSENGER] = "messenger",
	[META_THREAD_INSTAGRAM_DM] = "instagram",
	[META_THREAD_WHATSAPP] = "whatsapp",
	[META_THREAD_FACEBOOK_POST] = "facebook",
	[META_THREAD_INSTAGRAM_MEDIA] = "instagram_media",
};
#define THREAD_KINDS (sizeof(thread_prefix) / sizeof(thread_prefix[0]))

bool meta_thread_format(meta_thread_kind kind, const char *asset, const char *peer,
                        char *out, size_t outlen)
{
	int n;

	if ((size_t)kind >= THREAD_KINDS || thread_prefix[kind] == NULL || asset == NULL ||
	    peer == NULL || asset[0] == '\0' || peer[0] == '\0' || strchr(asset, ':') != NULL ||
	    strlen(asset) > META_MAX_ID_BYTES || strlen(peer) > META_MAX_ID_BYTES)
		return false;
	n = snprintf(out, outlen, "%s:%s:%s", thread_prefix[kind], asset, peer);
	return n > 0 && (size_t)n < outlen;
}

bool meta_thread_parse(const char *thread_id, meta_thread *out)
{
	const char *first, *second;
	size_t kind_len, asset_len, peer_len;

	memset(out, 0, sizeof(*out));
	if (thread_id == NULL || (first = strchr(thread_id, ':')) == NULL ||
	    (second = strchr(first + 1, ':')) == NULL)
		return false;
	kind_len = (size_t)(first - thread_id);
	asset_len = (size_t)(second - first - 1);
	peer_len = strlen(second + 1);
	if (asset_len == 0 || asset_len > META_MAX_ID_BYTES || peer_len == 0 ||
	    peer_len > META_MAX_ID_BYTES)
		return false;
	for (size_t k = 1; k < THREAD_KINDS; k++) {
		if (strlen(thread_prefix[k]) == kind_len &&
		    strncmp(thread_prefix[k], thread_id, kind_len) == 0)
			out->kind = (meta_thread_kind)k;
	}
	if (out->kind == META_THREAD_NONE)
		return false;
	memcpy(out->asset, first + 1, asset_len);
	memcpy(out->peer, second + 1, peer_len);
	return true;
}

/* ------------------------------------------------------------------------ */
/* JSON helpers                                                             */
/* ------------------------------------------------------------------------ */

typedef struct parse_ctx {
	meta_emit_fn emit;
	meta_note_fn note;
	void *arg;
	meta_parse_stats *stats;
} parse_ctx;

static void note(parse_ctx *pc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Record a skipped item; the text is bounded and holds only names Meta sent
 * (object, field, type, verb), never message content. */
static void note(parse_ctx *pc, const char *fmt, ...)
{
	char what[NOTE_BYTES];
	va_list ap;

	pc->stats->ignored++;
	if (pc->note == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	pc->note(pc->arg, what);
}

/* A name for notes (an object, field, type or verb Meta sent): printable
 * ASCII only, at most 40 bytes, so a log line stays one clean line.
 * v: borrowed. out: caller's buffer of 41 bytes. */
static const char *name_of(json_t *v, char out[41])
{
	const char *s = json_string_value(v);
	size_t i = 0;

	if (s == NULL)
		return "(none)";
	for (; s[i] != '\0' && i < 40; i++)
		out[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	out[i] = '\0';
	return out;
}

/* An id as text: a non-empty string of at most META_MAX_ID_BYTES without
 * control characters, or a JSON integer printed exactly (64-bit ids never go
 * through a double). v: borrowed; buf: caller's, for the integer case. */
static const char *id_of(json_t *v, char buf[NUM_BUF])
{
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t len = json_string_length(v);
		if (len == 0 || len > META_MAX_ID_BYTES || strlen(s) != len)
			return NULL;
		for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
			if (*p < 0x20 || *p == 0x7f)
				return NULL;
		}
		return s;
	}
	if (json_is_integer(v)) {
		snprintf(buf, NUM_BUF, "%" PRId64, (int64_t)json_integer_value(v));
		return buf;
	}
	return NULL;
}

/* A text field: a string (jansson has combined surrogate pairs into UTF-8
 * and refuses \u0000), or NULL. v: borrowed. */
static const char *text_of(json_t *v)
{
	return json_string_value(v);
}

/* Unix ms from a JSON integer or a string of digits, in seconds or ms
 * (values below 10^11 are seconds: the year 5138 in seconds, 1973 in ms).
 * 0 when absent or invalid. */
static int64_t meta_time_ms(json_t *v)
{
	int64_t t = 0;

	if (json_is_integer(v)) {
		t = (int64_t)json_integer_value(v);
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		if (*s == '\0' || strlen(s) > 18)
			return 0;
		for (; *s != '\0'; s++) {
			if (*s < '0' || *s > '9')
				return 0;
			t = t * 10 + (*s - '0');
		}
	}
	if (t <= 0)
		return 0;
	return t < SECONDS_BELOW ? t * 1000 : t;
}

/* The item's JSON as evidence, compact (owned by the caller; free()). */
static char *raw_of(json_t *item, size_t *len)
{
	char *raw = json_dumps(item, JSON_COMPACT | JSON_ENCODE_ANY);

	*len = raw != NULL ? strlen(raw) : 0;
	return raw;
}

/* Hand one event to the callback with the item as raw_json. ev: filled by
 * the caller except size and raw_json. */
static void deliver(parse_ctx *pc, parley_event *ev, json_t *item)
{
	char *raw = raw_of(item, &ev->raw_json_len);

	ev->size = sizeof(*ev);
	ev->raw_json = raw;
	if (pc->emit(pc->arg, ev) == 0)
		pc->stats->events++;
	else
		pc->stats->refused++;
	free(raw);
}

/* ------------------------------------------------------------------------ */
/* Messenger and Instagram DMs: entry[].messaging[]                         */
/* ------------------------------------------------------------------------ */

/* The text of a message, or for an attachment-only one "[image]" and the
 * like in placeholder (caller's buffer). msg: borrowed. */
static const char *message_text(json_t *msg, char placeholder[PLACEHOLDER_BYTES])
{
	const char *text = text_of(json_object_get(msg, "text"));
	json_t *att = json_array_get(json_object_get(msg, "attachments"), 0);
	char name[41];

	if (text != NULL)
		return text;
	if (att == NULL)
		return NULL;
	snprintf(placeholder, PLACEHOLDER_BYTES, "[%s]",
	         name_of(json_object_get(att, "type"), name));
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
	const char *mid = id_of(json_object_get(msg, "mid"), mbuf);
	parley_event ev;
	int echo;
	const char *customer;

	if (mid == NULL) {
		note(pc, "message without a mid skipped");
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
		deliver(pc, &ev, it->item);
		return;
	}

	/* An echo is what the Page/account itself sent (from Parley or from
	 * Meta's own inbox): the customer is then the recipient. Instagram has
	 * no separate echo field, so sender == account counts as an echo too. */
	echo = json_is_true(json_object_get(msg, "is_echo")) || strcmp(it->sender, it->asset) == 0;
	customer = echo ? it->recipient : it->sender;
	if (customer == NULL ||
	    !meta_thread_format(it->kind, it->asset, customer, thread, sizeof(thread))) {
		note(pc, "message without a customer id skipped");
		return;
	}
	snprintf(dedupe, sizeof(dedupe), "mid:%s", mid);
	ev.type = PARLEY_EVENT_MESSAGE_CREATED;
	ev.dedupe_key = dedupe;
	ev.visibility = PARLEY_VISIBILITY_PRIVATE;
	ev.thread_id = thread;
	ev.from_brand = echo;
	ev.text = message_text(msg, placeholder);
	ev.in_reply_to = id_of(json_object_get(json_object_get(msg, "reply_to"), "mid"), rbuf);
	deliver(pc, &ev, it->item);
}

static void dm_edit(parse_ctx *pc, const dm_item *it, json_t *edit)
{
	char mbuf[NUM_BUF], nbuf[NUM_BUF], dedupe[DEDUPE_BYTES];
	const char *mid = id_of(json_object_get(edit, "mid"), mbuf);
	const char *num = id_of(json_object_get(edit, "num_edit"), nbuf);
	const char *text = text_of(json_object_get(edit, "text"));
	parley_event ev;

	if (mid == NULL || text == NULL) {
		note(pc, "message_edit without mid or text skipped");
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
	deliver(pc, &ev, it->item);
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
	deliver(pc, &ev, it->item);
}

static void dm_delivery(parse_ctx *pc, const dm_item *it, json_t *delivery)
{
	json_t *mids = json_object_get(delivery, "mids");
	size_t i, n = json_array_size(mids);
	char mbuf[NUM_BUF];

	if (n == 0) {
		/* Only a watermark: "everything before this time", which names no
		 * message we could mark. */
		note(pc, "delivery with a watermark only accepted; no message named");
		return;
	}
	for (i = 0; i < n; i++) {
		const char *mid = id_of(json_array_get(mids, i), mbuf);
		if (mid != NULL)
			dm_status(pc, it, mid, PARLEY_DELIVERY_DELIVERED, "delivered");
	}
}

static void dm_read(parse_ctx *pc, const dm_item *it, json_t *read)
{
	char mbuf[NUM_BUF];
	const char *mid = id_of(json_object_get(read, "mid"), mbuf);

	/* Instagram's messaging_seen names the message; Messenger's read only
	 * carries a watermark. */
	if (mid == NULL) {
		note(pc, "read with a watermark only accepted; no message named");
		return;
	}
	dm_status(pc, it, mid, PARLEY_DELIVERY_READ, "read");
}

static void messaging_item(parse_ctx *pc, meta_thread_kind kind, const char *asset, json_t *item)
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
		note(pc, "messaging item that is not an object skipped");
		return;
	}
	it.kind = kind;
	it.item = item;
	it.sender = id_of(json_object_get(json_object_get(item, "sender"), "id"), sbuf);
	it.recipient = id_of(json_object_get(json_object_get(item, "recipient"), "id"), rbuf);
	it.time_ms = meta_time_ms(json_object_get(item, "timestamp"));
	/* entry.id is the Page/account; fall back to the recipient for an
	 * entry that lacks it (then nothing can be an echo but is_echo). */
	it.asset = asset != NULL ? asset : it.recipient;
	if (it.sender == NULL || it.asset == NULL) {
		note(pc, "messaging item without sender or recipient id skipped");
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
				note(pc, "messaging event %s accepted and ignored", ignored[i]);
				return;
			}
		}
		note(pc, "unknown messaging event accepted and ignored");
	}
}

/* ------------------------------------------------------------------------ */
/* Page feed comments                                                       */
/* ------------------------------------------------------------------------ */

static void feed_change(parse_ctx *pc, const char *page, json_t *value)
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
		note(pc, "feed item %s verb %s accepted and ignored", name_of(item, name1),
		     name_of(verb, name2));
		return;
	}
	comment = id_of(json_object_get(value, "comment_id"), cbuf);
	post = id_of(json_object_get(value, "post_id"), pbuf);
	parent = id_of(json_object_get(value, "parent_id"), rbuf);
	/* Current payloads carry from{id,name}; older ones sender_id (a number)
	 * and sender_name. */
	author = id_of(json_object_get(from, "id"), abuf);
	name = text_of(json_object_get(from, "name"));
	if (author == NULL) {
		author = id_of(json_object_get(value, "sender_id"), abuf);
		name = text_of(json_object_get(value, "sender_name"));
	}
	created = meta_time_ms(json_object_get(value, "created_time"));
	if (comment == NULL) {
		note(pc, "feed comment without comment_id skipped");
		return;
	}
	/* Meta documents (comment_id, verb, created_time) as the identity of
	 * a feed event: an edit at another time is another event. */
	snprintf(tbuf, sizeof(tbuf), "%" PRId64, created / 1000);
	snprintf(dedupe, sizeof(dedupe), "comment:%s:%s:%s", comment, name_of(verb, name1), tbuf);

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
			note(pc, "feed comment without author or post id skipped");
			return;
		}
		ev.type = PARLEY_EVENT_MESSAGE_CREATED;
		ev.visibility = PARLEY_VISIBILITY_PUBLIC;
		ev.thread_id = thread;
		ev.in_reply_to = parent;
		ev.text = text_of(json_object_get(value, "message"));
	} else if (strcmp(verb_s, "edited") == 0) {
		ev.type = PARLEY_EVENT_MESSAGE_EDITED;
		ev.text = text_of(json_object_get(value, "message"));
		if (ev.text == NULL) {
			note(pc, "feed comment edit without a message skipped");
			return;
		}
	} else if (strcmp(verb_s, "remove") == 0 || strcmp(verb_s, "hide") == 0) {
		/* A hidden comment is gone from public view just like a removed
		 * one; both keep their text as evidence. */
		ev.type = PARLEY_EVENT_MESSAGE_DELETED;
	} else {
		note(pc, "feed comment verb %s accepted and ignored", name_of(verb, name1));
		return;
	}
	deliver(pc, &ev, value);
}

/* ------------------------------------------------------------------------ */
/* Instagram comments                                                       */
/* ------------------------------------------------------------------------ */

static void ig_comment(parse_ctx *pc, const char *account, int64_t entry_ms, json_t *value)
{
	char cbuf[NUM_BUF], mbuf[NUM_BUF], abuf[NUM_BUF], pbuf[NUM_BUF];
	char dedupe[DEDUPE_BYTES], thread[META_MAX_THREAD_BYTES];
	json_t *from = json_object_get(value, "from");
	const char *comment = id_of(json_object_get(value, "id"), cbuf);
	const char *media = id_of(json_object_get(json_object_get(value, "media"), "id"), mbuf);
	const char *author = id_of(json_object_get(from, "id"), abuf);
	const char *parent = id_of(json_object_get(value, "parent_id"), pbuf);
	parley_event ev;

	if (comment == NULL || media == NULL || author == NULL ||
	    !meta_thread_format(META_THREAD_INSTAGRAM_MEDIA, account, media, thread, sizeof(thread))) {
		note(pc, "instagram comment without id, media or author skipped");
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
	ev.text = text_of(json_object_get(value, "text"));
	ev.platform_time_ms = entry_ms;
	ev.author.external_id = author;
	ev.author.handle = text_of(json_object_get(from, "username"));
	ev.from_brand = strcmp(author, account) == 0;
	deliver(pc, &ev, value);
}

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
	const char *s = text_of(json_object_get(part, strcmp(type, "text") == 0 ? "body" : "caption"));
	char name[41];

	if (s != NULL)
		return s;
	snprintf(placeholder, PLACEHOLDER_BYTES, "[%s]",
	         name_of(json_object_get(msg, "type"), name));
	return placeholder;
}

static void wa_message(parse_ctx *pc, const char *number, json_t *contacts, json_t *msg)
{
	char ibuf[NUM_BUF], fbuf[NUM_BUF], cbuf[NUM_BUF], name[41];
	char dedupe[DEDUPE_BYTES], thread[META_MAX_THREAD_BYTES], phone[META_MAX_ID_BYTES + 2];
	char placeholder[PLACEHOLDER_BYTES];
	const char *id = id_of(json_object_get(msg, "id"), ibuf);
	const char *from = id_of(json_object_get(msg, "from"), fbuf);
	const char *type = json_string_value(json_object_get(msg, "type"));
	json_t *contact, *profile;
	parley_event ev;

	/* A user with a username may come with a business-scoped user id and
	 * no phone number at all. */
	const char *customer = from != NULL ? from
	                                    : id_of(json_object_get(msg, "from_user_id"), cbuf);
	if (id == NULL || customer == NULL ||
	    !meta_thread_format(META_THREAD_WHATSAPP, number, customer, thread, sizeof(thread))) {
		note(pc, "whatsapp message without id or sender skipped");
		return;
	}
	if (type != NULL && strcmp(type, "reaction") == 0) {
		note(pc, "whatsapp message type %s accepted and ignored",
		     name_of(json_object_get(msg, "type"), name));
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
	ev.platform_time_ms = meta_time_ms(json_object_get(msg, "timestamp"));
	ev.author.external_id = customer;
	ev.author.display_name = text_of(json_object_get(profile, "name"));
	ev.author.handle = text_of(json_object_get(profile, "username"));
	if (from != NULL && from[strspn(from, "0123456789")] == '\0') {
		/* WhatsApp accounts are tied to the phone number they send from. */
		snprintf(phone, sizeof(phone), "+%s", from);
		ev.author.phone = phone;
		ev.author.phone_verified = 1;
	}
	deliver(pc, &ev, msg);
}

static void wa_status(parse_ctx *pc, json_t *st)
{
	static const struct { const char *name; parley_delivery_status status; } map[] = {
		{ "sent", PARLEY_DELIVERY_SENT }, { "delivered", PARLEY_DELIVERY_DELIVERED },
		{ "read", PARLEY_DELIVERY_READ }, { "failed", PARLEY_DELIVERY_FAILED },
	};
	char ibuf[NUM_BUF], name[41], dedupe[DEDUPE_BYTES], detail[512];
	const char *id = id_of(json_object_get(st, "id"), ibuf);
	const char *status = json_string_value(json_object_get(st, "status"));
	json_t *error = json_array_get(json_object_get(st, "errors"), 0);
	parley_event ev;

	memset(&ev, 0, sizeof(ev));
	for (size_t i = 0; status != NULL && i < sizeof(map) / sizeof(map[0]); i++) {
		if (strcmp(map[i].name, status) == 0)
			ev.delivery_status = map[i].status;
	}
	if (id == NULL || ev.delivery_status == PARLEY_DELIVERY_NONE) {
		note(pc, "whatsapp status %s accepted and ignored",
		     name_of(json_object_get(st, "status"), name));
		return;
	}
	/* One event per (message, status): statuses may arrive out of order and
	 * the core keeps the highest; a replay changes nothing. */
	snprintf(dedupe, sizeof(dedupe), "status:%s:%s", id, status);
	ev.type = PARLEY_EVENT_DELIVERY_STATUS;
	ev.dedupe_key = dedupe;
	ev.external_id = id;
	ev.platform_time_ms = meta_time_ms(json_object_get(st, "timestamp"));
	if (error != NULL) {
		const char *title = text_of(json_object_get(error, "title"));
		const char *more = text_of(json_object_get(json_object_get(error, "error_data"),
		                                           "details"));
		json_t *code = json_object_get(error, "code");
		snprintf(detail, sizeof(detail), "%s%s%s (code %" PRId64 ")",
		         title != NULL ? title : "failed", more != NULL ? ": " : "",
		         more != NULL ? more : "",
		         json_is_integer(code) ? (int64_t)json_integer_value(code) : (int64_t)0);
		ev.detail = detail;
	}
	deliver(pc, &ev, st);
}

static void wa_change(parse_ctx *pc, json_t *value)
{
	char nbuf[NUM_BUF];
	const char *number = id_of(json_object_get(json_object_get(value, "metadata"),
	                                           "phone_number_id"), nbuf);
	json_t *contacts = json_object_get(value, "contacts");
	json_t *messages = json_object_get(value, "messages");
	json_t *statuses = json_object_get(value, "statuses");
	json_t *v;
	size_t i;

	if (number == NULL) {
		note(pc, "whatsapp change without metadata.phone_number_id skipped");
		return;
	}
	/* A status-only post has neither contacts nor messages. */
	json_array_foreach(messages, i, v) {
		if (json_is_object(v))
			wa_message(pc, number, contacts, v);
		else
			note(pc, "whatsapp message that is not an object skipped");
	}
	json_array_foreach(statuses, i, v) {
		if (json_is_object(v))
			wa_status(pc, v);
		else
			note(pc, "whatsapp status that is not an object skipped");
	}
	if (json_array_size(messages) == 0 && json_array_size(statuses) == 0)
		note(pc, "whatsapp change without messages or statuses accepted");
}

/* ------------------------------------------------------------------------ */
/* The envelope                                                             */
/* ------------------------------------------------------------------------ */

typedef enum meta_object {
	OBJECT_UNKNOWN = 0, OBJECT_PAGE, OBJECT_INSTAGRAM, OBJECT_WHATSAPP
} meta_object;

static void one_change(parse_ctx *pc, meta_object object, const char *asset, int64_t entry_ms,
                       json_t *change)
{
	json_t *field = json_object_get(change, "field");
	json_t *value = json_object_get(change, "value");
	const char *f = json_string_value(field);
	char name[41];

	if (f == NULL || !json_is_object(value)) {
		note(pc, "change without field or value skipped");
		return;
	}
	if (object == OBJECT_PAGE && strcmp(f, "feed") == 0)
		feed_change(pc, asset, value);
	else if (object == OBJECT_INSTAGRAM &&
	         (strcmp(f, "comments") == 0 || strcmp(f, "live_comments") == 0))
		ig_comment(pc, asset, entry_ms, value);
	else if (object == OBJECT_WHATSAPP && strcmp(f, "messages") == 0)
		wa_change(pc, value);
	else
		note(pc, "field %s accepted and ignored", name_of(field, name));
}

static void one_entry(parse_ctx *pc, meta_object object, json_t *entry)
{
	char abuf[NUM_BUF];
	const char *asset;
	int64_t entry_ms;
	json_t *list, *v;
	size_t i;

	if (!json_is_object(entry)) {
		note(pc, "entry that is not an object skipped");
		return;
	}
	asset = id_of(json_object_get(entry, "id"), abuf);
	entry_ms = meta_time_ms(json_object_get(entry, "time"));
	if (asset == NULL || strchr(asset, ':') != NULL) {
		note(pc, "entry without a usable id skipped");
		return;
	}
	if ((list = json_object_get(entry, "messaging")) != NULL) {
		if (object == OBJECT_WHATSAPP) {
			note(pc, "messaging in a whatsapp entry skipped");
		} else {
			json_array_foreach(list, i, v)
				messaging_item(pc, object == OBJECT_PAGE ? META_THREAD_MESSENGER
				                                         : META_THREAD_INSTAGRAM_DM, asset, v);
		}
	}
	if ((list = json_object_get(entry, "changes")) != NULL) {
		json_array_foreach(list, i, v) {
			if (json_is_object(v))
				one_change(pc, object, asset, entry_ms, v);
			else
				note(pc, "change that is not an object skipped");
		}
	}
	/* Meta's example pages put field/value in the entry itself. */
	if (json_object_get(entry, "field") != NULL && json_object_get(entry, "changes") == NULL)
		one_change(pc, object, asset, entry_ms, entry);
	if (json_object_get(entry, "standby") != NULL)
		note(pc, "standby (another app owns the thread) accepted and ignored");
}

static bool fail(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "%s", what);
	return false;
}

bool meta_parse(const void *body, size_t len, meta_emit_fn emit, meta_note_fn note_fn,
                void *arg, meta_parse_stats *stats, char *err, size_t errlen)
{
	parse_ctx pc = { emit, note_fn, arg, stats };
	json_error_t jerr;
	json_t *root, *object, *entries, *entry;
	meta_object obj = OBJECT_UNKNOWN;
	const char *o;
	char name[41];
	size_t i;

	memset(stats, 0, sizeof(*stats));
	if (errlen > 0)
		err[0] = '\0';
	/* JSON_REJECT_DUPLICATES: two "text" keys could mean different things to
	 * different readers of the same signed body. */
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		snprintf(err, errlen, "invalid JSON at line %d column %d: %s", jerr.line,
		         jerr.column, jerr.text);
		return false;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		return fail(err, errlen, "the body must be a JSON object");
	}
	object = json_object_get(root, "object");
	entries = json_object_get(root, "entry");
	if (entries == NULL && json_object_get(root, "field") != NULL &&
	    json_object_get(root, "value") != NULL) {
		/* The App Dashboard's "Test" button sends {"field","value"}. */
		note(&pc, "dashboard test notification for field %s accepted; nothing stored",
		     name_of(json_object_get(root, "field"), name));
		json_decref(root);
		return true;
	}
	if (object != NULL && !json_is_string(object)) {
		json_decref(root);
		return fail(err, errlen, "object must be a string");
	}
	if (entries != NULL && !json_is_array(entries)) {
		json_decref(root);
		return fail(err, errlen, "entry must be an array");
	}
	o = json_string_value(object);
	if (o != NULL && strcmp(o, "page") == 0)
		obj = OBJECT_PAGE;
	else if (o != NULL && strcmp(o, "instagram") == 0)
		obj = OBJECT_INSTAGRAM;
	else if (o != NULL && strcmp(o, "whatsapp_business_account") == 0)
		obj = OBJECT_WHATSAPP;
	if (obj == OBJECT_UNKNOWN) {
		note(&pc, "object %s accepted and ignored", name_of(object, name));
		json_decref(root);
		return true;
	}
	json_array_foreach(entries, i, entry)
		one_entry(&pc, obj, entry);
	json_decref(root);
	return true;
}
