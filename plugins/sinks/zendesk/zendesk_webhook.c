/* zendesk_webhook.c - Zendesk's event-subscription webhooks: the
 * signature over timestamp and body, and the one ticket event a comment or
 * status change becomes. Pure (see zendesk_api.h). */
#include "zendesk_api.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

#include "../../common/plugin_util.h"

/* ------------------------------------------------------------------------ */
/* Webhooks                                                                 */
/* ------------------------------------------------------------------------ */

bool zd_verify_signature(const char *signature, const char *timestamp,
                         const void *secret, size_t secret_len,
                         const void *body, size_t len, zd_hmac_fn hmac, zd_equals_fn equals)
{
	unsigned char mac[32];
	size_t tl;
	char *data, *expected;
	bool ok;

	if (signature == NULL || timestamp == NULL || signature[0] == '\0' || timestamp[0] == '\0')
		return false;
	tl = strlen(timestamp);
	data = malloc(tl + len + 1);
	if (data == NULL)
		return false;
	memcpy(data, timestamp, tl);
	if (len > 0)
		memcpy(data + tl, body, len);
	hmac(secret, secret_len, data, tl + len, mac);
	free(data);
	expected = zd_base64(mac, sizeof(mac));
	if (expected == NULL)
		return false;
	ok = equals(expected, strlen(expected), signature, strlen(signature)) == 1;
	free(expected);
	return ok;
}


/* Zendesk's status names (any case) as Parley's; 0 for others. */
static parley_ticket_status map_status(const char *s)
{
	if (s == NULL)
		return 0;
	if (strcasecmp(s, "new") == 0 || strcasecmp(s, "open") == 0 || strcasecmp(s, "hold") == 0)
		return PARLEY_TICKET_OPEN;
	if (strcasecmp(s, "pending") == 0)
		return PARLEY_TICKET_PENDING;
	if (strcasecmp(s, "solved") == 0)
		return PARLEY_TICKET_SOLVED;
	if (strcasecmp(s, "closed") == 0)
		return PARLEY_TICKET_CLOSED;
	return 0;
}

#define COMMENT_TYPE "zen:event-type:ticket.comment_added"
#define STATUS_TYPE "zen:event-type:ticket.status_changed"

/* Fill ev from a comment_added event. Strings point into root or key. */
static zd_webhook_status comment_event(json_t *root, const char *api_user_id,
                                       parley_ticket_event *ev,
                                       char key[64], char comment_id[ZD_ID_BYTES],
                                       char *what, size_t whatlen)
{
	json_t *detail = json_object_get(root, "detail");
	json_t *comment = json_object_get(json_object_get(root, "event"), "comment");
	json_t *author = json_object_get(comment, "author");
	json_t *pub = json_object_get(comment, "is_public");
	const char *text = json_string_value(json_object_get(comment, "body"));
	char author_id[ZD_ID_BYTES] = "", requester[ZD_ID_BYTES] = "";

	if (!json_is_object(comment) || !zd_json_id(json_object_get(comment, "id"), comment_id) ||
	    text == NULL || !json_is_boolean(pub)) {
		snprintf(what, whatlen, "event.comment needs an id, a body and is_public");
		return ZD_WEBHOOK_BAD;
	}
	if (text[0] == '\0') {
		snprintf(what, whatlen, "comment %s has no text", comment_id);
		return ZD_WEBHOOK_IGNORED;
	}
	zd_json_id(json_object_get(author, "id"), author_id);
	zd_json_id(json_object_get(detail, "requester_id"), requester);
	snprintf(key, 64, "comment:%s", comment_id);
	ev->type = PARLEY_TICKET_COMMENT;
	ev->comment_id = comment_id;
	ev->is_public = json_is_true(pub);
	/* Parley posts the customer's messages as the requester; anything by
	 * the API user is Parley's too. Neither goes back to the customer. */
	ev->from_parley = author_id[0] != '\0' &&
	                  ((requester[0] != '\0' && strcmp(author_id, requester) == 0) ||
	                   (api_user_id != NULL && strcmp(author_id, api_user_id) == 0));
	ev->author_name = json_string_value(json_object_get(author, "name"));
	ev->text = text;
	return ZD_WEBHOOK_EVENT;
}

