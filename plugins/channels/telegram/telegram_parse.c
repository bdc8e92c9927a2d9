/* telegram_parse.c - the telegram channel's inbound wire format: the
 * webhook secret, the bot token's shape, Update objects, getUpdates requests
 * and answers. sendMessage is in telegram_send.c. No host calls: see
 * telegram_parse.h. */
#include "telegram_parse.h"
#include "telegram_json.h"
#include "../../common/plugin_util.h"
#include "../../common/utf8.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

/* ------------------------------------------------------------------------ */
/* Secrets and tokens                                                       */
/* ------------------------------------------------------------------------ */

static bool is_token_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

bool telegram_secret_is_valid(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		if (!is_token_char((unsigned char)s[n]) || n >= TELEGRAM_SECRET_MAX)
			return false;
	}
	return n > 0;
}

bool telegram_token_is_valid(const char *s)
{
	size_t digits = 0, rest = 0;

	while (s[digits] >= '0' && s[digits] <= '9')
		digits++;
	if (digits == 0 || s[digits] != ':')
		return false;
	for (const char *p = s + digits + 1; *p != '\0'; p++, rest++) {
		if (!is_token_char((unsigned char)*p) || rest >= 512)
			return false;
	}
	return rest > 0;
}

telegram_secret_result telegram_check_secret(const char *header, const char *secret,
                                             size_t secret_len, telegram_equals_fn equals)
{
	if (header == NULL)
		return TELEGRAM_SECRET_MISSING;
	/* Only the lengths may leak (they are not secret); the contents are
	 * compared in constant time. */
	return equals(header, strlen(header), secret, secret_len) ? TELEGRAM_SECRET_OK
	                                                          : TELEGRAM_SECRET_BAD;
}

/* ------------------------------------------------------------------------ */
/* Updates                                                                  */
/* ------------------------------------------------------------------------ */

/* Update fields that carry a message, and what they become. */
typedef struct update_kind {
	const char *field;
	parley_event_type type;
	bool channel;   /* only with channel_posts */
} update_kind;

static const update_kind update_kinds[] = {
	{ "message", PARLEY_EVENT_MESSAGE_CREATED, false },
	{ "edited_message", PARLEY_EVENT_MESSAGE_EDITED, false },
	{ "channel_post", PARLEY_EVENT_MESSAGE_CREATED, true },
	{ "edited_channel_post", PARLEY_EVENT_MESSAGE_EDITED, true },
};

/* Message fields that make a message content a customer wrote (as opposed
 * to a service message such as new_chat_members or pinned_message). */
static const char *const content_fields[] = {
	"text", "caption", "photo", "document", "sticker", "voice", "video", "video_note",
	"audio", "animation", "contact", "location", "venue", "poll", "dice", "story",
	"paid_media", "game", "invoice",
};

static bool has_content(json_t *msg)
{
	for (size_t i = 0; i < sizeof(content_fields) / sizeof(content_fields[0]); i++) {
		if (json_object_get(msg, content_fields[i]) != NULL)
			return true;
	}
	return false;
}

/* The strings of one event, owned here and freed by msg_strings_free. */
typedef struct msg_strings {
	char dedupe[32];
	char external_id[TELEGRAM_ID_BYTES];
	char thread[TELEGRAM_ID_BYTES];
	char author_id[TELEGRAM_ID_BYTES];
	char in_reply_to[TELEGRAM_ID_BYTES];
	char *display_name;   /* owned, may be NULL */
	char *profile;        /* owned, may be NULL */
	char *raw;            /* owned */
} msg_strings;

static void msg_strings_free(msg_strings *s)
{
	free(s->display_name);
	free(s->profile);
	free(s->raw);
}

/* "First Last" of a user, or the title of a chat. Owned by the caller; NULL
 * when there is none or out of memory. who: borrowed. */
