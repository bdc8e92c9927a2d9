/* zendesk_deliver.c - the zendesk sink's deliveries: open_ticket and
 * append_message as sequences of API requests ("steps", see zendesk.c),
 * each started when the instance's pacer gives it a token, and what each
 * answer leads to. The requests and the meaning of the answers are built
 * by the pure half (zendesk_api.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "../../common/plugin_util.h"
#include "zendesk_sink.h"

/* ------------------------------------------------------------------------ */
/* Ops                                                                      */
/* ------------------------------------------------------------------------ */

static void op_free(zd_op *op)
{
	free(op->case_number);
	free(op->follow_up_of);
	free(op->body);
	free(op->user_body);
	free(op->customer_id);
	free(op->idempotency_key);
	free(op);
}

void zd_op_item_free(pu_pacer_item *item)
{
	op_free(PU_PACER_OWNER(item, zd_op, link));
}

/* Finish op's delivery (if it has one) and free it. */
static void op_complete(zd_op *op, parley_outcome outcome, int64_t retry_at_ms,
                        const char *reason)
{
	static const char *const counters[] = {
		[PARLEY_OK] = "zendesk_delivered_total",
		[PARLEY_RETRY] = "zendesk_retried_total",
		[PARLEY_FAIL] = "zendesk_failed_total",
	};
	zendesk_sink *zs = op->zs;

	if (op->d != NULL) {
		zs->host->delivery_complete(op->d, outcome, retry_at_ms, reason);
		zs->host->counter_add(zs->inst, counters[outcome], 1);
		if (outcome == PARLEY_FAIL)
			zs->host->log(zs->inst, PARLEY_LOG_WARN, "%s", reason);
	} else {
		zs->me_pending = 0;
	}
	op_free(op);
}

/* When op still needs its requester's user and this process remembers it
 * for the same user body, put its id into the create body now and skip the
 * user call. Checked when the job arrives and again after the lookup, which
 * may have waited for an earlier ticket of the same customer. 0, or -1 with
 * op completed (out of memory). */
static int use_remembered_user(zendesk_sink *zs, zd_op *op)
{
	const char *user;
	char *create;

	if (op->user_body == NULL)
		return 0;
	user = zd_user_of(zs, op->customer_id, op->user_fingerprint);
	if (user == NULL)
		return 0;
	create = zd_ticket_body_requester_id(op->body, user);
	if (create == NULL) {
		op_complete(op, PARLEY_RETRY, 0, "out of memory building the ticket");
		return -1;
	}
	free(op->body);
	op->body = create;
	free(op->user_body);
	op->user_body = NULL;
	op->requester_remembered = 1;
	return 0;
}

/* The step of an open once no existing ticket was found: the requester's
 * user first, unless it is known (or inline). */
static zd_step create_step(const zd_op *op)
{
	return op->user_body != NULL ? ZD_STEP_USER : ZD_STEP_CREATE;
}

/* The step of an append once the requester is known. */
static zd_step append_step(const zd_op *op)
{
	return op->uncertain_since_ms > 0 ? ZD_STEP_FIND : ZD_STEP_COMMENT;
}

/* ------------------------------------------------------------------------ */
/* Pacing                                                                   */
/* ------------------------------------------------------------------------ */

/* requests_per_minute, with a bucket of a tenth of a minute's budget. */
pu_pacer_rate zd_pacer_rate(const void *settings)
{
	const zd_settings *cfg = settings;
	int64_t burst = cfg->rpm / ZD_BURST_DIVISOR;

	return (pu_pacer_rate){ .tokens = cfg->rpm, .period_ms = 60000,
	                        .burst = burst > 1 ? burst : 1, .max_wait_ms = ZD_MAX_WAIT_MS };
}

/* ------------------------------------------------------------------------ */
/* Steps                                                                    */
/* ------------------------------------------------------------------------ */

static void step_done(void *arg, const parley_http_response *response);

static const char *step_what(zd_step step)
{
	switch (step) {
	case ZD_STEP_LOOKUP: return "looking up the case's ticket";
	case ZD_STEP_USER: return "creating or updating the requester";
	case ZD_STEP_CREATE: return "creating the ticket";
	case ZD_STEP_SHOW: return "reading the ticket";
	case ZD_STEP_COMMENT: return "adding the comment";
	case ZD_STEP_FIND: return "looking for the comment of an earlier attempt";
	case ZD_STEP_ME: return "reading the API user";
	}
	return "";
}

/* Start op's current step now (the pacer gave it its token). false when
 * it could not start: op is completed then. */
