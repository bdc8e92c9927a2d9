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
 * The pure half (requests, answers, HTML, the webhook parser) is in
 * freshdesk_api.c. The API key is never logged or put into a reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "parley/parley.h"
#include "freshdesk_api.h"
#include "freshdesk_notes.h"
#include "../../common/plugin_util.h"
#include "../../common/instance.h"
#include "../../common/pacer.h"

#define FD_VERSION "0.1.0"
#define FD_DEFAULT_RPM 50
#define FD_MAX_RPM 60000
#define FD_DEFAULT_TIMEOUT_MS 10000
#define FD_MAX_TIMEOUT_MS 600000
#define FD_DEFAULT_PRIORITY 1          /* Low */
#define FD_DEFAULT_SOURCE 2            /* Portal */
#define FD_HOLD_MAX_MS 20000           /* a longer wait for a slot hands the job back */

typedef struct fd_settings {
	char *base_url;             /* owned; no trailing slash */
	char *auth_header;          /* owned; a secret, wiped before it is freed */
	char *webhook_secret;       /* owned; a secret; NULL: webhooks refused */
	char *webhook_username;     /* owned; NULL: Basic auth not accepted */
	char *group_id;             /* owned; NULL: Freshdesk's default */
	int64_t rpm;
	int64_t priority;
	int64_t source;
	long timeout_ms;
	int insecure;               /* tls_verify false (tests only) */
} fd_settings;

typedef enum fd_step {
	FD_STEP_LOOKUP = 0,         /* open_ticket: find an earlier attempt's ticket */
	FD_STEP_CREATE = 1,         /* open_ticket: POST /api/v2/tickets */
	FD_STEP_NOTE = 2,           /* append_message: POST .../notes */
	FD_STEP_NOTE_LOOKUP = 3     /* append_message retry: GET .../conversations */
} fd_step;

struct fd_sink;

/* One delivery and the request it makes next. */
typedef struct fd_op {
	pu_pacer_item link;         /* in the pacer's queue while waiting */
	struct fd_sink *fs;         /* borrowed: no callback runs after destroy */
	parley_delivery *d;         /* owned by the core until delivery_complete */
	fd_step step;
	char *path;                 /* owned: path and query of the next request */
	char *body;                 /* owned: the ticket or note JSON */
	char tag[FD_TAG_BYTES];     /* the job's tag (open_ticket) */
	char comment_id[FD_COMMENT_ID_BYTES]; /* the note's id as the webhook reports it */
	char ticket_id[FD_ID_BYTES];          /* append_message: the ticket */
	char job_tag[17];                     /* append_message: the job's tag */
	char fp[17];                          /* append_message: the text's fingerprint */
	fd_note_search search;                /* FD_STEP_NOTE_LOOKUP */
} fd_op;

typedef struct fd_sink {
	const parley_host *host;    /* owned by the core; valid until destroy */
	parley_instance *inst;      /* owned by the core; valid until destroy */
	fd_settings cfg;
	pu_pacer pacer;             /* requests waiting for their slot; the 429 pause */
	int stopped;
} fd_sink;

static const parley_config_key fd_config_keys[] = {
	{ "base_url", PARLEY_CONFIG_STRING, PARLEY_CONFIG_REQUIRED,
	  "the helpdesk's URL, e.g. https://acme.freshdesk.com" },
	{ "api_key", PARLEY_CONFIG_STRING, PARLEY_CONFIG_REQUIRED | PARLEY_CONFIG_SECRET,
	  "the API key of the agent Parley acts as" },
	{ "webhook_secret", PARLEY_CONFIG_STRING, PARLEY_CONFIG_SECRET,
	  "the secret the automation webhook sends (X-Parley-Webhook-Secret or Basic auth)" },
	{ "webhook_username", PARLEY_CONFIG_STRING, 0,
	  "user name for the webhook's Basic auth (unset: the header only)" },
	{ "requests_per_minute", PARLEY_CONFIG_INTEGER, 0,
	  "API budget of this instance (default 50)" },
	{ "timeout_ms", PARLEY_CONFIG_INTEGER, 0, "limit for one API request (default 10000)" },
	{ "priority", PARLEY_CONFIG_INTEGER, 0, "priority of new tickets, 1..4 (default 1)" },
	{ "source", PARLEY_CONFIG_INTEGER, 0, "source of new tickets (default 2, portal)" },
	{ "group_id", PARLEY_CONFIG_INTEGER, 0, "Freshdesk group new tickets go to" },
	{ "tls_verify", PARLEY_CONFIG_BOOLEAN, 0, "verify TLS certificates (default true)" },
	{ NULL, 0, 0, NULL }
};

