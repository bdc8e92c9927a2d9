/* x_parse.c - CRC, signatures, ids and times, Account Activity and
 * recent-search payloads for the x channel (the inbound side; outbound
 * bodies and answers are in x_send.c). No host calls: see x_parse.h. */
#include "x_parse.h"
#include "../../common/plugin_util.h"
#include "../../common/rfc3339.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#define SIG_PREFIX "sha256="
#define SIG_B64_LEN 44                      /* base64 of 32 bytes */

/* ------------------------------------------------------------------------ */
/* CRC and signatures                                                       */
/* ------------------------------------------------------------------------ */

void x_crc_response(const void *secret, size_t secret_len, const char *crc_token,
                    x_hmac_fn hmac, char out[X_CRC_RESPONSE_LEN + 1])
{
	unsigned char mac[32];
	char b64[SIG_B64_LEN + 1];

	hmac(secret, secret_len, crc_token, strlen(crc_token), mac);
	x_base64(mac, sizeof(mac), b64);
	snprintf(out, X_CRC_RESPONSE_LEN + 1, "{\"response_token\":\"" SIG_PREFIX "%s\"}", b64);
}

x_sig_result x_verify_signature(const char *header, const void *secret, size_t secret_len,
                                const void *body, size_t body_len, x_hmac_fn hmac,
                                x_equals_fn equals)
{
	const size_t prefix_len = sizeof(SIG_PREFIX) - 1;
	unsigned char mac[32];
	char expected[SIG_B64_LEN + 1];

	if (header == NULL)
		return X_SIG_MISSING;
	/* The header's shape is public; only the comparison of the MAC itself
	 * must not depend on how much of it matches. Comparing the base64
	 * texts is equivalent to comparing the bytes: the encoding is 1:1 for
	 * the padded 44-character form. */
	if (strlen(header) != prefix_len + SIG_B64_LEN || strncmp(header, SIG_PREFIX, prefix_len) != 0)
		return X_SIG_BAD;
	hmac(secret, secret_len, body, body_len, mac);
	x_base64(mac, sizeof(mac), expected);
	return equals(header + prefix_len, SIG_B64_LEN, expected, SIG_B64_LEN) ? X_SIG_OK
	                                                                       : X_SIG_BAD;
}

/* ------------------------------------------------------------------------ */
/* Ids and times                                                            */
/* ------------------------------------------------------------------------ */

bool x_id_is_valid(const char *s)
{
	size_t n = 0;

	if (s == NULL)
		return false;
	for (; s[n] != '\0'; n++) {
		if (s[n] < '0' || s[n] > '9' || n >= X_MAX_ID_LEN)
			return false;
	}
	return n > 0;
}

/* Compare two valid ids as numbers (no leading zeros assumed, so a longer
 * id is larger). */
static int id_cmp(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la != lb)
		return la < lb ? -1 : 1;
	return strcmp(a, b);
}

bool x_dm_conversation_id(const char *a, const char *b, char out[X_MAX_DM_CONVERSATION_LEN + 1])
{
	if (!x_id_is_valid(a) || !x_id_is_valid(b))
		return false;
	if (id_cmp(a, b) > 0) {
		const char *t = a;
		a = b;
		b = t;
	}
	snprintf(out, X_MAX_DM_CONVERSATION_LEN + 1, "%s-%s", a, b);
	return true;
}

/* "+0000" / "-0130" into minutes east of UTC. */
static bool read_offset_hhmm(const char *p, int *out_min)
{
	int oh, om;

	if ((p[0] != '+' && p[0] != '-') || !pu_read_digits(p + 1, 2, &oh) ||
	    !pu_read_digits(p + 3, 2, &om) || oh > 23 || om > 59)
		return false;
	*out_min = (oh * 60 + om) * (p[0] == '-' ? -1 : 1);
	return true;
}

bool x_parse_v1_time(const char *s, int64_t *out_ms)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	int day, hour, minute, second, year, month = 0, offset;

	/* "Fri Dec 13 04:48:09 +0000 2019": fixed columns. */
	if (s == NULL || strlen(s) != 30 || s[3] != ' ' || s[7] != ' ' || s[10] != ' ' ||
	    s[13] != ':' || s[16] != ':' || s[19] != ' ' || s[25] != ' ')
		return false;
	for (int i = 0; i < 12; i++) {
		if (strncmp(s + 4, months + 3 * i, 3) == 0)
			month = i + 1;
	}
	if (month == 0 || !pu_read_digits(s + 8, 2, &day) || !pu_read_digits(s + 11, 2, &hour) ||
	    !pu_read_digits(s + 14, 2, &minute) || !pu_read_digits(s + 17, 2, &second) ||
	    !read_offset_hhmm(s + 20, &offset) || !pu_read_digits(s + 26, 4, &year))
		return false;
	return pu_civil_to_ms(year, month, day, hour, minute, second, offset, 0, out_ms);
}