bool zd_step_start(void *owner, pu_pacer_item *item)
{
	zendesk_sink *zs = owner;
	zd_op *op = PU_PACER_OWNER(item, zd_op, link);
	const char *headers[5];
	size_t h = 0;
	char idem[600];
	char *url = NULL, *body = NULL, *auth;
	const char *method = "GET";
	parley_http_call call;
	bool started;

	/* Built per request from the core's settings, so a reload needs no
	 * derived copy; a secret, wiped below. */
	auth = zd_auth_header(zs->cfg.email, zs->cfg.api_token, zs->cfg.oauth_token);
	if (auth == NULL) {
		op_complete(op, PARLEY_RETRY, 0, "out of memory building the request");
		return false;
	}
	headers[h++] = auth;
	headers[h++] = "Accept: application/json";
	switch (op->step) {
	case ZD_STEP_LOOKUP:
		url = zd_url_lookup(zs->cfg.base_url, op->case_number);
		break;
	case ZD_STEP_USER:
		/* No Idempotency-Key: the external_id makes a repeat find the
		 * same user. */
		url = zd_url_user_upsert(zs->cfg.base_url);
		method = "POST";
		body = op->user_body;
		break;
	case ZD_STEP_CREATE:
		url = zd_url_create(zs->cfg.base_url);
		method = "POST";
		body = op->body;
		if (op->idempotency_key != NULL) {
			snprintf(idem, sizeof(idem), "Idempotency-Key: %s", op->idempotency_key);
			headers[h++] = idem;
		}
		break;
	case ZD_STEP_SHOW:
		url = zd_url_ticket(zs->cfg.base_url, op->ticket_id);
		break;
	case ZD_STEP_COMMENT:
		url = zd_url_ticket(zs->cfg.base_url, op->ticket_id);
		method = "PUT";
		body = zd_comment_body(op->body, op->requester[0] != '\0' ? op->requester : NULL);
		if (body == NULL) {
			pu_wipe_string(auth);
			free(auth);
			op_complete(op, PARLEY_RETRY, 0, "out of memory building the comment");
			return false;
		}
		break;
	case ZD_STEP_FIND:
		url = zd_url_comments(zs->cfg.base_url, op->ticket_id);
		break;
	case ZD_STEP_ME:
		url = zd_url_me(zs->cfg.base_url);
		break;
	}
	if (body != NULL)
		headers[h++] = "Content-Type: application/json";
	headers[h] = NULL;
	if (url == NULL) {
		if (op->step == ZD_STEP_COMMENT)
			free(body);
		pu_wipe_string(auth);
		free(auth);
		op_complete(op, PARLEY_RETRY, 0, "out of memory building the request");
		return false;
	}
	memset(&call, 0, sizeof(call));
	call.size = sizeof(call);
	call.method = method;
	call.url = url;
	call.headers = headers;
	call.body = body;
	call.body_len = body != NULL ? strlen(body) : 0;
	call.timeout_ms = zs->cfg.timeout_ms;
	call.insecure_skip_verify = zs->cfg.insecure_skip_verify;
	zs->host->counter_add(zs->inst, "zendesk_requests_total", 1);
	op->started_ms = zs->host->now_ms();
	started = zs->host->http_request(zs->inst, &call, step_done, op) == 0;
	if (op->step == ZD_STEP_COMMENT)
		free(body);
	pu_wipe_string(auth);
	free(auth);
	if (!started)
		op_complete(op, PARLEY_RETRY, 0, "could not start the Zendesk request");
	free(url);
	return started;
}

/* The next step of op: back in the queue, ahead of deliveries that have
 * not started (finishing started work keeps each delivery short). */
static void step_next(zendesk_sink *zs, zd_op *op, zd_step step)
{
	op->step = step;
	if (zs->stopped) {
		op_complete(op, PARLEY_RETRY, 0, "shutting down");
		return;
	}
	pu_pacer_push(&zs->pacer, &op->link, true);
}

/* An open_ticket that has its ticket: report it and finish. */
static void open_done(zendesk_sink *zs, zd_op *op, const char *ticket, const char *requester,
                      int found)
{
	zd_requester_remember(zs, ticket, requester);
	zs->host->delivery_set_external_id(op->d, ticket);
	zs->host->counter_add(zs->inst, found ? "zendesk_tickets_found_total"
	                                      : "zendesk_tickets_created_total", 1);
	op_complete(op, PARLEY_OK, 0, NULL);
}

/* The requester's user is known: put its id into the create body (owned
 * by op) and remember it for the customer's later tickets. body: borrowed. */
