/* telegram.c - the "telegram" channel: a Telegram bot (Bot API).
 *
 * Inbound, one of two modes:
 *   webhook  Telegram POSTs one Update per request to /webhooks/{instance},
 *            with the secret given to setWebhook in the header
 *            X-Telegram-Bot-Api-Secret-Token (compared in constant time).
 *   polling  for installs that cannot receive webhooks: getUpdates long
 *            polling. The updates of one answer and the next offset are
 *            committed in one transaction (emit_begin / emit_commit), so the
 *            offset moves exactly with the stored updates.
 * Outbound: sendMessage, as a reply to the customer's latest message.
 *
 * The bot token is part of every API URL (/bot<token>/<method>): URLs are
 * never logged, and reasons are scrubbed of the token before they leave.
 *
 * This file is the glue to the host table, the settings, webhooks and
 * sends; polling is in telegram_poll.c, the wire format in telegram_parse.c
 * (inbound) and telegram_send.c (outbound). Like any third-party plugin it
 * uses only parley/parley.h and jansson. */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

#include "parley/parley.h"
#include "../../common/plugin_util.h"
#include "../../common/instance.h"
#include "telegram_parse.h"
#include "telegram_channel.h"

#define TELEGRAM_DEFAULT_API_URL "https://api.telegram.org"
#define TELEGRAM_MAX_TIMEOUT_MS 600000
#define TELEGRAM_MAX_POLL_TIMEOUT_S 300

#define TS(field) offsetof(tg_settings, field)
#define TG_RELOAD PARLEY_SETTING_FLAG_RELOADABLE

static const parley_setting telegram_settings_table[] = {
	{ .name = "bot_token", .type = PARLEY_SETTING_SECRET,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | TG_RELOAD, .offset = TS(token),
	  .description = "the bot's token from @BotFather (\"123456:ABC...\")" },
	/* Reloadable only so that a change reaches telegram_check_reload, which
	 * refuses it: an instance cannot switch between webhooks and polling
	 * while it runs. */
	{ .name = "mode", .type = PARLEY_SETTING_STRING, .flags = TG_RELOAD,
	  .default_value = "webhook", .offset = TS(mode),
	  .description = "\"webhook\": Telegram POSTs updates; \"polling\": getUpdates long "
	                 "polling (a change is refused on reload: restart parleyd)" },
	{ .name = "secret_token", .type = PARLEY_SETTING_SECRET, .flags = TG_RELOAD,
	  .offset = TS(secret),
	  .description = "webhook mode (required there): the secret_token given to setWebhook" },
	{ .name = "api_url", .type = PARLEY_SETTING_URL, .flags = TG_RELOAD,
	  .default_value = TELEGRAM_DEFAULT_API_URL, .offset = TS(api_url),
	  .description = "Bot API base URL" },
	{ .name = "channel_posts", .type = PARLEY_SETTING_BOOLEAN, .flags = TG_RELOAD,
	  .default_value = "false", .offset = TS(channel_posts),
	  .description = "store posts of channels the bot is in" },
	{ .name = "poll_timeout_s", .type = PARLEY_SETTING_INTEGER, .flags = TG_RELOAD,
	  .default_value = "25", .min = 0, .max = TELEGRAM_MAX_POLL_TIMEOUT_S,
	  .offset = TS(poll_timeout_s),
	  .description = "polling mode: getUpdates long-poll timeout in seconds" },
	{ .name = "poll_retry_ms", .type = PARLEY_SETTING_INTEGER, .flags = TG_RELOAD,
	  .default_value = "1000", .min = 1, .max = TELEGRAM_MAX_TIMEOUT_MS,
	  .offset = TS(poll_retry_ms),
	  .description = "polling mode: first wait after a failed poll, doubling up to 60 s" },
	{ .name = "timeout_ms", .type = PARLEY_SETTING_INTEGER, .flags = TG_RELOAD,
	  .default_value = "10000", .min = 1, .max = TELEGRAM_MAX_TIMEOUT_MS,
	  .offset = TS(timeout_ms),
	  .description = "whole-request limit for sendMessage; added to poll_timeout_s for "
	                 "getUpdates" },
};

/* ------------------------------------------------------------------------ */
/* Settings                                                                 */
/* ------------------------------------------------------------------------ */

/* What the table cannot say: formats and the settings that matter only
 * together. settings: borrowed. Problems go to config_error, never with a
 * secret's value. */
