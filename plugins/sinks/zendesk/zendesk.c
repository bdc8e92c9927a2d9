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
 * into a reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "parley/parley.h"
#include "../../common/plugin_util.h"
#include "../../common/instance.h"
#include "../../common/pacer.h"
#include "zendesk_api.h"

#define ZD_VERSION "0.1.0"
#define ZD_DEFAULT_RPM 200
#define ZD_MAX_RPM 100000
#define ZD_DEFAULT_TIMEOUT_MS 10000
#define ZD_MAX_TIMEOUT_MS 120000
#define ZD_MAX_WAIT_MS 20000        /* longer waits for a token hand the job back */
#define ZD_BURST_DIVISOR 10         /* the bucket holds a tenth of a minute's budget */
#define ZD_REQUESTERS 512           /* ticket -> requester ids remembered */
#define ZD_USERS 512                /* customer -> Zendesk user ids remembered */
#define ZD_CUSTOMER_BYTES 64        /* a longer customer id is not remembered */
#define ZD_ME_RETRY_MS 60000        /* how often to retry learning the API user */
#define ZD_UNCERTAIN 64             /* comments whose PUT may have landed */
#define ZD_CLOCK_SLACK_MS 60000     /* Zendesk's clock against ours */

typedef struct zd_settings {
	char *base_url;             /* owned */
	char *email;                /* owned; NULL with oauth_token */
	char *auth_header;          /* owned, secret: wiped before it is freed */
	char *webhook_secret;       /* owned, secret; NULL: webhooks are refused */
	int64_t rpm;
	long timeout_ms;
	int insecure_skip_verify;
} zd_settings;

typedef enum zd_step {
	ZD_STEP_LOOKUP = 1,   /* open: find the case's ticket */
	ZD_STEP_USER,         /* open: create or update the requester */
	ZD_STEP_CREATE,       /* open: create it */
	ZD_STEP_SHOW,         /* append: the ticket's requester */
	ZD_STEP_COMMENT,      /* append: add the comment */
	ZD_STEP_FIND,         /* append: did an uncertain earlier PUT land? */
	ZD_STEP_ME            /* learn the API user's id (no delivery) */
} zd_step;

typedef struct zendesk_sink zendesk_sink;

/* One delivery in progress; owns copies of what its requests need. */
typedef struct zd_op {
	pu_pacer_item link;         /* in the pacer's queue while waiting */
	zendesk_sink *zs;           /* borrowed: no callback runs after destroy */
	parley_delivery *d;         /* owned by the core until delivery_complete; NULL for ME */
	zd_step step;
	char *case_number;          /* owned; NULL: no lookup possible */
	char *follow_up_of;         /* owned; may be NULL */
	char *body;                 /* owned: the create body or the comment text */
	char *user_body;            /* owned: open's users/create_or_update body;
	                               NULL: no user call (done, remembered, or
	                               no customer: the requester is inline) */
	char *customer_id;          /* owned; NULL without a customer */
	uint64_t user_fingerprint;  /* of the user body: see zd_user */
	int requester_remembered;   /* body's requester_id came from the cache */
	char *idempotency_key;      /* owned; header-safe or NULL */
	char ticket_id[ZD_ID_BYTES];
	char requester[ZD_ID_BYTES];
	int64_t uncertain_since_ms; /* append: an earlier PUT of this key may have
	                               landed after this time (0: none did) */
	int64_t started_ms;         /* when the current step's request started */
} zd_op;

/* An append whose PUT timed out or got a 5xx: Zendesk may have stored the
 * comment anyway, and the ticket update has no idempotency key. */
typedef struct zd_uncertain {
	char *key;                  /* owned: the delivery's idempotency key */
	int64_t at_ms;              /* when that PUT started */
} zd_uncertain;

typedef struct zd_requester {
	char ticket[ZD_ID_BYTES];
	char user[ZD_ID_BYTES];
} zd_requester;

/* A customer's Zendesk user, so later tickets skip the user call. Only
 * valid for the same name and e-mail (the fingerprint of the user body):
 * when they change, the next ticket sends them to Zendesk again. */
typedef struct zd_user {
	char customer[ZD_CUSTOMER_BYTES];   /* Parley's customer id; "" = free */
	uint64_t fingerprint;
	char user[ZD_ID_BYTES];
} zd_user;