/* ------------------------------------------------------------------------ */
/* Settings                                                                 */
/* ------------------------------------------------------------------------ */

static void settings_free(void *settings)
{
	fd_settings *s = settings;
	free(s->base_url);
	pu_wipe_string(s->auth_header);
	free(s->auth_header);
	pu_wipe_string(s->webhook_secret);
	free(s->webhook_secret);
	free(s->webhook_username);
	free(s->group_id);
	memset(s, 0, sizeof(*s));
}

/* Read and check one instance's config into *out (owned by the caller, free
 * with settings_free). cfg: borrowed. Never echoes a secret. */
static int settings_read(const parley_host *host, parley_instance *inst,
                         const parley_config *cfg, void *settings)
{
	fd_settings *out = settings;
	const char *url = host->config_string(cfg, "base_url");
	const char *key = host->config_string(cfg, "api_key");
	const char *secret = host->config_string(cfg, "webhook_secret");
	const char *user = host->config_string(cfg, "webhook_username");
	int64_t rpm = FD_DEFAULT_RPM, timeout = FD_DEFAULT_TIMEOUT_MS;
	int64_t priority = FD_DEFAULT_PRIORITY, source = FD_DEFAULT_SOURCE, group = 0;
	int verify = 1, has_group;
	bool ok = true;
	size_t ulen;

	memset(out, 0, sizeof(*out));
	if (url == NULL || !pu_url_is_http(url) || strchr(url, '?') != NULL ||
	    strchr(url, '#') != NULL) {
		host->config_error(inst, "base_url", "must be an http:// or https:// URL");
		ok = false;
	}
	if (key == NULL || key[0] == '\0' || !pu_header_safe(key)) {
		host->config_error(inst, "api_key", "must be a non-empty key without control characters");
		ok = false;
	}
	if (secret != NULL && (secret[0] == '\0' || !pu_header_safe(secret))) {
		host->config_error(inst, "webhook_secret",
		                   "must be non-empty, without control characters");
		ok = false;
	}
	if (user != NULL && (user[0] == '\0' || !pu_header_safe(user) || strchr(user, ':') != NULL)) {
		host->config_error(inst, "webhook_username",
		                   "must be non-empty, without ':' or control characters");
		ok = false;
	}
	if (user != NULL && secret == NULL) {
		host->config_error(inst, "webhook_username", "needs webhook_secret as its password");
		ok = false;
	}
	ok &= pu_config_int(host, inst, cfg, "requests_per_minute", 1, FD_MAX_RPM,
	               "must be between 1 and 60000", &rpm);
	ok &= pu_config_int(host, inst, cfg, "timeout_ms", 1, FD_MAX_TIMEOUT_MS,
	               "must be between 1 and 600000", &timeout);
	ok &= pu_config_int(host, inst, cfg, "priority", 1, 4, "must be between 1 and 4", &priority);
	ok &= pu_config_int(host, inst, cfg, "source", 1, 1000, "must be between 1 and 1000", &source);
	has_group = host->config_integer(cfg, "group_id", &group);
	if (has_group && group <= 0) {
		host->config_error(inst, "group_id", "must be a positive Freshdesk group id");
		ok = false;
	}
	host->config_boolean(cfg, "tls_verify", &verify);
	if (!ok)
		return -1;

	out->base_url = pu_strdup(url);
	out->auth_header = fd_auth_header(key);
	out->webhook_secret = pu_strdup(secret);
	out->webhook_username = pu_strdup(user);
	if (has_group) {
		char num[24];
		snprintf(num, sizeof(num), "%lld", (long long)group);
		out->group_id = pu_strdup(num);
	}
	out->rpm = rpm;
	out->priority = priority;
	out->source = source;
	out->timeout_ms = (long)timeout;
	out->insecure = !verify;
	if (out->base_url == NULL || out->auth_header == NULL ||
	    (secret != NULL && out->webhook_secret == NULL) ||
	    (user != NULL && out->webhook_username == NULL) ||
	    (has_group && out->group_id == NULL)) {
		host->log(inst, PARLEY_LOG_ERROR, "out of memory reading the config");
		settings_free(out);
		return -1;
	}
	ulen = strlen(out->base_url);
	while (ulen > 0 && out->base_url[ulen - 1] == '/')
		out->base_url[--ulen] = '\0';
	return 0;
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
	if (fs->cfg.insecure)
		fs->host->log(fs->inst, PARLEY_LOG_WARN,
		              "tls_verify is false: TLS certificates are not checked");
}

