/* db.c - PostgreSQL on the event loop: a small pool of non-blocking libpq
 * connections, each running one batch at a time in pipeline mode.
 *
 * This file is the pool: starting and stopping it, its counts and gauges,
 * and which queued batch runs next on which idle connection (foreground
 * first, background never on the last free connection). A batch's life is
 * db_batch.c, a connection's db_conn.c, a batch on a connection
 * db_pipeline.c; db_internal.h has what they share. */
#include "db.h"

#include <stdlib.h>

#include "db_internal.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

db_pool_state db_pool = {
	.queue = TAILQ_HEAD_INITIALIZER(db_pool.queue),
	.failing = TAILQ_HEAD_INITIALIZER(db_pool.failing),
};

/* ------------------------------------------------------------ scheduling */

static db_conn *pool_idle_conn(void)
{
	for (int i = 0; i < db_pool.nconns; i++)
		if (db_pool.conns[i].state == CONN_IDLE)
			return &db_pool.conns[i];
	return NULL;
}

/* Connections running a background batch right now. */
static int pool_background_busy(void)
{
	int n = 0;
	for (int i = 0; i < db_pool.nconns; i++)
		if (db_pool.conns[i].state == CONN_BUSY && db_pool.conns[i].batch != NULL &&
		    db_pool.conns[i].batch->background)
			n++;
	return n;
}

/* The next batch to start: the oldest foreground one, else the oldest
 * background one while background work leaves a connection for the
 * foreground (inbound events must never wait behind a backlog of jobs). */
static db_batch *pool_next_batch(void)
{
	db_batch *b, *first_bg = NULL;
	TAILQ_FOREACH(b, &db_pool.queue, link) {
		if (!b->background)
			return b;
		if (first_bg == NULL)
			first_bg = b;
	}
	if (first_bg == NULL)
		return NULL;
	int bg_limit = db_pool.nconns > 1 ? db_pool.nconns - 1 : 1;
	return pool_background_busy() < bg_limit ? first_bg : NULL;
}

void db_pool_dispatch(void)
{
	while (db_pool.running && !TAILQ_EMPTY(&db_pool.queue)) {
		db_conn *c = pool_idle_conn();
		if (c == NULL)
			return;
		db_batch *b = pool_next_batch();
		if (b == NULL)
			return;
		TAILQ_REMOVE(&db_pool.queue, b, link);
		db_conn_run(c, b);
	}
}

/* ------------------------------------------------------------------ pool */

static void db_metrics_collect(void *arg)
{
	int connecting, idle, busy, down;
	db_pool_counts(&connecting, &idle, &busy, &down);
	static const char help[] = "PostgreSQL pool connections by state.";
	metrics_gauge_set("parley_db_connections", help, "state=\"connecting\"", connecting);
	metrics_gauge_set("parley_db_connections", help, "state=\"idle\"", idle);
	metrics_gauge_set("parley_db_connections", help, "state=\"busy\"", busy);
	metrics_gauge_set("parley_db_connections", help, "state=\"down\"", down);
}

bool db_pool_start(struct event_base *base, const db_pool_options *opts)
{
	if (db_pool.running) {
		log_error(DB_LOG, "the database pool is already running");
		return false;
	}
	if (base == NULL || opts == NULL || opts->dsn == NULL || opts->pool_size < 1 ||
	    opts->pool_size > DB_MAX_POOL) {
		log_error(DB_LOG, "invalid database pool options (pool_size must be 1..%d)", DB_MAX_POOL);
		return false;
	}
	/* Check the syntax up front. libpq's parse errors can quote pieces of
	 * the string, which may be a password, so they are not repeated. */
	char *perr = NULL;
	PQconninfoOption *parsed = PQconninfoParse(opts->dsn, &perr);
	if (parsed == NULL) {
		PQfreemem(perr);
		log_error(DB_LOG, "invalid database connection string (not shown: it may hold a password)");
		return false;
	}
	PQconninfoFree(parsed);

	db_pool.base = base;
	db_pool.dsn = xstrdup(opts->dsn);
	db_pool.connect_timeout_ms = opts->connect_timeout_ms;
	db_pool.query_timeout_ms = opts->query_timeout_ms;
	db_pool.nconns = opts->pool_size;
	db_pool.conns = xcalloc((size_t)db_pool.nconns, sizeof(db_conn));
	db_pool.outage = false;
	db_pool.announced = false;
	db_pool.running = true;
	for (int i = 0; i < db_pool.nconns; i++)
		db_conn_init(&db_pool.conns[i], i);
	for (int i = 0; i < db_pool.nconns; i++)
		db_conn_start_connect(&db_pool.conns[i]);
	/* Registered per start because metrics_reset() forgets collectors; a
	 * second registration after a restart only sets the same gauges twice. */
	metrics_add_collector(db_metrics_collect, NULL);
	return true;
}

