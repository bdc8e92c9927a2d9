/* webhook_notifier.c - the "webhook" notifier: each notice is POSTed as JSON
 * to a URL of the operator's own, signed so the receiver can tell it came
 * from Parley and is not a replay.
 *
 *   X-Parley-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *   Idempotency-Key: <the notice's idempotency key>
 *
 * The body is the same on every attempt of one notice (it carries the
 * idempotency key, so receivers can drop a notice they already have); only
 * t and the signature change. Receivers reject a t too far from their clock
 * (docs/notifiers/webhook.md shows how).
 *
 * Answers: 2xx OK; 408, 429, 5xx and transport failures (timeouts) RETRY,
 * honouring Retry-After; any other status FAIL with an excerpt of the body,
 * since sending the same request again would be refused again.
 *
 * The secret is never logged and never part of a reason; nor is the URL,
 * which may carry a token of the receiver's. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "parley/parley.h"
#include "../../common/plugin_util.h"
#include "../../common/instance.h"

#define WEBHOOK_VERSION "0.1.0"
#define WEBHOOK_MAX_TIMEOUT_MS 600000
#define WEBHOOK_MAX_RETRY_AFTER_S 86400   /* a larger Retry-After is capped */
#define WEBHOOK_REASON_BODY_BYTES 200     /* body excerpt in a reason */
#define WEBHOOK_MIN_SECRET_BYTES 16

/* One instance's settings, filled and checked by the core from the table
 * below (ABI 1.3). Every field is owned by the core; a reload replaces the
 * struct as a whole. */
typedef struct webhook_settings {
	const char *url;            /* not logged (may hold a token) */
	const char *secret;         /* at least 16 bytes; the core wipes it when freed */
	int64_t timeout_ms;
	int tls_verify;
} webhook_settings;

typedef struct webhook_notifier {
	const parley_host *host;    /* owned by the core; valid until destroy */
	parley_instance *inst;      /* owned by the core; valid until destroy */
	webhook_settings cfg;       /* the core's struct, copied by the skeleton; its
	                             * strings stay the core's until the next reload */
	int stopped;                /* stop() ran: post nothing new */
} webhook_notifier;

/* One POST waiting for its answer. */
typedef struct webhook_post {
	webhook_notifier *wn;       /* borrowed: the core runs no callback after destroy */
	parley_delivery *d;         /* owned by the core until delivery_complete */
} webhook_post;

#define WS(field) offsetof(webhook_settings, field)
#define WEBHOOK_RELOAD PARLEY_SETTING_FLAG_RELOADABLE

/* Every setting is reloadable: a reload swaps the struct at once. */
static const parley_setting webhook_settings_table[] = {
	{ .name = "url", .type = PARLEY_SETTING_URL,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | WEBHOOK_RELOAD, .offset = WS(url),
	  .description = "where notices are POSTed (http:// or https://)" },
	{ .name = "secret", .type = PARLEY_SETTING_SECRET,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | WEBHOOK_RELOAD,
	  .min = WEBHOOK_MIN_SECRET_BYTES, .max = INT64_MAX, .offset = WS(secret),
	  .description = "shared secret for X-Parley-Signature" },
	{ .name = "timeout_ms", .type = PARLEY_SETTING_INTEGER, .flags = WEBHOOK_RELOAD,
	  .default_value = "10000", .min = 1, .max = WEBHOOK_MAX_TIMEOUT_MS,
	  .offset = WS(timeout_ms), .description = "whole-request limit for a POST" },
	{ .name = "tls_verify", .type = PARLEY_SETTING_BOOLEAN, .flags = WEBHOOK_RELOAD,
	  .default_value = "true", .offset = WS(tls_verify),
	  .description = "verify the receiver's TLS certificate (false for tests only)" },
};

/* ------------------------------------------------------------------------ */
/* Settings                                                                 */
/* ------------------------------------------------------------------------ */

