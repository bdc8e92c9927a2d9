/* meta_graph.c - assets, Graph API requests and answers for the meta
 * channel. No host calls: see meta_graph.h. */
#include "meta_graph.h"
#include "../../common/plugin_util.h"
#include "../../common/utf8.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#define MAX_RETRY_AFTER_S 86400       /* a longer wait is capped */
#define MAX_REGAIN_MINUTES 1440

/* ------------------------------------------------------------------------ */
/* Assets                                                                   */
/* ------------------------------------------------------------------------ */

/* An id that can go into a URL path as is. */
static bool id_is_path_safe(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > META_MAX_ID_BYTES)
		return false;
	return strspn(s, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.-") == len;
}

void meta_assets_free(meta_asset_list *list)
{
	for (size_t i = 0; i < list->n; i++) {
		pu_wipe_string(list->items[i].token);
		free(list->items[i].token);
		free(list->items[i].id);
	}
	free(list->items);
	list->items = NULL;
	list->n = 0;
}

const char *meta_assets_token(const meta_asset_list *list, const char *id)
{
	for (size_t i = 0; id != NULL && i < list->n; i++) {
		if (strcmp(list->items[i].id, id) == 0)
			return list->items[i].token;
	}
	return NULL;
}

/* Check one entry and append it. e: borrowed. */
static bool asset_add(meta_asset_list *out, json_t *e, size_t index, const char *id_key,
                      char *err, size_t errlen)
{
	const char *id = json_string_value(json_object_get(e, id_key));
	const char *token = json_string_value(json_object_get(e, "access_token"));

	if (!json_is_object(e) || id == NULL || token == NULL) {
		snprintf(err, errlen, "[%zu] must be an object with string \"%s\" and \"access_token\"",
		         index, id_key);
		return false;
	}
	if (!id_is_path_safe(id)) {
		snprintf(err, errlen, "[%zu].%s must be a Meta id (digits, letters, '_', '.', '-')",
		         index, id_key);
		return false;
	}
	if (token[0] == '\0' || strchr(token, ' ') != NULL || !pu_header_safe(token)) {
		snprintf(err, errlen, "[%zu].access_token must be a non-empty token without spaces",
		         index);
		return false;
	}
	if (meta_assets_token(out, id) != NULL) {
		snprintf(err, errlen, "[%zu].%s: %s is listed twice", index, id_key, id);
		return false;
	}
	out->items[out->n].id = strdup(id);
	out->items[out->n].token = strdup(token);
	out->n++;
	if (out->items[out->n - 1].id == NULL || out->items[out->n - 1].token == NULL) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	return true;
}