/* ------------------------------------------------------------------------ */
/* Operations in flight                                                     */
/* ------------------------------------------------------------------------ */

static void op_free(fd_op *op)
{
	free(op->path);
	free(op->body);
	free(op);
}

static void op_item_free(pu_pacer_item *item)
{
	op_free(PU_PACER_OWNER(item, fd_op, link));
}

/* Finish op's delivery and free op. reason: borrowed, may be NULL. */
static void op_complete(fd_op *op, parley_outcome outcome, int64_t retry_at_ms,
                        const char *reason)
{
	fd_sink *fs = op->fs;
	static const char *const counters[] = {
		[PARLEY_OK] = "freshdesk_delivered_total",
		[PARLEY_RETRY] = "freshdesk_retried_total",
		[PARLEY_FAIL] = "freshdesk_failed_total",
	};

	fs->host->counter_add(fs->inst, counters[outcome], 1);
	if (outcome == PARLEY_FAIL && reason != NULL)
		fs->host->log(fs->inst, PARLEY_LOG_WARN, "delivery failed: %s", reason);
	fs->host->delivery_complete(op->d, outcome, retry_at_ms, reason);
	op_free(op);
}

/* The pacer gives op back (a long pause, stop). */
static void hand_back(void *owner, pu_pacer_item *item, int64_t retry_at_ms, const char *reason)
{
	(void)owner;
	op_complete(PU_PACER_OWNER(item, fd_op, link), PARLEY_RETRY, retry_at_ms, reason);
}

/* requests_per_minute from a bucket of one: no burst. */
static pu_pacer_rate pacer_rate(const void *settings)
{
	const fd_settings *cfg = settings;

	return (pu_pacer_rate){ .tokens = cfg->rpm, .period_ms = 60000, .burst = 1,
	                        .max_wait_ms = FD_HOLD_MAX_MS };
}

/* A 429: pause every request of this instance. */
static void pause_for(fd_sink *fs, const fd_result *r)
{
	int64_t pause = r->retry_after_s > 0 ? r->retry_after_s * 1000
	                : pu_pacer_default_pause_ms(&fs->pacer);

	fs->host->counter_add(fs->inst, "freshdesk_rate_limited_total", 1);
	pu_pacer_pause(&fs->pacer, fs->host->now_ms() + pause);
}

/* Finish op from a failed answer r. */
static void op_fail_with(fd_op *op, const fd_result *r)
{
	int64_t retry_at = 0;

	if (r->rate_limited) {
		pause_for(op->fs, r);
		if (r->retry_after_s > 0)
			retry_at = op->fs->host->now_ms() + r->retry_after_s * 1000;
	}
	op_complete(op, r->outcome, retry_at, r->reason);
}

/* Move op on to its next request, first in line. path: owned, passes to op
 * (NULL: out of memory, op is completed). */
static void op_next_request(fd_op *op, fd_step step, char *path)
{
	fd_sink *fs = op->fs;

	if (fs->stopped || path == NULL) {
		free(path);
		op_complete(op, PARLEY_RETRY, 0, fs->stopped ? "shutting down" : "out of memory");
		return;
	}
	free(op->path);
	op->path = path;
	op->step = step;
	pu_pacer_push(&fs->pacer, &op->link, true);
}

/* A page of the ticket's conversations, read by a retry of append_message. */
static void note_lookup_done(fd_op *op, long status, const char *error, const void *body,
                             size_t len, const char *retry_after)
{
	fd_sink *fs = op->fs;
	fd_result r;

	switch (fd_classify_conversations(status, error, body, len, retry_after, &op->search, &r)) {
	case FD_NOTE_FOUND:
		fs->host->log(fs->inst, PARLEY_LOG_INFO,
		              "the note for ticket %s was added by an earlier attempt of this job",
		              op->ticket_id);
		fs->host->counter_add(fs->inst, "freshdesk_notes_found_total", 1);
		fs->host->delivery_set_external_id(op->d, op->comment_id);
		op_complete(op, PARLEY_OK, 0, NULL);
		break;
	case FD_NOTE_MORE:
		op_next_request(op, FD_STEP_NOTE_LOOKUP,
		                fd_conversations_path(op->ticket_id, op->search.page));
		break;
	case FD_NOTE_ABSENT:
		op_next_request(op, FD_STEP_NOTE, fd_note_path(op->ticket_id));
		break;
	case FD_NOTE_ERROR:
		op_fail_with(op, &r);
		break;
	}
}

