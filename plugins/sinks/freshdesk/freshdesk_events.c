/* freshdesk_events.c - Freshdesk's automation webhook into Parley: the
 * credentials are checked first; a public comment waits for its ticket's
 * record of Parley's notes, so a note Parley added is known as its own;
 * then the one event is parsed (fd_parse_webhook) and handed to the core. */
#include <stdlib.h>
#include <string.h>

#include "freshdesk_sink.h"

/* ------------------------------------------------------------------------ */
/* Webhooks in                                                              */
/* ------------------------------------------------------------------------ */

typedef struct fd_emit_ctx {
	fd_sink *fs;
	parley_request *req;
	const fd_notes *own;        /* the ticket's recorded notes; NULL: none read */
} fd_emit_ctx;

static int emit_one(void *arg, const parley_ticket_event *ev)
{
	fd_emit_ctx *c = arg;
	parley_ticket_event mine;

	if (ev->type == PARLEY_TICKET_COMMENT && c->own != NULL &&
	    fd_notes_owns(c->own, ev->comment_id)) {
		/* A note Parley added, reported before (or without) its answer. */
		mine = *ev;
		mine.from_parley = 1;
		return c->fs->host->request_emit_ticket_event(c->req, &mine);
	}
	return c->fs->host->request_emit_ticket_event(c->req, ev);
}

static void reject(fd_sink *fs, parley_request *req, int status, const char *code,
                   const char *detail)
{
	fs->host->counter_add(fs->inst, "freshdesk_webhook_rejected_total", 1);
	fs->host->respond_error(req, status, code, detail);
}

/* A webhook waiting for its ticket's record. */
typedef struct hook_wait {
	fd_sink *fs;
	parley_request *req;        /* owned by the core until answered */
} hook_wait;

static void hook_parse(fd_sink *fs, parley_request *req, const fd_notes *own);

/* value: borrowed for the call. */
static void hook_notes_loaded(void *arg, int ok, const char *value)
{
	hook_wait *w = arg;
	fd_notes own;

	if (!ok) {
		/* Unknown whether it is Parley's own note: rather than risk
		 * sending a customer their own words, Freshdesk may try again. */
		reject(w->fs, w->req, 503, "unavailable", "could not read Parley's notes; try again");
	} else {
		fd_notes_parse(value, &own);
		hook_parse(w->fs, w->req, &own);
	}
	free(w);
}

/* req: owned by the core until answered, exactly once, here or from
 * hook_notes_loaded. */
void fd_handle_request(void *self, parley_request *req)
{
	fd_sink *fs = self;
	const parley_host *host = fs->host;
	const char *method = host->request_method(req);
	const char *subpath = host->request_subpath(req);
	const unsigned char *body;
	size_t len = 0;
	char ticket_id[FD_ID_BYTES], key[FD_NOTES_KEY_BYTES];
	fd_auth_result auth;

	if (subpath != NULL && subpath[0] != '\0' && strcmp(subpath, "/") != 0) {
		reject(fs, req, 404, "not_found", "POST to the events URL itself");
		return;
	}
	if (method == NULL || strcmp(method, "POST") != 0) {
		reject(fs, req, 405, "method_not_allowed", "only POST");
		return;
	}
	if (fs->cfg.webhook_secret == NULL) {
		reject(fs, req, 401, "webhooks_disabled", "no webhook_secret is configured");
		return;
	}
	auth = fd_check_auth(host->request_header(req, "X-Parley-Webhook-Secret"),
	                     host->request_header(req, "Authorization"), fs->cfg.webhook_username,
	                     fs->cfg.webhook_secret, host->secure_equals);
	if (auth != FD_AUTH_OK) {
		reject(fs, req, 401, auth == FD_AUTH_MISSING ? "missing_credentials" : "bad_credentials",
		       auth == FD_AUTH_MISSING ? "send X-Parley-Webhook-Secret or Basic auth"
		       : "wrong webhook credentials");
		return;
	}
	if (!PARLEY_HAS_FIELD(host, parley_host, request_emit_ticket_event) ||
	    host->request_emit_ticket_event == NULL) {
		reject(fs, req, 501, "not_supported", "this parleyd cannot store ticket events");
		return;
	}
	body = host->request_body(req, &len);
	if (body != NULL && fd_webhook_public_ticket(body, len, ticket_id) &&
	    fd_notes_key(ticket_id, key)) {
		/* It may be a note Parley is adding: read the ticket's record. */
		hook_wait *w = calloc(1, sizeof(*w));
		if (w == NULL) {
			reject(fs, req, 503, "unavailable", "out of memory");
			return;
		}
		w->fs = fs;
		w->req = req;
		host->state_get(fs->inst, key, hook_notes_loaded, w);
		return;
	}
	hook_parse(fs, req, NULL);
}

/* Parse the webhook and answer it. own: the ticket's recorded notes, or
 * NULL. */
static void hook_parse(fd_sink *fs, parley_request *req, const fd_notes *own)
{
	const parley_host *host = fs->host;
	const unsigned char *body;
	size_t len = 0;
	char why[256];
	fd_emit_ctx ctx = { fs, req, own };

	body = host->request_body(req, &len);
	if (body == NULL) {
		body = (const unsigned char *)"";
		len = 0;
	}
	switch (fd_parse_webhook(body, len, host->now_ms(), emit_one, &ctx, why, sizeof(why))) {
	case FD_PARSE_EMITTED:
		host->counter_add(fs->inst, "freshdesk_webhook_events_total", 1);
		host->respond(req, 200, "application/json", "{\"accepted\":1}", 14);
		return;
	case FD_PARSE_IGNORED:
		host->log(fs->inst, PARLEY_LOG_INFO, "webhook ignored: %s", why);
		host->counter_add(fs->inst, "freshdesk_webhook_ignored_total", 1);
		host->respond(req, 200, "application/json", "{\"accepted\":0}", 14);
		return;
	case FD_PARSE_INVALID:
		reject(fs, req, 400, "invalid_payload", why);
		return;
	case FD_PARSE_REFUSED:
		reject(fs, req, 400, "event_rejected", "the event was refused");
		return;
	}
}