static int telegram_check(const parley_host *host, parley_instance *inst, const void *settings)
{
	const tg_settings *s = settings;
	int ok = 1;

	if (!telegram_token_is_valid(s->token)) {
		host->config_error(inst, "bot_token", "must be a bot token: <digits>:<letters, "
		                   "digits, _ or ->");
		ok = 0;
	}
	if (strcmp(s->mode, "polling") != 0 && strcmp(s->mode, "webhook") != 0) {
		host->config_error(inst, "mode", "must be \"webhook\" or \"polling\"");
		return -1;
	}
	if (s->secret != NULL && !telegram_secret_is_valid(s->secret)) {
		host->config_error(inst, "secret_token",
		                   "must be 1 to 256 characters of A-Z, a-z, 0-9, _ and -");
		ok = 0;
	} else if (s->secret == NULL && !tg_polling(s)) {
		host->config_error(inst, "secret_token", "required in webhook mode");
		ok = 0;
	}
	return ok ? 0 : -1;
}

static void settings_announce(void *self)
{
	const telegram_channel *ch = self;
	if (tg_polling(&ch->cfg))
		ch->host->log(ch->inst, PARLEY_LOG_INFO,
		              "polling getUpdates (long-poll %" PRId64 " s)%s",
		              ch->cfg.poll_timeout_s,
		              ch->cfg.channel_posts ? "; channel posts are stored" : "");
	else
		ch->host->log(ch->inst, PARLEY_LOG_INFO,
		              "taking webhooks checked with X-Telegram-Bot-Api-Secret-Token%s",
		              ch->cfg.channel_posts ? "; channel posts are stored" : "");
}

/* ------------------------------------------------------------------------ */
/* Calls in flight                                                          */
/* ------------------------------------------------------------------------ */

/* A new call linked into ch's list (owned by the list until call_finish),
 * or NULL when out of memory. */
tg_call *tg_call_new(telegram_channel *ch, tg_call_kind kind)
{
	tg_call *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->ch = ch;
	c->kind = kind;
	c->next = ch->calls;
	if (ch->calls != NULL)
		ch->calls->prev = c;
	ch->calls = c;
	return c;
}

/* Unlink c (when its channel still exists) and free it. */
void tg_call_finish(tg_call *c)
{
	telegram_channel *ch = c->ch;

	if (ch != NULL) {
		if (c->prev != NULL)
			c->prev->next = c->next;
		else
			ch->calls = c->next;
		if (c->next != NULL)
			c->next->prev = c->prev;
	}
	free(c);
}

/* ------------------------------------------------------------------------ */
/* Inbound: webhook mode                                                    */
/* ------------------------------------------------------------------------ */

typedef struct tg_request_emit {
	const parley_host *host;
	parley_request *req;
} tg_request_emit;

/* ev: borrowed; request_emit copies it. */
static int emit_to_request(void *arg, const parley_event *ev)
{
	tg_request_emit *e = arg;

	return e->host->request_emit(e->req, ev) == 0 ? 0 : -1;
}

/* req: owned by the core; answered exactly once below. */
static void telegram_handle_request(void *self, parley_request *req)
{
	telegram_channel *ch = self;
	const parley_host *host = ch->host;
	const char *subpath = host->request_subpath(req);
	const unsigned char *body;
	size_t len = 0;
	tg_request_emit e = { host, req };
	telegram_parse_opts opts = tg_parse_opts(&ch->cfg);
	int64_t update_id = -1;
	char why[200];

	if (subpath != NULL && subpath[0] != '\0' && strcmp(subpath, "/") != 0) {
		host->respond_error(req, 404, "not_found", "POST to the instance's URL itself");
		return;
	}
	if (tg_polling(&ch->cfg)) {
		host->respond_error(req, 404, "not_found",
		                    "this instance polls getUpdates and takes no webhooks");
		return;
	}
	if (strcmp(host->request_method(req), "POST") != 0) {
		host->respond_error(req, 405, "method_not_allowed", "Telegram POSTs updates");
		return;
	}

	/* Authenticate before anything of the body is looked at. */
	switch (telegram_check_secret(host->request_header(req, "X-Telegram-Bot-Api-Secret-Token"),
	                              ch->cfg.secret, ch->cfg.secret != NULL ? strlen(ch->cfg.secret) : 0,
	                              host->secure_equals)) {
	case TELEGRAM_SECRET_OK:
		break;
	case TELEGRAM_SECRET_MISSING:
		host->counter_add(ch->inst, "telegram_rejected_total", 1);
		host->respond_error(req, 401, "missing_secret_token",
		                    "the X-Telegram-Bot-Api-Secret-Token header is required");
		return;
	case TELEGRAM_SECRET_BAD:
	default:
		host->counter_add(ch->inst, "telegram_rejected_total", 1);
		host->log(ch->inst, PARLEY_LOG_DEBUG, "webhook with a wrong secret token refused");
		host->respond_error(req, 401, "bad_secret_token",
		                    "X-Telegram-Bot-Api-Secret-Token does not match secret_token");
		return;
	}

	body = host->request_body(req, &len);
	if (body == NULL) {
		body = (const unsigned char *)"";
		len = 0;
	}
	why[0] = '\0';
	switch (telegram_parse_update(body, len, &opts, emit_to_request, &e, &update_id,
	                              why, sizeof(why))) {
	case TELEGRAM_PARSE_EMITTED:
		host->counter_add(ch->inst, "telegram_events_total", 1);
		break;
	case TELEGRAM_PARSE_IGNORED:
		host->counter_add(ch->inst, "telegram_ignored_total", 1);
		host->log(ch->inst, PARLEY_LOG_DEBUG, "update %" PRId64 ": %s", update_id, why);
		break;
	case TELEGRAM_PARSE_REFUSED:
		host->counter_add(ch->inst, "telegram_rejected_total", 1);
		host->respond_error(req, 400, "event_rejected", why);
		return;
	case TELEGRAM_PARSE_INVALID:
	default:
		host->counter_add(ch->inst, "telegram_rejected_total", 1);
		host->respond_error(req, 400, "invalid_update", why);
		return;
	}
	/* An empty object: Telegram reads a "method" in the answer as a call. */
	host->respond(req, 200, "application/json", "{}", 2);
}