static void settings_announce(void *self)
{
	const webhook_notifier *wn = self;
	wn->host->log(wn->inst, PARLEY_LOG_INFO,
	              "posting signed notices to the configured url (timeout %lld ms)",
	              (long long)wn->cfg.timeout_ms);
	if (!wn->cfg.tls_verify)
		wn->host->log(wn->inst, PARLEY_LOG_WARN,
		              "tls_verify is false: the receiver's certificate is not checked");
}

/* ------------------------------------------------------------------------ */
/* The request                                                              */
/* ------------------------------------------------------------------------ */

/* Set key to s in o when s is not NULL (absent fields are left out). */
static int set_text(json_t *o, const char *key, const char *s)
{
	json_t *v;

	if (s == NULL)
		return 0;
	v = json_string(s);
	return v == NULL ? -1 : json_object_set_new(o, key, v);
}

/* The customer as JSON, owned by the caller; NULL when out of memory or
 * not valid UTF-8. c: borrowed. */
static json_t *customer_json(const parley_customer_info *c)
{
	json_t *o = json_object();

	if (o == NULL || set_text(o, "customer_id", c->customer_id) != 0 ||
	    set_text(o, "display_name", c->display_name) != 0 || set_text(o, "email", c->email) != 0 ||
	    set_text(o, "phone", c->phone) != 0 || set_text(o, "external_id", c->external_id) != 0 ||
	    set_text(o, "handle", c->handle) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* The conversation as JSON (the shape of a job payload's conversation
 * object), owned by the caller; NULL on failure. c: borrowed. */
static json_t *conversation_json(const parley_conversation_info *c)
{
	json_t *o = json_object();
	const char *vis = c->visibility == PARLEY_VISIBILITY_PUBLIC ? "public" : "private";

	if (o == NULL || set_text(o, "conversation_id", c->conversation_id) != 0 ||
	    set_text(o, "case_number", c->case_number) != 0 ||
	    set_text(o, "channel_instance", c->channel_instance) != 0 ||
	    set_text(o, "channel_kind", c->channel_kind) != 0 || set_text(o, "visibility", vis) != 0 ||
	    set_text(o, "category", c->category) != 0 || set_text(o, "status", c->status) != 0)
		goto fail;
	if (c->customer != NULL) {
		json_t *cust = customer_json(c->customer);
		if (cust == NULL || json_object_set_new(o, "customer", cust) != 0)
			goto fail;
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

/* The body: {"idempotency_key", "kind", "title", "text", "url",
 * "conversation", "payload"}, absent fields left out. Owned by the caller
 * (free()); NULL when out of memory or a field is not valid UTF-8. n:
 * borrowed. */
static char *notice_body(const parley_notice *n)
{
	json_t *o = json_object();
	char *body = NULL;

	if (o == NULL || set_text(o, "idempotency_key", n->idempotency_key) != 0 ||
	    set_text(o, "kind", n->kind) != 0 || set_text(o, "title", n->title) != 0 ||
	    set_text(o, "text", n->text) != 0 || set_text(o, "url", n->url) != 0)
		goto done;
	if (n->conversation != NULL) {
		json_t *conv = conversation_json(n->conversation);
		if (conv == NULL || json_object_set_new(o, "conversation", conv) != 0)
			goto done;
	}
	if (n->payload_json != NULL) {
		json_t *payload = json_loads(n->payload_json, JSON_DECODE_ANY, NULL);
		if (payload == NULL || json_object_set_new(o, "payload", payload) != 0)
			goto done;
	}
	body = json_dumps(o, JSON_COMPACT);
done:
	json_decref(o);
	return body;
}

/* "X-Parley-Signature: t=<t>,v1=<hex>" for body at time t (Unix seconds).
 * Owned by the caller; NULL when out of memory. */
static char *signature_header(const webhook_notifier *wn, const char *body, int64_t t)
{
	unsigned char mac[32];
	char prefix[32];
	char *signed_text, *header;
	size_t plen, blen = strlen(body), hlen;

	plen = (size_t)snprintf(prefix, sizeof(prefix), "%lld.", (long long)t);
	signed_text = malloc(plen + blen);
	if (signed_text == NULL)
		return NULL;
	memcpy(signed_text, prefix, plen);
	memcpy(signed_text + plen, body, blen);
	wn->host->hmac_sha256(wn->cfg.secret, strlen(wn->cfg.secret), signed_text, plen + blen, mac);
	free(signed_text);

	hlen = strlen("X-Parley-Signature: t=,v1=") + plen + 64 + 1;
	header = malloc(hlen);
	if (header == NULL)
		return NULL;
	int n = snprintf(header, hlen, "X-Parley-Signature: t=%lld,v1=", (long long)t);
	pu_hex_encode(mac, sizeof(mac), header + n);
	return header;
}

/* "Idempotency-Key: <key>" with every byte outside visible ASCII (and '%')
 * percent-encoded, so no key can break the header. key: borrowed. Owned by
 * the caller; NULL when out of memory. */
static char *idempotency_header(const char *key)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strlen(key), o = strlen("Idempotency-Key: ");
	char *h = malloc(o + 3 * len + 1);

	if (h == NULL)
		return NULL;
	memcpy(h, "Idempotency-Key: ", o);
	for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
		if (*p > 0x20 && *p < 0x7F && *p != '%') {
			h[o++] = (char)*p;
		} else {
			h[o++] = '%';
			h[o++] = hex[*p >> 4];
			h[o++] = hex[*p & 0xF];
		}
	}
	h[o] = '\0';
	return h;
}

/* ------------------------------------------------------------------------ */
/* Answers                                                                  */
/* ------------------------------------------------------------------------ */

static void complete(webhook_notifier *wn, parley_delivery *d, parley_outcome outcome,
                     int64_t retry_at_ms, const char *reason)
{
	static const char *const counters[] = {
		[PARLEY_OK] = "webhook_notices_delivered_total",
		[PARLEY_RETRY] = "webhook_notices_retried_total",
		[PARLEY_FAIL] = "webhook_notices_failed_total",
	};
	wn->host->counter_add(wn->inst, counters[outcome], 1);
	wn->host->delivery_complete(d, outcome, retry_at_ms, reason);
}

/* Map the receiver's answer (borrowed) to the delivery's outcome. */
static void post_done(void *arg, const parley_http_response *response)
{
	webhook_post *post = arg;
	webhook_notifier *wn = post->wn;
	const parley_host *host = wn->host;
	long status = host->http_response_status(response);
	const unsigned char *body;
	size_t len = 0;
	char text[WEBHOOK_REASON_BODY_BYTES + 1];
	char reason[512];

	body = host->http_response_body(response, &len);
	while (body != NULL && len > 0 && body[len - 1] <= 0x20)
		len--;
	pu_excerpt(body, len, WEBHOOK_REASON_BODY_BYTES, text, sizeof(text));

	if (status >= 200 && status < 300) {
		complete(wn, post->d, PARLEY_OK, 0, NULL);
	} else if (status == 0) {
		const char *error = host->http_response_error(response);
		snprintf(reason, sizeof(reason), "webhook POST failed: %s",
		         error != NULL ? error : "transport error");
		complete(wn, post->d, PARLEY_RETRY, 0, reason);
	} else if (status == 408 || status == 429 || status >= 500) {
		int64_t wait_s = pu_retry_after_seconds(
			host->http_response_header(response, "Retry-After"), WEBHOOK_MAX_RETRY_AFTER_S);
		int64_t retry_at = wait_s > 0 ? host->now_ms() + wait_s * 1000 : 0;
		snprintf(reason, sizeof(reason), "webhook receiver answered %ld%s%s%s", status,
		         wait_s > 0 ? " (honouring Retry-After)" : "", text[0] != '\0' ? ": " : "", text);
		complete(wn, post->d, PARLEY_RETRY, retry_at, reason);
	} else {
		/* 3xx (redirects are not followed), 400, 401/403 (the receiver
		 * refused the signature), 404, 410, 422: the same request would
		 * be refused again; an operator must act. */
		snprintf(reason, sizeof(reason), "webhook receiver answered %ld%s%s", status,
		         text[0] != '\0' ? ": " : "", text);
		host->log(wn->inst, PARLEY_LOG_WARN, "%s", reason);
		complete(wn, post->d, PARLEY_FAIL, 0, reason);
	}
	free(post);
}

/* ------------------------------------------------------------------------ */
/* Operations                                                               */
/* ------------------------------------------------------------------------ */

/* POST body (borrowed) with its headers; post: on 0 owned by post_done. */
static int start_post(webhook_notifier *wn, const char *body, const char *key, webhook_post *post)
{
	char *sig = signature_header(wn, body, wn->host->now_ms() / 1000);
	char *idem = idempotency_header(key);
	int rc = -1;

	if (sig != NULL && idem != NULL) {
		const char *headers[] = {
			"Content-Type: application/json",
			"User-Agent: parley-webhook-notifier/" WEBHOOK_VERSION,
			sig,
			idem,
			NULL
		};
		parley_http_call call = {
			.size = sizeof(call),
			.method = "POST",
			.url = wn->cfg.url,
			.headers = headers,
			.body = body,
			.body_len = strlen(body),
			.timeout_ms = wn->cfg.timeout_ms,
			.insecure_skip_verify = !wn->cfg.tls_verify,
		};
		/* The core copies the call: nothing here outlives it. */
		rc = wn->host->http_request(wn->inst, &call, post_done, post);
	}
	free(sig);
	free(idem);
	return rc;
}

/* n: borrowed for the call. d: owned by the core until delivery_complete,
 * which runs exactly once: here or from post_done. */
static void webhook_deliver(void *self, const parley_notice *n, parley_delivery *d)
{
	webhook_notifier *wn = self;
	const char *key = n->idempotency_key != NULL ? n->idempotency_key : "";
	webhook_post *post;
	char *body;

	if (wn->stopped) {
		complete(wn, d, PARLEY_RETRY, 0, "shutting down");
		return;
	}
	body = notice_body(n);
	if (body == NULL) {
		/* jansson refuses text that is not UTF-8; nothing else fails
		 * but memory. */
		complete(wn, d, PARLEY_FAIL, 0, "the notice cannot be encoded as JSON (not UTF-8?)");
		return;
	}
	post = calloc(1, sizeof(*post));
	if (post == NULL) {
		free(body);
		complete(wn, d, PARLEY_RETRY, 0, "out of memory");
		return;
	}
	post->wn = wn;
	post->d = d;
	if (start_post(wn, body, key, post) != 0) {
		free(post);
		complete(wn, d, PARLEY_RETRY, 0, "could not start the webhook request");
	}
	free(body);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

/* The core fills and checks the settings from the table above; a reload
 * swaps them at once: a POST in flight holds no pointer into them (the core
 * copied the call). */
static const pu_instance_class webhook_class = {
	PU_INSTANCE_LAYOUT(webhook_notifier, cfg),
	.host_needs = PU_HOST_NEEDS(config_settings),
	.too_old = "this parleyd is too old for the webhook notifier",
	.announce = settings_announce,
};

PU_INSTANCE_FUNCTIONS(webhook, webhook_class)

/* Post nothing new; a POST in flight still completes from post_done. */
static void webhook_stop(void *self)
{
	webhook_notifier *wn = self;

	wn->stopped = 1;
}

static const parley_notifier_ops webhook_ops = {
	.size = sizeof(parley_notifier_ops),
	.deliver = webhook_deliver,
};

static const parley_plugin_descriptor webhook_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_NOTIFIER,
	.name = "webhook",
	.version = WEBHOOK_VERSION,
	.description = "notices POSTed as signed JSON to a URL of your own",
	.create = webhook_create,
	.reload = webhook_reload,
	.stop = webhook_stop,
	.destroy = webhook_destroy,
	.notifier = &webhook_ops,
	PARLEY_SETTINGS(webhook_settings_table, webhook_settings),
};

PARLEY_PLUGIN_ENTRY(&webhook_descriptor)