/* A string of decimal milliseconds ("1576212489730") as X sends them. */
static bool parse_ms_string(const char *s, int64_t *out_ms)
{
	int64_t v = 0;
	size_t n = 0;

	if (s == NULL)
		return false;
	for (; s[n] != '\0'; n++) {
		if (s[n] < '0' || s[n] > '9' || n >= 15)
			return false;
		v = v * 10 + (s[n] - '0');
	}
	if (n == 0)
		return false;
	*out_ms = v;
	return true;
}

/* ------------------------------------------------------------------------ */
/* JSON helpers                                                             */
/* ------------------------------------------------------------------------ */

/* A string member, or NULL (null, absent or another type). */
static const char *str_member(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* An id member as text into buf: the string form, or jansson's 64-bit
 * integer printed exactly (never via a double). NULL when absent or not a
 * valid id. */
static const char *id_value(json_t *v, char buf[X_MAX_ID_LEN + 1])
{
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		return x_id_is_valid(s) ? s : NULL;
	}
	if (json_is_integer(v) && json_integer_value(v) > 0) {
		snprintf(buf, X_MAX_ID_LEN + 1, "%" PRId64, (int64_t)json_integer_value(v));
		return buf;
	}
	return NULL;
}

/* obj.<key>_str, else obj.<key> (v1.1 objects carry both; prefer the text). */
static const char *id_member(json_t *obj, const char *key, const char *str_key,
                             char buf[X_MAX_ID_LEN + 1])
{
	const char *id = str_key != NULL ? id_value(json_object_get(obj, str_key), buf) : NULL;
	return id != NULL ? id : id_value(json_object_get(obj, key), buf);
}

static void skip(x_parse_stats *stats, const char *why)
{
	stats->skipped++;
	if (stats->first_skip[0] == '\0')
		snprintf(stats->first_skip, sizeof(stats->first_skip), "%s", why);
}

static bool set_error(x_parse_error *err, const char *code, const char *detail)
{
	err->http_status = 400;
	err->code = code;
	snprintf(err->detail, sizeof(err->detail), "%s", detail);
	return false;
}

/* Hand ev to emit with the item's JSON as raw_json. */
static bool emit_with_raw(json_t *item, parley_event *ev, x_emit_fn emit, void *ctx,
                          x_parse_stats *stats, x_parse_error *err)
{
	char *raw = json_dumps(item, JSON_COMPACT | JSON_ENCODE_ANY);
	int rc;

	ev->raw_json = raw;
	ev->raw_json_len = raw != NULL ? strlen(raw) : 0;
	rc = emit(ctx, ev);
	free(raw);
	if (rc != 0)
		return set_error(err, "event_rejected", "an event was refused");
	stats->emitted++;
	return true;
}

static bool is_brand(const char *author, const char *brand, const char *for_user)
{
	return author != NULL && ((brand != NULL && strcmp(author, brand) == 0) ||
	                          (for_user != NULL && strcmp(author, for_user) == 0));
}

/* A small JSON object of profile facts (information only), or NULL. */
static char *profile_json(json_t *user, int blocked)
{
	json_t *p = json_object();
	json_t *v;
	char *s = NULL;

	if (p == NULL)
		return NULL;
	v = json_object_get(user, "followers_count");
	if (json_is_integer(v))
		json_object_set(p, "followers_count", v);
	v = json_object_get(user, "verified");
	if (json_is_boolean(v))
		json_object_set(p, "verified", v);
	if (blocked)
		json_object_set_new(p, "user_has_blocked", json_true());
	if (json_object_size(p) > 0)
		s = json_dumps(p, JSON_COMPACT);
	json_decref(p);
	return s;
}

/* user_has_blocked arrives as a boolean in real payloads and as the string
 * "true"/"false" in X's documentation: accept both, anything else is false. */
