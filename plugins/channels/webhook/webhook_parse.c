/* webhook_parse.c - signature checks, body validation and RFC 3339 times for
 * the webhook channel. No host calls: see webhook_parse.h. */
#include "webhook_parse.h"
#include "../../common/plugin_util.h"
#include "../../common/rfc3339.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

/* ------------------------------------------------------------------------ */
/* Signatures                                                               */
/* ------------------------------------------------------------------------ */

webhook_sig_result webhook_verify_signature(const char *header,
                                            const void *secret, size_t secret_len,
                                            const void *body, size_t body_len,
                                            webhook_hmac_fn hmac, webhook_equals_fn equals)
{
	const size_t prefix_len = sizeof(WEBHOOK_SIGNATURE_PREFIX) - 1;
	unsigned char given[32], expected[32];

	if (header == NULL)
		return WEBHOOK_SIG_MISSING;
	/* The header is not secret, so its shape may be checked with ordinary
	 * branches; only the comparison with the expected MAC must not leak. */
	if (strlen(header) != WEBHOOK_SIGNATURE_LEN ||
	    strncmp(header, WEBHOOK_SIGNATURE_PREFIX, prefix_len) != 0)
		return WEBHOOK_SIG_BAD;
	if (!pu_hex_decode(header + prefix_len, given, sizeof(given)))
		return WEBHOOK_SIG_BAD;
	hmac(secret, secret_len, body, body_len, expected);
	return equals(given, sizeof(given), expected, sizeof(expected)) ? WEBHOOK_SIG_OK
	                                                                : WEBHOOK_SIG_BAD;
}

void webhook_sign(const void *secret, size_t secret_len, const void *body, size_t body_len,
                  webhook_hmac_fn hmac, char out[WEBHOOK_SIGNATURE_LEN + 1])
{
	const size_t prefix_len = sizeof(WEBHOOK_SIGNATURE_PREFIX) - 1;
	unsigned char mac[32];

	hmac(secret, secret_len, body, body_len, mac);
	memcpy(out, WEBHOOK_SIGNATURE_PREFIX, prefix_len);
	pu_hex_encode(mac, sizeof(mac), out + prefix_len);
}

/* ------------------------------------------------------------------------ */
/* Body validation                                                          */
/* ------------------------------------------------------------------------ */

/* One validated item. Strings are borrowed from the parsed JSON tree. */
typedef struct wh_item {
	json_t *obj;
	parley_event_type type;
	const char *id;
	const char *author_id, *author_name, *author_handle, *author_email, *author_phone;
	int email_verified, phone_verified;
	const char *text;
	parley_visibility visibility;
	const char *thread;
	const char *in_reply_to;
	const char *created_at;
	int64_t time_ms;
	int from_brand;
} wh_item;

static void set_error(webhook_error *err, int status, const char *code)
{
	err->http_status = status;
	err->code = code;
	err->detail[0] = '\0';
}

/* "[3].author.id: required" (prefix is "" for a single object). */
static bool field_error(webhook_error *err, const char *prefix, const char *field,
                        const char *reason)
{
	set_error(err, 400, "invalid_field");
	snprintf(err->detail, sizeof(err->detail), "%s%s: %s", prefix, field, reason);
	return false;
}

/* JSON null counts as absent: many serializers write null for unset fields. */
static json_t *member(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_null(v) ? NULL : v;
}

/* An optional (or, with `required`, mandatory) string of at most max bytes.
 * label is the field's path below the item, e.g. "author.id". */
static bool get_string(json_t *obj, const char *key, const char *prefix, const char *label,
                       bool required, bool nonempty, size_t max, const char **out,
                       webhook_error *err)
{
	json_t *v = member(obj, key);
	char reason[48];

	*out = NULL;
	if (v == NULL)
		return required ? field_error(err, prefix, label, "required") : true;
	if (!json_is_string(v))
		return field_error(err, prefix, label, "expected a string");
	if (nonempty && json_string_length(v) == 0)
		return field_error(err, prefix, label, "must not be empty");
	if (json_string_length(v) > max) {
		snprintf(reason, sizeof(reason), "longer than %zu bytes", max);
		return field_error(err, prefix, label, reason);
	}
	*out = json_string_value(v);
	return true;
}

static bool get_boolean(json_t *obj, const char *key, const char *prefix, const char *label,
                        int *out, webhook_error *err)
{
	json_t *v = member(obj, key);

	*out = 0;
	if (v == NULL)
		return true;
	if (!json_is_boolean(v))
		return field_error(err, prefix, label, "expected a boolean");
	*out = json_is_true(v);
	return true;
}