static char *display_name(json_t *who)
{
	const char *first = get_str(who, "first_name");
	const char *last = get_str(who, "last_name");
	const char *title = get_str(who, "title");
	char *out;
	size_t n;

	if (first == NULL)
		return title != NULL ? strdup(title) : NULL;
	if (last == NULL || last[0] == '\0')
		return strdup(first);
	n = strlen(first) + 1 + strlen(last) + 1;
	out = malloc(n);
	if (out != NULL)
		snprintf(out, n, "%s %s", first, last);
	return out;
}

/* A small profile object with what Telegram tells about a user (information
 * only). Owned by the caller; NULL when there is nothing. who: borrowed. */
static char *profile_json(json_t *who)
{
	static const char *const keys[] = { "language_code", "is_bot", "is_premium", "type" };
	json_t *p = json_object();
	char *out = NULL;

	if (p == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *v = json_object_get(who, keys[i]);
		if (json_is_string(v) || json_is_boolean(v))
			json_object_set(p, keys[i], v);
	}
	if (json_object_size(p) > 0)
		out = json_dumps(p, JSON_COMPACT);
	json_decref(p);
	return out;
}

/* Who wrote msg: sender_chat when a chat speaks (channel posts, anonymous
 * group admins, linked channels), else from; for a channel post without
 * either, the channel itself. Borrowed from msg; NULL when nobody. */
static json_t *message_author(json_t *msg, json_t *chat)
{
	json_t *who = json_object_get(msg, "sender_chat");
	int64_t id;

	if (json_is_object(who) && get_int(who, "id", &id))
		return who;
	who = json_object_get(msg, "from");
	if (json_is_object(who) && get_int(who, "id", &id))
		return who;
	if (get_str(chat, "type") != NULL && strcmp(get_str(chat, "type"), "channel") == 0)
		return chat;
	return NULL;
}

/* Unix seconds as milliseconds; 0 (unknown: the core uses the arrival time)
 * for a value no Telegram date can be (before 1970, after year 9999), which
 * also keeps the multiplication from overflowing. */
static int64_t unix_s_to_ms(int64_t s)
{
	return s > 0 && s <= TELEGRAM_MAX_UNIX_S ? s * 1000 : 0;
}

