/* zendesk_events.c - Zendesk's webhooks (event subscriptions) into Parley:
 * the signature is checked before anything else, then the one event is
 * parsed (zd_parse_webhook) and handed to the core as a ticket event. */
#include <string.h>

#include "zendesk_sink.h"

typedef struct zd_emit_ctx {
	const parley_host *host;
	parley_request *req;
} zd_emit_ctx;

static int emit_one(void *arg, const parley_ticket_event *ev)
{
	zd_emit_ctx *ctx = arg;

	return ctx->host->request_emit_ticket_event(ctx->req, ev);
}

/* POST /sinks/{instance}/events. req: owned by the core. */
void zd_handle_request(void *self, parley_request *req)
{
	zendesk_sink *zs = self;
	const parley_host *host = zs->host;
	const unsigned char *body;
	size_t len = 0;
	char what[ZD_REASON_BYTES];
	zd_emit_ctx ctx = { host, req };
	zd_webhook_status st;

	if (strcmp(host->request_method(req), "POST") != 0) {
		host->respond_error(req, 405, "method_not_allowed", "POST Zendesk webhooks here");
		return;
	}
	if (host->request_subpath(req)[0] != '\0') {
		host->respond_error(req, 404, "not_found", "no such path");
		return;
	}
	body = host->request_body(req, &len);
	if (zs->cfg.webhook_secret == NULL ||
	    !zd_verify_signature(host->request_header(req, "X-Zendesk-Webhook-Signature"),
	                         host->request_header(req, "X-Zendesk-Webhook-Signature-Timestamp"),
	                         zs->cfg.webhook_secret, strlen(zs->cfg.webhook_secret),
	                         body, len, host->hmac_sha256, host->secure_equals)) {
		/* Anyone can post here: count it, do not log each one. */
		host->counter_add(zs->inst, "zendesk_webhooks_unauthorized_total", 1);
		host->respond_error(req, 401, "unauthorized",
		                    "missing or wrong X-Zendesk-Webhook-Signature");
		return;
	}
	if (!PARLEY_HAS_FIELD(host, parley_host, request_emit_ticket_event) ||
	    host->request_emit_ticket_event == NULL) {
		host->respond_error(req, 503, "unsupported", "this parleyd cannot store ticket events");
		return;
	}
	st = zd_parse_webhook(body != NULL ? body : (const unsigned char *)"", len,
	                      zs->api_user_id[0] != '\0' ? zs->api_user_id : NULL,
	                      emit_one, &ctx, what, sizeof(what));
	switch (st) {
	case ZD_WEBHOOK_EVENT:
		host->counter_add(zs->inst, "zendesk_webhook_events_total", 1);
		host->respond(req, 200, "application/json", "{\"ok\":true}", 11);
		break;
	case ZD_WEBHOOK_IGNORED:
		host->counter_add(zs->inst, "zendesk_webhooks_ignored_total", 1);
		host->log(zs->inst, PARLEY_LOG_INFO, "webhook ignored: %s", what);
		host->respond(req, 200, "application/json", "{\"ok\":true,\"ignored\":true}", 26);
		break;
	case ZD_WEBHOOK_BAD:
	case ZD_WEBHOOK_REFUSED:
		host->counter_add(zs->inst, "zendesk_webhooks_bad_total", 1);
		host->respond_error(req, 400, "bad_request", what);
		break;
	}
}