static void http_done(void *arg, const parley_http_response *response)
{
	fd_op *op = arg;
	fd_sink *fs = op->fs;
	const parley_host *host = fs->host;
	long status = host->http_response_status(response);
	const char *error = host->http_response_error(response);
	const char *retry_after = host->http_response_header(response, "Retry-After");
	size_t len = 0;
	const unsigned char *body = host->http_response_body(response, &len);
	char id[FD_ID_BYTES];
	fd_result r;

	switch (op->step) {
	case FD_STEP_LOOKUP:
		switch (fd_classify_lookup(status, error, body, len, retry_after, op->tag, id, &r)) {
		case FD_LOOKUP_FOUND:
			host->log(fs->inst, PARLEY_LOG_INFO,
			          "ticket %s was opened by an earlier attempt of this job", id);
			host->counter_add(fs->inst, "freshdesk_tickets_found_total", 1);
			host->delivery_set_external_id(op->d, id);
			op_complete(op, PARLEY_OK, 0, NULL);
			break;
		case FD_LOOKUP_NONE:
			if (fs->stopped) {
				op_complete(op, PARLEY_RETRY, 0, "shutting down");
				break;
			}
			free(op->path);
			op->path = pu_strdup("/api/v2/tickets");
			if (op->path == NULL) {
				op_complete(op, PARLEY_RETRY, 0, "out of memory");
				break;
			}
			op->step = FD_STEP_CREATE;
			pu_pacer_push(&fs->pacer, &op->link, true);
			break;
		case FD_LOOKUP_ERROR:
			op_fail_with(op, &r);
			break;
		}
		break;
	case FD_STEP_NOTE_LOOKUP:
		note_lookup_done(op, status, error, body, len, retry_after);
		break;
	case FD_STEP_CREATE:
	case FD_STEP_NOTE:
		fd_classify_create(status, error, body, len, retry_after,
		                   op->step == FD_STEP_CREATE ? "ticket" : "note", &r);
		if (r.outcome != PARLEY_OK) {
			op_fail_with(op, &r);
			break;
		}
		if (op->step == FD_STEP_CREATE) {
			host->counter_add(fs->inst, "freshdesk_tickets_opened_total", 1);
			host->delivery_set_external_id(op->d, r.id);
		} else {
			/* The id the webhook will give this note when Freshdesk
			 * reports it: the core then never sends it back. */
			host->counter_add(fs->inst, "freshdesk_notes_added_total", 1);
			host->delivery_set_external_id(op->d, op->comment_id);
		}
		op_complete(op, PARLEY_OK, 0, NULL);
		break;
	}
	pu_pacer_done(&fs->pacer);
}

/* Start op's next request now (the pacer gave it its slot). false when it
 * could not start: op is completed then. */
static bool start_request(void *owner, pu_pacer_item *item)
{
	fd_sink *fs = owner;
	fd_op *op = PU_PACER_OWNER(item, fd_op, link);
	int get = op->step == FD_STEP_LOOKUP || op->step == FD_STEP_NOTE_LOOKUP;
	const char *headers[] = {
		fs->cfg.auth_header,
		"Accept: application/json",
		"User-Agent: parley-freshdesk/" FD_VERSION,
		get ? NULL : "Content-Type: application/json",
		NULL
	};
	size_t ulen = strlen(fs->cfg.base_url) + strlen(op->path) + 1;
	char *url = malloc(ulen);
	parley_http_call call;
	bool started;

	if (url == NULL) {
		op_complete(op, PARLEY_RETRY, 0, "out of memory");
		return false;
	}
	snprintf(url, ulen, "%s%s", fs->cfg.base_url, op->path);
	memset(&call, 0, sizeof(call));
	call.size = sizeof(call);
	call.method = get ? "GET" : "POST";
	call.url = url;
	call.headers = headers;
	if (!get) {
		call.body = op->body;
		call.body_len = strlen(op->body);
	}
	call.timeout_ms = fs->cfg.timeout_ms;
	call.insecure_skip_verify = fs->cfg.insecure;
	fs->host->counter_add(fs->inst, "freshdesk_requests_total", 1);
	started = fs->host->http_request(fs->inst, &call, http_done, op) == 0;
	if (!started)
		op_complete(op, PARLEY_RETRY, 0, "could not start the Freshdesk request");
	free(url);
	return started;
}

