/* x.c - the "x" channel: X (Twitter) mentions, replies and DMs.
 *
 * Inbound:  the Account Activity webhook at /webhooks/{instance}: GET answers
 *           the CRC challenge, POST carries tweet_create_events,
 *           direct_message_events and tweet_delete_events, signed with
 *           x-twitter-webhooks-signature (HMAC-SHA256 of the raw body with
 *           the consumer secret).
 * Listening: each configured search query is polled on a timer through
 *           GET /2/tweets/search/recent (app-only bearer token); the matches
 *           and the query's since_id cursor are committed together.
 * Outbound: public replies with POST /2/tweets, DMs with
 *           POST /2/dm_conversations/with/{id}/messages, signed with OAuth
 *           1.0a (HMAC-SHA1) as the brand's account.
 *
 * This file is the glue to the host table, the webhook and the sends; the
 * search pollers are in x_search.c, parsing, signatures and answer
 * classification in x_parse.c, OAuth signing in x_oauth.c. */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "parley/parley.h"
#include "../../common/plugin_util.h"
#include "../../common/instance.h"
#include "x_oauth.h"
#include "x_parse.h"
#include "x_channel.h"

#define X_DEFAULT_API_URL "https://api.x.com"
#define X_MAX_TIMEOUT_MS 600000
#define X_MAX_SEARCH_INTERVAL_S 86400
#define X_MAX_QUERIES 25
#define X_MAX_QUERY_BYTES 4096      /* X's longest query (Pro access) */

/* One outbound send waiting for its HTTP answer. */
typedef struct x_send_ctx {
	x_channel *ch;               /* borrowed: callbacks run before destroy */
	parley_delivery *d;          /* owned by the core until delivery_complete */
	int private_reply;           /* report the DM conversation as the thread */
	int is_dm;
	char recipient[X_MAX_ID_LEN + 1];
} x_send_ctx;

#define XS(field) offsetof(x_settings, field)
#define X_RELOAD PARLEY_SETTING_FLAG_RELOADABLE
#define X_CREDENTIAL (PARLEY_SETTING_FLAG_REQUIRED | PARLEY_SETTING_FLAG_PRINTABLE | X_RELOAD)

static const parley_setting x_settings_table[] = {
	{ .name = "consumer_key", .type = PARLEY_SETTING_SECRET, .flags = X_CREDENTIAL,
	  .min = 1, .max = INT64_MAX, .offset = XS(consumer_key),
	  .description = "the X app's API key (OAuth 1.0a consumer key)" },
	{ .name = "consumer_secret", .type = PARLEY_SETTING_SECRET, .flags = X_CREDENTIAL,
	  .min = 1, .max = INT64_MAX, .offset = XS(consumer_secret),
	  .description = "the X app's API key secret: CRC answers, webhook signatures, OAuth 1.0a" },
	{ .name = "access_token", .type = PARLEY_SETTING_SECRET, .flags = X_CREDENTIAL,
	  .min = 1, .max = INT64_MAX, .offset = XS(access_token),
	  .description = "the brand account's OAuth 1.0a access token (read, write and DMs)" },
	{ .name = "access_token_secret", .type = PARLEY_SETTING_SECRET, .flags = X_CREDENTIAL,
	  .min = 1, .max = INT64_MAX, .offset = XS(access_token_secret),
	  .description = "the brand account's OAuth 1.0a access token secret" },
	{ .name = "user_id", .type = PARLEY_SETTING_STRING,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | X_RELOAD, .offset = XS(user_id),
	  .description = "the brand account's numeric user id: its own tweets and DMs are outbound" },
	{ .name = "api_url", .type = PARLEY_SETTING_URL, .flags = X_RELOAD,
	  .default_value = X_DEFAULT_API_URL, .offset = XS(api_url),
	  .description = "base URL of the X API, without a query" },
	{ .name = "bearer_token", .type = PARLEY_SETTING_SECRET,
	  .flags = PARLEY_SETTING_FLAG_PRINTABLE | X_RELOAD, .min = 1, .max = INT64_MAX,
	  .offset = XS(bearer_token),
	  .description = "app-only bearer token for recent search (required with search_queries)" },
	/* Reloadable only so that a change reaches x_check_reload, which
	 * refuses it: the pollers are set up once, at start. */
	{ .name = "search_queries", .type = PARLEY_SETTING_STRING_LIST, .flags = X_RELOAD,
	  .min = 1, .max = X_MAX_QUERY_BYTES, .offset = XS(queries),
	  .description = "recent-search queries to listen to, at most 25 (mentions without a tag; "
	                 "changing the list takes a restart)" },
	{ .name = "search_interval_s", .type = PARLEY_SETTING_INTEGER, .flags = X_RELOAD,
	  .default_value = "60", .min = 1, .max = X_MAX_SEARCH_INTERVAL_S,
	  .offset = XS(search_interval_s),
	  .description = "seconds between polls of each search query" },
	{ .name = "timeout_ms", .type = PARLEY_SETTING_INTEGER, .flags = X_RELOAD,
	  .default_value = "10000", .min = 1, .max = X_MAX_TIMEOUT_MS, .offset = XS(timeout_ms),
	  .description = "whole-request limit for X API calls" },
	{ .name = "tls_verify", .type = PARLEY_SETTING_BOOLEAN, .flags = X_RELOAD,
	  .default_value = "true", .offset = XS(tls_verify),
	  .description = "verify the API's TLS certificate (false for tests only)" },
};