struct zendesk_sink {
	const parley_host *host;    /* owned by the core; valid until destroy */
	parley_instance *inst;      /* owned by the core; valid until destroy */
	zd_settings cfg;
	pu_pacer pacer;             /* ops waiting for a token; the 429 pause */
	int stopped;
	char api_user_id[ZD_ID_BYTES];  /* "" until GET users/me answered */
	int me_pending;
	int64_t me_tried_ms;
	zd_requester requesters[ZD_REQUESTERS];
	size_t requester_next;
	zd_user users[ZD_USERS];
	size_t user_next;
	zd_uncertain uncertain[ZD_UNCERTAIN];
	size_t uncertain_next;
};

static const parley_config_key zd_config_keys[] = {
	{ "base_url", PARLEY_CONFIG_STRING, PARLEY_CONFIG_REQUIRED,
	  "the account's URL, e.g. https://acme.zendesk.com" },
	{ "email", PARLEY_CONFIG_STRING, 0, "the API user's e-mail (with api_token)" },
	{ "api_token", PARLEY_CONFIG_STRING, PARLEY_CONFIG_SECRET, "a Zendesk API token" },
	{ "oauth_token", PARLEY_CONFIG_STRING, PARLEY_CONFIG_SECRET,
	  "an OAuth access token (instead of email + api_token)" },
	{ "webhook_secret", PARLEY_CONFIG_STRING, PARLEY_CONFIG_SECRET,
	  "the signing secret of the Zendesk webhook (without it events are refused)" },
	{ "requests_per_minute", PARLEY_CONFIG_INTEGER, 0,
	  "API requests per minute this instance may make (default 200)" },
	{ "timeout_ms", PARLEY_CONFIG_INTEGER, 0, "limit for one API request (default 10000)" },
	{ "insecure_skip_verify", PARLEY_CONFIG_BOOLEAN, 0,
	  "do not verify TLS certificates (tests only)" },
	{ NULL, 0, 0, NULL }
};

/* ------------------------------------------------------------------------ */
/* Settings                                                                 */
/* ------------------------------------------------------------------------ */

static void settings_free(void *settings)
{
	zd_settings *s = settings;
	free(s->base_url);
	free(s->email);
	pu_wipe_string(s->auth_header);
	free(s->auth_header);
	pu_wipe_string(s->webhook_secret);
	free(s->webhook_secret);
	memset(s, 0, sizeof(*s));
}

/* A secret must fit in a header: say which key is wrong, never its value. */
static int secret_ok(const parley_host *host, parley_instance *inst, const char *key,
                     const char *value)
{
	if (value == NULL)
		return 1;
	if (value[0] == '\0' || !pu_header_safe(value)) {
		host->config_error(inst, key, "must be non-empty text without control characters");
		return 0;
	}
	return 1;
}

/* Read and check one instance's config into *out (free with settings_free).
 * cfg: borrowed. Problems go to config_error, never with a secret. */
