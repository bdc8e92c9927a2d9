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
 * This file is the glue to the host table; the wire format is in
 * telegram_parse.c. Like any third-party plugin it uses only parley/parley.h
 * and jansson. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

#include "parley/parley.h"
#include "../../common/plugin_util.h"
#include "../../common/instance.h"
#include "telegram_parse.h"

#define TELEGRAM_VERSION "0.1.0"
#define TELEGRAM_DEFAULT_API_URL "https://api.telegram.org"
#define TELEGRAM_DEFAULT_TIMEOUT_MS 10000
#define TELEGRAM_MAX_TIMEOUT_MS 600000
#define TELEGRAM_DEFAULT_POLL_TIMEOUT_S 25
#define TELEGRAM_MAX_POLL_TIMEOUT_S 300
#define TELEGRAM_DEFAULT_POLL_RETRY_MS 1000
#define TELEGRAM_POLL_BACKOFF_MAX_MS 60000   /* errors back off up to this */
#define TELEGRAM_OFFSET_KEY "offset"         /* plugin_state key of the cursor */

/* One instance's settings; replaced as a whole on reload. */
typedef struct tg_settings {
	char *token;               /* owned; secret, wiped before it is freed */
	size_t token_len;
	char *secret;              /* owned; secret; NULL in polling mode without one */
	size_t secret_len;
	char *api_url;             /* owned; no trailing slash */
	int polling;               /* mode: 0 webhook, 1 polling */
	telegram_parse_opts opts;
	int64_t poll_timeout_s;
	int64_t poll_retry_ms;
	long timeout_ms;
} tg_settings;

typedef struct telegram_channel telegram_channel;

typedef enum tg_call_kind {
	TG_CALL_SEND = 1,          /* sendMessage */
	TG_CALL_LOAD = 2,          /* state_get of the offset */
	TG_CALL_POLL = 3,          /* getUpdates */
	TG_CALL_COMMIT = 4         /* emit_commit of a page of updates */
} tg_call_kind;

/* Something in flight: a callback will run exactly once with it. */
typedef struct tg_call {
	struct tg_call *prev, *next;   /* the channel's list of calls in flight */
	telegram_channel *ch;          /* borrowed; NULL once the channel is destroyed */
	tg_call_kind kind;
	parley_delivery *d;            /* SEND: owned by the core until completed */
	int private_reply;             /* SEND: a PARLEY_SEND_PRIVATE_REPLY */
	char recipient[TELEGRAM_ID_BYTES];  /* SEND: the private reply's user id */
	int64_t next_offset;           /* COMMIT: the offset being committed */
} tg_call;

struct telegram_channel {
	const parley_host *host;   /* owned by the core; valid until destroy */
	parley_instance *inst;     /* owned by the core; valid until destroy */
	tg_settings cfg;
	tg_call *calls;            /* owned: everything in flight */
	parley_timer *timer;       /* owned by the core; NULL when none is pending */
	int stopping;              /* stop() ran: start nothing new */
	int offset_known;          /* the stored offset has been read */
	int64_t offset;            /* next getUpdates offset; 0: none yet */
	int64_t backoff_ms;        /* current poll error backoff; 0 after a success */
};

static const parley_config_key telegram_config_keys[] = {
	{ "bot_token", PARLEY_CONFIG_STRING, PARLEY_CONFIG_REQUIRED | PARLEY_CONFIG_SECRET,
	  "the bot's token from @BotFather (\"123456:ABC...\")" },
	{ "mode", PARLEY_CONFIG_STRING, 0,
	  "\"webhook\" (default): Telegram POSTs updates; \"polling\": getUpdates long polling" },
	{ "secret_token", PARLEY_CONFIG_STRING, PARLEY_CONFIG_SECRET,
	  "webhook mode (required there): the secret_token given to setWebhook" },
	{ "api_url", PARLEY_CONFIG_STRING, 0,
	  "Bot API base URL (default https://api.telegram.org)" },
	{ "channel_posts", PARLEY_CONFIG_BOOLEAN, 0,
	  "store posts of channels the bot is in (default false)" },
	{ "poll_timeout_s", PARLEY_CONFIG_INTEGER, 0,
	  "polling mode: getUpdates long-poll timeout in seconds (default 25)" },
	{ "poll_retry_ms", PARLEY_CONFIG_INTEGER, 0,
	  "polling mode: first wait after a failed poll, doubling up to 60 s (default 1000)" },
	{ "timeout_ms", PARLEY_CONFIG_INTEGER, 0,
	  "whole-request limit for sendMessage; added to poll_timeout_s for getUpdates "
	  "(default 10000)" },
	{ NULL, 0, 0, NULL }
};

