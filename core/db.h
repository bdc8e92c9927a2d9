/* db.h - PostgreSQL on the event loop: a small pool of non-blocking libpq
 * connections.
 *
 * Work is submitted as a batch: one or more parameterized statements run in
 * pipeline mode inside one transaction (BEGIN ... COMMIT), so a batch is all
 * or nothing. The callback runs exactly once, always from the loop (never
 * from inside db_batch_submit). When PostgreSQL goes away, broken connections
 * reconnect with backoff; while no connection is usable, batches fail at once
 * (the caller answers 503) instead of hanging. */
#ifndef PARLEY_CORE_DB_H
#define PARLEY_CORE_DB_H

#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

/* The most connections one node keeps (database.pool_size's upper bound). */
#define DB_MAX_POOL 64

#include <stdbool.h>
#include <event2/event.h>
#include <libpq-fe.h>

typedef struct db_batch db_batch;

/* The errors a batch fails with when the database did not answer it
 * (anything else is PostgreSQL's own message about the batch). */
#define DB_ERR_UNAVAILABLE "database unavailable"
#define DB_ERR_TIMEOUT "timeout"
#define DB_ERR_SHUTDOWN "shutting down"


typedef struct db_pool_options {
	const char *dsn;
	int pool_size;
	int connect_timeout_ms;
	int query_timeout_ms;     /* a batch queued or running longer fails */
} db_pool_options;

/* Start connecting the pool (non-blocking). Returns false only on bad
 * arguments; an unreachable server is not an error here. */
PARLEY_MUSTCHECK
bool db_pool_start(struct event_base *base, const db_pool_options *opts);
/* Close all connections; queued batches fail with "shutting down". */
void db_pool_stop(void);
/* At least one connection is established. */
bool db_pool_ready(void);
void db_pool_counts(int *connecting, int *idle, int *busy, int *down);
/* Batches submitted and not yet called back. */
int db_pool_pending(void);

db_batch *db_batch_new(void);
/* Append a statement. sql and params are copied; a NULL param is SQL NULL.
 * Parameters are text format. */
void db_batch_add(db_batch *b, const char *sql, int nparams, const char *const *params);
int db_batch_count(const db_batch *b);
/* Mark a batch low priority (job runner work): queued foreground batches
 * start first, and background batches never occupy the pool's last free
 * connection, so inbound ingest is never starved by outbound work. */
void db_batch_set_background(db_batch *b);

typedef void (*db_batch_fn)(db_batch *b, bool ok, const char *error, void *arg);
/* Takes ownership of b; it is freed after the callback returns. */
void db_batch_submit(db_batch *b, db_batch_fn done, void *arg);
/* Result of statement i (0-based), valid only inside the callback, ok==true. */
PGresult *db_batch_result(db_batch *b, int i);
/* In a failure callback: the SQLSTATE of the statement that failed ("23505",
 * or a class of Parley's own such as "PA409"), or "" when the batch failed
 * for another reason (connection lost, timeout, shutting down). */
const char *db_batch_sqlstate(const db_batch *b);
/* Free a batch that was never submitted. */
void db_batch_free(db_batch *b);

/* For one-shot command-line work only (--migrate, --merge-customer), never
 * on the loop: connect and wait. NULL with a reason (never the DSN). */
PGconn *db_connect_blocking(const char *dsn, char *err, size_t errlen);

#endif
