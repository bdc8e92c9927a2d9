/* freshdesk_sink.h - the freshdesk sink's instance, its deliveries in
 * flight and what its files call across each other (private to the plugin).
 *
 *   freshdesk.c          settings table, lifecycle, descriptor
 *   freshdesk_deliver.c  open_ticket and append_message: requests, pacing
 *   freshdesk_events.c   the automation webhook in (POST /sinks/{instance}/events)
 *   freshdesk_notes.c    the record of the notes Parley adds to a ticket
 * The pure half (requests, answers, HTML, webhook parsing) is in
 * freshdesk_api.h. */
#ifndef PARLEY_FRESHDESK_SINK_H
#define PARLEY_FRESHDESK_SINK_H

#include <stdbool.h>
#include <stdint.h>

#include "parley/parley.h"
#include "../../common/pacer.h"
#include "freshdesk_api.h"
#include "freshdesk_notes.h"

#define FD_VERSION "0.1.0"
#define FD_HOLD_MAX_MS 20000           /* a longer wait for a slot hands the job back */

/* One instance's settings, filled and checked by the core from the table in
 * freshdesk.c (ABI 1.3). Every field is owned by the core and stays valid
 * until destroy or the next accepted reload. */
typedef struct fd_settings {
	const char *base_url;       /* may end in '/': dropped when a URL is built */
	const char *api_key;        /* a secret */
	const char *webhook_secret; /* a secret; NULL: webhooks refused */
	const char *webhook_username; /* NULL: Basic auth not accepted */
	int64_t rpm;
	int64_t timeout_ms;
	int64_t priority;
	int64_t source;
	int64_t group_id;           /* 0: Freshdesk's default */
	int tls_verify;
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

/* freshdesk_deliver.c: the class's pacer hooks (see pu_instance_class) and
 * the sink ops. t, a: borrowed for the call; d: completed exactly once,
 * now or later. */
FD_INTERNAL pu_pacer_rate fd_pacer_rate(const void *settings);
FD_INTERNAL bool fd_start_request(void *owner, pu_pacer_item *item);
FD_INTERNAL void fd_hand_back(void *owner, pu_pacer_item *item, int64_t retry_at_ms,
                              const char *reason);
FD_INTERNAL void fd_op_item_free(pu_pacer_item *item);
FD_INTERNAL void fd_open_ticket(void *self, const parley_ticket_request *t, parley_delivery *d);
FD_INTERNAL void fd_append_message(void *self, const parley_ticket_append *a,
                                   parley_delivery *d);

/* freshdesk_events.c: the automation webhook. req: owned by the core,
 * answered exactly once, now or after the ticket's record is read. */
FD_INTERNAL void fd_handle_request(void *self, parley_request *req);

#endif
