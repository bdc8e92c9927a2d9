/* webhook.c - the "webhook" channel: the brand's own site or app, or anything
 * else that can POST signed JSON.
 *
 * Inbound:  POST /webhooks/{instance}, signed with X-Parley-Signature
 *           (HMAC-SHA256 of the raw body with the shared secret); one message
 *           object or an array of them. See docs/PLUGINS.md, "Shipped
 *           plugins: webhook", for the wire format.
 * Outbound: replies are POSTed, signed the same way, to callback_url.
 *
 * This file is the glue to the host table; the pure parsing and signature
 * code is in webhook_parse.c. Like any third-party plugin it uses only
 * parley/parley.h and jansson. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

#include "parley/parley.h"
#include "../../common/plugin_util.h"
#include "../../common/instance.h"
#include "webhook_parse.h"

#define WEBHOOK_VERSION "0.1.0"
#define WEBHOOK_MAX_TIMEOUT_MS 600000
#define WEBHOOK_MAX_RETRY_AFTER_S 86400   /* a larger Retry-After is capped */
#define WEBHOOK_REASON_BODY_BYTES 200     /* body excerpt in a FAIL reason */
#define WEBHOOK_MAX_EXTERNAL_ID 256

/* One instance's settings, filled and checked by the core from the table
 * below (ABI 1.3). Every field is owned by the core; see create/reload for
 * how long a struct lives. */
typedef struct webhook_settings {
	const char *secret;        /* never empty; the core wipes it when freed */
	const char *callback_url;  /* NULL: outbound sends fail */
	int64_t callback_timeout_ms;
	int tls_verify;
} webhook_settings;

typedef struct webhook_channel {
	const parley_host *host;       /* owned by the core; valid until destroy */
	parley_instance *inst;         /* owned by the core; valid until destroy */
	webhook_settings cfg;          /* the core's struct, copied by the skeleton; its
	                                * strings stay the core's until the next reload */
} webhook_channel;

/* One outbound send waiting for its HTTP answer. */
typedef struct webhook_send_ctx {
	webhook_channel *ch;       /* borrowed: the core runs no callback after destroy */
	parley_delivery *d;        /* owned by the core until delivery_complete */
	bool private_reply;        /* a "move to private" send: the answer may name the chat */
} webhook_send_ctx;

#define WS(field) offsetof(webhook_settings, field)
#define WEBHOOK_RELOAD PARLEY_SETTING_FLAG_RELOADABLE

static const parley_setting webhook_settings_table[] = {
	{ .name = "secret", .type = PARLEY_SETTING_SECRET,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | WEBHOOK_RELOAD, .min = 1, .max = INT64_MAX,
	  .offset = WS(secret),
	  .description = "shared secret for X-Parley-Signature (HMAC-SHA256), both directions" },
	{ .name = "callback_url", .type = PARLEY_SETTING_URL, .flags = WEBHOOK_RELOAD,
	  .offset = WS(callback_url),
	  .description = "http(s) URL replies are POSTed to; without it outbound sends fail" },
	{ .name = "callback_timeout_ms", .type = PARLEY_SETTING_INTEGER, .flags = WEBHOOK_RELOAD,
	  .default_value = "10000", .min = 1, .max = WEBHOOK_MAX_TIMEOUT_MS,
	  .offset = WS(callback_timeout_ms),
	  .description = "whole-request limit for a callback POST" },
	{ .name = "tls_verify", .type = PARLEY_SETTING_BOOLEAN, .flags = WEBHOOK_RELOAD,
	  .default_value = "true", .offset = WS(tls_verify),
	  .description = "verify the callback's TLS certificate (false for tests only)" },
};

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

/* The URL itself is not logged: it may carry credentials. */
static void settings_announce(void *self)
{
	const webhook_channel *ch = self;

	if (ch->cfg.callback_url == NULL)
		ch->host->log(ch->inst, PARLEY_LOG_INFO, "outbound sends are disabled (no callback_url)");
	else if (!ch->cfg.tls_verify)
		ch->host->log(ch->inst, PARLEY_LOG_WARN,
		              "tls_verify is false: callback certificates are not checked");
}