static bool validate_author(json_t *obj, const char *prefix, bool required, wh_item *it,
                            webhook_error *err)
{
	json_t *author = member(obj, "author");

	if (author == NULL)
		return required ? field_error(err, prefix, "author", "required") : true;
	if (!json_is_object(author))
		return field_error(err, prefix, "author", "expected an object");
	return get_string(author, "id", prefix, "author.id", true, true, WEBHOOK_MAX_ID_BYTES,
	                  &it->author_id, err) &&
	       get_string(author, "name", prefix, "author.name", false, false,
	                  WEBHOOK_MAX_PROFILE_BYTES, &it->author_name, err) &&
	       get_string(author, "handle", prefix, "author.handle", false, false,
	                  WEBHOOK_MAX_PROFILE_BYTES, &it->author_handle, err) &&
	       get_string(author, "email", prefix, "author.email", false, false,
	                  WEBHOOK_MAX_PROFILE_BYTES, &it->author_email, err) &&
	       get_string(author, "phone", prefix, "author.phone", false, false,
	                  WEBHOOK_MAX_PROFILE_BYTES, &it->author_phone, err) &&
	       get_boolean(author, "email_verified", prefix, "author.email_verified",
	                   &it->email_verified, err) &&
	       get_boolean(author, "phone_verified", prefix, "author.phone_verified",
	                   &it->phone_verified, err);
}

static bool validate_item(json_t *obj, const char *prefix, wh_item *it, webhook_error *err)
{
	const char *type, *visibility;
	bool is_message;

	memset(it, 0, sizeof(*it));
	it->obj = obj;
	if (!json_is_object(obj)) {
		/* Only reachable for array elements: jansson itself insists on an
		 * object or array at the top. prefix is "[i]."; drop the dot. */
		set_error(err, 400, "invalid_field");
		snprintf(err->detail, sizeof(err->detail), "%.*s: expected an object",
		         (int)(strlen(prefix) - 1), prefix);
		return false;
	}

	if (!get_string(obj, "id", prefix, "id", true, true, WEBHOOK_MAX_ID_BYTES, &it->id, err) ||
	    !get_string(obj, "type", prefix, "type", false, false, 16, &type, err))
		return false;
	if (type == NULL || strcmp(type, "message") == 0)
		it->type = PARLEY_EVENT_MESSAGE_CREATED;
	else if (strcmp(type, "edit") == 0)
		it->type = PARLEY_EVENT_MESSAGE_EDITED;
	else if (strcmp(type, "delete") == 0)
		it->type = PARLEY_EVENT_MESSAGE_DELETED;
	else
		return field_error(err, prefix, "type", "must be \"message\", \"edit\" or \"delete\"");
	is_message = it->type == PARLEY_EVENT_MESSAGE_CREATED;

	if (!validate_author(obj, prefix, is_message, it, err) ||
	    !get_string(obj, "text", prefix, "text", it->type != PARLEY_EVENT_MESSAGE_DELETED,
	                false, WEBHOOK_MAX_TEXT_BYTES, &it->text, err) ||
	    !get_string(obj, "visibility", prefix, "visibility", false, false, 16, &visibility,
	                err))
		return false;
	if (visibility == NULL || strcmp(visibility, "private") == 0)
		it->visibility = PARLEY_VISIBILITY_PRIVATE;
	else if (strcmp(visibility, "public") == 0)
		it->visibility = PARLEY_VISIBILITY_PUBLIC;
	else
		return field_error(err, prefix, "visibility", "must be \"public\" or \"private\"");

	if (!get_string(obj, "thread", prefix, "thread", false, true, WEBHOOK_MAX_ID_BYTES,
	                &it->thread, err) ||
	    !get_string(obj, "in_reply_to", prefix, "in_reply_to", false, true,
	                WEBHOOK_MAX_ID_BYTES, &it->in_reply_to, err) ||
	    !get_string(obj, "created_at", prefix, "created_at", !is_message, false, 64,
	                &it->created_at, err) ||
	    !get_boolean(obj, "from_brand", prefix, "from_brand", &it->from_brand, err))
		return false;
	if (it->created_at != NULL && !pu_rfc3339_ms(it->created_at, &it->time_ms))
		return field_error(err, prefix, "created_at",
		                   "not an RFC 3339 date-time (e.g. 2026-11-23T10:00:00Z)");
	return true;
}

/* a + b + c + d in a new string (owned by the caller; NULL when out of memory). */
static char *concat4(const char *a, const char *b, const char *c, const char *d)
{
	size_t la = strlen(a), lb = strlen(b), lc = strlen(c), ld = strlen(d);
	char *s = malloc(la + lb + lc + ld + 1);

	if (s == NULL)
		return NULL;
	memcpy(s, a, la);
	memcpy(s + la, b, lb);
	memcpy(s + la + lb, c, lc);
	memcpy(s + la + lb + lc, d, ld + 1);
	return s;
}

