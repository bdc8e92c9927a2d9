/* meta.c - the "meta" channel: one Meta app's webhooks (Facebook Page
 * Messenger and feed comments, Instagram DMs and comments, WhatsApp Cloud
 * API) in, Graph API sends out.
 *
 * Inbound:  GET  /webhooks/{instance}  the hub.* verification handshake;
 *           POST /webhooks/{instance}  signed with X-Hub-Signature-256
 *           (HMAC-SHA256 of the raw body with the app secret).
 * Outbound: Messenger / Instagram Send API, comment replies, private
 *           replies and WhatsApp messages, with the Page / account / phone
 *           number token as "Authorization: Bearer".
 *
 * This file is the glue to the host table and declares the settings
 * (checked and parsed in meta_settings.c); the pure code is meta_parse.c with meta_messenger.c and meta_whatsapp.c (inbound) and
 * meta_graph.c (outbound). See docs/channels/meta.md. */
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
#include "meta_parse.h"
#include "meta_graph.h"
#include "meta_settings.h"

#define META_VERSION "0.1.0"
#define META_DEFAULT_GRAPH_URL "https://graph.facebook.com"
#define META_DEFAULT_GRAPH_VERSION "v21.0"
#define META_MAX_TIMEOUT_MS 600000

/* One send waiting for its Graph API answer. */
typedef struct meta_send_ctx {
	meta_channel *ch;          /* borrowed: the core runs no callback after destroy */
	parley_delivery *d;        /* owned by the core until delivery_complete */
	meta_plan plan;            /* owned: url and body freed with the context */
	int private_reply;
	char fallback_recipient[META_MAX_ID_BYTES + 1];   /* msg->recipient_id */
} meta_send_ctx;

#define MS(field) offsetof(meta_settings, field)
#define META_RELOAD PARLEY_SETTING_FLAG_RELOADABLE
#define META_SECRET_JSON (PARLEY_SETTING_FLAG_SECRET | META_RELOAD)

static const parley_setting meta_settings_table[] = {
	{ .name = "app_secret", .type = PARLEY_SETTING_SECRET,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | META_RELOAD, .min = 1, .max = INT64_MAX,
	  .offset = MS(app_secret),
	  .description = "the Meta app's secret: verifies X-Hub-Signature-256" },
	{ .name = "verify_token", .type = PARLEY_SETTING_SECRET,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | META_RELOAD, .min = 1, .max = INT64_MAX,
	  .offset = MS(verify_token),
	  .description = "the Verify Token entered in the App Dashboard's webhook setup" },
	{ .name = "graph_url", .type = PARLEY_SETTING_URL, .flags = META_RELOAD,
	  .default_value = META_DEFAULT_GRAPH_URL, .min = 1, .max = META_MAX_URL_BYTES,
	  .offset = MS(graph_url), .description = "Graph API base URL" },
	{ .name = "graph_version", .type = PARLEY_SETTING_STRING, .flags = META_RELOAD,
	  .default_value = META_DEFAULT_GRAPH_VERSION, .offset = MS(graph_version),
	  .description = "Graph API version, like v21.0" },
	{ .name = "pages", .type = PARLEY_SETTING_JSON, .flags = META_SECRET_JSON,
	  .offset = MS(pages),
	  .description = "Facebook Pages: [{\"id\":..., \"access_token\":...}]" },
	{ .name = "instagram_accounts", .type = PARLEY_SETTING_JSON, .flags = META_SECRET_JSON,
	  .offset = MS(instagram_accounts),
	  .description = "Instagram professional accounts: [{\"id\":..., \"access_token\":...}]" },
	{ .name = "whatsapp_numbers", .type = PARLEY_SETTING_JSON, .flags = META_SECRET_JSON,
	  .offset = MS(whatsapp_numbers),
	  .description = "WhatsApp phone numbers: [{\"phone_number_id\":..., \"access_token\":...}]" },
	{ .name = "appsecret_proof", .type = PARLEY_SETTING_BOOLEAN, .flags = META_RELOAD,
	  .default_value = "false", .offset = MS(appsecret_proof),
	  .description = "send appsecret_proof (HMAC-SHA256 of the token under app_secret) with "
	                 "every Graph call, for apps with \"Require App Secret\" on" },
	{ .name = "human_agent_tag", .type = PARLEY_SETTING_BOOLEAN, .flags = META_RELOAD,
	  .default_value = "false", .offset = MS(human_agent_tag),
	  .description = "Messenger: send with the HUMAN_AGENT tag between 24 hours and 7 days" },
	{ .name = "whatsapp_template", .type = PARLEY_SETTING_JSON, .flags = META_RELOAD,
	  .offset = MS(whatsapp_template),
	  .description = "WhatsApp template sent outside the 24-hour window: "
	                 "{\"name\":..., \"language\":...}" },
	{ .name = "timeout_ms", .type = PARLEY_SETTING_INTEGER, .flags = META_RELOAD,
	  .default_value = "10000", .min = 1, .max = META_MAX_TIMEOUT_MS, .offset = MS(timeout_ms),
	  .description = "limit for one Graph API call" },
};