/* The core fills and checks the settings from the table above; a reload
 * swaps them at once: in-flight sends hold no pointer into them (the core
 * copied each call). */
static const pu_instance_class webhook_class = {
	PU_INSTANCE_LAYOUT(webhook_channel, cfg),
	.host_needs = PU_HOST_NEEDS(config_settings),
	.too_old = "this parleyd is too old for the webhook channel",
	.announce = settings_announce,
};

PU_INSTANCE_FUNCTIONS(webhook, webhook_class)

/* ------------------------------------------------------------------------ */
/* Inbound                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct webhook_emit_ctx {
	const parley_host *host;
	parley_request *req;
} webhook_emit_ctx;

/* ev: borrowed; request_emit copies it. */
static bool webhook_emit_one(void *arg, size_t index, const parley_event *ev)
{
	webhook_emit_ctx *ctx = arg;

	(void)index;
	return ctx->host->request_emit(ctx->req, ev) == 0;
}

/* req: owned by the core; answered exactly once below. */
static void webhook_handle_request(void *self, parley_request *req)
{
	webhook_channel *ch = self;
	const parley_host *host = ch->host;
	const char *subpath = host->request_subpath(req);
	const unsigned char *body;
	size_t len = 0, accepted = 0;
	webhook_error err;
	webhook_emit_ctx ctx = { host, req };
	char answer[48];
	int n;

	if (subpath != NULL && subpath[0] != '\0' && strcmp(subpath, "/") != 0) {
		host->respond_error(req, 404, "not_found", "POST to the instance's URL itself");
		return;
	}
	if (strcmp(host->request_method(req), "POST") != 0) {
		host->respond_error(req, 405, "method_not_allowed", "use POST");
		return;
	}

	/* The signature covers the bytes as sent: verify before parsing, so
	 * nothing unauthenticated reaches the JSON parser. */
	body = host->request_body(req, &len);
	if (body == NULL) {
		body = (const unsigned char *)"";
		len = 0;
	}
	switch (webhook_verify_signature(host->request_header(req, "X-Parley-Signature"),
	                                 ch->cfg.secret, strlen(ch->cfg.secret), body, len,
	                                 host->hmac_sha256, host->secure_equals)) {
	case WEBHOOK_SIG_OK:
		break;
	case WEBHOOK_SIG_MISSING:
		host->counter_add(ch->inst, "webhook_rejected_total", 1);
		host->respond_error(req, 401, "missing_signature",
		                    "the X-Parley-Signature header is required");
		return;
	case WEBHOOK_SIG_BAD:
	default:
		host->counter_add(ch->inst, "webhook_rejected_total", 1);
		host->log(ch->inst, PARLEY_LOG_DEBUG, "request with a bad signature refused");
		host->respond_error(req, 401, "bad_signature",
		                    "X-Parley-Signature must be sha256=<hex HMAC-SHA256 of the body>");
		return;
	}

	if (!webhook_parse(body, len, webhook_emit_one, &ctx, &accepted, &err)) {
		/* Anything emitted before a refusal is discarded by the core,
		 * because the answer is not a 2xx. */
		host->counter_add(ch->inst, "webhook_rejected_total", 1);
		host->respond_error(req, err.http_status, err.code, err.detail);
		return;
	}

	host->counter_add(ch->inst, "webhook_events_total", accepted);
	n = snprintf(answer, sizeof(answer), "{\"accepted\":%zu}", accepted);
	host->respond(req, 200, "application/json", answer, (size_t)n);
}

/* ------------------------------------------------------------------------ */
/* Outbound                                                                 */
/* ------------------------------------------------------------------------ */

/* root[key] when it is a usable id string, else NULL. Borrowed from root. */
static const char *id_field(json_t *root, const char *key)
{
	json_t *v = json_object_get(root, key);
	if (json_is_string(v) && json_string_length(v) > 0 &&
	    json_string_length(v) <= WEBHOOK_MAX_EXTERNAL_ID)
		return json_string_value(v);
	return NULL;
}