/* ------------------------------------------------------------------------ */
/* Settings                                                                 */
/* ------------------------------------------------------------------------ */

void x_free_secret(char *s)
{
	if (s != NULL)
		OPENSSL_cleanse(s, strlen(s));
	free(s);
}

static size_t settings_n_queries(const x_settings *s)
{
	size_t n = 0;

	while (s->queries != NULL && s->queries[n] != NULL)
		n++;
	return n;
}

/* What the table cannot say: formats and the settings that matter only
 * together. settings: borrowed. Problems go to config_error. */
static int x_check(const parley_host *host, parley_instance *inst, const void *settings)
{
	const x_settings *s = settings;
	int ok = 1;

	if (!x_id_is_valid(s->user_id)) {
		host->config_error(inst, "user_id", "must be the account's numeric id, e.g. \"2975699229\"");
		ok = 0;
	}
	if (strpbrk(s->api_url, "?#") != NULL) {
		host->config_error(inst, "api_url", "must be an http:// or https:// URL without a query");
		ok = 0;
	}
	if (settings_n_queries(s) > X_MAX_QUERIES) {
		host->config_error(inst, "search_queries", "must be a list of at most 25 query strings");
		ok = 0;
	} else if (settings_n_queries(s) > 0 && s->bearer_token == NULL) {
		host->config_error(inst, "bearer_token", "is required to poll search_queries");
		ok = 0;
	}
	return ok ? 0 : -1;
}

static void settings_announce(void *self)
{
	const x_channel *ch = self;
	if (settings_n_queries(&ch->cfg) == 0)
		ch->host->log(ch->inst, PARLEY_LOG_INFO, "account %s, no search listening",
		              ch->cfg.user_id);
	else
		ch->host->log(ch->inst, PARLEY_LOG_INFO,
		              "account %s, %zu search quer%s every %" PRId64 " s", ch->cfg.user_id,
		              settings_n_queries(&ch->cfg), settings_n_queries(&ch->cfg) == 1 ? "y" : "ies",
		              ch->cfg.search_interval_s);
	if (!ch->cfg.tls_verify)
		ch->host->log(ch->inst, PARLEY_LOG_WARN,
		              "tls_verify is false: X API certificates are not checked");
}

/* ------------------------------------------------------------------------ */
/* Inbound                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct request_emit_ctx {
	const parley_host *host;
	parley_request *req;
	size_t refused;             /* events the core found invalid (logged by it) */
} request_emit_ctx;

/* ev: borrowed; request_emit copies it. An event the core refuses is
 * counted and skipped, never a reason to refuse the whole POST: below the
 * Enterprise tier X does not redeliver, so the other events would be lost. */
static int emit_to_request(void *arg, const parley_event *ev)
{
	request_emit_ctx *ctx = arg;
	if (ctx->host->request_emit(ctx->req, ev) != 0)
		ctx->refused++;
	return 0;
}