zd_webhook_status zd_parse_webhook(const unsigned char *body, size_t len,
                                   const char *api_user_id, zd_emit_fn emit, void *ctx,
                                   char *what, size_t whatlen)
{
	json_error_t jerr;
	json_t *root;
	const char *type, *event_id, *time_text;
	char ticket[ZD_ID_BYTES], comment_id[ZD_ID_BYTES], key[128];
	parley_ticket_event ev;
	zd_webhook_status st;

	what[0] = '\0';
	/* JSON has no raw NUL byte, yet jansson skips one after a number or a
	 * literal. The body itself goes to the core as the event's evidence,
	 * so one the core cannot hold as a string is refused here. */
	if (body != NULL && memchr(body, '\0', len) != NULL) {
		snprintf(what, whatlen, "the body holds a NUL byte: not JSON");
		return ZD_WEBHOOK_BAD;
	}
	root = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(root)) {
		snprintf(what, whatlen, "the body is not a JSON object");
		json_decref(root);
		return ZD_WEBHOOK_BAD;
	}
	type = json_string_value(json_object_get(root, "type"));
	if (type == NULL) {
		snprintf(what, whatlen, "no \"type\": not a Zendesk event webhook");
		json_decref(root);
		return ZD_WEBHOOK_BAD;
	}
	if (strcmp(type, COMMENT_TYPE) != 0 && strcmp(type, STATUS_TYPE) != 0) {
		pu_excerpt(type, strlen(type), 100, key, sizeof(key));
		snprintf(what, whatlen, "event type %s is not used", key);
		json_decref(root);
		return ZD_WEBHOOK_IGNORED;
	}
	if (!zd_json_id(json_object_get(json_object_get(root, "detail"), "id"), ticket)) {
		snprintf(what, whatlen, "detail.id (the ticket) is missing");
		json_decref(root);
		return ZD_WEBHOOK_BAD;
	}
	event_id = json_string_value(json_object_get(root, "id"));
	time_text = json_string_value(json_object_get(root, "time"));
	memset(&ev, 0, sizeof(ev));
	ev.size = sizeof(ev);
	ev.external_ticket_id = ticket;
	ev.time_ms = zd_parse_time(time_text);
	ev.raw_json = (const char *)body;
	ev.raw_json_len = len;
	if (strcmp(type, COMMENT_TYPE) == 0) {
		char ckey[64];
		st = comment_event(root, api_user_id, &ev, ckey, comment_id, what, whatlen);
		snprintf(key, sizeof(key), "%s", ckey);
	} else {
		const char *current = json_string_value(
			json_object_get(json_object_get(root, "event"), "current"));
		ev.type = PARLEY_TICKET_STATUS;
		ev.status = map_status(current);
		if (current == NULL) {
			snprintf(what, whatlen, "event.current (the status) is missing");
			st = ZD_WEBHOOK_BAD;
		} else if (ev.status == 0) {
			pu_excerpt(current, strlen(current), 40, key, sizeof(key));
			snprintf(what, whatlen, "status %s is not one Parley follows", key);
			st = ZD_WEBHOOK_IGNORED;
		} else if (event_id != NULL && event_id[0] != '\0' && strlen(event_id) <= 100 &&
		           pu_header_safe(event_id)) {
			snprintf(key, sizeof(key), "status:%s", event_id);
			st = ZD_WEBHOOK_EVENT;
		} else {
			snprintf(key, sizeof(key), "status:%s:%d:%lld", ticket, (int)ev.status,
			         (long long)ev.time_ms);
			st = ZD_WEBHOOK_EVENT;
		}
	}
	if (st == ZD_WEBHOOK_EVENT) {
		ev.dedupe_key = key;
		if (emit(ctx, &ev) != 0) {
			snprintf(what, whatlen, "the event was refused");
			st = ZD_WEBHOOK_REFUSED;
		}
	}
	json_decref(root);
	return st;
}
