/* freshdesk_deliver.c - the freshdesk sink's deliveries: open_ticket (find
 * an earlier attempt's ticket by its tag, else create it) and
 * append_message (record the note, then add it, or find the one an earlier
 * attempt added), each request started when the instance's pacer gives it
 * a slot. Requests and the meaning of answers come from freshdesk_api.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/plugin_util.h"
#include "freshdesk_sink.h"

/* ------------------------------------------------------------------------ */
/* Operations in flight                                                     */
/* ------------------------------------------------------------------------ */

static void op_free(fd_op *op)
{
	free(op->path);
	free(op->body);
	free(op);
}

void fd_op_item_free(pu_pacer_item *item)
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
void fd_hand_back(void *owner, pu_pacer_item *item, int64_t retry_at_ms, const char *reason)
{
	(void)owner;
	op_complete(PU_PACER_OWNER(item, fd_op, link), PARLEY_RETRY, retry_at_ms, reason);
}

/* requests_per_minute from a bucket of one: no burst. */
pu_pacer_rate fd_pacer_rate(const void *settings)
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
bool fd_start_request(void *owner, pu_pacer_item *item)
{
	fd_sink *fs = owner;
	fd_op *op = PU_PACER_OWNER(item, fd_op, link);
	int get = op->step == FD_STEP_LOOKUP || op->step == FD_STEP_NOTE_LOOKUP;
	/* Built per request from the core's settings, so a reload needs no
	 * derived copy; a secret, wiped below. */
	char *auth = fd_auth_header(fs->cfg.api_key);
	const char *headers[] = {
		auth,
		"Accept: application/json",
		"User-Agent: parley-freshdesk/" FD_VERSION,
		get ? NULL : "Content-Type: application/json",
		NULL
	};
	size_t blen = strlen(fs->cfg.base_url);
	size_t ulen;
	char *url;
	parley_http_call call;
	bool started;

	/* base_url may end in '/': the paths start with one. */
	while (blen > 0 && fs->cfg.base_url[blen - 1] == '/')
		blen--;
	ulen = blen + strlen(op->path) + 1;
	url = malloc(ulen);
	if (url == NULL || auth == NULL) {
		free(url);
		if (auth != NULL) {
			pu_wipe_string(auth);
			free(auth);
		}
		op_complete(op, PARLEY_RETRY, 0, "out of memory");
		return false;
	}
	snprintf(url, ulen, "%.*s%s", (int)blen, fs->cfg.base_url, op->path);
	memset(&call, 0, sizeof(call));
	call.size = sizeof(call);
	call.method = get ? "GET" : "POST";
	call.url = url;
	call.headers = headers;
	if (!get) {
		call.body = op->body;
		call.body_len = strlen(op->body);
	}
	call.timeout_ms = (long)fs->cfg.timeout_ms;
	call.insecure_skip_verify = !fs->cfg.tls_verify;
	fs->host->counter_add(fs->inst, "freshdesk_requests_total", 1);
	started = fs->host->http_request(fs->inst, &call, http_done, op) == 0;
	pu_wipe_string(auth);
	free(auth);
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
void fd_open_ticket(void *self, const parley_ticket_request *t, parley_delivery *d)
{
	fd_sink *fs = self;
	const parley_conversation_info *c = t->conversation;
	const parley_customer_info *cu = c != NULL ? c->customer : NULL;
	const parley_message_info *m = t->first_message;
	fd_ticket_in in;
	char why[256], group[24];
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
	if (fs->cfg.group_id > 0) {
		snprintf(group, sizeof(group), "%lld", (long long)fs->cfg.group_id);
		in.group_id = group;
	}

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
void fd_append_message(void *self, const parley_ticket_append *a, parley_delivery *d)
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
