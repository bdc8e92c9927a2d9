/* zendesk_sink.h - the zendesk sink's instance, its deliveries in flight
 * and what its files call across each other (private to the plugin).
 *
 *   zendesk.c          settings table, lifecycle, descriptor
 *   zendesk_deliver.c  open_ticket and append_message: steps, pacing
 *   zendesk_memory.c   what the process remembers (requesters, users,
 *                      comments that may have landed)
 *   zendesk_events.c   Zendesk's webhooks in (POST /sinks/{instance}/events)
 * The pure half (requests, answers, webhook parsing) is in zendesk_api.h. */
#ifndef PARLEY_ZENDESK_SINK_H
#define PARLEY_ZENDESK_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include "parley/parley.h"
#include "../../common/pacer.h"
#include "zendesk_api.h"

#define ZD_MAX_WAIT_MS 20000        /* longer waits for a token hand the job back */
#define ZD_BURST_DIVISOR 10         /* the bucket holds a tenth of a minute's budget */
#define ZD_REQUESTERS 512           /* ticket -> requester ids remembered */
#define ZD_USERS 512                /* customer -> Zendesk user ids remembered */
#define ZD_CUSTOMER_BYTES 64        /* a longer customer id is not remembered */
#define ZD_ME_RETRY_MS 60000        /* how often to retry learning the API user */
#define ZD_UNCERTAIN 64             /* comments whose PUT may have landed */
#define ZD_CLOCK_SLACK_MS 60000     /* Zendesk's clock against ours */

/* One instance's settings, filled and checked by the core from the table in
 * zendesk.c (ABI 1.3). Every field is owned by the core and stays valid
 * until destroy or the next accepted reload. */
typedef struct zd_settings {
	const char *base_url;
	const char *email;          /* NULL with oauth_token */
	const char *api_token;      /* secret; NULL with oauth_token */
	const char *oauth_token;    /* secret; NULL with email + api_token */
	const char *webhook_secret; /* secret; NULL: webhooks are refused */
	int64_t rpm;
	int64_t timeout_ms;
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

/* zendesk_deliver.c: the class's pacer hooks (see pu_instance_class) and
 * the sink ops. t, a: borrowed for the call; d: owned by the core until
 * delivery_complete, which runs exactly once, now or later. */
ZD_INTERNAL pu_pacer_rate zd_pacer_rate(const void *settings);
ZD_INTERNAL bool zd_step_start(void *owner, pu_pacer_item *item);
ZD_INTERNAL void zd_hand_back(void *owner, pu_pacer_item *item, int64_t retry_at_ms,
                              const char *reason);
ZD_INTERNAL void zd_op_item_free(pu_pacer_item *item);
ZD_INTERNAL void zd_open_ticket(void *self, const parley_ticket_request *t, parley_delivery *d);
ZD_INTERNAL void zd_append_message(void *self, const parley_ticket_append *a,
                                   parley_delivery *d);

/* zendesk_memory.c: small rings in the instance; the oldest entry goes
 * first. Strings borrowed; what is returned points into zs. */
ZD_INTERNAL const char *zd_requester_of(const zendesk_sink *zs, const char *ticket);
ZD_INTERNAL void zd_requester_remember(zendesk_sink *zs, const char *ticket, const char *user);
/* FNV-1a of s: tells whether a user body changed. */
ZD_INTERNAL uint64_t zd_fingerprint(const char *s);
ZD_INTERNAL const char *zd_user_of(zendesk_sink *zs, const char *customer, uint64_t fp);
ZD_INTERNAL void zd_user_remember(zendesk_sink *zs, const char *customer, uint64_t fp,
                                  const char *user);
ZD_INTERNAL void zd_user_forget(zendesk_sink *zs, const char *customer);
ZD_INTERNAL zd_uncertain *zd_uncertain_find(zendesk_sink *zs, const char *key);
ZD_INTERNAL void zd_uncertain_add(zendesk_sink *zs, const char *key, int64_t at_ms);
ZD_INTERNAL void zd_uncertain_forget(zendesk_sink *zs, const char *key);

/* zendesk_events.c: POST /sinks/{instance}/events. req: owned by the
 * core, answered exactly once. */
ZD_INTERNAL void zd_handle_request(void *self, parley_request *req);

#endif