static int flag_value(json_t *v)
{
	if (json_is_boolean(v))
		return json_is_true(v);
	if (json_is_string(v))
		return strcmp(json_string_value(v), "true") == 0;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Account Activity                                                         */
/* ------------------------------------------------------------------------ */

typedef struct aa_ctx {
	const char *brand;       /* configured account, may be NULL */
	const char *for_user;    /* the payload's for_user_id, may be NULL */
	int blocked;             /* user_has_blocked */
	json_t *users;           /* top-level users map of DM payloads, may be NULL */
	x_emit_fn emit;
	void *ctx;
	x_parse_stats *stats;
	x_parse_error *err;
} aa_ctx;

/* The full text of a v1.1 tweet: extended_tweet.full_text for long tweets
 * (the top-level text is then truncated), else full_text, else text. */
static const char *tweet_text(json_t *tweet)
{
	const char *t = str_member(json_object_get(tweet, "extended_tweet"), "full_text");

	if (t == NULL)
		t = str_member(tweet, "full_text");
	return t != NULL ? t : str_member(tweet, "text");
}

static bool tweet_create(aa_ctx *a, json_t *tweet)
{
	char idb[X_MAX_ID_LEN + 1], userb[X_MAX_ID_LEN + 1], replyb[X_MAX_ID_LEN + 1];
	char key[8 + X_MAX_ID_LEN];
	json_t *user = json_object_get(tweet, "user");
	const char *id, *author, *reply;
	char *profile;
	int64_t ms = 0;
	bool ok;

	if (!json_is_object(tweet))
		return skip(a->stats, "a tweet_create_events item is not an object"), true;
	/* A retweet repeats someone's tweet: nobody wrote anything new. */
	if (json_object_get(tweet, "retweeted_status") != NULL)
		return skip(a->stats, "retweet"), true;
	id = id_member(tweet, "id", "id_str", idb);
	author = id_member(user, "id", "id_str", userb);
	if (id == NULL || author == NULL)
		return skip(a->stats, "tweet without id_str or user.id_str"), true;
	reply = id_member(tweet, "in_reply_to_status_id", "in_reply_to_status_id_str", replyb);
	if (!parse_ms_string(str_member(tweet, "timestamp_ms"), &ms))
		x_parse_v1_time(str_member(tweet, "created_at"), &ms);
	snprintf(key, sizeof(key), "tweet:%s", id);
	profile = profile_json(user, a->blocked);

	parley_event ev = {
		.size = sizeof(ev),
		.type = PARLEY_EVENT_MESSAGE_CREATED,
		.dedupe_key = key,
		.external_id = id,
		.author = { .external_id = author,
		            .handle = str_member(user, "screen_name"),
		            .display_name = str_member(user, "name"),
		            .profile_json = profile },
		.text = tweet_text(tweet),
		.visibility = PARLEY_VISIBILITY_PUBLIC,
		/* AAA v1.1 carries no conversation id: the parent tweet stands
		 * in for the thread (see docs/channels/x.md). */
		.thread_id = reply != NULL ? reply : id,
		.in_reply_to = reply,
		.platform_time_ms = ms,
		.from_brand = is_brand(author, a->brand, a->for_user),
	};
	ok = emit_with_raw(tweet, &ev, a->emit, a->ctx, a->stats, a->err);
	free(profile);
	return ok;
}

static bool dm_create(aa_ctx *a, json_t *dm)
{
	char idb[X_MAX_ID_LEN + 1], senderb[X_MAX_ID_LEN + 1], recipb[X_MAX_ID_LEN + 1];
	char key[5 + X_MAX_ID_LEN], thread[X_MAX_DM_CONVERSATION_LEN + 1];
	json_t *mc = json_object_get(dm, "message_create");
	json_t *user;
	const char *id, *sender, *recipient, *type = str_member(dm, "type");
	char *profile;
	int64_t ms = 0;
	bool ok;

	if (!json_is_object(dm))
		return skip(a->stats, "a direct_message_events item is not an object"), true;
	if (type == NULL || strcmp(type, "message_create") != 0)
		return skip(a->stats, "direct message event that is not message_create"), true;
	id = id_member(dm, "id", NULL, idb);
	sender = id_member(mc, "sender_id", NULL, senderb);
	recipient = id_member(json_object_get(mc, "target"), "recipient_id", NULL, recipb);
	if (id == NULL || sender == NULL || recipient == NULL ||
	    !x_dm_conversation_id(sender, recipient, thread))
		return skip(a->stats, "direct message without id, sender_id or recipient_id"), true;
	parse_ms_string(str_member(dm, "created_timestamp"), &ms);
	snprintf(key, sizeof(key), "dm:%s", id);
	user = json_object_get(a->users, sender);
	profile = profile_json(user, 0);

	parley_event ev = {
		.size = sizeof(ev),
		.type = PARLEY_EVENT_MESSAGE_CREATED,
		.dedupe_key = key,
		.external_id = id,
		.author = { .external_id = sender,
		            .handle = str_member(user, "screen_name"),
		            .display_name = str_member(user, "name"),
		            .profile_json = profile },
		.text = str_member(json_object_get(mc, "message_data"), "text"),
		.visibility = PARLEY_VISIBILITY_PRIVATE,
		/* The event has no conversation id: it is computed the way X
		 * forms 1:1 conversation ids, which is also what a DM send
		 * answers with, so both directions share the thread. */
		.thread_id = thread,
		.platform_time_ms = ms,
		.from_brand = is_brand(sender, a->brand, a->for_user),
	};
	ok = emit_with_raw(dm, &ev, a->emit, a->ctx, a->stats, a->err);
	free(profile);
	return ok;
}

static bool tweet_delete(aa_ctx *a, json_t *item)
{
	char idb[X_MAX_ID_LEN + 1], userb[X_MAX_ID_LEN + 1];
	char key[15 + X_MAX_ID_LEN];
	json_t *status = json_object_get(item, "status");
	const char *id, *user;
	int64_t ms = 0;

	if (!json_is_object(item))
		return skip(a->stats, "a tweet_delete_events item is not an object"), true;
	id = id_member(status, "id", "id_str", idb);
	user = id_member(status, "user_id", "user_id_str", userb);
	if (id == NULL)
		return skip(a->stats, "tweet delete without status.id"), true;
	parse_ms_string(str_member(item, "timestamp_ms"), &ms);
	snprintf(key, sizeof(key), "tweet_delete:%s", id);

	parley_event ev = {
		.size = sizeof(ev),
		.type = PARLEY_EVENT_MESSAGE_DELETED,
		.dedupe_key = key,
		.external_id = id,
		.author = { .external_id = user },
		.platform_time_ms = ms,
		.from_brand = is_brand(user, a->brand, a->for_user),
	};
	return emit_with_raw(item, &ev, a->emit, a->ctx, a->stats, a->err);
}

typedef bool (*aa_item_fn)(aa_ctx *a, json_t *item);

static bool each_item(aa_ctx *a, json_t *list, const char *name, aa_item_fn fn)
{
	size_t i;
	json_t *item;

	if (list == NULL || json_is_null(list))
		return true;
	if (!json_is_array(list)) {
		char detail[96];
		snprintf(detail, sizeof(detail), "%s: must be an array", name);
		return set_error(a->err, "invalid_field", detail);
	}
	json_array_foreach(list, i, item) {
		if (!fn(a, item))
			return false;
	}
	return true;
}

/* Top-level members that are not event lists. */
static bool is_envelope_key(const char *key)
{
	static const char *const known[] = {
		"for_user_id", "user_has_blocked", "users", "apps", "source",
		"tweet_create_events", "direct_message_events", "tweet_delete_events", NULL
	};
	for (size_t i = 0; known[i] != NULL; i++) {
		if (strcmp(key, known[i]) == 0)
			return true;
	}
	return false;
}

static void note_unknown(json_t *root, x_parse_stats *stats)
{
	const char *key;
	json_t *v;

	json_object_foreach(root, key, v) {
		(void)v;
		if (is_envelope_key(key))
			continue;
		stats->unknown++;
		if (stats->first_unknown[0] == '\0')
			pu_excerpt(key, strlen(key), sizeof(stats->first_unknown) - 1,
			          stats->first_unknown, sizeof(stats->first_unknown));
	}
}

bool x_parse_activity(const void *body, size_t len, const char *brand_user_id,
                      x_emit_fn emit, void *ctx, x_parse_stats *stats, x_parse_error *err)
{
	char forb[X_MAX_ID_LEN + 1];
	json_t *root;
	aa_ctx a;
	bool ok;

	memset(stats, 0, sizeof(*stats));
	root = json_loadb(body, len, 0, NULL);
	if (!json_is_object(root)) {
		json_decref(root);
		return set_error(err, "invalid_json", "the body must be a JSON object");
	}
	a = (aa_ctx){
		.brand = brand_user_id,
		.for_user = id_member(root, "for_user_id", NULL, forb),
		.blocked = flag_value(json_object_get(root, "user_has_blocked")),
		.users = json_object_get(root, "users"),
		.emit = emit,
		.ctx = ctx,
		.stats = stats,
		.err = err,
	};
	if (!json_is_object(a.users))
		a.users = NULL;
	ok = each_item(&a, json_object_get(root, "tweet_create_events"), "tweet_create_events",
	               tweet_create) &&
	     each_item(&a, json_object_get(root, "direct_message_events"), "direct_message_events",
	               dm_create) &&
	     each_item(&a, json_object_get(root, "tweet_delete_events"), "tweet_delete_events",
	               tweet_delete);
	if (ok)
		note_unknown(root, stats);
	json_decref(root);
	return ok;
}

/* ------------------------------------------------------------------------ */
/* Recent search                                                            */
/* ------------------------------------------------------------------------ */

/* The includes.users entry with this id, or NULL. */
static json_t *find_user(json_t *users, const char *id)
{
	size_t i;
	json_t *u;

	json_array_foreach(users, i, u) {
		const char *uid = str_member(u, "id");
		if (uid != NULL && strcmp(uid, id) == 0)
			return u;
	}
	return NULL;
}

/* The id of the referenced tweet of this type ("replied_to", "retweeted"). */
static const char *referenced(json_t *tweet, const char *type)
{
	size_t i;
	json_t *r;

	json_array_foreach(json_object_get(tweet, "referenced_tweets"), i, r) {
		const char *t = str_member(r, "type");
		const char *id = str_member(r, "id");
		if (t != NULL && strcmp(t, type) == 0 && x_id_is_valid(id))
			return id;
	}
	return NULL;
}

static bool search_tweet(json_t *tweet, json_t *users, const char *brand, x_emit_fn emit,
                         void *ctx, x_parse_stats *stats, x_parse_error *err)
{
	char key[8 + X_MAX_ID_LEN];
	const char *id = str_member(tweet, "id"), *author = str_member(tweet, "author_id");
	const char *conv = str_member(tweet, "conversation_id");
	const char *text = str_member(json_object_get(tweet, "note_tweet"), "text");
	json_t *user;
	int64_t ms = 0;

	if (!x_id_is_valid(id) || !x_id_is_valid(author))
		return skip(stats, "search result without id or author_id"), true;
	if (referenced(tweet, "retweeted") != NULL)
		return skip(stats, "retweet"), true;
	if (text == NULL)   /* note_tweet holds the whole text of a long post */
		text = str_member(tweet, "text");
	pu_rfc3339_ms(str_member(tweet, "created_at"), &ms);
	user = find_user(users, author);
	snprintf(key, sizeof(key), "tweet:%s", id);

	parley_event ev = {
		.size = sizeof(ev),
		.type = PARLEY_EVENT_MESSAGE_CREATED,
		.dedupe_key = key,   /* the same as a webhook's: either source, once */
		.external_id = id,
		.author = { .external_id = author,
		            .handle = str_member(user, "username"),
		            .display_name = str_member(user, "name") },
		.text = text,
		.visibility = PARLEY_VISIBILITY_PUBLIC,
		.thread_id = x_id_is_valid(conv) ? conv : id,
		.in_reply_to = referenced(tweet, "replied_to"),
		.platform_time_ms = ms,
		.from_brand = is_brand(author, brand, NULL),
	};
	return emit_with_raw(tweet, &ev, emit, ctx, stats, err);
}

bool x_parse_search(const void *body, size_t len, const char *brand_user_id, x_emit_fn emit,
                    void *ctx, x_search_meta *meta, x_parse_stats *stats, x_parse_error *err)
{
	json_t *root, *data, *users, *m, *tweet;
	const char *s;
	size_t i;
	bool ok = true;

	memset(stats, 0, sizeof(*stats));
	memset(meta, 0, sizeof(*meta));
	root = json_loadb(body, len, 0, NULL);
	if (!json_is_object(root)) {
		json_decref(root);
		return set_error(err, "invalid_json", "the answer must be a JSON object");
	}
	data = json_object_get(root, "data");
	if (data != NULL && !json_is_null(data) && !json_is_array(data)) {
		json_decref(root);
		return set_error(err, "invalid_field", "data: must be an array");
	}
	users = json_object_get(json_object_get(root, "includes"), "users");
	m = json_object_get(root, "meta");
	s = str_member(m, "newest_id");
	if (x_id_is_valid(s))
		snprintf(meta->newest_id, sizeof(meta->newest_id), "%s", s);
	s = str_member(m, "next_token");
	if (s != NULL && strlen(s) < sizeof(meta->next_token))
		snprintf(meta->next_token, sizeof(meta->next_token), "%s", s);
	json_array_foreach(data, i, tweet) {
		meta->result_count++;
		if (!json_is_object(tweet)) {
			skip(stats, "a search result is not an object");
			continue;
		}
		ok = search_tweet(tweet, users, brand_user_id, emit, ctx, stats, err);
		if (!ok)
			break;
	}
	json_decref(root);
	return ok;
}
