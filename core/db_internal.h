/* db_internal.h - what the files of the PostgreSQL pool share (db.h is the
 * public side): the batch, the connection and the pool's state, and the
 * functions one file calls in another.
 *
 *   db.c          the pool: start, stop, counts, which queued batch runs next
 *   db_batch.c    a batch: building it, submitting it, its timer, its callback
 *   db_conn.c     a connection: connecting, reconnecting with backoff, events
 *   db_pipeline.c a batch on a connection: sent in pipeline mode, results read
 *
 * A connection is in one of four states:
 *   DOWN        closed; its timer fires the next connection attempt (backoff)
 *   CONNECTING  PQconnectPoll driven by socket events, under a timeout
 *   IDLE        established, waiting for a batch (socket watched for EOF)
 *   BUSY        running a batch, or rolling back after a failed one
 *
 * Callbacks run from exactly three places, each with the pool consistent
 * and nothing of the caller's frame touched afterwards:
 *   - a batch's own timer: its query timeout, or a failure. Failures are
 *     never answered where they are detected: the batch moves to the
 *     `failing` list and its timer is re-armed with a zero timeout. That
 *     keeps db_batch_submit free of callbacks and keeps connection code from
 *     being re-entered by a callback that submits or stops the pool;
 *   - the connection's socket event, for a batch that succeeded, once the
 *     connection is idle again;
 *   - db_pool_stop, which answers everything left because the loop may not
 *     run again.
 *
 * Everything here runs on the loop's thread; the state is one static pool. */
#ifndef PARLEY_CORE_DB_INTERNAL_H
#define PARLEY_CORE_DB_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <event2/event.h>
#include <libpq-fe.h>

#include "db.h"

#define DB_LOG "db"
#define DB_MSG_MAX 512

typedef struct db_stmt {
	char *sql;
	int nparams;
	char **params;            /* nparams entries; NULL entries are SQL NULL */
} db_stmt;

typedef enum batch_state {
	BATCH_NEW,                /* being built; not submitted */
	BATCH_QUEUED,             /* in db_pool.queue, waiting for an idle connection */
	BATCH_RUNNING,            /* sent on `conn` */
	BATCH_FAILING             /* in db_pool.failing; callback on the next loop turn */
} batch_state;

struct db_conn;

struct db_batch {
	db_stmt *stmts;
	int n, cap;
	char *invalid;            /* why db_batch_add refused a statement, or NULL */
	PGresult **results;       /* n entries while RUNNING and during a success callback */
	db_batch_fn done;
	void *arg;
	batch_state state;
	struct event *timer;      /* query timeout; re-armed at zero to fail later */
	struct db_conn *conn;     /* while RUNNING */
	char *error;              /* why it failed (first error wins unless replaced) */
	char sqlstate[6];         /* the SQLSTATE of a statement's error, or "" */
	bool background;          /* low priority: never takes the last free connection */
	TAILQ_ENTRY(db_batch) link; /* db_pool.queue or db_pool.failing */
};
TAILQ_HEAD(batch_list, db_batch);

typedef enum conn_state {
	CONN_DOWN,
	CONN_CONNECTING,
	CONN_IDLE,
	CONN_BUSY
} conn_state;

typedef struct db_conn {
	int id;
	conn_state state;
	PGconn *pg;
	struct event *io;         /* socket event; re-created when the socket changes */
	evutil_socket_t io_fd;
	short io_what;
	struct event *timer;      /* CONNECTING: connect timeout; DOWN: reconnect */
	int backoff_ms;           /* last reconnect delay step; 0 after a success */
	bool flushing;            /* PQflush said 1: also wait for EV_WRITE */
	db_batch *batch;          /* NULL while rolling back after a failed batch */
	int stage;                /* pipeline query whose results are being read */
	int nqueries;             /* queries before the sync */
	bool failed;              /* a result in this pipeline was an error */
	char fatal[DB_MSG_MAX];   /* last FATAL the server sent: why it hangs up */
} db_conn;

typedef struct db_pool_state {
	struct event_base *base;  /* borrowed; set from start until stop returns */
	bool running;
	char *dsn;                /* owned; never logged: it may hold a password */
	int connect_timeout_ms;
	int query_timeout_ms;
	db_conn *conns;
	int nconns;
	struct batch_list queue;
	struct batch_list failing;
	int pending;              /* submitted, not yet called back */
	bool outage;              /* a failure was logged; log when a connection is back */
	bool announced;           /* "connected" logged once */
	uint64_t rng;
} db_pool_state;

/* The one pool (db.c). */
extern db_pool_state db_pool;

static inline struct timeval db_ms_to_tv(int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	return tv;
}

/* db.c: start queued batches on idle connections, oldest first, foreground
 * first. */
void db_pool_dispatch(void);

/* db_batch.c */
/* Call back and free. The batch must be detached from every list and
 * connection; after this returns nothing may touch it. */
void db_batch_complete(db_batch *b, bool ok, const char *error);
/* Fail on the next loop turn. `why` (borrowed, may be NULL to keep the error
 * already recorded) replaces the recorded error. */
void db_batch_fail_later(db_batch *b, const char *why);
/* Fail every queued batch on the next loop turn with `why` (borrowed). */
void db_pool_fail_queue(const char *why);

/* db_conn.c */
/* c (in the pool's array, zeroed) gets its id and reconnect timer, DOWN. */
void db_conn_init(db_conn *c, int id);
void db_conn_start_connect(db_conn *c);
/* Watch the connection's socket for `what`; `force` re-registers even when
 * nothing seems to change (libpq may have replaced the socket). */
bool db_conn_watch(db_conn *c, short what, bool force);
/* Close the socket and libpq's connection, stop the timer: DOWN. */
void db_conn_close(db_conn *c);
/* Take the connection out of service; its batch fails with batch_error
 * (borrowed, may be NULL). `broken`: back off and count an outage. */
void db_conn_drop(db_conn *c, const char *batch_error, bool broken);
/* The connection failed in a way libpq reports on the connection. */
void db_conn_broken(db_conn *c);
/* One line for the pool's warning: once per outage, then debug. */
void db_pool_note_failure(const char *what, const char *msg);
/* Why a connection failed, one line, never the DSN. */
void db_conn_message(const db_conn *c, char *out, size_t len);
/* PostgreSQL's primary message for an error result, one line, no DETAIL. */
void db_result_message(const PGresult *r, char *out, size_t len);

/* db_pipeline.c */
/* Send batch b (queued until now) on idle connection c: BEGIN, its
 * statements, COMMIT and a sync in one pipeline. */
void db_conn_run(db_conn *c, db_batch *b);
/* A socket event on a BUSY connection: flush, read, finish the pipeline. */
void db_conn_busy_io(db_conn *c, short what);

#endif