/* When a new delivery's first request would wait longer than it may: the
 * time its slot frees; else 0. */
static int64_t too_long_until(fd_sink *fs)
{
	int64_t slot = 0;

	return pu_pacer_would_hand_back(&fs->pacer, &slot) ? slot : 0;
}

/* Queue a new delivery's first request, or hand it back when its slot is
 * too far away. op: ownership passes here. */
static void submit(fd_sink *fs, fd_op *op)
{
	int64_t slot;

	if (!pu_pacer_submit(&fs->pacer, &op->link, &slot)) {
		fs->host->counter_add(fs->inst, "freshdesk_deferred_total", 1);
		op_complete(op, PARLEY_RETRY, slot,
		            "requests_per_minute budget: waiting for a request slot");
		return;
	}
	pu_pacer_kick(&fs->pacer);
}

static fd_op *op_new(fd_sink *fs, parley_delivery *d, fd_step step)
{
	fd_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->fs = fs;
	op->d = d;
	op->step = step;
	return op;
}

/* ------------------------------------------------------------------------ */
/* Sink operations                                                          */
/* ------------------------------------------------------------------------ */

/* t: borrowed for the call. d: completed exactly once, here or later. */
static void fd_open_ticket(void *self, const parley_ticket_request *t, parley_delivery *d)
{
	fd_sink *fs = self;
	const parley_conversation_info *c = t->conversation;
	const parley_customer_info *cu = c != NULL ? c->customer : NULL;
	const parley_message_info *m = t->first_message;
	fd_ticket_in in;
	char why[256];
	fd_op *op;

	if (fs->stopped) {
		fs->host->delivery_complete(d, PARLEY_RETRY, 0, "shutting down");
		return;
	}
	memset(&in, 0, sizeof(in));
	in.idempotency_key = t->idempotency_key != NULL ? t->idempotency_key : "";
	if (c != NULL) {
		in.case_number = c->case_number;
		in.channel_instance = c->channel_instance;
		in.channel_kind = c->channel_kind;
		in.is_public = c->visibility == PARLEY_VISIBILITY_PUBLIC;
	}
	if (cu != NULL) {
		in.customer_id = cu->customer_id;
		in.customer_name = cu->display_name;
		in.customer_email = cu->email;
		in.customer_phone = cu->phone;
		in.customer_handle = cu->handle;
	}
	if (m != NULL) {
		in.author_name = m->author_name;
		in.text = m->text;
	}
	in.follow_up_of = t->follow_up_of;
	in.priority = fs->cfg.priority;
	in.source = fs->cfg.source;
	in.group_id = fs->cfg.group_id;

	op = op_new(fs, d, FD_STEP_LOOKUP);
	if (op == NULL) {
		fs->host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
		return;
	}
	if (!fd_ticket_body(&in, &op->body, why, sizeof(why))) {
		op_complete(op, strncmp(why, "out of memory", 13) == 0 ? PARLEY_RETRY : PARLEY_FAIL,
		            0, why);
		return;
	}
	if (!fd_lookup_path(&in, &op->path)) {
		op_complete(op, PARLEY_RETRY, 0, "out of memory");
		return;
	}
	fd_key_tag(in.idempotency_key, op->tag);
	submit(fs, op);
}

/* The ticket's record is written: the note is Parley's before it exists. */
static void note_recorded(void *arg, int ok)
{
	fd_op *op = arg;

	if (!ok) {
		op_complete(op, PARLEY_RETRY, 0, "could not record the note before adding it");
		return;
	}
	if (op->fs->stopped) {
		op_complete(op, PARLEY_RETRY, 0, "shutting down");
		return;
	}
	submit(op->fs, op);
}