bool meta_assets_parse(const char *json, const char *id_key, meta_asset_list *out,
                       char *err, size_t errlen)
{
	json_t *root, *e;
	size_t i;
	bool ok = true;

	memset(out, 0, sizeof(*out));
	if (json == NULL)
		return true;
	root = json_loads(json, 0, NULL);
	if (!json_is_array(root)) {
		json_decref(root);
		snprintf(err, errlen, "must be an array of objects");
		return false;
	}
	out->items = calloc(json_array_size(root) + 1, sizeof(*out->items));
	if (out->items == NULL) {
		json_decref(root);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	json_array_foreach(root, i, e) {
		if (!asset_add(out, e, i, id_key, err, errlen)) {
			ok = false;
			break;
		}
	}
	json_decref(root);
	if (!ok)
		meta_assets_free(out);
	return ok;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

static bool refuse(meta_plan *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool refuse_by(meta_plan *out, const char *rule, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A refusal that is no rule (out of memory): the send may work later. */
static bool refuse(meta_plan *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
	va_end(ap);
	return false;
}

/* A refusal by `rule` (a META_RULE_*): the send can never work as it is. */
static bool refuse_by(meta_plan *out, const char *rule, const char *fmt, ...)
{
	va_list ap;

	out->rule = rule;
	va_start(ap, fmt);
	vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
	va_end(ap);
	return false;
}

/* url = graph_url "/" version "/" node "/" edge (owned by plan). */
static bool set_url(const meta_send_options *opt, meta_plan *out, const char *node,
                    const char *edge)
{
	size_t base = strlen(opt->graph_url);

	while (base > 0 && opt->graph_url[base - 1] == '/')
		base--;   /* "https://graph.facebook.com/" would double the slash */
	size_t len = base + strlen(opt->graph_version) + strlen(node) + strlen(edge) + 4;

	if (!id_is_path_safe(node))
		return refuse_by(out, META_RULE_NOT_SENDABLE, "the id %.64s cannot be used in a Graph API path", node);
	out->url = malloc(len);
	if (out->url == NULL)
		return refuse(out, "out of memory");
	snprintf(out->url, len, "%.*s/%s/%s/%s", (int)base, opt->graph_url, opt->graph_version, node,
	         edge);
	return true;
}

/* The body from a jansson value (consumed, also on failure: so build the
 * body before anything else can fail). */
static bool set_body(meta_plan *out, json_t *body)
{
	if (body == NULL)
		return refuse_by(out, META_RULE_NOT_SENDABLE, "the message cannot be encoded as JSON (invalid UTF-8?)");
	out->body = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(body);
	if (out->body == NULL)
		return refuse(out, "out of memory");
	return true;
}

static bool window_refusal(meta_plan *out, int64_t age_ms, const char *window)
{
	return refuse_by(out, META_RULE_WINDOW, "outside the %s messaging window: the customer last wrote %" PRId64
	              " hours ago", window, (int64_t)(age_ms / META_HOUR_MS));
}

static bool plan_private_reply(const meta_send_options *opt, const parley_outbound_message *msg,
                               int64_t age_ms, meta_plan *out)
{
	if (out->thread.kind != META_THREAD_FACEBOOK_POST &&
	    out->thread.kind != META_THREAD_INSTAGRAM_MEDIA)
		return refuse_by(out, META_RULE_NO_PRIVATE_REPLY, "a private reply answers a public Facebook or Instagram comment; "
		              "this conversation is not a comment thread");
	if (msg->in_reply_to == NULL || msg->in_reply_to[0] == '\0')
		return refuse_by(out, META_RULE_NO_PRIVATE_REPLY, "a private reply needs the comment it answers");
	/* Meta allows one private reply per comment, within 7 days of it. */
	if (age_ms > 7 * META_DAY_MS)
		return refuse_by(out, META_RULE_PRIVATE_REPLY_WINDOW, "outside the 7-day private reply window: the comment was written "
		              "%" PRId64 " days ago", (int64_t)(age_ms / META_DAY_MS));
	out->shape = META_ANSWER_MESSAGE;
	return set_body(out, json_pack("{s:{s:s}, s:{s:s}}",
	                               "recipient", "comment_id", msg->in_reply_to,
	                               "message", "text", msg->text)) &&
	       set_url(opt, out, out->asset_id, "messages");
}

static bool plan_messenger(const meta_send_options *opt, const parley_outbound_message *msg,
                           int64_t age_ms, meta_plan *out)
{
	json_t *body;

	if (age_ms > META_DAY_MS) {
		if (!opt->human_agent_tag)
			return window_refusal(out, age_ms, "24-hour");
		if (age_ms > 7 * META_DAY_MS)
			return window_refusal(out, age_ms, "7-day human agent");
		out->tagged = 1;
	}
	out->shape = META_ANSWER_MESSAGE;
	if (out->tagged)
		body = json_pack("{s:{s:s}, s:s, s:s, s:{s:s}}", "recipient", "id", out->thread.peer,
		                 "messaging_type", "MESSAGE_TAG", "tag", "HUMAN_AGENT",
		                 "message", "text", msg->text);
	else
		body = json_pack("{s:{s:s}, s:s, s:{s:s}}", "recipient", "id", out->thread.peer,
		                 "messaging_type", "RESPONSE", "message", "text", msg->text);
	return set_body(out, body) && set_url(opt, out, out->asset_id, "messages");
}

static bool plan_instagram_dm(const meta_send_options *opt, const parley_outbound_message *msg,
                              int64_t age_ms, meta_plan *out)
{
	if (age_ms > META_DAY_MS)
		return window_refusal(out, age_ms, "24-hour");
	out->shape = META_ANSWER_MESSAGE;
	return set_body(out, json_pack("{s:{s:s}, s:{s:s}}", "recipient", "id", out->thread.peer,
	                               "message", "text", msg->text)) &&
	       set_url(opt, out, out->asset_id, "messages");
}

static bool plan_whatsapp(const meta_send_options *opt, const parley_outbound_message *msg,
                          int64_t age_ms, meta_plan *out)
{
	const char *peer = out->thread.peer;
	/* Phone numbers go in "to"; a business-scoped user id (for users with a
	 * username and no phone number shared) goes in "recipient". */
	const char *to_key = peer[strspn(peer, "0123456789")] == '\0' ? "to" : "recipient";
	json_t *body;

	out->shape = META_ANSWER_WHATSAPP;
	if (age_ms > META_DAY_MS) {
		/* Outside the customer service window only an approved template
		 * may be sent. */
		if (opt->template_name == NULL)
			return refuse_by(out, META_RULE_WINDOW, "outside the 24-hour messaging window: the customer last wrote "
			              "%" PRId64 " hours ago, and no whatsapp_template is configured",
			              (int64_t)(age_ms / META_HOUR_MS));
		out->template_sent = 1;
		body = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:{s:s}}}",
		                 "messaging_product", "whatsapp", "recipient_type", "individual",
		                 to_key, peer, "type", "template",
		                 "template", "name", opt->template_name,
		                 "language", "code", opt->template_language);
		return set_body(out, body) && set_url(opt, out, out->asset_id, "messages");
	}
	body = json_pack("{s:s, s:s, s:s, s:s, s:{s:s}}",
	                 "messaging_product", "whatsapp", "recipient_type", "individual",
	                 to_key, peer, "type", "text", "text", "body", msg->text);
	if (body != NULL && msg->in_reply_to != NULL && msg->in_reply_to[0] != '\0')
		json_object_set_new(body, "context", json_pack("{s:s}", "message_id", msg->in_reply_to));
	return set_body(out, body) && set_url(opt, out, out->asset_id, "messages");
}

static bool plan_comment_reply(const meta_send_options *opt, const parley_outbound_message *msg,
                               meta_plan *out)
{
	const char *target = msg->in_reply_to;
	const char *edge;

	out->shape = META_ANSWER_COMMENT;
	if (out->thread.kind == META_THREAD_FACEBOOK_POST) {
		/* A reply to a comment, or a comment on the post itself. */
		edge = "comments";
		if (target == NULL || target[0] == '\0')
			target = out->thread.peer;
	} else if (target != NULL && target[0] != '\0') {
		edge = "replies";
	} else {
		edge = "comments";
		target = out->thread.peer;
	}
	return set_body(out, json_pack("{s:s}", "message", msg->text)) &&
	       set_url(opt, out, target, edge);
}

bool meta_plan_send(const meta_send_options *opt, const parley_outbound_message *msg,
                    meta_plan *out)
{
	parley_send_kind kind = PARLEY_SEND_MESSAGE;
	int64_t last = 0, age_ms = 0;

	memset(out, 0, sizeof(*out));
	if (PARLEY_HAS_FIELD(msg, parley_outbound_message, kind))
		kind = msg->kind;
	if (PARLEY_HAS_FIELD(msg, parley_outbound_message, last_inbound_ms))
		last = msg->last_inbound_ms;
	if (!meta_thread_parse(msg->thread_id, &out->thread))
		return refuse_by(out, META_RULE_NOT_SENDABLE, "the conversation has no thread id of the meta channel");
	out->asset_id = out->thread.asset;
	if (msg->text == NULL || msg->text[0] == '\0')
		return refuse_by(out, META_RULE_NOT_SENDABLE, "there is no text to send");
	/* 0 = unknown: then no window is enforced here (Meta still checks). */
	if (last > 0 && opt->now_ms > last)
		age_ms = opt->now_ms - last;

	if (kind == PARLEY_SEND_PRIVATE_REPLY)
		return plan_private_reply(opt, msg, age_ms, out);
	switch (out->thread.kind) {
	case META_THREAD_MESSENGER:
		return plan_messenger(opt, msg, age_ms, out);
	case META_THREAD_INSTAGRAM_DM:
		return plan_instagram_dm(opt, msg, age_ms, out);
	case META_THREAD_WHATSAPP:
		return plan_whatsapp(opt, msg, age_ms, out);
	case META_THREAD_FACEBOOK_POST:
	case META_THREAD_INSTAGRAM_MEDIA:
		return plan_comment_reply(opt, msg, out);
	default:
		return refuse_by(out, META_RULE_NOT_SENDABLE, "the conversation has no thread id of the meta channel");
	}
}

void meta_plan_free(meta_plan *plan)
{
	free(plan->url);
	free(plan->body);
	plan->url = NULL;
	plan->body = NULL;
}

bool meta_private_thread(const meta_plan *plan, const char *recipient, char *out, size_t outlen)
{
	meta_thread_kind kind = plan->thread.kind == META_THREAD_FACEBOOK_POST
	                        ? META_THREAD_MESSENGER : META_THREAD_INSTAGRAM_DM;

	return meta_thread_format(kind, plan->thread.asset, recipient, out, outlen);
}

/* ------------------------------------------------------------------------ */
/* Answers                                                                  */
/* ------------------------------------------------------------------------ */

static void copy_id(char *out, const char *s)
{
	if (s != NULL && strlen(s) <= META_MAX_ID_BYTES)
		strcpy(out, s);
}

/* Graph's rate-limit codes (HTTP 400, not 429) and WhatsApp's throughput
 * limits. */
static bool is_throttle_code(int64_t code)
{
	return code == 4 || code == 17 || code == 32 || code == 613 ||
	       (code >= 80001 && code <= 80009) || code == 130429 || code == 131056;
}

/* The largest estimated_time_to_regain_access (minutes) in an
 * X-Business-Use-Case-Usage header: {"<id>":[{"type":..,
 * "estimated_time_to_regain_access":N},...],...}. */
static int64_t regain_minutes(const char *header)
{
	json_t *root, *list, *item;
	const char *key;
	size_t i;
	int64_t best = 0;

	if (header == NULL || (root = json_loads(header, 0, NULL)) == NULL)
		return 0;
	json_object_foreach(root, key, list) {
		json_array_foreach(list, i, item) {
			json_t *m = json_object_get(item, "estimated_time_to_regain_access");
			if (json_is_integer(m) && json_integer_value(m) > best)
				best = json_integer_value(m);
		}
	}
	json_decref(root);
	return best > MAX_REGAIN_MINUTES ? MAX_REGAIN_MINUTES : best;
}

static void take_ids(json_t *root, meta_answer_shape shape, meta_result *out)
{
	switch (shape) {
	case META_ANSWER_MESSAGE:
		copy_id(out->external_id, json_string_value(json_object_get(root, "message_id")));
		copy_id(out->recipient_id, json_string_value(json_object_get(root, "recipient_id")));
		break;
	case META_ANSWER_COMMENT:
		copy_id(out->external_id, json_string_value(json_object_get(root, "id")));
		break;
	case META_ANSWER_WHATSAPP:
		copy_id(out->external_id, json_string_value(json_object_get(
			json_array_get(json_object_get(root, "messages"), 0), "id")));
		break;
	}
}

/* "message (code N, subcode M)" of a Graph error object, or "" when none. */
static void describe_error(json_t *error, char *out, size_t outlen)
{
	const char *message = json_string_value(json_object_get(error, "message"));
	json_t *code = json_object_get(error, "code");
	json_t *sub = json_object_get(error, "error_subcode");
	char clean[300];

	out[0] = '\0';
	if (message == NULL)
		return;
	pu_utf8_line(message, clean, sizeof(clean));
	if (json_is_integer(code) && json_is_integer(sub))
		snprintf(out, outlen, "%s (code %" PRId64 ", subcode %" PRId64 ")", clean,
		         (int64_t)json_integer_value(code), (int64_t)json_integer_value(sub));
	else if (json_is_integer(code))
		snprintf(out, outlen, "%s (code %" PRId64 ")", clean, (int64_t)json_integer_value(code));
	else
		snprintf(out, outlen, "%s", clean);
}

void meta_classify(const meta_answer *a, meta_answer_shape shape, meta_result *out)
{
	json_t *root = NULL, *error;
	char detail[400];
	int64_t code = 0, wait_s;
	bool transient;

	memset(out, 0, sizeof(*out));
	if (a->status == 0) {
		char clean[200];
		pu_utf8_line(a->transport_error != NULL ? a->transport_error : "transport error",
		             clean, sizeof(clean));
		out->outcome = PARLEY_RETRY;
		snprintf(out->reason, sizeof(out->reason), "Graph API call failed: %s", clean);
		return;
	}
	if (a->body != NULL && a->body_len > 0 && a->body_len <= META_MAX_RESPONSE_BYTES)
		root = json_loadb((const char *)a->body, a->body_len, 0, NULL);
	if (a->status >= 200 && a->status <= 299) {
		out->outcome = PARLEY_OK;
		take_ids(root, shape, out);
		json_decref(root);
		return;
	}
	error = json_object_get(root, "error");
	if (json_is_integer(json_object_get(error, "code")))
		code = json_integer_value(json_object_get(error, "code"));
	describe_error(error, detail, sizeof(detail));
	transient = a->status == 429 || a->status >= 500 || is_throttle_code(code) ||
	            json_is_true(json_object_get(error, "is_transient"));
	json_decref(root);

	if (transient) {
		out->outcome = PARLEY_RETRY;
		wait_s = pu_retry_after_seconds(a->retry_after, MAX_RETRY_AFTER_S);
		if (wait_s == 0)
			wait_s = regain_minutes(a->buc_usage) * 60;
		out->retry_at_ms = wait_s > 0 ? a->now_ms + wait_s * 1000 : 0;
		if (is_throttle_code(code) || a->status == 429)
			snprintf(out->reason, sizeof(out->reason), "Meta rate limit, will retry: %s",
			         detail[0] != '\0' ? detail : "HTTP 429");
		else
			snprintf(out->reason, sizeof(out->reason), "Graph API answered %ld%s%s", a->status,
			         detail[0] != '\0' ? ": " : "", detail);
		return;
	}
	out->outcome = PARLEY_FAIL;
	if (detail[0] != '\0')
		snprintf(out->reason, sizeof(out->reason), "Meta refused the message: %s", detail);
	else
		snprintf(out->reason, sizeof(out->reason), "Meta refused the message: Graph API "
		         "answered %ld", a->status);
}