static int settings_read(const parley_host *host, parley_instance *inst,
                         const parley_config *cfg, void *settings)
{
	zd_settings *out = settings;
	const char *base = host->config_string(cfg, "base_url");
	const char *email = host->config_string(cfg, "email");
	const char *token = host->config_string(cfg, "api_token");
	const char *oauth = host->config_string(cfg, "oauth_token");
	const char *secret = host->config_string(cfg, "webhook_secret");
	int64_t rpm = ZD_DEFAULT_RPM, timeout = ZD_DEFAULT_TIMEOUT_MS;
	int insecure = 0, ok = 1;

	memset(out, 0, sizeof(*out));
	if (base == NULL || !pu_url_is_http(base) || strchr(base, '?') != NULL ||
	    strchr(base, '@') != NULL) {
		host->config_error(inst, "base_url",
		                   "must be an http:// or https:// URL without user or query, "
		                   "e.g. https://acme.zendesk.com");
		ok = 0;
	}
	ok &= secret_ok(host, inst, "api_token", token);
	ok &= secret_ok(host, inst, "oauth_token", oauth);
	ok &= secret_ok(host, inst, "webhook_secret", secret);
	if (email != NULL && (email[0] == '\0' || !pu_header_safe(email) ||
	                      strchr(email, '@') == NULL)) {
		host->config_error(inst, "email", "must be the API user's e-mail address");
		ok = 0;
	}
	if (oauth != NULL && token != NULL) {
		host->config_error(inst, "oauth_token", "set either oauth_token or api_token, not both");
		ok = 0;
	} else if (oauth == NULL && (token == NULL || email == NULL)) {
		host->config_error(inst, token == NULL ? "api_token" : "email",
		                   "required: email and api_token, or oauth_token");
		ok = 0;
	}
	ok &= pu_config_int(host, inst, cfg, "requests_per_minute", 1, ZD_MAX_RPM,
	               "must be between 1 and 100000", &rpm);
	ok &= pu_config_int(host, inst, cfg, "timeout_ms", 1, ZD_MAX_TIMEOUT_MS,
	               "must be between 1 and 120000", &timeout);
	host->config_boolean(cfg, "insecure_skip_verify", &insecure);
	if (!ok)
		return -1;

	out->base_url = pu_strdup(base);
	out->email = pu_strdup(email);
	out->auth_header = zd_auth_header(email, token, oauth);
	out->webhook_secret = pu_strdup(secret);
	out->rpm = rpm;
	out->timeout_ms = (long)timeout;
	out->insecure_skip_verify = insecure;
	if (out->base_url == NULL || out->auth_header == NULL ||
	    (email != NULL && out->email == NULL) || (secret != NULL && out->webhook_secret == NULL)) {
		host->log(inst, PARLEY_LOG_ERROR, "out of memory reading the config");
		settings_free(out);
		return -1;
	}
	return 0;
}

static void settings_announce(void *self)
{
	const zendesk_sink *zs = self;
	zs->host->log(zs->inst, PARLEY_LOG_INFO,
	              "Zendesk at %s, %s authentication, at most %lld requests per minute%s",
	              zs->cfg.base_url, zs->cfg.email != NULL ? "API token" : "OAuth",
	              (long long)zs->cfg.rpm,
	              zs->cfg.webhook_secret != NULL ? ""
	              : "; no webhook_secret: Zendesk webhooks are refused");
	if (zs->cfg.insecure_skip_verify)
		zs->host->log(zs->inst, PARLEY_LOG_WARN,
		              "insecure_skip_verify is on: TLS certificates are not checked");
}

/* ------------------------------------------------------------------------ */
/* Ops and the requester cache                                              */
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

static void op_item_free(pu_pacer_item *item)
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

static const char *requester_of(const zendesk_sink *zs, const char *ticket)
{
	for (size_t i = 0; i < ZD_REQUESTERS; i++) {
		if (zs->requesters[i].ticket[0] != '\0' && strcmp(zs->requesters[i].ticket, ticket) == 0)
			return zs->requesters[i].user;
	}
	return NULL;
}

/* Remember a ticket's requester (a small ring: the oldest goes first). */
static void remember_requester(zendesk_sink *zs, const char *ticket, const char *user)
{
	zd_requester *r;

	if (!zd_is_id(ticket) || !zd_is_id(user) || requester_of(zs, ticket) != NULL)
		return;
	r = &zs->requesters[zs->requester_next];
	zs->requester_next = (zs->requester_next + 1) % ZD_REQUESTERS;
	snprintf(r->ticket, sizeof(r->ticket), "%s", ticket);
	snprintf(r->user, sizeof(r->user), "%s", user);
}

/* FNV-1a of s (borrowed): tells whether a user body changed. */
static uint64_t fingerprint(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		h ^= *p;
		h *= 1099511628211ULL;
	}
	return h;
}

static zd_user *user_slot(zendesk_sink *zs, const char *customer)
{
	for (size_t i = 0; customer != NULL && i < ZD_USERS; i++) {
		if (zs->users[i].customer[0] != '\0' && strcmp(zs->users[i].customer, customer) == 0)
			return &zs->users[i];
	}
	return NULL;
}

/* The Zendesk user of customer (borrowed) when it was learned from the same
 * user body, else NULL. */
static const char *user_of(zendesk_sink *zs, const char *customer, uint64_t fp)
{
	const zd_user *u = user_slot(zs, customer);

	return u != NULL && u->fingerprint == fp ? u->user : NULL;
}

/* Remember customer's user (a ring: the oldest goes first; a forgotten one
 * costs one more user call). Ids too long for a slot are not remembered. */
