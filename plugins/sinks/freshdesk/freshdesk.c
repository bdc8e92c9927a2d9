/* freshdesk.c - the "freshdesk" sink: tickets in Freshdesk (API v2) for
 * Parley's cases, customer follow-ups as incoming notes, and Freshdesk's
 * automation webhooks back in as ticket events.
 *
 * Outbound work is paced by a per-instance budget (requests_per_minute): one
 * request starts at most every 60000 / requests_per_minute ms, requests wait
 * in a queue, and a delivery that would wait longer than FD_HOLD_MAX_MS goes
 * back to the core with the time its slot frees. A 429 pauses the whole
 * instance until Retry-After.
 *
 * Freshdesk has no idempotency key. Every ticket carries a tag derived from
 * the job's idempotency key, and open_ticket first looks for a ticket with
 * that tag among the requester's tickets: a retry after a timeout finds the
 * ticket the first attempt opened instead of opening a second one.
 *
 * Nor is adding a note. Before the POST, the note is recorded in the plugin
 * state (freshdesk_notes.h): the webhook that reports it is known as
 * Parley's own even when the POST's answer is lost, and a retry reads the
 * ticket's conversations for the note instead of adding it a second time.
 *
 * The pure half (requests, answers, HTML, the webhook parser) is declared
 * in freshdesk_api.h. The API key is never logged or put into a reason.
 *
 * This file holds the settings table (the core fills and checks them),
 * the lifecycle and the descriptor; see freshdesk_sink.h for the others. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "parley/parley.h"
#include "../../common/plugin_util.h"
#include "../../common/instance.h"
#include "freshdesk_sink.h"

#define FD_MAX_RPM 60000
#define FD_MAX_TIMEOUT_MS 600000
#define FD_MAX_KEY_BYTES 4096          /* fd_auth_header's limit */

/* ------------------------------------------------------------------------ */
/* Settings                                                                 */
/* ------------------------------------------------------------------------ */

#define FS(field) offsetof(fd_settings, field)
/* Every setting takes effect on SIGHUP: requests in flight hold no pointer
 * into the settings (the core copied each call), and each request builds
 * its URL and Authorization from the settings in force. */
#define FD_RELOAD PARLEY_SETTING_FLAG_RELOADABLE
/* Text that goes into a header: no control characters. */
#define FD_HEADER_TEXT (PARLEY_SETTING_FLAG_PRINTABLE | FD_RELOAD)

static const parley_setting fd_settings_table[] = {
	{ .name = "base_url", .type = PARLEY_SETTING_URL,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | FD_RELOAD, .offset = FS(base_url),
	  .description = "the helpdesk's URL, e.g. https://acme.freshdesk.com" },
	{ .name = "api_key", .type = PARLEY_SETTING_SECRET,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | FD_HEADER_TEXT,
	  .min = 1, .max = FD_MAX_KEY_BYTES, .offset = FS(api_key),
	  .description = "the API key of the agent Parley acts as" },
	{ .name = "webhook_secret", .type = PARLEY_SETTING_SECRET, .flags = FD_HEADER_TEXT,
	  .min = 1, .max = INT64_MAX, .offset = FS(webhook_secret),
	  .description = "the secret the automation webhook sends (X-Parley-Webhook-Secret or "
	                 "Basic auth); without it webhooks are refused" },
	{ .name = "webhook_username", .type = PARLEY_SETTING_STRING, .flags = FD_HEADER_TEXT,
	  .min = 1, .max = INT64_MAX, .offset = FS(webhook_username),
	  .description = "user name for the webhook's Basic auth (unset: the header only)" },
	{ .name = "requests_per_minute", .type = PARLEY_SETTING_INTEGER, .flags = FD_RELOAD,
	  .default_value = "50", .min = 1, .max = FD_MAX_RPM, .offset = FS(rpm),
	  .description = "API budget of this instance" },
	{ .name = "timeout_ms", .type = PARLEY_SETTING_INTEGER, .flags = FD_RELOAD,
	  .default_value = "10000", .min = 1, .max = FD_MAX_TIMEOUT_MS, .offset = FS(timeout_ms),
	  .description = "limit for one API request" },
	{ .name = "priority", .type = PARLEY_SETTING_INTEGER, .flags = FD_RELOAD,
	  .default_value = "1", .min = 1, .max = 4, .offset = FS(priority),
	  .description = "priority of new tickets (1 Low .. 4 Urgent)" },
	{ .name = "source", .type = PARLEY_SETTING_INTEGER, .flags = FD_RELOAD,
	  .default_value = "2", .min = 1, .max = 1000, .offset = FS(source),
	  .description = "source of new tickets (2 Portal)" },
	{ .name = "group_id", .type = PARLEY_SETTING_INTEGER, .flags = FD_RELOAD,
	  .min = 1, .max = INT64_MAX, .offset = FS(group_id),
	  .description = "Freshdesk group new tickets go to (unset: Freshdesk's default)" },
	{ .name = "tls_verify", .type = PARLEY_SETTING_BOOLEAN, .flags = FD_RELOAD,
	  .default_value = "true", .offset = FS(tls_verify),
	  .description = "verify TLS certificates (false for tests only)" },
};

