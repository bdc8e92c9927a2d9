/* zendesk.c - the "zendesk" sink: tickets in Zendesk Support for Parley's
 * cases, customer messages as comments on them, and Zendesk's webhooks
 * (agent comments, status changes) back into Parley.
 *
 * Every delivery is a short sequence of API requests ("steps"):
 *   open_ticket:    GET tickets.json?external_id=<case>   (is it there already?)
 *                   POST users/create_or_update.json        (the requester, when
 *                                                            not remembered)
 *                   POST tickets.json + Idempotency-Key     (only when not)
 *   append_message: GET tickets/{id}.json                   (the requester, once)
 *                   GET tickets/{id}/comments.json          (only after an uncertain PUT)
 *                   PUT tickets/{id}.json with the comment
 * Each step takes a token from the instance's bucket (requests_per_minute),
 * so a backlog drains at the plan's rate instead of in 429 storms. A 429
 * pauses the whole instance until its Retry-After. A delivery that would
 * wait longer than ZD_MAX_WAIT_MS for its first token goes back to the core
 * with the time its token frees, so it never outlives its job lease.
 *
 * The credentials and the webhook secret are never logged and never put
 * into a reason.
 *
 * This file holds the settings table (the core fills and checks them),
 * the lifecycle and the descriptor; see zendesk_sink.h for the others. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley/parley.h"
#include "../../common/plugin_util.h"
#include "../../common/instance.h"
#include "zendesk_sink.h"

#define ZD_VERSION "0.1.0"
#define ZD_MAX_RPM 100000
#define ZD_MAX_TIMEOUT_MS 120000

/* ------------------------------------------------------------------------ */
/* Settings                                                                 */
/* ------------------------------------------------------------------------ */

#define ZS(field) offsetof(zd_settings, field)
/* Every setting takes effect on SIGHUP: requests in flight hold no pointer
 * into the settings (the core copied each call), and zd_reloaded forgets
 * what belonged to another account or user. */
#define ZD_RELOAD PARLEY_SETTING_FLAG_RELOADABLE
/* Credentials go into a header: non-empty, no control characters. */
#define ZD_HEADER_TEXT (PARLEY_SETTING_FLAG_PRINTABLE | ZD_RELOAD)

static const parley_setting zd_settings_table[] = {
	{ .name = "base_url", .type = PARLEY_SETTING_URL,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | ZD_RELOAD, .offset = ZS(base_url),
	  .description = "the account's URL, e.g. https://acme.zendesk.com" },
	{ .name = "email", .type = PARLEY_SETTING_STRING, .flags = ZD_HEADER_TEXT,
	  .min = 1, .max = INT64_MAX, .offset = ZS(email),
	  .description = "the API user's e-mail (with api_token)" },
	{ .name = "api_token", .type = PARLEY_SETTING_SECRET, .flags = ZD_HEADER_TEXT,
	  .min = 1, .max = INT64_MAX, .offset = ZS(api_token),
	  .description = "a Zendesk API token" },
	{ .name = "oauth_token", .type = PARLEY_SETTING_SECRET, .flags = ZD_HEADER_TEXT,
	  .min = 1, .max = INT64_MAX, .offset = ZS(oauth_token),
	  .description = "an OAuth access token (instead of email + api_token)" },
	{ .name = "webhook_secret", .type = PARLEY_SETTING_SECRET, .flags = ZD_HEADER_TEXT,
	  .min = 1, .max = INT64_MAX, .offset = ZS(webhook_secret),
	  .description = "the signing secret of the Zendesk webhook (without it events are refused)" },
	{ .name = "requests_per_minute", .type = PARLEY_SETTING_INTEGER, .flags = ZD_RELOAD,
	  .default_value = "200", .min = 1, .max = ZD_MAX_RPM, .offset = ZS(rpm),
	  .description = "API requests per minute this instance may make" },
	{ .name = "timeout_ms", .type = PARLEY_SETTING_INTEGER, .flags = ZD_RELOAD,
	  .default_value = "10000", .min = 1, .max = ZD_MAX_TIMEOUT_MS, .offset = ZS(timeout_ms),
	  .description = "limit for one API request" },
	{ .name = "insecure_skip_verify", .type = PARLEY_SETTING_BOOLEAN, .flags = ZD_RELOAD,
	  .default_value = "false", .offset = ZS(insecure_skip_verify),
	  .description = "do not verify TLS certificates (tests only)" },
};

/* What the table cannot say: the account URL's shape, the e-mail's, and
 * which credentials go together. settings: borrowed. Never names a value. */