static void user_remember(zendesk_sink *zs, const char *customer, uint64_t fp, const char *user)
{
	zd_user *u;

	if (customer == NULL || strlen(customer) >= ZD_CUSTOMER_BYTES || !zd_is_id(user))
		return;
	u = user_slot(zs, customer);
	if (u == NULL) {
		u = &zs->users[zs->user_next];
		zs->user_next = (zs->user_next + 1) % ZD_USERS;
		snprintf(u->customer, sizeof(u->customer), "%s", customer);
	}
	u->fingerprint = fp;
	snprintf(u->user, sizeof(u->user), "%s", user);
}

static void user_forget(zendesk_sink *zs, const char *customer)
{
	zd_user *u = user_slot(zs, customer);

	if (u != NULL)
		memset(u, 0, sizeof(*u));
}

static zd_uncertain *uncertain_find(zendesk_sink *zs, const char *key)
{
	for (size_t i = 0; key != NULL && i < ZD_UNCERTAIN; i++) {
		if (zs->uncertain[i].key != NULL && strcmp(zs->uncertain[i].key, key) == 0)
			return &zs->uncertain[i];
	}
	return NULL;
}

/* Remember that key's PUT, started at_ms, may have landed (a ring: the
 * oldest is forgotten first; a forgotten one risks a duplicate comment). */
static void uncertain_add(zendesk_sink *zs, const char *key, int64_t at_ms)
{
	zd_uncertain *u = uncertain_find(zs, key);

	if (key == NULL)
		return;
	if (u != NULL) {
		if (at_ms < u->at_ms)
			u->at_ms = at_ms;
		return;
	}
	u = &zs->uncertain[zs->uncertain_next];
	zs->uncertain_next = (zs->uncertain_next + 1) % ZD_UNCERTAIN;
	free(u->key);
	u->key = pu_strdup(key);
	u->at_ms = at_ms;
}

static void uncertain_forget(zendesk_sink *zs, const char *key)
{
	zd_uncertain *u = uncertain_find(zs, key);

	if (u != NULL) {
		free(u->key);
		u->key = NULL;
	}
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
	user = user_of(zs, op->customer_id, op->user_fingerprint);
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
static pu_pacer_rate pacer_rate(const void *settings)
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
static bool step_start(void *owner, pu_pacer_item *item)
{
	zendesk_sink *zs = owner;
	zd_op *op = PU_PACER_OWNER(item, zd_op, link);
	const char *headers[5];
	size_t h = 0;
	char idem[600];
	char *url = NULL, *body = NULL;
	const char *method = "GET";
	parley_http_call call;
	bool started;

	headers[h++] = zs->cfg.auth_header;
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
	remember_requester(zs, ticket, requester);
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
	user_remember(zs, op->customer_id, op->user_fingerprint, id);
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
			remember_requester(zs, op->ticket_id, requester);
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
			uncertain_forget(zs, op->idempotency_key);
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
		uncertain_forget(zs, op->idempotency_key);
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

	user_forget(zs, op->customer_id);
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
		uncertain_add(zs, op->idempotency_key, op->started_ms);
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
static void hand_back(void *owner, pu_pacer_item *item, int64_t retry_at_ms, const char *reason)
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
	op->user_fingerprint = fingerprint(op->user_body);
	return use_remembered_user(zs, op);
}

/* t: borrowed for the call. d: owned by the core until delivery_complete. */
static void zd_open_ticket(void *self, const parley_ticket_request *t, parley_delivery *d)
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
static void zd_append_message(void *self, const parley_ticket_append *a, parley_delivery *d)
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
	uncertain = uncertain_find(zs, op->idempotency_key);
	if (uncertain != NULL)
		op->uncertain_since_ms = uncertain->at_ms - ZD_CLOCK_SLACK_MS;
	requester = requester_of(zs, op->ticket_id);
	if (requester != NULL) {
		snprintf(op->requester, sizeof(op->requester), "%s", requester);
		op->step = append_step(op);
	} else {
		op->step = ZD_STEP_SHOW;
	}
	admit(zs, op);
}

/* ------------------------------------------------------------------------ */
/* Webhooks                                                                 */
/* ------------------------------------------------------------------------ */

typedef struct zd_emit_ctx {
	const parley_host *host;
	parley_request *req;
} zd_emit_ctx;