/* ------------------------------------------------------------------------ */
/* Outbound                                                                 */
/* ------------------------------------------------------------------------ */

/* sendMessage answered. arg: the SEND call, freed here. response: borrowed. */
static void send_done(void *arg, const parley_http_response *response)
{
	tg_call *c = arg;
	telegram_channel *ch = c->ch;
	const parley_host *host;
	const unsigned char *body;
	size_t len = 0;
	telegram_send_result r;
	long status;

	if (ch == NULL) {
		/* Destroyed: the delivery belongs to a core that is going away. */
		tg_call_finish(c);
		return;
	}
	host = ch->host;
	status = host->http_response_status(response);
	body = host->http_response_body(response, &len);
	telegram_classify_send(status, host->http_response_error(response), body, len,
	                       host->http_response_header(response, "Retry-After"),
	                       host->now_ms(), &r);
	tg_scrub_token(ch, r.reason, sizeof(r.reason));
	switch (r.outcome) {
	case PARLEY_OK:
		if (r.external_id[0] != '\0')
			host->delivery_set_external_id(c->d, r.external_id);
		if (c->private_reply)
			/* A private chat's id is the user's id: the thread_id the
			 * customer's answers there will carry. */
			host->delivery_set_thread_id(c->d, r.chat_id[0] != '\0' ? r.chat_id
			                                                         : c->recipient);
		host->counter_add(ch->inst, "telegram_sent_total", 1);
		host->delivery_complete(c->d, PARLEY_OK, 0, NULL);
		break;
	case PARLEY_RETRY:
		host->counter_add(ch->inst, "telegram_send_retried_total", 1);
		host->log(ch->inst, PARLEY_LOG_INFO, "%s", r.reason);
		host->delivery_complete(c->d, PARLEY_RETRY, r.retry_at_ms, r.reason);
		break;
	case PARLEY_FAIL:
	default:
		host->counter_add(ch->inst, "telegram_send_failed_total", 1);
		host->log(ch->inst, status == 401 || status == 404 ? PARLEY_LOG_WARN : PARLEY_LOG_INFO,
		          "%s%s", r.reason, status == 401 || status == 404 ? " (check bot_token)" : "");
		host->delivery_complete(c->d, PARLEY_FAIL, 0, r.reason);
		break;
	}
	tg_call_finish(c);
}

/* msg: borrowed for the call. d: owned by the core until delivery_complete,
 * which runs exactly once: here or from send_done. */