static void user_ok(zendesk_sink *zs, zd_op *op, const unsigned char *body, size_t len)
{
	char id[ZD_ID_BYTES];
	char *create;

	if (!zd_parse_user_id(body, len, id)) {
		op_complete(op, PARLEY_RETRY, 0,
		            "Zendesk's answer to creating or updating the requester has no user id");
		return;
	}
	create = zd_ticket_body_requester_id(op->body, id);
	if (create == NULL) {
		op_complete(op, PARLEY_RETRY, 0, "out of memory building the ticket");
		return;
	}
	free(op->body);
	op->body = create;
	free(op->user_body);
	op->user_body = NULL;
	zd_user_remember(zs, op->customer_id, op->user_fingerprint, id);
	step_next(zs, op, ZD_STEP_CREATE);
}

/* A 2xx answer to op's step. body: borrowed. */
static void step_ok(zendesk_sink *zs, zd_op *op, const unsigned char *body, size_t len)
{
	char id[ZD_ID_BYTES], requester[ZD_ID_BYTES], status[16], reason[ZD_REASON_BYTES];
	int found;

	switch (op->step) {
	case ZD_STEP_LOOKUP:
		found = zd_parse_lookup(body, len, op->case_number, op->follow_up_of, id, requester);
		if (found == 1)
			open_done(zs, op, id, requester, 1);
		else if (found < 0)
			op_complete(op, PARLEY_RETRY, 0,
			            "Zendesk's answer to the ticket lookup is not a ticket list");
		else if (use_remembered_user(zs, op) == 0)
			step_next(zs, op, create_step(op));
		return;
	case ZD_STEP_USER:
		user_ok(zs, op, body, len);
		return;
	case ZD_STEP_CREATE:
		if (zd_parse_ticket(body, len, id, requester, NULL))
			open_done(zs, op, id, requester, 0);
		else
			op_complete(op, PARLEY_RETRY, 0,
			            "Zendesk's answer to creating the ticket has no ticket id");
		return;
	case ZD_STEP_SHOW:
		if (!zd_parse_ticket(body, len, id, requester, status) || requester[0] == '\0') {
			op_complete(op, PARLEY_RETRY, 0, "Zendesk's ticket answer has no requester_id");
		} else if (strcmp(status, "closed") == 0) {
			snprintf(reason, sizeof(reason),
			         "ticket %s is closed: Zendesk takes no more comments on it",
			         op->ticket_id);
			op_complete(op, PARLEY_FAIL, 0, reason);
		} else {
			zd_requester_remember(zs, op->ticket_id, requester);
			snprintf(op->requester, sizeof(op->requester), "%s", requester);
			step_next(zs, op, append_step(op));
		}
		return;
	case ZD_STEP_FIND:
		found = zd_parse_comments_find(body, len, op->requester, op->body,
		                               op->uncertain_since_ms, id);
		if (found == 1) {
			/* The earlier attempt landed: that comment is this one. */
			zs->host->delivery_set_external_id(op->d, id);
			zs->host->counter_add(zs->inst, "zendesk_comments_found_total", 1);
			zd_uncertain_forget(zs, op->idempotency_key);
			op_complete(op, PARLEY_OK, 0, NULL);
		} else if (found == 0) {
			step_next(zs, op, ZD_STEP_COMMENT);
		} else {
			op_complete(op, PARLEY_RETRY, 0,
			            "Zendesk's answer to the comment list is not a comment list");
		}
		return;
	case ZD_STEP_COMMENT:
		/* Without the comment's id the comment is still there: OK, and
		 * the webhook's author check keeps it from going back. */
		if (zd_parse_comment_id(body, len, id))
			zs->host->delivery_set_external_id(op->d, id);
		zs->host->counter_add(zs->inst, "zendesk_comments_added_total", 1);
		zd_uncertain_forget(zs, op->idempotency_key);
		op_complete(op, PARLEY_OK, 0, NULL);
		return;
	case ZD_STEP_ME:
		if (zd_parse_user_id(body, len, id))
			snprintf(zs->api_user_id, sizeof(zs->api_user_id), "%s", id);
		op_complete(op, PARLEY_OK, 0, NULL);
		return;
	}
}

/* A create refused (4xx) with a remembered requester: the user may have been
 * deleted or merged in Zendesk since. Forget it and retry, so the next
 * attempt asks Zendesk again; a refusal after that fails as usual. */
static void stale_requester(zendesk_sink *zs, const zd_op *op, zd_result *r)
{
	static const char note[] = " (with a remembered requester: retrying with a fresh one)";
	char reason[ZD_REASON_BYTES];

	zd_user_forget(zs, op->customer_id);
	snprintf(reason, sizeof(reason), "%.*s%s", (int)(sizeof(reason) - sizeof(note)), r->reason,
	         note);
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
	r->outcome = PARLEY_RETRY;
	r->retry_at_ms = 0;
}