/* Turn one validated message into an event and hand it to emit. */
static telegram_parse_result
message_event(json_t *upd, int64_t update_id, const update_kind *k, json_t *msg,
              telegram_emit_fn emit, void *ctx, char *why, size_t whylen)
{
	json_t *chat = json_object_get(msg, "chat");
	json_t *author, *reply;
	const char *chat_type, *text;
	int64_t chat_id, message_id, date = 0, edit_date = 0, author_id, reply_id;
	msg_strings s;
	parley_event ev;
	int rc;

	if (!get_int(msg, "message_id", &message_id)) {
		say(why, whylen, "%s.message_id: expected an integer", k->field);
		return TELEGRAM_PARSE_INVALID;
	}
	if (!json_is_object(chat) || !get_int(chat, "id", &chat_id)) {
		say(why, whylen, "%s.chat.id: expected an integer", k->field);
		return TELEGRAM_PARSE_INVALID;
	}
	author = message_author(msg, chat);
	if (author == NULL || !get_int(author, "id", &author_id)) {
		say(why, whylen, "%s.from.id: expected an integer", k->field);
		return TELEGRAM_PARSE_INVALID;
	}
	get_int(msg, "date", &date);
	get_int(msg, "edit_date", &edit_date);
	text = get_str(msg, "text");
	if (text == NULL)
		text = get_str(msg, "caption");
	if (k->type == PARLEY_EVENT_MESSAGE_CREATED && !has_content(msg)) {
		say(why, whylen, "%s is a service message", k->field);
		return TELEGRAM_PARSE_IGNORED;
	}
	if (k->type == PARLEY_EVENT_MESSAGE_EDITED && text == NULL) {
		/* A moved live location or an edited photo without caption: no
		 * new text to record. */
		say(why, whylen, "%s carries no text", k->field);
		return TELEGRAM_PARSE_IGNORED;
	}

	/* Old updates lack chat.type; user ids are positive, group ids negative. */
	chat_type = get_str(chat, "type");
	if (chat_type == NULL)
		chat_type = chat_id > 0 ? "private" : "group";

	memset(&s, 0, sizeof(s));
	snprintf(s.dedupe, sizeof(s.dedupe), "u:%" PRId64, update_id);
	/* Message ids are per chat: the chat makes them unique on the instance. */
	snprintf(s.external_id, sizeof(s.external_id), "%" PRId64 ":%" PRId64, chat_id, message_id);
	snprintf(s.thread, sizeof(s.thread), "%" PRId64, chat_id);
	snprintf(s.author_id, sizeof(s.author_id), "%" PRId64, author_id);
	reply = json_object_get(msg, "reply_to_message");
	if (json_is_object(reply) && get_int(reply, "message_id", &reply_id))
		snprintf(s.in_reply_to, sizeof(s.in_reply_to), "%" PRId64 ":%" PRId64, chat_id,
		         reply_id);
	s.display_name = display_name(author);
	s.profile = profile_json(author);
	s.raw = json_dumps(upd, JSON_COMPACT);
	if (s.raw == NULL) {
		msg_strings_free(&s);
		say(why, whylen, "%s", "out of memory");
		return TELEGRAM_PARSE_REFUSED;
	}

	memset(&ev, 0, sizeof(ev));
	ev.size = sizeof(ev);
	ev.type = k->type;
	ev.dedupe_key = s.dedupe;
	ev.external_id = s.external_id;
	ev.author.external_id = s.author_id;
	ev.author.handle = get_str(author, "username");
	ev.author.display_name = s.display_name;
	ev.author.profile_json = s.profile;
	ev.text = text;
	ev.visibility = strcmp(chat_type, "private") == 0 ? PARLEY_VISIBILITY_PRIVATE
	                                                  : PARLEY_VISIBILITY_PUBLIC;
	ev.thread_id = s.thread;
	ev.in_reply_to = s.in_reply_to[0] != '\0' ? s.in_reply_to : NULL;
	/* Seconds on the wire; an edit happened at edit_date. */
	if (k->type == PARLEY_EVENT_MESSAGE_EDITED && edit_date > 0)
		ev.platform_time_ms = unix_s_to_ms(edit_date);
	else
		ev.platform_time_ms = unix_s_to_ms(date);
	ev.raw_json = s.raw;
	ev.raw_json_len = strlen(s.raw);

	rc = emit(ctx, &ev);
	msg_strings_free(&s);
	if (rc != 0) {
		say(why, whylen, "%s", "the event was refused");
		return TELEGRAM_PARSE_REFUSED;
	}
	return TELEGRAM_PARSE_EMITTED;
}

/* One parsed Update object (borrowed). */
static telegram_parse_result
parse_update_obj(json_t *upd, const telegram_parse_opts *opts, telegram_emit_fn emit, void *ctx,
                 int64_t *update_id, char *why, size_t whylen)
{
	const char *key;
	json_t *value;

	*update_id = -1;
	if (!json_is_object(upd)) {
		say(why, whylen, "%s", "an update must be a JSON object");
		return TELEGRAM_PARSE_INVALID;
	}
	if (!get_int(upd, "update_id", update_id) || *update_id < 0) {
		*update_id = -1;
		say(why, whylen, "%s", "update_id: expected a non-negative integer");
		return TELEGRAM_PARSE_INVALID;
	}
	for (size_t i = 0; i < sizeof(update_kinds) / sizeof(update_kinds[0]); i++) {
		const update_kind *k = &update_kinds[i];
		json_t *msg = json_object_get(upd, k->field);
		if (msg == NULL)
			continue;
		if (k->channel && !opts->channel_posts) {
			say(why, whylen, "%s ignored (channel_posts is false)", k->field);
			return TELEGRAM_PARSE_IGNORED;
		}
		if (!json_is_object(msg)) {
			say(why, whylen, "%s: expected an object", k->field);
			return TELEGRAM_PARSE_INVALID;
		}
		return message_event(upd, *update_id, k, msg, emit, ctx, why, whylen);
	}
	/* callback_query, my_chat_member, message_reaction, ...: not messages. */
	json_object_foreach(upd, key, value) {
		(void)value;
		if (strcmp(key, "update_id") != 0) {
			say(why, whylen, "update type %s is not handled", key);
			return TELEGRAM_PARSE_IGNORED;
		}
	}
	say(why, whylen, "%s", "an update without content");
	return TELEGRAM_PARSE_IGNORED;
}