static void telegram_send(void *self, const parley_outbound_message *msg, parley_delivery *d)
{
	telegram_channel *ch = self;
	const parley_host *host = ch->host;
	telegram_send_in in = { PARLEY_SEND_MESSAGE, msg->recipient_id, msg->thread_id,
	                        msg->in_reply_to, msg->text };
	char why[200], *body = NULL, *url = NULL;
	tg_call *c;

	if (PARLEY_HAS_FIELD(msg, parley_outbound_message, kind))
		in.kind = msg->kind;
	/* Telegram has no messaging window: last_inbound_ms is not checked. */
	if (!telegram_send_body(&in, &body, why, sizeof(why))) {
		host->delivery_complete(d, PARLEY_FAIL, 0, why);
		return;
	}
	url = telegram_method_url(ch->cfg.api_url, ch->cfg.token, "sendMessage");
	c = tg_call_new(ch, TG_CALL_SEND);
	if (url == NULL || c == NULL) {
		if (c != NULL)
			tg_call_finish(c);
		host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
	} else {
		const char *headers[] = {
			"Content-Type: application/json",
			"User-Agent: parley-telegram/" TELEGRAM_VERSION,
			NULL
		};
		parley_http_call call = {
			.size = sizeof(call),
			.method = "POST",
			.url = url,
			.headers = headers,
			.body = body,
			.body_len = strlen(body),
			.timeout_ms = (long)ch->cfg.timeout_ms,
		};
		c->d = d;
		c->private_reply = in.kind == PARLEY_SEND_PRIVATE_REPLY;
		if (in.recipient_id != NULL)
			snprintf(c->recipient, sizeof(c->recipient), "%s", in.recipient_id);
		if (host->http_request(ch->inst, &call, send_done, c) != 0) {
			tg_call_finish(c);
			host->delivery_complete(d, PARLEY_RETRY, 0,
			                        "sendMessage failed: could not start the request");
		}
	}
	pu_wipe(url, url != NULL ? strlen(url) : 0);
	free(url);
	free(body);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

/* Calls in flight hold no pointer into the settings (the core copied
 * them); the next poll and send use the new ones. Only the mode cannot
 * change while running. */
static int telegram_check_reload(void *self, const void *next_settings)
{
	telegram_channel *ch = self;
	const tg_settings *next = next_settings;

	if (tg_polling(next) != tg_polling(&ch->cfg)) {
		ch->host->config_error(ch->inst, "mode", "cannot change on reload: restart parleyd");
		return -1;
	}
	return 0;
}

static void telegram_finish(void *self)
{
	telegram_channel *ch = self;
	tg_call *c, *next;

	if (ch->timer != NULL)
		ch->host->timer_cancel(ch->timer);
	/* Callbacks of calls still in flight run once more: detach them so
	 * they only free their own memory. */
	for (c = ch->calls; c != NULL; c = next) {
		next = c->next;
		c->ch = NULL;
		c->prev = c->next = NULL;
	}
}

static const pu_instance_class telegram_class = {
	PU_INSTANCE_LAYOUT(telegram_channel, cfg),
	/* The settings table needs ABI 1.3 (polling emit_begin..., private
	 * replies delivery_set_thread_id: both older). */
	.host_needs = PU_HOST_NEEDS(config_settings),
	.too_old = "this parleyd is too old for the telegram plugin (plugin ABI 1.3 needed)",
	.check_reload = telegram_check_reload,
	.finish = telegram_finish,
	.check = telegram_check,
	.announce = settings_announce,
};

PU_INSTANCE_FUNCTIONS(telegram, telegram_class)

static int telegram_start(void *self)
{
	telegram_channel *ch = self;

	if (tg_polling(&ch->cfg))
		tg_poll_start(ch);
	return 0;
}

/* Start nothing new; calls in flight still finish (sends complete their
 * deliveries, a poll's answer is dropped, a commit still lands). */
static void telegram_stop(void *self)
{
	telegram_channel *ch = self;

	ch->stopping = 1;
	if (ch->timer != NULL) {
		ch->host->timer_cancel(ch->timer);
		ch->timer = NULL;
	}
}

/* ------------------------------------------------------------------------ */
/* Descriptor                                                               */
/* ------------------------------------------------------------------------ */

static const parley_channel_ops telegram_ops = {
	.size = sizeof(parley_channel_ops),
	.handle_request = telegram_handle_request,
	.send = telegram_send,
};

static const parley_plugin_descriptor telegram_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_CHANNEL,
	.name = "telegram",
	.version = TELEGRAM_VERSION,
	.description = "a Telegram bot: webhooks or getUpdates polling in, sendMessage out",
	PARLEY_SETTINGS(telegram_settings_table, tg_settings),
	.create = telegram_create,
	.start = telegram_start,
	.reload = telegram_reload,
	.stop = telegram_stop,
	.destroy = telegram_destroy,
	.channel = &telegram_ops,
};

PARLEY_PLUGIN_ENTRY(&telegram_descriptor)