/* ------------------------------------------------------------------------ */
/* Settings                                                                 */
/* ------------------------------------------------------------------------ */

static void settings_free(void *settings)
{
	tg_settings *s = settings;
	pu_wipe(s->token, s->token_len);
	pu_wipe(s->secret, s->secret_len);
	free(s->token);
	free(s->secret);
	free(s->api_url);
	memset(s, 0, sizeof(*s));
}

/* Read and check one instance's config into *out (owned by the caller, free
 * with settings_free). cfg: borrowed. Problems go to config_error, never
 * with a secret's value. */
static int settings_read(const parley_host *host, parley_instance *inst,
                         const parley_config *cfg, void *settings)
{
	tg_settings *out = settings;
	const char *token = host->config_string(cfg, "bot_token");
	const char *mode = host->config_string(cfg, "mode");
	const char *secret = host->config_string(cfg, "secret_token");
	const char *api = host->config_string(cfg, "api_url");
	int64_t poll_timeout = TELEGRAM_DEFAULT_POLL_TIMEOUT_S;
	int64_t poll_retry = TELEGRAM_DEFAULT_POLL_RETRY_MS;
	int64_t timeout = TELEGRAM_DEFAULT_TIMEOUT_MS;
	int channel_posts = 0, polling = 0, ok = 1;
	size_t api_len;

	memset(out, 0, sizeof(*out));
	if (token == NULL || !telegram_token_is_valid(token)) {
		host->config_error(inst, "bot_token", "must be a bot token: <digits>:<letters, "
		                   "digits, _ or ->");
		ok = 0;
	}
	if (mode != NULL && strcmp(mode, "polling") == 0) {
		polling = 1;
	} else if (mode != NULL && strcmp(mode, "webhook") != 0) {
		host->config_error(inst, "mode", "must be \"webhook\" or \"polling\"");
		ok = 0;
	}
	if (secret != NULL && !telegram_secret_is_valid(secret)) {
		host->config_error(inst, "secret_token",
		                   "must be 1 to 256 characters of A-Z, a-z, 0-9, _ and -");
		ok = 0;
	} else if (secret == NULL && !polling) {
		host->config_error(inst, "secret_token", "required in webhook mode");
		ok = 0;
	}
	if (api == NULL)
		api = TELEGRAM_DEFAULT_API_URL;
	if (!pu_url_is_http(api)) {
		host->config_error(inst, "api_url", "must be an http:// or https:// URL");
		ok = 0;
	}
	ok &= pu_config_int(host, inst, cfg, "poll_timeout_s", 0, TELEGRAM_MAX_POLL_TIMEOUT_S,
	               "must be between 0 and 300", &poll_timeout);
	ok &= pu_config_int(host, inst, cfg, "poll_retry_ms", 1, TELEGRAM_MAX_TIMEOUT_MS,
	               "must be between 1 and 600000", &poll_retry);
	ok &= pu_config_int(host, inst, cfg, "timeout_ms", 1, TELEGRAM_MAX_TIMEOUT_MS,
	               "must be between 1 and 600000", &timeout);
	host->config_boolean(cfg, "channel_posts", &channel_posts);
	if (!ok)
		return -1;

	out->token_len = strlen(token);
	out->token = pu_strdup(token);
	out->secret_len = secret != NULL ? strlen(secret) : 0;
	out->secret = pu_strdup(secret);
	out->api_url = pu_strdup(api);
	out->polling = polling;
	out->opts.channel_posts = channel_posts;
	out->poll_timeout_s = poll_timeout;
	out->poll_retry_ms = poll_retry;
	out->timeout_ms = (long)timeout;
	if (out->token == NULL || out->api_url == NULL || (secret != NULL && out->secret == NULL)) {
		host->log(inst, PARLEY_LOG_ERROR, "out of memory reading the config");
		settings_free(out);
		return -1;
	}
	/* "https://api.telegram.org/" + "/bot..." would double the slash. */
	api_len = strlen(out->api_url);
	while (api_len > 0 && out->api_url[api_len - 1] == '/')
		out->api_url[--api_len] = '\0';
	return 0;
}