telegram_parse_result telegram_parse_update(const void *body, size_t len,
                                            const telegram_parse_opts *opts,
                                            telegram_emit_fn emit, void *ctx,
                                            int64_t *update_id, char *why, size_t whylen)
{
	json_error_t jerr;
	json_t *root;
	telegram_parse_result r;

	*update_id = -1;
	if (len > TELEGRAM_MAX_PARSE_BYTES) {
		say(why, whylen, "%s", "the body is too large");
		return TELEGRAM_PARSE_INVALID;
	}
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		if (why != NULL && whylen > 0)
			snprintf(why, whylen, "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
		return TELEGRAM_PARSE_INVALID;
	}
	r = parse_update_obj(root, opts, emit, ctx, update_id, why, whylen);
	json_decref(root);
	return r;
}

bool telegram_parse_updates(const void *body, size_t len, int64_t offset,
                            const telegram_parse_opts *opts, telegram_emit_fn emit, void *ctx,
                            telegram_poll_summary *sum, char *why, size_t whylen)
{
	json_error_t jerr;
	json_t *root, *result, *upd;
	size_t i;

	memset(sum, 0, sizeof(*sum));
	sum->next_offset = offset;
	if (body == NULL || len == 0 || len > TELEGRAM_MAX_PARSE_BYTES) {
		say(why, whylen, "%s", "the answer is empty or too large");
		return false;
	}
	root = json_loadb(body, len, 0, &jerr);
	if (root == NULL || !json_is_object(root)) {
		telegram_describe(body, len, why, whylen);
		json_decref(root);
		return false;
	}
	result = json_object_get(root, "result");
	if (!json_is_true(json_object_get(root, "ok")) || !json_is_array(result)) {
		telegram_describe(body, len, why, whylen);
		json_decref(root);
		return false;
	}
	json_array_foreach(result, i, upd) {
		int64_t id = -1;
		char item_why[160];
		telegram_parse_result r = parse_update_obj(upd, opts, emit, ctx, &id, item_why,
		                                           sizeof(item_why));
		sum->updates++;
		if (r == TELEGRAM_PARSE_EMITTED)
			sum->emitted++;
		else if (r == TELEGRAM_PARSE_IGNORED)
			sum->ignored++;
		else
			sum->skipped++;
		if (id >= 0 && id < INT64_MAX && id + 1 > sum->next_offset)
			sum->next_offset = id + 1;
	}
	json_decref(root);
	return true;
}

char *telegram_get_updates_body(int64_t offset, int64_t timeout_s, const telegram_parse_opts *opts)
{
	json_t *allowed = json_pack("[s,s]", "message", "edited_message");
	json_t *req;
	char *out;

	if (allowed == NULL)
		return NULL;
	if (opts->channel_posts) {
		json_array_append_new(allowed, json_string("channel_post"));
		json_array_append_new(allowed, json_string("edited_channel_post"));
	}
	req = json_object();
	if (req == NULL) {
		json_decref(allowed);
		return NULL;
	}
	if (offset > 0)
		json_object_set_new(req, "offset", json_integer(offset));
	json_object_set_new(req, "timeout", json_integer(timeout_s));
	json_object_set_new(req, "limit", json_integer(100));
	json_object_set_new(req, "allowed_updates", allowed);
	out = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	return out;
}