/* If the callback's 2xx answer is a JSON object with a string "id", that is
 * the message's id on the brand's side. For a private reply ("move to
 * private") it may also name the private chat ("thread") and the
 * customer's id in it ("recipient_id"). body: borrowed. */
static void take_external_id(webhook_send_ctx *ctx, const unsigned char *body, size_t len)
{
	const parley_host *host = ctx->ch->host;
	const char *v;
	json_t *root;

	if (body == NULL || len == 0)
		return;
	root = json_loadb((const char *)body, len, 0, NULL);
	if (root == NULL)
		return;
	if ((v = id_field(root, "id")) != NULL)
		host->delivery_set_external_id(ctx->d, v);
	if (ctx->private_reply && PARLEY_HAS_FIELD(host, parley_host, delivery_set_recipient_id)) {
		if ((v = id_field(root, "thread")) != NULL)
			host->delivery_set_thread_id(ctx->d, v);
		if ((v = id_field(root, "recipient_id")) != NULL)
			host->delivery_set_recipient_id(ctx->d, v);
	}
	json_decref(root);
}

/* arg: the webhook_send_ctx, freed here. response: borrowed for the call. */
static void webhook_send_done(void *arg, const parley_http_response *response)
{
	webhook_send_ctx *ctx = arg;
	const parley_host *host = ctx->ch->host;
	long status = host->http_response_status(response);
	const unsigned char *body;
	size_t len = 0;
	char reason[512];

	body = host->http_response_body(response, &len);
	if (status >= 200 && status <= 299) {
		take_external_id(ctx, body, len);
		host->delivery_complete(ctx->d, PARLEY_OK, 0, NULL);
	} else if (status == 0) {
		const char *error = host->http_response_error(response);
		snprintf(reason, sizeof(reason), "callback failed: %s",
		         error != NULL ? error : "transport error");
		host->delivery_complete(ctx->d, PARLEY_RETRY, 0, reason);
	} else if (status == 408 || status == 425 || status == 429 || status >= 500) {
		int64_t wait_s = pu_retry_after_seconds(
			host->http_response_header(response, "Retry-After"), WEBHOOK_MAX_RETRY_AFTER_S);
		snprintf(reason, sizeof(reason), "callback answered %ld", status);
		host->delivery_complete(ctx->d, PARLEY_RETRY,
		                        wait_s > 0 ? host->now_ms() + wait_s * 1000 : 0, reason);
	} else {
		char excerpt[WEBHOOK_REASON_BODY_BYTES + 1];
		pu_excerpt(body, len, WEBHOOK_REASON_BODY_BYTES, excerpt, sizeof(excerpt));
		snprintf(reason, sizeof(reason), "callback answered %ld%s%s", status,
		         excerpt[0] != '\0' ? ": " : "", excerpt);
		host->delivery_complete(ctx->d, PARLEY_FAIL, 0, reason);
	}
	free(ctx);
}

static const char *visibility_name(parley_visibility v)
{
	return v == PARLEY_VISIBILITY_PUBLIC ? "public" : "private";
}

/* POST a signed body to the callback. body, idem_header: borrowed (the core
 * copies the call). ctx: on 0 owned by webhook_send_done, else still the
 * caller's. */
static int start_callback(webhook_channel *ch, const char *body, const char *idem_header,
                          webhook_send_ctx *ctx)
{
	static const char sig_name[] = "X-Parley-Signature: ";
	char signature[sizeof(sig_name) + WEBHOOK_SIGNATURE_LEN];

	memcpy(signature, sig_name, sizeof(sig_name) - 1);
	webhook_sign(ch->cfg.secret, strlen(ch->cfg.secret), body, strlen(body),
	             ch->host->hmac_sha256, signature + sizeof(sig_name) - 1);

	const char *headers[] = {
		"Content-Type: application/json",
		idem_header,
		signature,
		"User-Agent: parley-webhook/" WEBHOOK_VERSION,
		NULL
	};
	parley_http_call call = {
		.size = sizeof(call),
		.method = "POST",
		.url = ch->cfg.callback_url,
		.headers = headers,
		.body = body,
		.body_len = strlen(body),
		.timeout_ms = ch->cfg.callback_timeout_ms,
		.insecure_skip_verify = !ch->cfg.tls_verify,
	};
	return ch->host->http_request(ch->inst, &call, webhook_send_done, ctx);
}

