/* db_listen.h - LISTEN subscriptions on a connection of their own.
 *
 * A listener holds one non-blocking libpq connection outside the pool,
 * LISTENs on every subscribed channel, and calls each channel's callback for
 * its notifications. When the connection fails or drops (the server
 * restarted, the backend was terminated) it reconnects with backoff (100 ms
 * doubling to 5 s, jittered) and LISTENs again; notifications sent while it
 * was away are lost, so every subscriber is told when the subscription is
 * (re)established and should look for what it missed. Everything runs on
 * the libevent loop; nothing blocks it.
 *
 * Subscribe before db_listen_start; a listener's channels are fixed while it
 * runs. Used by the job runner (parley_jobs); live events will reuse it. */
#ifndef PARLEY_CORE_DB_LISTEN_H
#define PARLEY_CORE_DB_LISTEN_H

#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>

typedef struct db_listen db_listen;

/* A notification on `channel`; payload: borrowed for the call ("" if none). */
typedef void (*db_listen_notify_fn)(void *arg, const char *channel, const char *payload);
/* The LISTEN took effect: first (again = false) or after an outage (true).
 * Notifications sent meanwhile went to no one. */
typedef void (*db_listen_ready_fn)(void *arg, bool again);

typedef struct db_listen_options {
	const char *dsn;              /* borrowed, copied; never logged (may hold a password) */
	int connect_timeout_ms;       /* 0: libpq's own */
	const char *application_name; /* borrowed, copied: fallback_application_name */
	const char *log_component;    /* borrowed, copied: the component logs are written as */
	const char *what;             /* borrowed, copied: "the LISTEN connection", for logs */
} db_listen_options;

/* A stopped listener on `base`. NULL with a reason on bad options (the DSN
 * does not parse; the reason never quotes it). */
db_listen *db_listen_new(struct event_base *base, const db_listen_options *opts, char *err,
                         size_t errlen);
/* Route notifications of `channel` ([a-z0-9_], at most 63 bytes) to the
 * callbacks; ready may be NULL. false when running, or on a bad name. */
PARLEY_MUSTCHECK
bool db_listen_subscribe(db_listen *l, const char *channel, db_listen_notify_fn notify,
                         db_listen_ready_fn ready, void *arg);
/* Connect and LISTEN (on the loop; failures are retried, never returned). */
void db_listen_start(db_listen *l);
/* Close the connection; no callbacks after this. */
void db_listen_stop(db_listen *l);
/* Is the LISTEN in effect right now? */
bool db_listen_is_ready(const db_listen *l);
/* Stop and free; NULL is fine. */
void db_listen_free(db_listen *l);

#endif