/* ------------------------------------------------------------------------ */
/* Settings                                                                 */
/* ------------------------------------------------------------------------ */

static void settings_announce(void *self)
{
	const meta_channel *ch = self;
	ch->host->log(ch->inst, PARLEY_LOG_INFO,
	              "%zu page(s), %zu instagram account(s), %zu whatsapp number(s); "
	              "graph %s; human_agent_tag %s; whatsapp template %s",
	              ch->assets.pages.n, ch->assets.instagram.n, ch->assets.whatsapp.n,
	              ch->cfg.graph_version, ch->cfg.human_agent_tag ? "on" : "off",
	              ch->assets.template_name != NULL ? "configured" : "none");
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

static int meta_init(void *self)
{
	meta_channel *ch = self;

	return meta_assets_read(ch->host, ch->inst, &ch->cfg, &ch->assets);
}

/* meta_settings_check accepted next: parse its JSON settings for reloaded to swap
 * in (only running out of memory fails here). */
static int meta_check_reload(void *self, const void *next)
{
	meta_channel *ch = self;

	return meta_assets_read(ch->host, ch->inst, next, &ch->pending);
}

/* A reload swaps the settings at once: in-flight sends hold their own copy
 * of what they need (the plan), and the core copied each call. */
static void meta_reloaded(void *self, const void *old)
{
	meta_channel *ch = self;

	(void)old;
	meta_assets_release(&ch->assets);
	ch->assets = ch->pending;
	memset(&ch->pending, 0, sizeof(ch->pending));
}

static void meta_finish(void *self)
{
	meta_channel *ch = self;

	meta_assets_release(&ch->assets);
	meta_assets_release(&ch->pending);
}

static const pu_instance_class meta_class = {
	PU_INSTANCE_LAYOUT(meta_channel, cfg),
	.host_needs = PU_HOST_NEEDS(config_settings),
	.too_old = "this parleyd is too old for the meta plugin (plugin ABI 1.3 needed)",
	.check = meta_settings_check,
	.announce = settings_announce,
	.init = meta_init,
	.check_reload = meta_check_reload,
	.reloaded = meta_reloaded,
	.finish = meta_finish,
};

PU_INSTANCE_FUNCTIONS(meta, meta_class)

/* ------------------------------------------------------------------------ */
/* Inbound                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct meta_emit_ctx {
	meta_channel *ch;
	parley_request *req;
	char first_note[160];
} meta_emit_ctx;

/* ev: borrowed; request_emit copies it. */
static int meta_emit_one(void *arg, const parley_event *ev)
{
	meta_emit_ctx *ctx = arg;

	if (ctx->ch->host->request_emit(ctx->req, ev) == 0)
		return 0;
	/* The core logged why; Meta would redeliver the whole batch forever if
	 * one item failed it, so the rest is kept. */
	ctx->ch->host->log(ctx->ch->inst, PARLEY_LOG_WARN, "event %s was refused by the core",
	                   ev->dedupe_key);
	return -1;
}

static void meta_note_one(void *arg, const char *what)
{
	meta_emit_ctx *ctx = arg;

	if (ctx->first_note[0] == '\0')
		snprintf(ctx->first_note, sizeof(ctx->first_note), "%s", what);
	ctx->ch->host->log(ctx->ch->inst, PARLEY_LOG_DEBUG, "%s", what);
}

static void handle_handshake(meta_channel *ch, parley_request *req)
{
	const parley_host *host = ch->host;
	const char *challenge = host->request_query(req, "hub.challenge");

	switch (meta_check_handshake(host->request_query(req, "hub.mode"),
	                             host->request_query(req, "hub.verify_token"), challenge,
	                             ch->cfg.verify_token, host->secure_equals)) {
	case META_HANDSHAKE_OK:
		host->log(ch->inst, PARLEY_LOG_INFO, "webhook verification handshake answered");
		/* Echoed byte for byte: Meta compares it as a string. */
		host->respond(req, 200, "text/plain", challenge, strlen(challenge));
		return;
	case META_HANDSHAKE_FORBIDDEN:
		host->counter_add(ch->inst, "meta_rejected_total", 1);
		host->log(ch->inst, PARLEY_LOG_WARN, "verification handshake with a wrong verify token");
		host->respond_error(req, 403, "forbidden", "hub.verify_token does not match");
		return;
	case META_HANDSHAKE_BAD_REQUEST:
	default:
		host->respond_error(req, 400, "bad_request",
		                    "expected hub.mode=subscribe, hub.verify_token and hub.challenge");
		return;
	}
}

static void handle_post(meta_channel *ch, parley_request *req)
{
	const parley_host *host = ch->host;
	const unsigned char *body;
	size_t len = 0;
	meta_parse_stats stats;
	meta_emit_ctx ctx;
	char err[256], answer[64];
	int n;

	/* The signature covers the bytes as sent (Meta escapes non-ASCII as
	 * \uXXXX): verify before parsing, never on a re-serialized body. */
	body = host->request_body(req, &len);
	if (body == NULL) {
		body = (const unsigned char *)"";
		len = 0;
	}
	switch (meta_verify_signature(host->request_header(req, "X-Hub-Signature-256"),
	                              ch->cfg.app_secret, strlen(ch->cfg.app_secret), body, len,
	                              host->hmac_sha256, host->secure_equals)) {
	case META_SIG_OK:
		break;
	case META_SIG_MISSING:
		host->counter_add(ch->inst, "meta_rejected_total", 1);
		host->respond_error(req, 401, "missing_signature",
		                    "the X-Hub-Signature-256 header is required");
		return;
	case META_SIG_BAD:
	default:
		host->counter_add(ch->inst, "meta_rejected_total", 1);
		host->log(ch->inst, PARLEY_LOG_DEBUG, "request with a bad signature refused");
		host->respond_error(req, 401, "bad_signature",
		                    "X-Hub-Signature-256 is not the HMAC-SHA256 of the body");
		return;
	}

	memset(&ctx, 0, sizeof(ctx));
	ctx.ch = ch;
	ctx.req = req;
	if (!meta_parse(body, len, meta_emit_one, meta_note_one, &ctx, &stats, err, sizeof(err))) {
		host->counter_add(ch->inst, "meta_rejected_total", 1);
		host->respond_error(req, 400, "invalid_body", err);
		return;
	}
	if (stats.ignored > 0)
		host->log(ch->inst, PARLEY_LOG_INFO, "%zu event(s) accepted, %zu item(s) ignored "
		          "(first: %s)", stats.events, stats.ignored, ctx.first_note);
	host->counter_add(ch->inst, "meta_events_total", stats.events);
	n = snprintf(answer, sizeof(answer), "{\"accepted\":%zu}", stats.events);
	host->respond(req, 200, "application/json", answer, (size_t)n);
}

/* req: owned by the core; answered exactly once. */
static void meta_handle_request(void *self, parley_request *req)
{
	meta_channel *ch = self;
	const parley_host *host = ch->host;
	const char *subpath = host->request_subpath(req);
	const char *method = host->request_method(req);

	if (subpath != NULL && subpath[0] != '\0' && strcmp(subpath, "/") != 0) {
		host->respond_error(req, 404, "not_found", "use the instance's URL itself");
		return;
	}
	if (strcmp(method, "GET") == 0)
		handle_handshake(ch, req);
	else if (strcmp(method, "POST") == 0)
		handle_post(ch, req);
	else
		host->respond_error(req, 405, "method_not_allowed", "use GET or POST");
}

/* ------------------------------------------------------------------------ */
/* Outbound                                                                 */
/* ------------------------------------------------------------------------ */

static void send_ctx_free(meta_send_ctx *ctx)
{
	meta_plan_free(&ctx->plan);
	free(ctx);
}

/* On success of a private reply: the private chat it opened, so the
 * customer's answer lands in the new conversation. */
static void report_private_thread(meta_send_ctx *ctx, const meta_result *r)
{
	const parley_host *host = ctx->ch->host;
	/* Without recipient_id in the answer, only an Instagram commenter's id
	 * is known to be their id in the DM chat too; a Facebook commenter's
	 * public id is not their Messenger id. */
	const char *recipient = r->recipient_id[0] != '\0' ? r->recipient_id
	                        : ctx->plan.thread.kind == META_THREAD_INSTAGRAM_MEDIA
	                        ? ctx->fallback_recipient : "";
	char thread[META_MAX_THREAD_BYTES];

	if (!PARLEY_HAS_FIELD(host, parley_host, delivery_set_thread_id))
		return;
	if (recipient[0] == '\0' ||
	    !meta_private_thread(&ctx->plan, recipient, thread, sizeof(thread))) {
		host->log(ctx->ch->inst, PARLEY_LOG_WARN,
		          "private reply sent but Meta named no recipient: the chat is not linked");
		return;
	}
	host->delivery_set_thread_id(ctx->d, thread);
	/* The PSID / IGSID differs from the commenter's id in public: tell the
	 * core it is the same customer, so their answer finds the chat. */
	if (PARLEY_HAS_FIELD(host, parley_host, delivery_set_recipient_id))
		host->delivery_set_recipient_id(ctx->d, recipient);
}

/* arg: the meta_send_ctx, freed here. response: borrowed for the call. */
static void meta_send_done(void *arg, const parley_http_response *response)
{
	meta_send_ctx *ctx = arg;
	meta_channel *ch = ctx->ch;
	const parley_host *host = ch->host;
	meta_answer a;
	meta_result r;

	memset(&a, 0, sizeof(a));
	a.status = host->http_response_status(response);
	a.transport_error = host->http_response_error(response);
	a.body = host->http_response_body(response, &a.body_len);
	a.retry_after = host->http_response_header(response, "Retry-After");
	a.buc_usage = host->http_response_header(response, "X-Business-Use-Case-Usage");
	a.now_ms = host->now_ms();
	meta_classify(&a, ctx->plan.shape, &r);

	if (r.outcome == PARLEY_OK) {
		if (r.external_id[0] != '\0')
			host->delivery_set_external_id(ctx->d, r.external_id);
		if (ctx->private_reply)
			report_private_thread(ctx, &r);
		char note[META_REASON_BYTES];
		note[0] = '\0';
		if (ctx->plan.template_sent) {
			/* Recorded on the message: the agent's text itself did not go out. */
			snprintf(note, sizeof(note), "outside WhatsApp's 24-hour window: the template %s "
			         "was sent instead; the text itself was not sent",
			         ch->assets.template_name != NULL ? ch->assets.template_name : "(since removed)");
			host->log(ch->inst, PARLEY_LOG_INFO, "%s", note);
		}
		host->counter_add(ch->inst, "meta_sent_total", 1);
		host->delivery_complete(ctx->d, PARLEY_OK, 0, note[0] != '\0' ? note : NULL);
	} else {
		host->log(ch->inst, r.outcome == PARLEY_RETRY ? PARLEY_LOG_INFO : PARLEY_LOG_WARN,
		          "send %s: %s", r.outcome == PARLEY_RETRY ? "will be retried" : "failed",
		          r.reason);
		host->delivery_complete(ctx->d, r.outcome, r.retry_at_ms, r.reason);
	}
	send_ctx_free(ctx);
}

/* The token for the plan's asset, or NULL (then *what names the list). */
static const char *token_for(const meta_channel *ch, const meta_plan *plan, const char **what)
{
	switch (plan->thread.kind) {
	case META_THREAD_MESSENGER:
	case META_THREAD_FACEBOOK_POST:
		*what = "Facebook Page";
		return meta_assets_token(&ch->assets.pages, plan->asset_id);
	case META_THREAD_INSTAGRAM_DM:
	case META_THREAD_INSTAGRAM_MEDIA:
		*what = "Instagram account";
		return meta_assets_token(&ch->assets.instagram, plan->asset_id);
	case META_THREAD_WHATSAPP:
		*what = "WhatsApp phone number";
		return meta_assets_token(&ch->assets.whatsapp, plan->asset_id);
	default:
		*what = "asset";
		return NULL;
	}
}

/* Start the call; ctx is owned by meta_send_done on 0, still the caller's
 * otherwise. token: borrowed. */
static int start_call(meta_channel *ch, meta_send_ctx *ctx, const char *token)
{
	static const char prefix[] = "Authorization: Bearer ";
	static const char proof_param[] = "?appsecret_proof=";
	size_t auth_len = sizeof(prefix) + strlen(token);
	char *auth = malloc(auth_len);
	char *url = NULL;
	int rc;

	if (auth == NULL)
		return -1;
	snprintf(auth, auth_len, "%s%s", prefix, token);
	if (ch->cfg.appsecret_proof) {
		/* Graph's proof that the caller holds the app secret: the hex
		 * HMAC-SHA256 of the access token, keyed with the app secret. */
		unsigned char mac[32];
		size_t base = strlen(ctx->plan.url);
		url = malloc(base + sizeof(proof_param) + 64);
		if (url == NULL) {
			pu_wipe_string(auth);
			free(auth);
			return -1;
		}
		ch->host->hmac_sha256(ch->cfg.app_secret, strlen(ch->cfg.app_secret), token,
		                      strlen(token), mac);
		memcpy(url, ctx->plan.url, base);
		memcpy(url + base, proof_param, sizeof(proof_param) - 1);
		for (size_t i = 0; i < sizeof(mac); i++)
			snprintf(url + base + sizeof(proof_param) - 1 + 2 * i, 3, "%02x", mac[i]);
	}
	const char *headers[] = {
		"Content-Type: application/json",
		auth,
		"User-Agent: parley-meta/" META_VERSION,
		NULL
	};
	parley_http_call call = {
		.size = sizeof(call),
		.method = "POST",
		.url = url != NULL ? url : ctx->plan.url,
		.headers = headers,
		.body = ctx->plan.body,
		.body_len = strlen(ctx->plan.body),
		.timeout_ms = (long)ch->cfg.timeout_ms,
	};
	rc = ch->host->http_request(ch->inst, &call, meta_send_done, ctx);
	pu_wipe_string(auth);
	free(auth);
	free(url);
	return rc;
}

/* The plan's options: this instance's settings, now. */
static void send_options(const meta_channel *ch, meta_send_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->graph_url = ch->cfg.graph_url;
	opt->graph_version = ch->cfg.graph_version;
	opt->human_agent_tag = ch->cfg.human_agent_tag;
	opt->template_name = ch->assets.template_name;
	opt->template_language = ch->assets.template_language;
	opt->now_ms = ch->host->now_ms();
}

/* check_send (ABI 1.4): the plan meta_send would make, and whether a token
 * is there for it; nothing is sent. msg: borrowed for the call. */
static const char *meta_check_send(void *self, const parley_outbound_message *msg, char *reason,
                                   size_t reason_len)
{
	meta_channel *ch = self;
	meta_send_options opt;
	meta_plan plan;
	const char *rule = NULL, *what = "asset";

	send_options(ch, &opt);
	if (!meta_plan_send(&opt, msg, &plan)) {
		rule = plan.rule;
		snprintf(reason, reason_len, "%s", plan.reason);
	} else if (token_for(ch, &plan, &what) == NULL) {
		rule = META_RULE_NOT_CONFIGURED;
		snprintf(reason, reason_len, "no access token is configured for %s %s", what, plan.asset_id);
	}
	meta_plan_free(&plan);
	return rule;
}

/* msg: borrowed for the call. d: owned by the core until delivery_complete,
 * which runs exactly once, here or in meta_send_done. */
static void meta_send(void *self, const parley_outbound_message *msg, parley_delivery *d)
{
	meta_channel *ch = self;
	const parley_host *host = ch->host;
	meta_send_ctx *ctx = calloc(1, sizeof(*ctx));
	meta_send_options opt;
	const char *token, *what = "asset";

	if (ctx == NULL) {
		host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
		return;
	}
	send_options(ch, &opt);

	ctx->ch = ch;
	ctx->d = d;
	ctx->private_reply = PARLEY_HAS_FIELD(msg, parley_outbound_message, kind) &&
	                     msg->kind == PARLEY_SEND_PRIVATE_REPLY;
	if (msg->recipient_id != NULL && strlen(msg->recipient_id) <= META_MAX_ID_BYTES)
		strcpy(ctx->fallback_recipient, msg->recipient_id);

	/* Windows and thread checks come before any call: a refusal costs
	 * nothing and tells the operator why. */
	if (!meta_plan_send(&opt, msg, &ctx->plan)) {
		host->log(ch->inst, PARLEY_LOG_INFO, "send refused: %s", ctx->plan.reason);
		host->delivery_complete(d, PARLEY_FAIL, 0, ctx->plan.reason);
		send_ctx_free(ctx);
		return;
	}
	token = token_for(ch, &ctx->plan, &what);
	if (token == NULL) {
		char reason[META_REASON_BYTES];
		snprintf(reason, sizeof(reason), "no access token is configured for %s %s", what,
		         ctx->plan.asset_id);
		host->delivery_complete(d, PARLEY_FAIL, 0, reason);
		send_ctx_free(ctx);
		return;
	}
	if (start_call(ch, ctx, token) != 0) {
		host->delivery_complete(d, PARLEY_RETRY, 0, "could not start the Graph API call");
		send_ctx_free(ctx);
	}
}

/* ------------------------------------------------------------------------ */
/* Descriptor                                                               */
/* ------------------------------------------------------------------------ */

static const parley_channel_ops meta_ops = {
	.size = sizeof(parley_channel_ops),
	.handle_request = meta_handle_request,
	.send = meta_send,
	.check_send = meta_check_send,
};

static const parley_plugin_descriptor meta_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_CHANNEL,
	.name = "meta",
	.version = META_VERSION,
	.description = "a Meta app's webhooks: Messenger, Page comments, Instagram, WhatsApp",
	PARLEY_SETTINGS(meta_settings_table, meta_settings),
	.create = meta_create,
	.reload = meta_reload,
	.destroy = meta_destroy,
	.channel = &meta_ops,
};

PARLEY_PLUGIN_ENTRY(&meta_descriptor)
