/* live_events.h - the API's live event stream: GET /api/v1/events.
 *
 * Server-Sent Events with ids persisted in PostgreSQL (sql/functions/
 * live_events.sql says how they are written and numbered). Per node:
 *   - the sequencer (live_sequencer.c) numbers queued events when a
 *     transaction announces some (LISTEN parley_live_pending), coalescing
 *     announcements for a few milliseconds, and on a sweep;
 *   - the hub (live_hub.c) reads new events when the sequencer of any node
 *     announces them (LISTEN parley_live) and on the sweep, and writes each
 *     to the connected clients that may see it, with a heartbeat;
 *   - scopes (live_scope.c): what each client's credential sees, checked
 *     again every half minute (a revoked token's stream ends);
 *   - streams (live_stream.c): the handler: admission, Last-Event-ID resume
 *     from the table in pages, the frames.
 * A client that does not read is dropped (the server's max_output_bytes),
 * never buffered for without bound. */
#ifndef PARLEY_CORE_LIVE_EVENTS_H
#define PARLEY_CORE_LIVE_EVENTS_H

#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>

#include "api.h"

/* The node's live_events settings (config_settings.c has their docs). */
typedef struct live_limits {
	int max_clients;       /* streams at once; more are answered 503 */
	int heartbeat_ms;      /* a ": ping" comment this often */
	int replay_max;        /* a Last-Event-ID further behind gets a 'reset' */
	int retention_s;       /* events older than this are deleted */
} live_limits;

typedef struct live_options {
	const char *dsn;            /* for the LISTEN connection; borrowed, copied */
	int connect_timeout_ms;
	live_limits limits;
} live_options;

/* Start listening, sequencing and reading on `base` (after db_pool_start).
 * false with a reason only on bad options. */
PARLEY_MUSTCHECK
bool live_events_start(struct event_base *base, const live_options *opts, char *err, size_t errlen);
/* New limits (SIGHUP); streams beyond a lower max_clients stay. */
void live_events_set_limits(const live_limits *limits);
/* SIGTERM: stop listening and sequencing; the streams end as the HTTP
 * server stops them. */
void live_events_stop(void);
/* After db_pool_stop and the loop's last turn. */
void live_events_free(void);

/* The operation's C handler (core/api.c ops[]). */
void live_events_handle(http_request *req, const route_match *m, const api_actor *actor);

#endif