static void settings_announce(void *self)
{
	const telegram_channel *ch = self;
	if (ch->cfg.polling)
		ch->host->log(ch->inst, PARLEY_LOG_INFO,
		              "polling getUpdates (long-poll %" PRId64 " s)%s",
		              ch->cfg.poll_timeout_s,
		              ch->cfg.opts.channel_posts ? "; channel posts are stored" : "");
	else
		ch->host->log(ch->inst, PARLEY_LOG_INFO,
		              "taking webhooks checked with X-Telegram-Bot-Api-Secret-Token%s",
		              ch->cfg.opts.channel_posts ? "; channel posts are stored" : "");
}

/* Mask the token in s (caller's buffer of size bytes): reasons and log
 * lines carry texts from other libraries (libcurl errors) that could quote
 * a URL. */
static void scrub_token(const telegram_channel *ch, char *s, size_t size)
{
	telegram_scrub(s, size, ch->cfg.token);
}

/* ------------------------------------------------------------------------ */
/* Calls in flight                                                          */
/* ------------------------------------------------------------------------ */

/* A new call linked into ch's list (owned by the list until call_finish),
 * or NULL when out of memory. */
static tg_call *call_new(telegram_channel *ch, tg_call_kind kind)
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
static void call_finish(tg_call *c)
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
	int64_t update_id = -1;
	char why[200];

	if (subpath != NULL && subpath[0] != '\0' && strcmp(subpath, "/") != 0) {
		host->respond_error(req, 404, "not_found", "POST to the instance's URL itself");
		return;
	}
	if (ch->cfg.polling) {
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
	                              ch->cfg.secret, ch->cfg.secret_len, host->secure_equals)) {
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
	switch (telegram_parse_update(body, len, &ch->cfg.opts, emit_to_request, &e, &update_id,
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
/* Inbound: polling mode                                                    */
/* ------------------------------------------------------------------------ */

static void poll_now(telegram_channel *ch);
static void load_offset(telegram_channel *ch);

static void poll_timer_fired(void *arg)
{
	telegram_channel *ch = arg;

	ch->timer = NULL;   /* the core freed it */
	if (ch->stopping)
		return;
	if (ch->offset_known)
		poll_now(ch);
	else
		load_offset(ch);
}

/* Try again after delay_ms. */
static void poll_later(telegram_channel *ch, int64_t delay_ms)
{
	if (ch->stopping || ch->timer != NULL)
		return;
	ch->timer = ch->host->timer_start(ch->inst, (uint64_t)delay_ms, poll_timer_fired, ch);
	if (ch->timer == NULL)
		ch->host->log(ch->inst, PARLEY_LOG_ERROR, "could not start a timer: polling stops");
}

/* After a failure: wait poll_retry_ms, doubling up to a minute. */
static void poll_backoff(telegram_channel *ch, const char *what)
{
	int64_t max = ch->cfg.poll_retry_ms > TELEGRAM_POLL_BACKOFF_MAX_MS
	              ? ch->cfg.poll_retry_ms : TELEGRAM_POLL_BACKOFF_MAX_MS;
	char line[400];

	ch->backoff_ms = ch->backoff_ms == 0 ? ch->cfg.poll_retry_ms : ch->backoff_ms * 2;
	if (ch->backoff_ms > max)
		ch->backoff_ms = max;
	snprintf(line, sizeof(line), "%s", what);
	scrub_token(ch, line, sizeof(line));
	ch->host->counter_add(ch->inst, "telegram_poll_errors_total", 1);
	ch->host->log(ch->inst, PARLEY_LOG_WARN, "%s; retrying in %" PRId64 " ms", line,
	              ch->backoff_ms);
	poll_later(ch, ch->backoff_ms);
}

/* The committed page's done callback. arg: the COMMIT call, freed here. */
static void commit_done(void *arg, int ok)
{
	tg_call *c = arg;
	telegram_channel *ch = c->ch;
	int64_t next = c->next_offset;

	call_finish(c);
	if (ch == NULL)
		return;
	if (!ok) {
		/* Nothing was written: poll again from the old offset. The same
		 * updates come back; their dedupe keys make that safe. */
		poll_backoff(ch, "getUpdates page not stored");
		return;
	}
	/* Only now, with the page stored, does the cursor move. */
	ch->offset = next;
	ch->backoff_ms = 0;
	if (!ch->stopping)
		poll_now(ch);
}

typedef struct tg_batch_emit {
	const parley_host *host;
	parley_emit_batch *batch;
} tg_batch_emit;

/* ev: borrowed; emit_event copies it. */
static int emit_into_batch(void *arg, const parley_event *ev)
{
	tg_batch_emit *e = arg;

	return e->host->emit_event(e->batch, ev) == 0 ? 0 : -1;
}

/* A successful getUpdates answer: store its updates and the next offset
 * together. body: borrowed. */
static void take_updates(telegram_channel *ch, const unsigned char *body, size_t len)
{
	const parley_host *host = ch->host;
	tg_batch_emit e = { host, NULL };
	telegram_poll_summary sum;
	char why[300], line[360], value[32];
	tg_call *c;

	e.batch = host->emit_begin(ch->inst);
	if (e.batch == NULL) {
		poll_backoff(ch, "could not begin a batch of events");
		return;
	}
	if (!telegram_parse_updates(body, len, ch->offset, &ch->cfg.opts, emit_into_batch, &e, &sum,
	                            why, sizeof(why))) {
		host->emit_abort(e.batch);
		snprintf(line, sizeof(line), "getUpdates failed: %s", why);
		poll_backoff(ch, line);
		return;
	}
	if (sum.skipped > 0) {
		host->counter_add(ch->inst, "telegram_rejected_total", sum.skipped);
		host->log(ch->inst, PARLEY_LOG_WARN, "getUpdates: %zu unusable update(s) skipped",
		          sum.skipped);
	}
	if (sum.ignored > 0)
		host->counter_add(ch->inst, "telegram_ignored_total", sum.ignored);
	if (sum.updates == 0 || sum.next_offset == ch->offset) {
		host->emit_abort(e.batch);
		ch->backoff_ms = 0;
		/* A long poll that came back empty waited already; a short poll
		 * (poll_timeout_s 0) waits poll_retry_ms between calls. */
		if (ch->cfg.poll_timeout_s == 0)
			poll_later(ch, ch->cfg.poll_retry_ms);
		else
			poll_now(ch);
		return;
	}
	c = call_new(ch, TG_CALL_COMMIT);
	if (c == NULL) {
		host->emit_abort(e.batch);
		poll_backoff(ch, "out of memory");
		return;
	}
	c->next_offset = sum.next_offset;
	host->counter_add(ch->inst, "telegram_events_total", sum.emitted);
	snprintf(value, sizeof(value), "%" PRId64, sum.next_offset);
	host->emit_commit(e.batch, TELEGRAM_OFFSET_KEY, value, commit_done, c);
}

/* getUpdates answered. arg: the POLL call, freed here. response: borrowed. */
static void poll_done(void *arg, const parley_http_response *response)
{
	tg_call *c = arg;
	telegram_channel *ch = c->ch;
	const parley_host *host;
	const unsigned char *body;
	long status;
	size_t len = 0;
	char line[400], desc[300];

	call_finish(c);
	if (ch == NULL || ch->stopping)
		return;
	host = ch->host;
	status = host->http_response_status(response);
	body = host->http_response_body(response, &len);
	if (status == 200) {
		take_updates(ch, body, len);
		return;
	}
	if (status == 0) {
		const char *err = host->http_response_error(response);
		snprintf(line, sizeof(line), "getUpdates failed: %s", err != NULL ? err : "transport error");
	} else {
		telegram_describe(body, len, desc, sizeof(desc));
		/* 409: a webhook is set, or another process polls this bot. */
		snprintf(line, sizeof(line), "getUpdates failed: Telegram answered %ld%s%s%s", status,
		         desc[0] != '\0' ? ": " : "", desc,
		         status == 401 || status == 404 ? " (check bot_token)" : "");
	}
	poll_backoff(ch, line);
}

/* One getUpdates call from the current offset. */
static void poll_now(telegram_channel *ch)
{
	char *url = NULL, *body = NULL;
	tg_call *c;

	if (ch->stopping)
		return;
	url = telegram_method_url(ch->cfg.api_url, ch->cfg.token, "getUpdates");
	body = telegram_get_updates_body(ch->offset, ch->cfg.poll_timeout_s, &ch->cfg.opts);
	c = call_new(ch, TG_CALL_POLL);
	if (url == NULL || body == NULL || c == NULL) {
		if (c != NULL)
			call_finish(c);
		poll_backoff(ch, "getUpdates failed: out of memory");
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
			/* The long poll holds the answer up to poll_timeout_s: the
			 * transfer limit must exceed it. */
			.timeout_ms = (long)(ch->cfg.poll_timeout_s * 1000) + ch->cfg.timeout_ms,
		};
		if (ch->host->http_request(ch->inst, &call, poll_done, c) != 0) {
			call_finish(c);
			poll_backoff(ch, "getUpdates failed: could not start the request");
		}
	}
	pu_wipe(url, url != NULL ? strlen(url) : 0);
	free(url);
	free(body);
}

/* The stored offset arrived. arg: the LOAD call, freed here. value:
 * borrowed, NULL when nothing is stored yet. */
static void offset_loaded(void *arg, int ok, const char *value)
{
	tg_call *c = arg;
	telegram_channel *ch = c->ch;
	int64_t v = 0;
	char *end = NULL;

	call_finish(c);
	if (ch == NULL || ch->stopping)
		return;
	if (!ok) {
		poll_backoff(ch, "could not read the stored getUpdates offset");
		return;
	}
	if (value != NULL) {
		v = strtoll(value, &end, 10);
		if (end == value || *end != '\0' || v < 0) {
			ch->host->log(ch->inst, PARLEY_LOG_WARN,
			              "stored offset is not a number: starting from Telegram's oldest "
			              "unconfirmed update");
			v = 0;
		}
	}
	ch->offset = v;
	ch->offset_known = 1;
	ch->backoff_ms = 0;
	poll_now(ch);
}

static void load_offset(telegram_channel *ch)
{
	tg_call *c = call_new(ch, TG_CALL_LOAD);

	if (c == NULL) {
		poll_backoff(ch, "out of memory");
		return;
	}
	ch->host->state_get(ch->inst, TELEGRAM_OFFSET_KEY, offset_loaded, c);
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
		call_finish(c);
		return;
	}
	host = ch->host;
	status = host->http_response_status(response);
	body = host->http_response_body(response, &len);
	telegram_classify_send(status, host->http_response_error(response), body, len,
	                       host->http_response_header(response, "Retry-After"),
	                       host->now_ms(), &r);
	scrub_token(ch, r.reason, sizeof(r.reason));
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
	call_finish(c);
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
	c = call_new(ch, TG_CALL_SEND);
	if (url == NULL || c == NULL) {
		if (c != NULL)
			call_finish(c);
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
			.timeout_ms = ch->cfg.timeout_ms,
		};
		c->d = d;
		c->private_reply = in.kind == PARLEY_SEND_PRIVATE_REPLY;
		if (in.recipient_id != NULL)
			snprintf(c->recipient, sizeof(c->recipient), "%s", in.recipient_id);
		if (host->http_request(ch->inst, &call, send_done, c) != 0) {
			call_finish(c);
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

	if (next->polling != ch->cfg.polling) {
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
	/* Polling needs emit_begin..., private replies delivery_set_thread_id. */
	.host_needs = PU_HOST_NEEDS(delivery_set_thread_id),
	.too_old = "this parleyd is too old for the telegram plugin (plugin ABI 1.1 needed)",
	.check_reload = telegram_check_reload,
	.finish = telegram_finish,
	.read = settings_read,
	.free = settings_free,
	.announce = settings_announce,
};

PU_INSTANCE_FUNCTIONS(telegram, telegram_class)

static int telegram_start(void *self)
{
	telegram_channel *ch = self;

	if (ch->cfg.polling)
		load_offset(ch);
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
	.config_keys = telegram_config_keys,
	.create = telegram_create,
	.start = telegram_start,
	.reload = telegram_reload,
	.stop = telegram_stop,
	.destroy = telegram_destroy,
	.channel = &telegram_ops,
};

PARLEY_PLUGIN_ENTRY(&telegram_descriptor)
