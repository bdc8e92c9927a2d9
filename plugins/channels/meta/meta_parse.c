/* meta_parse.c - handshake, signatures, thread ids and the webhook body's
 * envelope (object, entry[], changes[]) of the meta channel, with the JSON
 * helpers its body parsers share; the items themselves are parsed in
 * meta_messenger.c (Pages and Instagram) and meta_whatsapp.c. No host
 * calls: see meta_parse.h. */
#include "meta_parse.h"
#include "meta_body.h"
#include "../../common/plugin_util.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#define SIG_PREFIX "sha256="
#define SIG_PREFIX_LEN (sizeof(SIG_PREFIX) - 1)
#define SECONDS_BELOW 100000000000LL   /* see mp_time_ms */
#define NOTE_BYTES 160

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

/* Record a skipped item; the text is bounded and holds only names Meta sent
 * (object, field, type, verb), never message content. */
void mp_note(parse_ctx *pc, const char *fmt, ...)
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
const char *mp_name_of(json_t *v, char out[41])
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
const char *mp_id_of(json_t *v, char buf[NUM_BUF])
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

/* Unix ms from a JSON integer or a string of digits, in seconds or ms
 * (values below 10^11 are seconds: the year 5138 in seconds, 1973 in ms).
 * 0 when absent or invalid. */
int64_t mp_time_ms(json_t *v)
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
void mp_deliver(parse_ctx *pc, parley_event *ev, json_t *item)
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
		mp_note(pc, "change without field or value skipped");
		return;
	}
	if (object == OBJECT_PAGE && strcmp(f, "feed") == 0)
		mp_feed_change(pc, asset, value);
	else if (object == OBJECT_INSTAGRAM &&
	         (strcmp(f, "comments") == 0 || strcmp(f, "live_comments") == 0))
		mp_ig_comment(pc, asset, entry_ms, value);
	else if (object == OBJECT_WHATSAPP && strcmp(f, "messages") == 0)
		mp_wa_change(pc, value);
	else
		mp_note(pc, "field %s accepted and ignored", mp_name_of(field, name));
}

static void one_entry(parse_ctx *pc, meta_object object, json_t *entry)
{
	char abuf[NUM_BUF];
	const char *asset;
	int64_t entry_ms;
	json_t *list, *v;
	size_t i;

	if (!json_is_object(entry)) {
		mp_note(pc, "entry that is not an object skipped");
		return;
	}
	asset = mp_id_of(json_object_get(entry, "id"), abuf);
	entry_ms = mp_time_ms(json_object_get(entry, "time"));
	if (asset == NULL || strchr(asset, ':') != NULL) {
		mp_note(pc, "entry without a usable id skipped");
		return;
	}
	if ((list = json_object_get(entry, "messaging")) != NULL) {
		if (object == OBJECT_WHATSAPP) {
			mp_note(pc, "messaging in a whatsapp entry skipped");
		} else {
			json_array_foreach(list, i, v)
				mp_messaging_item(pc, object == OBJECT_PAGE ? META_THREAD_MESSENGER
				                                         : META_THREAD_INSTAGRAM_DM, asset, v);
		}
	}
	if ((list = json_object_get(entry, "changes")) != NULL) {
		json_array_foreach(list, i, v) {
			if (json_is_object(v))
				one_change(pc, object, asset, entry_ms, v);
			else
				mp_note(pc, "change that is not an object skipped");
		}
	}
	/* Meta's example pages put field/value in the entry itself. */
	if (json_object_get(entry, "field") != NULL && json_object_get(entry, "changes") == NULL)
		one_change(pc, object, asset, entry_ms, entry);
	if (json_object_get(entry, "standby") != NULL)
		mp_note(pc, "standby (another app owns the thread) accepted and ignored");
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
		mp_note(&pc, "dashboard test notification for field %s accepted; nothing stored",
		     mp_name_of(json_object_get(root, "field"), name));
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
		mp_note(&pc, "object %s accepted and ignored", mp_name_of(object, name));
		json_decref(root);
		return true;
	}
	json_array_foreach(entries, i, entry)
		one_entry(&pc, obj, entry);
	json_decref(root);
	return true;
}