/* The ticket's record is read. value: borrowed for the call. */
static void notes_loaded(void *arg, int ok, const char *value)
{
	fd_op *op = arg;
	fd_sink *fs = op->fs;
	const fd_note_entry *mine;
	char key[FD_NOTES_KEY_BYTES];
	fd_notes notes;
	int64_t slot;
	char *stored;

	if (!ok) {
		op_complete(op, PARLEY_RETRY, 0, "could not read the notes recorded for the ticket");
		return;
	}
	if (fs->stopped) {
		op_complete(op, PARLEY_RETRY, 0, "shutting down");
		return;
	}
	fd_notes_parse(value, &notes);
	mine = fd_notes_find(&notes, op->job_tag);
	if (mine != NULL) {
		/* An earlier attempt recorded it and may have added it, its answer
		 * lost: look before adding it again. */
		fd_note_search_init(&op->search, &notes, mine);
		free(op->path);
		op->path = fd_conversations_path(op->ticket_id, 1);
		op->step = FD_STEP_NOTE_LOOKUP;
		if (op->path == NULL) {
			op_complete(op, PARLEY_RETRY, 0, "out of memory");
			return;
		}
		submit(fs, op);
		return;
	}
	slot = too_long_until(fs);
	if (slot != 0) {
		/* Not recorded yet: its next attempt need not look first. */
		submit(fs, op);
		return;
	}
	fd_notes_add(&notes, op->job_tag, op->fp, fs->host->now_ms());
	stored = fd_notes_format(&notes);
	if (stored == NULL || !fd_notes_key(op->ticket_id, key)) {
		free(stored);
		op_complete(op, PARLEY_RETRY, 0, "out of memory");
		return;
	}
	fs->host->state_put(fs->inst, key, stored, note_recorded, op);
	free(stored);
}

/* a: borrowed for the call. d: completed exactly once, here or later. */
static void fd_append_message(void *self, const parley_ticket_append *a, parley_delivery *d)
{
	fd_sink *fs = self;
	const char *text = a->message != NULL ? a->message->text : NULL;
	char key[FD_NOTES_KEY_BYTES];
	fd_op *op;

	if (fs->stopped) {
		fs->host->delivery_complete(d, PARLEY_RETRY, 0, "shutting down");
		return;
	}
	if (!fd_id_is_valid(a->external_ticket_id)) {
		fs->host->delivery_complete(d, PARLEY_FAIL, 0,
		                            "external_ticket_id is not a Freshdesk ticket id");
		return;
	}
	if (text == NULL || text[strspn(text, " \t\r\n")] == '\0') {
		/* Freshdesk refuses an empty note; there is nothing to add. */
		fs->host->delivery_complete(d, PARLEY_OK, 0, "the message has no text: nothing added");
		return;
	}
	op = op_new(fs, d, FD_STEP_NOTE);
	if (op == NULL) {
		fs->host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
		return;
	}
	op->path = fd_note_path(a->external_ticket_id);
	op->body = fd_note_body(text);
	if (op->path == NULL || op->body == NULL) {
		op_complete(op, PARLEY_FAIL, 0, "the message is not valid UTF-8 text");
		return;
	}
	if (!fd_comment_id(a->external_ticket_id, 1, text, op->comment_id) ||
	    !fd_notes_key(a->external_ticket_id, key)) {
		op_complete(op, PARLEY_FAIL, 0, "external_ticket_id is not a Freshdesk ticket id");
		return;
	}
	snprintf(op->ticket_id, sizeof(op->ticket_id), "%s", a->external_ticket_id);
	fd_job_tag(a->idempotency_key, op->job_tag);
	fd_fingerprint(text, op->fp);
	fs->host->state_get(fs->inst, key, notes_loaded, op);
}

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
static void fd_handle_request(void *self, parley_request *req)
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

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

static const pu_instance_class fd_class = {
	PU_INSTANCE_LAYOUT(fd_sink, cfg),
	.host_needs = PU_HOST_NEEDS(now_ms),
	.too_old = "this parleyd is too old for the freshdesk plugin",
	/* Requests in flight hold no pointer into the settings (the core
	 * copied each call). */
	.pace = pacer_rate,
	PU_INSTANCE_PACER(fd_sink, pacer),
	.pace_start = start_request,
	.pace_back = hand_back,
	.pace_free = op_item_free,
	.pace_pause_reason = "Freshdesk rate limit: waiting for the pause to end",
	.read = settings_read,
	.free = settings_free,
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
	.config_keys = fd_config_keys,
	.create = fd_create,
	.reload = fd_reload,
	.stop = fd_stop,
	.destroy = fd_destroy,
	.sink = &fd_ops,
};

PARLEY_PLUGIN_ENTRY(&fd_descriptor)