/* Called once per request, on the loop. response: borrowed. */
static void step_done(void *arg, const parley_http_response *response)
{
	zd_op *op = arg;
	zendesk_sink *zs = op->zs;
	const parley_host *host = zs->host;
	const unsigned char *body;
	size_t len = 0;
	long status = host->http_response_status(response);
	zd_result r;

	body = host->http_response_body(response, &len);
	/* A comment PUT that timed out or got a 5xx may still have landed:
	 * the next attempt looks for it before adding it again. */
	if (op->step == ZD_STEP_COMMENT && (status == 0 || status >= 500))
		zd_uncertain_add(zs, op->idempotency_key, op->started_ms);
	zd_classify(status, host->http_response_error(response),
	            host->http_response_header(response, "Retry-After"), body, len,
	            host->now_ms(), step_what(op->step), &r);
	if (r.pause_until_ms > 0) {
		pu_pacer_pause(&zs->pacer, r.pause_until_ms);
		host->counter_add(zs->inst, "zendesk_rate_limited_total", 1);
	}
	if (r.outcome == PARLEY_OK) {
		step_ok(zs, op, body, len);
	} else if (op->d == NULL) {
		/* Learning the API user failed: try again later, quietly. */
		host->log(zs->inst, PARLEY_LOG_INFO, "%s", r.reason);
		op_complete(op, PARLEY_OK, 0, NULL);
	} else {
		if (r.unauthorized)
			host->counter_add(zs->inst, "zendesk_unauthorized_total", 1);
		else if (op->step == ZD_STEP_CREATE && op->requester_remembered &&
		         r.outcome == PARLEY_FAIL)
			stale_requester(zs, op, &r);
		op_complete(op, r.outcome, r.retry_at_ms, r.reason);
	}
	pu_pacer_done(&zs->pacer);
}

/* The pacer gives op back (a long pause, stop). */
void zd_hand_back(void *owner, pu_pacer_item *item, int64_t retry_at_ms, const char *reason)
{
	(void)owner;
	op_complete(PU_PACER_OWNER(item, zd_op, link), PARLEY_RETRY, retry_at_ms, reason);
}

/* Admit a new op: queue it, or hand it back at once when its turn is
 * further away than ZD_MAX_WAIT_MS. */
static void admit(zendesk_sink *zs, zd_op *op)
{
	int64_t now = zs->host->now_ms();
	int64_t retry_at;

	if (!pu_pacer_submit(&zs->pacer, &op->link, &retry_at)) {
		zs->host->counter_add(zs->inst, "zendesk_deferred_total", 1);
		op_complete(op, PARLEY_RETRY, retry_at,
		            "Zendesk requests_per_minute budget: waiting for a free slot");
		return;
	}
	/* Learn the API user's id on the side when it is not known yet. */
	if (zs->api_user_id[0] == '\0' && !zs->me_pending &&
	    now - zs->me_tried_ms >= ZD_ME_RETRY_MS) {
		zd_op *me = calloc(1, sizeof(*me));
		if (me != NULL) {
			me->zs = zs;
			me->step = ZD_STEP_ME;
			zs->me_pending = 1;
			zs->me_tried_ms = now;
			pu_pacer_push(&zs->pacer, &me->link, false);
		}
	}
	pu_pacer_kick(&zs->pacer);
}

/* ------------------------------------------------------------------------ */
/* Operations                                                               */
/* ------------------------------------------------------------------------ */

static zd_op *op_new(zendesk_sink *zs, parley_delivery *d, const char *idempotency_key)
{
	zd_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->zs = zs;
	op->d = d;
	/* A key that cannot go into a header is not sent (the lookup still
	 * guards against a second ticket). */
	if (idempotency_key != NULL && idempotency_key[0] != '\0' &&
	    strlen(idempotency_key) <= 500 && pu_header_safe(idempotency_key)) {
		op->idempotency_key = pu_strdup(idempotency_key);
		if (op->idempotency_key == NULL) {
			free(op);
			return NULL;
		}
	}
	return op;
}

/* The customer of t (borrowed) when Parley knows one with an id, else NULL:
 * then the ticket keeps the inline requester (or none). */
static const parley_customer_info *known_customer(const parley_ticket_request *t)
{
	const parley_conversation_info *c = t->conversation;

	if (c == NULL || !PARLEY_HAS_FIELD(c, parley_conversation_info, customer) ||
	    c->customer == NULL || c->customer->customer_id == NULL ||
	    c->customer->customer_id[0] == '\0')
		return NULL;
	return c->customer;
}