static int emit_one(void *arg, const parley_ticket_event *ev)
{
	zd_emit_ctx *ctx = arg;

	return ctx->host->request_emit_ticket_event(ctx->req, ev);
}

/* POST /sinks/{instance}/events. req: owned by the core. */
static void zd_handle_request(void *self, parley_request *req)
{
	zendesk_sink *zs = self;
	const parley_host *host = zs->host;
	const unsigned char *body;
	size_t len = 0;
	char what[ZD_REASON_BYTES];
	zd_emit_ctx ctx = { host, req };
	zd_webhook_status st;

	if (strcmp(host->request_method(req), "POST") != 0) {
		host->respond_error(req, 405, "method_not_allowed", "POST Zendesk webhooks here");
		return;
	}
	if (host->request_subpath(req)[0] != '\0') {
		host->respond_error(req, 404, "not_found", "no such path");
		return;
	}
	body = host->request_body(req, &len);
	if (zs->cfg.webhook_secret == NULL ||
	    !zd_verify_signature(host->request_header(req, "X-Zendesk-Webhook-Signature"),
	                         host->request_header(req, "X-Zendesk-Webhook-Signature-Timestamp"),
	                         zs->cfg.webhook_secret, strlen(zs->cfg.webhook_secret),
	                         body, len, host->hmac_sha256, host->secure_equals)) {
		/* Anyone can post here: count it, do not log each one. */
		host->counter_add(zs->inst, "zendesk_webhooks_unauthorized_total", 1);
		host->respond_error(req, 401, "unauthorized",
		                    "missing or wrong X-Zendesk-Webhook-Signature");
		return;
	}
	if (!PARLEY_HAS_FIELD(host, parley_host, request_emit_ticket_event) ||
	    host->request_emit_ticket_event == NULL) {
		host->respond_error(req, 503, "unsupported", "this parleyd cannot store ticket events");
		return;
	}
	st = zd_parse_webhook(body != NULL ? body : (const unsigned char *)"", len,
	                      zs->api_user_id[0] != '\0' ? zs->api_user_id : NULL,
	                      emit_one, &ctx, what, sizeof(what));
	switch (st) {
	case ZD_WEBHOOK_EVENT:
		host->counter_add(zs->inst, "zendesk_webhook_events_total", 1);
		host->respond(req, 200, "application/json", "{\"ok\":true}", 11);
		break;
	case ZD_WEBHOOK_IGNORED:
		host->counter_add(zs->inst, "zendesk_webhooks_ignored_total", 1);
		host->log(zs->inst, PARLEY_LOG_INFO, "webhook ignored: %s", what);
		host->respond(req, 200, "application/json", "{\"ok\":true,\"ignored\":true}", 26);
		break;
	case ZD_WEBHOOK_BAD:
	case ZD_WEBHOOK_REFUSED:
		host->counter_add(zs->inst, "zendesk_webhooks_bad_total", 1);
		host->respond_error(req, 400, "bad_request", what);
		break;
	}
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

/* Requests in flight hold no pointer into the settings (the core copied
 * each call). Another account or user may be behind the new config. */
static void zd_reloaded(void *self, const void *old_settings)
{
	zendesk_sink *zs = self;
	const zd_settings *old = old_settings;

	if (strcmp(old->base_url, zs->cfg.base_url) != 0 ||
	    strcmp(old->auth_header, zs->cfg.auth_header) != 0) {
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

static const pu_instance_class zd_class = {
	PU_INSTANCE_LAYOUT(zendesk_sink, cfg),
	.host_needs = PU_HOST_NEEDS(now_ms),
	.too_old = "this parleyd is too old for the zendesk plugin",
	.init = zd_init,
	.reloaded = zd_reloaded,
	.finish = zd_finish,
	.pace = pacer_rate,
	PU_INSTANCE_PACER(zendesk_sink, pacer),
	.pace_start = step_start,
	.pace_back = hand_back,
	.pace_free = op_item_free,
	.pace_pause_reason = "Zendesk rate limit: waiting for Retry-After",
	.read = settings_read,
	.free = settings_free,
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
	.config_keys = zd_config_keys,
	.create = zd_create,
	.reload = zd_reload,
	.stop = zd_stop,
	.destroy = zd_destroy,
	.sink = &zd_ops,
};

PARLEY_PLUGIN_ENTRY(&zd_descriptor)