void x_log_stats(x_channel *ch, const x_parse_stats *st, const char *source)
{
	if (st->unknown > 0)
		ch->host->log(ch->inst, PARLEY_LOG_INFO, "%s: ignored %zu event type(s) such as %s",
		              source, st->unknown, st->first_unknown);
	if (st->skipped > 0)
		ch->host->log(ch->inst, PARLEY_LOG_DEBUG, "%s: skipped %zu item(s), first: %s",
		              source, st->skipped, st->first_skip);
}

/* GET ?crc_token=...: prove we hold the consumer secret. */
static void answer_crc(x_channel *ch, parley_request *req)
{
	const parley_host *host = ch->host;
	const char *token = host->request_query(req, "crc_token");
	char answer[X_CRC_RESPONSE_LEN + 1];

	if (token == NULL || token[0] == '\0') {
		host->respond_error(req, 400, "missing_crc_token", "GET needs ?crc_token=");
		return;
	}
	x_crc_response(ch->cfg.consumer_secret, strlen(ch->cfg.consumer_secret), token,
	               host->hmac_sha256, answer);
	host->counter_add(ch->inst, "x_crc_total", 1);
	host->respond(req, 200, "application/json", answer, strlen(answer));
}

/* req: owned by the core; answered exactly once below. */
static void x_handle_request(void *self, parley_request *req)
{
	x_channel *ch = self;
	const parley_host *host = ch->host;
	const char *subpath = host->request_subpath(req);
	const char *method = host->request_method(req);
	const unsigned char *body;
	size_t len = 0;
	x_parse_stats stats;
	x_parse_error err;
	request_emit_ctx ctx = { host, req, 0 };
	char answer[48];
	int n;

	if (subpath != NULL && subpath[0] != '\0' && strcmp(subpath, "/") != 0) {
		host->respond_error(req, 404, "not_found", "use the instance's URL itself");
		return;
	}
	if (strcmp(method, "GET") == 0) {
		answer_crc(ch, req);
		return;
	}
	if (strcmp(method, "POST") != 0) {
		host->respond_error(req, 405, "method_not_allowed", "use GET (CRC) or POST");
		return;
	}

	/* Verify the raw bytes before anything parses them. */
	body = host->request_body(req, &len);
	if (body == NULL) {
		body = (const unsigned char *)"";
		len = 0;
	}
	switch (x_verify_signature(host->request_header(req, "x-twitter-webhooks-signature"),
	                           ch->cfg.consumer_secret, strlen(ch->cfg.consumer_secret), body,
	                           len, host->hmac_sha256, host->secure_equals)) {
	case X_SIG_OK:
		break;
	case X_SIG_MISSING:
		host->counter_add(ch->inst, "x_rejected_total", 1);
		host->respond_error(req, 401, "missing_signature",
		                    "the x-twitter-webhooks-signature header is required");
		return;
	case X_SIG_BAD:
	default:
		host->counter_add(ch->inst, "x_rejected_total", 1);
		host->log(ch->inst, PARLEY_LOG_DEBUG, "request with a bad signature refused");
		host->respond_error(req, 401, "bad_signature",
		                    "x-twitter-webhooks-signature does not match the body");
		return;
	}

	if (!x_parse_activity(body, len, ch->cfg.user_id, emit_to_request, &ctx, &stats, &err)) {
		/* Events emitted before the failure are discarded: not a 2xx. */
		host->counter_add(ch->inst, "x_rejected_total", 1);
		host->respond_error(req, err.http_status, err.code, err.detail);
		return;
	}
	x_log_stats(ch, &stats, "webhook");
	if (ctx.refused > 0) {
		host->counter_add(ch->inst, "x_refused_events_total", ctx.refused);
		host->log(ch->inst, PARLEY_LOG_WARN, "webhook: %zu event(s) refused by the core, the "
		          "other %zu stored", ctx.refused, stats.emitted - ctx.refused);
	}
	host->counter_add(ch->inst, "x_events_total", stats.emitted - ctx.refused);
	n = snprintf(answer, sizeof(answer), "{\"accepted\":%zu}", stats.emitted - ctx.refused);
	host->respond(req, 200, "application/json", answer, (size_t)n);
}