/* msg: borrowed for the call. d: owned by the core until delivery_complete,
 * which is called exactly once, here or from webhook_send_done. */
static void webhook_send(void *self, const parley_outbound_message *msg, parley_delivery *d)
{
	webhook_channel *ch = self;
	const parley_host *host = ch->host;
	char *body = NULL, *idem = NULL;
	webhook_send_ctx *ctx = NULL;
	json_t *payload;
	size_t idem_len;

	if (ch->cfg.callback_url == NULL) {
		host->delivery_complete(d, PARLEY_FAIL, 0, "no callback_url configured");
		return;
	}
	if (msg->idempotency_key == NULL || !pu_header_safe(msg->idempotency_key)) {
		host->delivery_complete(d, PARLEY_FAIL, 0, "the idempotency key is not a header value");
		return;
	}

	/* "s?" writes null for a NULL string (in_reply_to of a first message). */
	bool v11 = PARLEY_HAS_FIELD(msg, parley_outbound_message, message_id);
	bool private_reply = v11 && msg->kind == PARLEY_SEND_PRIVATE_REPLY;
	payload = json_pack("{s:s, s:s?, s:s, s:s?, s:s?, s:s?, s:s?, s:s, s:s?, s:I}",
	                    "idempotency_key", msg->idempotency_key,
	                    "conversation_id", msg->conversation_id,
	                    "visibility", visibility_name(msg->visibility),
	                    "recipient_id", msg->recipient_id,
	                    "thread", msg->thread_id,
	                    "in_reply_to", msg->in_reply_to,
	                    "text", msg->text,
	                    "kind", private_reply ? "private_reply" : "message",
	                    "message_id", v11 ? msg->message_id : NULL,
	                    "last_inbound_ms", (json_int_t)(v11 ? msg->last_inbound_ms : 0));
	if (payload == NULL) {
		host->delivery_complete(d, PARLEY_FAIL, 0,
		                        "the message cannot be encoded as JSON (invalid UTF-8?)");
		return;
	}
	body = json_dumps(payload, JSON_COMPACT);
	json_decref(payload);

	idem_len = strlen("Idempotency-Key: ") + strlen(msg->idempotency_key) + 1;
	idem = malloc(idem_len);
	ctx = malloc(sizeof(*ctx));
	if (body == NULL || idem == NULL || ctx == NULL) {
		host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
	} else {
		snprintf(idem, idem_len, "Idempotency-Key: %s", msg->idempotency_key);
		ctx->ch = ch;
		ctx->d = d;
		ctx->private_reply = private_reply;
		if (start_callback(ch, body, idem, ctx) == 0)
			ctx = NULL;   /* webhook_send_done frees it */
		else
			host->delivery_complete(d, PARLEY_RETRY, 0,
			                        "could not start the callback request");
	}
	free(ctx);
	free(idem);
	free(body);
}

/* ------------------------------------------------------------------------ */
/* Descriptor                                                               */
/* ------------------------------------------------------------------------ */

static const parley_channel_ops webhook_ops = {
	.size = sizeof(parley_channel_ops),
	.handle_request = webhook_handle_request,
	.send = webhook_send,
};

static const parley_plugin_descriptor webhook_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_CHANNEL,
	.name = "webhook",
	.version = WEBHOOK_VERSION,
	.description = "the brand's own site or app: signed JSON in, signed callbacks out",
	.create = webhook_create,
	.reload = webhook_reload,
	.destroy = webhook_destroy,
	.channel = &webhook_ops,
	PARLEY_SETTINGS(webhook_settings_table, webhook_settings),
};

PARLEY_PLUGIN_ENTRY(&webhook_descriptor)