static int settings_check(const parley_host *host, parley_instance *inst, const void *settings)
{
	const zd_settings *s = settings;
	int ok = 1;

	if (strchr(s->base_url, '?') != NULL || strchr(s->base_url, '@') != NULL) {
		host->config_error(inst, "base_url",
		                   "must be an http:// or https:// URL without user or query, "
		                   "e.g. https://acme.zendesk.com");
		ok = 0;
	}
	if (s->email != NULL && strchr(s->email, '@') == NULL) {
		host->config_error(inst, "email", "must be the API user's e-mail address");
		ok = 0;
	}
	if (s->oauth_token != NULL && s->api_token != NULL) {
		host->config_error(inst, "oauth_token", "set either oauth_token or api_token, not both");
		ok = 0;
	} else if (s->oauth_token == NULL && (s->api_token == NULL || s->email == NULL)) {
		host->config_error(inst, s->api_token == NULL ? "api_token" : "email",
		                   "required: email and api_token, or oauth_token");
		ok = 0;
	}
	return ok ? 0 : -1;
}

static void settings_announce(void *self)
{
	const zendesk_sink *zs = self;
	zs->host->log(zs->inst, PARLEY_LOG_INFO,
	              "Zendesk at %s, %s authentication, at most %lld requests per minute%s",
	              zs->cfg.base_url, zs->cfg.oauth_token == NULL ? "API token" : "OAuth",
	              (long long)zs->cfg.rpm,
	              zs->cfg.webhook_secret != NULL ? ""
	              : "; no webhook_secret: Zendesk webhooks are refused");
	if (zs->cfg.insecure_skip_verify)
		zs->host->log(zs->inst, PARLEY_LOG_WARN,
		              "insecure_skip_verify is on: TLS certificates are not checked");
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

static int zd_init(void *self)
{
	zendesk_sink *zs = self;

	zs->me_tried_ms = zs->host->now_ms() - ZD_ME_RETRY_MS;
	return 0;
}

static bool same(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Another account or user may be behind the new settings: forget the
 * API user and the ids learned from the old one. old: borrowed, still
 * valid during the call. */
static void zd_reloaded(void *self, const void *old_settings)
{
	zendesk_sink *zs = self;
	const zd_settings *old = old_settings;

	if (!same(old->base_url, zs->cfg.base_url) || !same(old->email, zs->cfg.email) ||
	    !same(old->api_token, zs->cfg.api_token) || !same(old->oauth_token, zs->cfg.oauth_token)) {
		zs->api_user_id[0] = '\0';
		zs->me_tried_ms = zs->host->now_ms() - ZD_ME_RETRY_MS;
		memset(zs->requesters, 0, sizeof(zs->requesters));
		memset(zs->users, 0, sizeof(zs->users));
	}
}

static void zd_finish(void *self)
{
	zendesk_sink *zs = self;

	for (size_t i = 0; i < ZD_UNCERTAIN; i++)
		free(zs->uncertain[i].key);
}

/* The core fills and checks the settings (read and free NULL); check adds
 * the rules that span settings. */
static const pu_instance_class zd_class = {
	PU_INSTANCE_LAYOUT(zendesk_sink, cfg),
	.host_needs = PU_HOST_NEEDS(config_settings),
	.too_old = "this parleyd is too old for the zendesk plugin",
	.init = zd_init,
	.reloaded = zd_reloaded,
	.finish = zd_finish,
	.pace = zd_pacer_rate,
	PU_INSTANCE_PACER(zendesk_sink, pacer),
	.pace_start = zd_step_start,
	.pace_back = zd_hand_back,
	.pace_free = zd_op_item_free,
	.pace_pause_reason = "Zendesk rate limit: waiting for Retry-After",
	.check = settings_check,
	.announce = settings_announce,
};

PU_INSTANCE_FUNCTIONS(zd, zd_class)

/* Start nothing new; waiting deliveries go back to the core. Requests in
 * flight complete their deliveries from step_done. */
static void zd_stop(void *self)
{
	zendesk_sink *zs = self;

	zs->stopped = 1;
	pu_pacer_stop(&zs->pacer, "shutting down");
}

static const parley_sink_ops zd_ops = {
	.size = sizeof(parley_sink_ops),
	.open_ticket = zd_open_ticket,
	.append_message = zd_append_message,
	.handle_request = zd_handle_request,
};

static const parley_plugin_descriptor zd_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_SINK,
	.name = "zendesk",
	.version = ZD_VERSION,
	.description = "tickets in Zendesk Support; agent comments and status changes back",
	.create = zd_create,
	.reload = zd_reload,
	.stop = zd_stop,
	.destroy = zd_destroy,
	.sink = &zd_ops,
	PARLEY_SETTINGS(zd_settings_table, zd_settings),
};

PARLEY_PLUGIN_ENTRY(&zd_descriptor)