/* Build the event for one validated item and hand it to fn. The strings the
 * event needs beyond the JSON tree are allocated here and freed after fn. */
static bool emit_item(const wh_item *it, size_t index, webhook_item_fn fn, void *arg,
                      webhook_error *err)
{
	parley_event ev;
	char *dedupe = NULL, *thread = NULL, *raw;
	bool ok;

	raw = json_dumps(it->obj, JSON_COMPACT);
	if (raw == NULL)
		goto out_of_memory;

	memset(&ev, 0, sizeof(ev));
	ev.size = sizeof(ev);
	ev.type = it->type;
	ev.external_id = it->id;
	ev.author.external_id = it->author_id;
	ev.author.display_name = it->author_name;
	ev.author.handle = it->author_handle;
	ev.author.email = it->author_email;
	ev.author.phone = it->author_phone;
	ev.author.email_verified = it->email_verified;
	ev.author.phone_verified = it->phone_verified;
	ev.visibility = it->visibility;
	ev.in_reply_to = it->in_reply_to;
	ev.platform_time_ms = it->time_ms;
	ev.from_brand = it->from_brand;
	ev.raw_json = raw;
	ev.raw_json_len = strlen(raw);
	ev.thread_id = it->thread;

	if (it->type == PARLEY_EVENT_MESSAGE_CREATED) {
		ev.dedupe_key = it->id;
		ev.text = it->text;
		if (ev.thread_id == NULL) {
			/* A private message belongs to the author's one chat; a public
			 * one without a thread starts its own. */
			if (it->visibility == PARLEY_VISIBILITY_PRIVATE) {
				thread = concat4("dm:", it->author_id, "", "");
				if (thread == NULL)
					goto out_of_memory;
				ev.thread_id = thread;
			} else {
				ev.thread_id = it->id;
			}
		}
	} else {
		/* The same edit or deletion replayed keeps its key; a later edit
		 * of the same message (another created_at) is a new event. */
		const char *what = it->type == PARLEY_EVENT_MESSAGE_EDITED ? "edit:" : "delete:";
		dedupe = concat4(what, it->id, ":", it->created_at);
		if (dedupe == NULL)
			goto out_of_memory;
		ev.dedupe_key = dedupe;
		ev.text = it->type == PARLEY_EVENT_MESSAGE_EDITED ? it->text : NULL;
	}

	ok = fn(arg, index, &ev);
	if (!ok) {
		set_error(err, 400, "event_rejected");
		snprintf(err->detail, sizeof(err->detail), "item %zu was refused by the core", index);
	}
	free(dedupe);
	free(thread);
	free(raw);
	return ok;

out_of_memory:
	free(dedupe);
	free(thread);
	free(raw);
	set_error(err, 500, "internal_error");
	snprintf(err->detail, sizeof(err->detail), "out of memory");
	return false;
}

bool webhook_parse(const void *body, size_t len, webhook_item_fn fn, void *arg,
                   size_t *n_items, webhook_error *err)
{
	json_error_t jerr;
	json_t *root;
	wh_item single, *items = &single;
	size_t n;
	bool ok = false;

	*n_items = 0;
	/* Duplicate keys would let two readers of one signed body disagree on
	 * what it says; refuse them. */
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		set_error(err, 400, "invalid_json");
		snprintf(err->detail, sizeof(err->detail), "line %d column %d: %s", jerr.line,
		         jerr.column, jerr.text);
		return false;
	}

	if (json_is_array(root)) {
		n = json_array_size(root);
		if (n == 0) {
			set_error(err, 400, "empty_batch");
			snprintf(err->detail, sizeof(err->detail), "the array has no items");
			goto done;
		}
		if (n > WEBHOOK_MAX_ITEMS) {
			set_error(err, 413, "batch_too_large");
			snprintf(err->detail, sizeof(err->detail),
			         "%zu items; at most %d per request", n, WEBHOOK_MAX_ITEMS);
			goto done;
		}
		items = calloc(n, sizeof(*items));
		if (items == NULL) {
			set_error(err, 500, "internal_error");
			snprintf(err->detail, sizeof(err->detail), "out of memory");
			goto done;
		}
		for (size_t i = 0; i < n; i++) {
			char prefix[32];
			snprintf(prefix, sizeof(prefix), "[%zu].", i);
			if (!validate_item(json_array_get(root, i), prefix, &items[i], err))
				goto done;
		}
	} else {
		n = 1;
		if (!validate_item(root, "", &single, err))
			goto done;
	}

	/* Every item is valid: only now is anything handed out. */
	for (size_t i = 0; i < n; i++) {
		if (!emit_item(&items[i], i, fn, arg, err))
			goto done;
	}
	*n_items = n;
	ok = true;

done:
	if (items != &single)
		free(items);
	json_decref(root);
	return ok;
}