static int x_start(void *self)
{
	x_channel *ch = self;

	if (settings_n_queries(&ch->cfg) == 0)
		return 0;
	if (!PARLEY_HAS_FIELD(ch->host, parley_host, emit_commit)) {
		ch->host->log(ch->inst, PARLEY_LOG_ERROR,
		              "this parleyd is too old for search_queries (plugin ABI 1.1 needed)");
		return -1;
	}
	return x_search_start(ch, ch->cfg.queries, settings_n_queries(&ch->cfg));
}

static void x_stop(void *self)
{
	x_search_stop(self);
}

/* ------------------------------------------------------------------------ */
/* Outbound                                                                 */
/* ------------------------------------------------------------------------ */

/* arg: the x_send_ctx, freed here. response: borrowed. */
static void x_send_done(void *arg, const parley_http_response *response)
{
	x_send_ctx *ctx = arg;
	x_channel *ch = ctx->ch;
	const parley_host *host = ch->host;
	const unsigned char *body;
	size_t len = 0;
	x_send_result r;

	body = host->http_response_body(response, &len);
	x_classify_send(host->http_response_status(response), host->http_response_error(response),
	                host->http_response_header(response, "x-rate-limit-reset"), body, len,
	                ctx->is_dm ? "direct message" : "reply", host->now_ms(), &r);
	if (r.outcome == PARLEY_OK) {
		if (r.external_id[0] != '\0')
			host->delivery_set_external_id(ctx->d, r.external_id);
		if (ctx->private_reply) {
			char thread[X_MAX_DM_CONVERSATION_LEN + 1];
			/* The inbound parser computes DM threads from the two user
			 * ids; use exactly that so the customer's answer lands in
			 * the new conversation. X's dm_conversation_id is the same
			 * text for a 1:1 chat. */
			if (x_dm_conversation_id(ch->cfg.user_id, ctx->recipient, thread)) {
				if (r.dm_conversation_id[0] != '\0' &&
				    strcmp(r.dm_conversation_id, thread) != 0)
					host->log(ch->inst, PARLEY_LOG_WARN,
					          "X named the DM conversation %s, expected %s",
					          r.dm_conversation_id, thread);
				host->delivery_set_thread_id(ctx->d, thread);
			}
		}
		host->counter_add(ch->inst, "x_sent_total", 1);
		host->delivery_complete(ctx->d, PARLEY_OK, 0, NULL);
	} else {
		host->log(ch->inst, r.outcome == PARLEY_RETRY ? PARLEY_LOG_INFO : PARLEY_LOG_WARN,
		          "%s", r.reason);
		host->delivery_complete(ctx->d, r.outcome, r.retry_at_ms, r.reason);
	}
	free(ctx);
}

/* POST body to url signed as the brand. ctx: on 0 owned by x_send_done. */
static int start_post(x_channel *ch, const char *url, const char *body, x_send_ctx *ctx)
{
	char nonce[33], timestamp[24];
	char *auth;
	int rc;

	if (!x_oauth_nonce(nonce))
		return -1;
	snprintf(timestamp, sizeof(timestamp), "%" PRId64, ch->host->now_ms() / 1000);
	/* A JSON body is not part of the OAuth 1.0a signature (only form
	 * bodies are), and these URLs have no query: no extra parameters. */
	x_oauth_request oa = {
		.method = "POST",
		.base_url = url,
		.consumer_key = ch->cfg.consumer_key,
		.consumer_secret = ch->cfg.consumer_secret,
		.token = ch->cfg.access_token,
		.token_secret = ch->cfg.access_token_secret,
		.nonce = nonce,
		.timestamp = timestamp,
	};
	auth = x_oauth_header(&oa);
	if (auth == NULL)
		return -1;
	const char *headers[] = { auth, "Content-Type: application/json", X_USER_AGENT, NULL };
	parley_http_call call = {
		.size = sizeof(call),
		.method = "POST",
		.url = url,
		.headers = headers,
		.body = body,
		.body_len = strlen(body),
		.timeout_ms = (long)ch->cfg.timeout_ms,
		.insecure_skip_verify = !ch->cfg.tls_verify,
	};
	rc = ch->host->http_request(ch->inst, &call, x_send_done, ctx);
	x_free_secret(auth);
	return rc;
}

/* msg: borrowed. d: owned by the core until delivery_complete, called
 * exactly once here or from x_send_done. */
