/* password_worker.h - password hashing and checking off the libevent loop.
 *
 * scrypt at the cost in password.h takes 160-180 ms of CPU per call on the
 * development machine; on the loop that would stall every connection. One background thread
 * does the work, in the order the jobs were submitted, and each job's
 * callback runs later on the loop thread. One thread, not one per core: the
 * daemon shares a small machine with PostgreSQL, and a burst of logins should
 * wait in line rather than take every core and 32 MiB each.
 *
 * The queue is bounded: at most PASSWORD_WORKER_QUEUE_MAX jobs may be
 * outstanding (submitted, callback not yet run). A submission beyond that is
 * refused at once, so the caller can answer 503 (or 429) instead of letting
 * a login flood grow memory and latency without end. The last of 64 jobs
 * waits about 64 x 170 ms = 11 s at the development machine's speed; a
 * caller that wants a shorter worst case refuses earlier by looking at
 * password_worker_outstanding().
 *
 * Results come back through a non-blocking pipe watched by an event on the
 * loop, not event_active from the thread: that would need the whole event
 * base made thread-safe (evthread_use_pthreads before it is created, a lock
 * in every event operation), while a pipe needs nothing from libevent.
 *
 * Every accepted job gets its callback exactly once, on the loop thread,
 * never from inside the submitting call. password_worker_stop keeps that
 * promise too (see there), so a caller may free its arg in the callback and
 * nothing leaks.
 *
 * One worker per process. All functions here: from the loop thread only.
 * Passwords are copied into the job and wiped (OPENSSL_cleanse) as soon as
 * the work is done, or when the job is dropped. */
#ifndef PARLEY_CORE_PASSWORD_WORKER_H
#define PARLEY_CORE_PASSWORD_WORKER_H

#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

#include <stdbool.h>
#include <event2/event.h>

#define PASSWORD_WORKER_QUEUE_MAX 64

/* ok: the check ran (false: the stored hash is malformed or out of bounds,
 * scrypt failed, or the worker stopped before the job's turn; match is then
 * false). match: the password is right. */
typedef void (*password_verify_done_fn)(bool ok, bool match, void *arg);
/* ok: hash is the new PHC string (borrowed for the call; copy it). false:
 * hashing failed or the worker stopped first; hash is then NULL. */
typedef void (*password_hash_done_fn)(bool ok, const char *hash, void *arg);

/* Start the thread; callbacks will run on base. false (logged) if it is
 * already running or the pipe, event or thread cannot be made. */
PARLEY_MUSTCHECK
bool password_worker_start(struct event_base *base);

/* Stop the thread and settle every job, before returning: the job being
 * worked on is finished (at most one scrypt, ~0.2 s) and its callback
 * gets the real result, as do jobs finished but not yet delivered; jobs not
 * yet started get ok = false. Submissions during stop (from those callbacks)
 * are refused. Safe to call when not running, and from a callback. The
 * worker can be started again afterwards. */
void password_worker_stop(void);

/* Check password (borrowed, copied) against stored (borrowed, copied), or
 * with stored NULL against a dummy hash of the current cost (for an unknown
 * account: same time, match false). done(ok, match, arg) later on the loop.
 * false when the worker is not running or stopping, or the queue is full:
 * done will not be called. */
PARLEY_MUSTCHECK
bool password_worker_verify(const char *password, const char *stored_or_NULL,
                            password_verify_done_fn done, void *arg);

/* Hash password (borrowed, copied) with password_hash. done(ok, hash, arg)
 * later on the loop. false as for password_worker_verify. */
PARLEY_MUSTCHECK
bool password_worker_hash(const char *password, password_hash_done_fn done, void *arg);

/* Jobs outstanding (submitted, callback not yet run); for metrics and tests. */
unsigned password_worker_outstanding(void);

#endif