void db_pool_stop(void)
{
	db_pool.running = false;
	for (int i = 0; i < db_pool.nconns; i++) {
		db_conn *c = &db_pool.conns[i];
		db_batch *b = c->batch;
		c->batch = NULL;
		db_conn_close(c);
		if (b != NULL)
			db_batch_fail_later(b, DB_ERR_SHUTDOWN);
		if (c->timer != NULL) {
			event_free(c->timer);
			c->timer = NULL;
		}
	}
	db_pool_fail_queue(DB_ERR_SHUTDOWN);
	/* Call back here rather than on a later loop turn: the loop may not run
	 * again. Batches submitted from these callbacks land on the same list
	 * and are answered by this loop too. */
	while (!TAILQ_EMPTY(&db_pool.failing)) {
		db_batch *b = TAILQ_FIRST(&db_pool.failing);
		TAILQ_REMOVE(&db_pool.failing, b, link);
		db_batch_complete(b, false, b->error);
	}
	free(db_pool.conns);
	db_pool.conns = NULL;
	db_pool.nconns = 0;
	free(db_pool.dsn);
	db_pool.dsn = NULL;
	db_pool.base = NULL;
}

bool db_pool_ready(void)
{
	for (int i = 0; i < db_pool.nconns; i++)
		if (db_pool.conns[i].state == CONN_IDLE || db_pool.conns[i].state == CONN_BUSY)
			return true;
	return false;
}

void db_pool_counts(int *connecting, int *idle, int *busy, int *down)
{
	int n[4] = { 0, 0, 0, 0 };
	for (int i = 0; i < db_pool.nconns; i++)
		n[db_pool.conns[i].state]++;
	if (connecting)
		*connecting = n[CONN_CONNECTING];
	if (idle)
		*idle = n[CONN_IDLE];
	if (busy)
		*busy = n[CONN_BUSY];
	if (down)
		*down = n[CONN_DOWN];
}

int db_pool_pending(void)
{
	return db_pool.pending;
}

/* ------------------------------------------------------- command line */

PGconn *db_connect_blocking(const char *dsn, char *err, size_t errlen)
{
	/* libpq's parse errors can quote pieces of the string (a password):
	 * check the syntax first and say only that it is wrong. */
	char *perr = NULL;
	PQconninfoOption *parsed = PQconninfoParse(dsn, &perr);
	if (parsed == NULL) {
		PQfreemem(perr);
		util_set_err(err, errlen, "invalid database connection string (not shown: it may hold a password)");
		return NULL;
	}
	PQconninfoFree(parsed);

	static const char *const keys[] = { "fallback_application_name", "dbname", NULL };
	const char *values[] = { "parleyd", dsn, NULL };
	PGconn *pg = PQconnectdbParams(keys, values, 1);
	if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
		char msg[DB_MSG_MAX];
		util_one_line(pg ? PQerrorMessage(pg) : "out of memory", msg, sizeof(msg));
		util_set_err(err, errlen, "cannot connect to PostgreSQL: %s", msg);
		PQfinish(pg);
		return NULL;
	}
	return pg;
}