/* Prepare op's requester for customer c (borrowed): the user call's body,
 * or, when the customer's user is remembered, its id in op->body at once.
 * 0, or -1 with op completed. */
static int open_requester(zendesk_sink *zs, zd_op *op, const parley_customer_info *c)
{
	char err[200], reason[300];

	op->user_body = zd_user_body(c, err, sizeof(err));
	if (op->user_body == NULL) {
		snprintf(reason, sizeof(reason), "cannot open a Zendesk ticket: %s", err);
		op_complete(op, strcmp(err, "out of memory") == 0 ? PARLEY_RETRY : PARLEY_FAIL, 0,
		            reason);
		return -1;
	}
	op->customer_id = pu_strdup(c->customer_id);
	if (op->customer_id == NULL) {
		op_complete(op, PARLEY_RETRY, 0, "out of memory");
		return -1;
	}
	op->user_fingerprint = zd_fingerprint(op->user_body);
	return use_remembered_user(zs, op);
}

/* t: borrowed for the call. d: owned by the core until delivery_complete. */
void zd_open_ticket(void *self, const parley_ticket_request *t, parley_delivery *d)
{
	zendesk_sink *zs = self;
	const char *case_number = t->conversation != NULL ? t->conversation->case_number : NULL;
	const parley_customer_info *customer = known_customer(t);
	char err[200], reason[300];
	zd_op *op;

	if (zs->stopped) {
		zs->host->delivery_complete(d, PARLEY_RETRY, 0, "shutting down");
		return;
	}
	op = op_new(zs, d, t->idempotency_key);
	if (op == NULL) {
		zs->host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
		return;
	}
	op->body = zd_ticket_body(t, err, sizeof(err));
	if (op->body == NULL) {
		snprintf(reason, sizeof(reason), "cannot open a Zendesk ticket: %s", err);
		op_complete(op, strcmp(err, "out of memory") == 0 ? PARLEY_RETRY : PARLEY_FAIL, 0,
		            reason);
		return;
	}
	if (customer != NULL && open_requester(zs, op, customer) != 0)
		return;
	if (case_number != NULL && case_number[0] != '\0') {
		op->case_number = pu_strdup(case_number);
		op->follow_up_of = pu_strdup(t->follow_up_of);
		if (op->case_number == NULL || (t->follow_up_of != NULL && op->follow_up_of == NULL)) {
			op_complete(op, PARLEY_RETRY, 0, "out of memory");
			return;
		}
		op->step = ZD_STEP_LOOKUP;
	} else {
		/* No case number, no external id to look up: the Idempotency-Key
		 * alone guards the retry. */
		op->step = create_step(op);
	}
	admit(zs, op);
}

/* a: borrowed for the call. d: owned by the core until delivery_complete. */
void zd_append_message(void *self, const parley_ticket_append *a, parley_delivery *d)
{
	zendesk_sink *zs = self;
	const char *text = a->message != NULL ? a->message->text : NULL;
	const char *requester;
	zd_uncertain *uncertain;
	zd_op *op;

	if (zs->stopped) {
		zs->host->delivery_complete(d, PARLEY_RETRY, 0, "shutting down");
		return;
	}
	if (!zd_is_id(a->external_ticket_id)) {
		zs->host->delivery_complete(d, PARLEY_FAIL, 0,
		                            "external_ticket_id is not a Zendesk ticket id");
		return;
	}
	if (text != NULL) {
		json_t *probe = json_string(text);
		if (probe == NULL) {
			zs->host->delivery_complete(d, PARLEY_FAIL, 0, "the message is not valid UTF-8");
			return;
		}
		json_decref(probe);
	}
	op = op_new(zs, d, a->idempotency_key);
	if (op == NULL || (op->body = pu_strdup(text != NULL ? text : "")) == NULL) {
		if (op != NULL)
			op_free(op);
		zs->host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
		return;
	}
	snprintf(op->ticket_id, sizeof(op->ticket_id), "%s", a->external_ticket_id);
	uncertain = zd_uncertain_find(zs, op->idempotency_key);
	if (uncertain != NULL)
		op->uncertain_since_ms = uncertain->at_ms - ZD_CLOCK_SLACK_MS;
	requester = zd_requester_of(zs, op->ticket_id);
	if (requester != NULL) {
		snprintf(op->requester, sizeof(op->requester), "%s", requester);
		op->step = append_step(op);
	} else {
		op->step = ZD_STEP_SHOW;
	}
	admit(zs, op);
}