static void x_send(void *self, const parley_outbound_message *msg, parley_delivery *d)
{
	x_channel *ch = self;
	const parley_host *host = ch->host;
	parley_send_kind kind = PARLEY_HAS_FIELD(msg, parley_outbound_message, kind)
	                                ? msg->kind : PARLEY_SEND_MESSAGE;
	/* A private conversation is a DM chat; a move to private is a DM to
	 * the public post's author. */
	int dm = kind == PARLEY_SEND_PRIVATE_REPLY || msg->visibility == PARLEY_VISIBILITY_PRIVATE;
	/* A reply answers the customer's latest post, else the thread's root. */
	const char *target = msg->in_reply_to != NULL ? msg->in_reply_to : msg->thread_id;
	x_send_request req;
	x_send_ctx *ctx;

	if (kind == PARLEY_SEND_PRIVATE_REPLY &&
	    !PARLEY_HAS_FIELD(host, parley_host, delivery_set_thread_id)) {
		host->delivery_complete(d, PARLEY_FAIL, 0, "this parleyd cannot move to private");
		return;
	}
	switch (x_build_send(ch->cfg.api_url, dm, msg->recipient_id, target, msg->text, &req)) {
	case X_BUILD_OK:
		break;
	case X_BUILD_BAD_TEXT:
		host->delivery_complete(d, PARLEY_FAIL, 0,
		                        "the message is empty or not valid UTF-8 text");
		return;
	case X_BUILD_BAD_TARGET:
		host->delivery_complete(d, PARLEY_FAIL, 0,
		                        dm ? "the recipient is not an X user id"
		                           : "there is no X post id to reply to");
		return;
	case X_BUILD_NO_MEMORY:
	default:
		host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
		return;
	}

	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL) {
		host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
	} else {
		ctx->ch = ch;
		ctx->d = d;
		ctx->is_dm = dm;
		ctx->private_reply = kind == PARLEY_SEND_PRIVATE_REPLY;
		if (dm)
			snprintf(ctx->recipient, sizeof(ctx->recipient), "%s", msg->recipient_id);
		if (start_post(ch, req.url, req.body, ctx) == 0)
			ctx = NULL;   /* x_send_done frees it */
		else
			host->delivery_complete(d, PARLEY_RETRY, 0, "could not start the X API request");
	}
	free(ctx);
	free(req.url);
	free(req.body);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

static int same_queries(const x_settings *a, const x_settings *b)
{
	size_t n = settings_n_queries(a);

	if (n != settings_n_queries(b))
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(a->queries[i], b->queries[i]) != 0)
			return 0;
	}
	return 1;
}

/* Pollers own copies of their queries and read the rest of the settings
 * at each poll, but adding or removing one takes a restart. */
static int x_check_reload(void *self, const void *next)
{
	x_channel *ch = self;

	if (!same_queries(&ch->cfg, next)) {
		ch->host->config_error(ch->inst, "search_queries", "changing the list takes a restart");
		return -1;
	}
	return 0;
}

static void x_finish(void *self)
{
	x_channel *ch = self;

	x_search_free(ch);
}

static const pu_instance_class x_class = {
	PU_INSTANCE_LAYOUT(x_channel, cfg),
	.host_needs = PU_HOST_NEEDS(config_settings),
	.too_old = "this parleyd is too old for the x plugin (plugin ABI 1.3 needed)",
	.check_reload = x_check_reload,
	.finish = x_finish,
	.check = x_check,
	.announce = settings_announce,
};

PU_INSTANCE_FUNCTIONS(x, x_class)

static const parley_channel_ops x_ops = {
	.size = sizeof(parley_channel_ops),
	.handle_request = x_handle_request,
	.send = x_send,
};

static const parley_plugin_descriptor x_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_CHANNEL,
	.name = "x",
	.version = X_VERSION,
	.description = "X (Twitter): mentions, replies, DMs and search listening",
	PARLEY_SETTINGS(x_settings_table, x_settings),
	.create = x_create,
	.start = x_start,
	.reload = x_reload,
	.stop = x_stop,
	.destroy = x_destroy,
	.channel = &x_ops,
};

PARLEY_PLUGIN_ENTRY(&x_descriptor)