/* What the table cannot say: base_url without query or fragment (the API
 * paths are appended), a user name Basic auth can carry, and that it needs
 * the secret as its password. settings: borrowed. Never names a value. */
static int settings_check(const parley_host *host, parley_instance *inst, const void *settings)
{
	const fd_settings *s = settings;
	int ok = 1;

	if (strchr(s->base_url, '?') != NULL || strchr(s->base_url, '#') != NULL) {
		host->config_error(inst, "base_url", "must be an http:// or https:// URL");
		ok = 0;
	}
	if (s->webhook_username != NULL && strchr(s->webhook_username, ':') != NULL) {
		host->config_error(inst, "webhook_username",
		                   "must be non-empty, without ':' or control characters");
		ok = 0;
	}
	if (s->webhook_username != NULL && s->webhook_secret == NULL) {
		host->config_error(inst, "webhook_username", "needs webhook_secret as its password");
		ok = 0;
	}
	return ok ? 0 : -1;
}

static void settings_announce(void *self)
{
	const fd_sink *fs = self;
	fs->host->log(fs->inst, PARLEY_LOG_INFO,
	              "Freshdesk at %s: at most %lld requests a minute, webhooks %s",
	              /* a URL with user:password@ is not logged */
	              strchr(fs->cfg.base_url, '@') == NULL ? fs->cfg.base_url : "the base_url",
	              (long long)fs->cfg.rpm,
	              fs->cfg.webhook_secret == NULL ? "refused (no webhook_secret)"
	              : fs->cfg.webhook_username != NULL ? "by secret header or Basic auth"
	              : "by secret header");
	if (!fs->cfg.tls_verify)
		fs->host->log(fs->inst, PARLEY_LOG_WARN,
		              "tls_verify is false: TLS certificates are not checked");
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

/* The core fills and checks the settings (read and free NULL); check adds
 * the rules the table cannot state. */
static const pu_instance_class fd_class = {
	PU_INSTANCE_LAYOUT(fd_sink, cfg),
	.host_needs = PU_HOST_NEEDS(config_settings),
	.too_old = "this parleyd is too old for the freshdesk plugin",
	.pace = fd_pacer_rate,
	PU_INSTANCE_PACER(fd_sink, pacer),
	.pace_start = fd_start_request,
	.pace_back = fd_hand_back,
	.pace_free = fd_op_item_free,
	.pace_pause_reason = "Freshdesk rate limit: waiting for the pause to end",
	.check = settings_check,
	.announce = settings_announce,
};

PU_INSTANCE_FUNCTIONS(fd, fd_class)

/* Start nothing new: waiting deliveries go back to the core. Requests in
 * flight still complete from http_done. */
static void fd_stop(void *self)
{
	fd_sink *fs = self;

	fs->stopped = 1;
	pu_pacer_stop(&fs->pacer, "shutting down");
}

static const parley_sink_ops fd_ops = {
	.size = sizeof(parley_sink_ops),
	.open_ticket = fd_open_ticket,
	.append_message = fd_append_message,
	.handle_request = fd_handle_request,
};

static const parley_plugin_descriptor fd_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_SINK,
	.name = "freshdesk",
	.version = FD_VERSION,
	.description = "tickets in Freshdesk; notes for follow-ups; automation webhooks back",
	.create = fd_create,
	.reload = fd_reload,
	.stop = fd_stop,
	.destroy = fd_destroy,
	.sink = &fd_ops,
	PARLEY_SETTINGS(fd_settings_table, fd_settings),
};

PARLEY_PLUGIN_ENTRY(&fd_descriptor)
