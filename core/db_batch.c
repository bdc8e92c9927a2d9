/* db_batch.c - a batch of the PostgreSQL pool: building it, submitting it,
 * its timer (query timeout, or a failure answered on the next loop turn)
 * and its one callback. See db_internal.h for where callbacks may run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_internal.h"
#include "log.h"
#include "util.h"

#define DB_MAX_PARAMS 65535      /* the protocol's limit per statement */

/* ------------------------------------------------------------- building */

db_batch *db_batch_new(void)
{
	return xcalloc(1, sizeof(db_batch));
}

void db_batch_add(db_batch *b, const char *sql, int nparams, const char *const *params)
{
	if (b == NULL || b->state != BATCH_NEW)
		return;
	if (b->invalid != NULL)
		return;
	if (sql == NULL || nparams < 0 || nparams > DB_MAX_PARAMS) {
		/* Reported when the batch is submitted: the caller's callback is the
		 * one place errors are handled. */
		b->invalid = xstrdup(sql == NULL ? "statement without SQL"
		                                 : "statement has too many parameters");
		return;
	}
	if (b->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 4;
		b->stmts = xrealloc(b->stmts, (size_t)b->cap * sizeof(db_stmt));
	}
	db_stmt *s = &b->stmts[b->n++];
	s->sql = xstrdup(sql);
	s->nparams = nparams;
	s->params = nparams > 0 ? xcalloc((size_t)nparams, sizeof(char *)) : NULL;
	for (int i = 0; i < nparams && params != NULL; i++)
		s->params[i] = xstrdup(params[i]);
}

void db_batch_set_background(db_batch *b)
{
	if (b != NULL && b->state == BATCH_NEW)
		b->background = true;
}

int db_batch_count(const db_batch *b)
{
	return b ? b->n : 0;
}

PGresult *db_batch_result(db_batch *b, int i)
{
	if (b == NULL || b->results == NULL || i < 0 || i >= b->n)
		return NULL;
	return b->results[i];
}

static void batch_clear_results(db_batch *b)
{
	if (b->results == NULL)
		return;
	for (int i = 0; i < b->n; i++)
		PQclear(b->results[i]);
	free(b->results);
	b->results = NULL;
}

void db_batch_free(db_batch *b)
{
	if (b == NULL)
		return;
	for (int i = 0; i < b->n; i++) {
		for (int j = 0; j < b->stmts[i].nparams; j++)
			free(b->stmts[i].params[j]);
		free(b->stmts[i].params);
		free(b->stmts[i].sql);
	}
	free(b->stmts);
	batch_clear_results(b);
	if (b->timer != NULL)
		event_free(b->timer);
	free(b->invalid);
	free(b->error);
	free(b);
}

/* ------------------------------------------------------------ callbacks */

void db_batch_complete(db_batch *b, bool ok, const char *error)
{
	if (b->timer != NULL)
		evtimer_del(b->timer);
	if (!ok)
		batch_clear_results(b);
	db_pool.pending--;
	if (b->done != NULL)
		b->done(b, ok, ok ? NULL : (error ? error : "unknown error"), b->arg);
	db_batch_free(b);
}

const char *db_batch_sqlstate(const db_batch *b)
{
	return b->sqlstate;
}

void db_batch_fail_later(db_batch *b, const char *why)
{
	if (b->state == BATCH_QUEUED)
		TAILQ_REMOVE(&db_pool.queue, b, link);
	else if (b->state == BATCH_FAILING)
		return;
	if (why != NULL) {
		free(b->error);
		b->error = xstrdup(why);
		b->sqlstate[0] = '\0';
	} else if (b->error == NULL) {
		b->error = xstrdup("unknown error");
	}
	b->state = BATCH_FAILING;
	b->conn = NULL;
	batch_clear_results(b);
	TAILQ_INSERT_TAIL(&db_pool.failing, b, link);
	struct timeval now = { 0, 0 };
	evtimer_add(b->timer, &now);
}

void db_pool_fail_queue(const char *why)
{
	while (!TAILQ_EMPTY(&db_pool.queue))
		db_batch_fail_later(TAILQ_FIRST(&db_pool.queue), why);
}

static void batch_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	db_batch *b = arg;
	switch (b->state) {
	case BATCH_FAILING:
		TAILQ_REMOVE(&db_pool.failing, b, link);
		db_batch_complete(b, false, b->error);
		return;
	case BATCH_QUEUED:
		TAILQ_REMOVE(&db_pool.queue, b, link);
		db_batch_complete(b, false, DB_ERR_TIMEOUT);
		return;
	case BATCH_RUNNING: {
		/* PQcancel would block the loop: it opens a new connection and waits
		 * for the server. Closing the connection instead ends the transaction
		 * (rolled back) and frees the pool slot at once; the server stops the
		 * statement when it notices the client is gone. */
		db_conn *c = b->conn;
		log_warn(DB_LOG, "batch exceeded %d ms; closing connection %d to cancel it",
		         db_pool.query_timeout_ms, c->id);
		c->batch = NULL;
		b->conn = NULL;
		db_conn_drop(c, NULL, false);
		db_batch_complete(b, false, DB_ERR_TIMEOUT);
		return;
	}
	case BATCH_NEW:
		return;
	}
}

/* ----------------------------------------------------------- submitting */

void db_batch_submit(db_batch *b, db_batch_fn done, void *arg)
{
	if (b == NULL)
		return;
	if (b->state != BATCH_NEW) {
		log_error(DB_LOG, "a batch was submitted twice; ignored");
		return;
	}
	b->done = done;
	b->arg = arg;
	db_pool.pending++;
	if (db_pool.base == NULL) {
		/* Submitted before db_pool_start or after db_pool_stop: there is no
		 * loop to defer the callback to, so this one misuse answers inline
		 * rather than never. */
		log_error(DB_LOG, "batch submitted while the database pool is not started");
		b->error = xstrdup(DB_ERR_UNAVAILABLE);
		db_batch_complete(b, false, b->error);
		return;
	}
	b->timer = evtimer_new(db_pool.base, batch_timer_cb, b);
	if (b->timer == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
	if (b->invalid != NULL) {
		db_batch_fail_later(b, b->invalid);
		return;
	}
	/* Fail fast while PostgreSQL is away: the caller answers 503 now and the
	 * platform retries, instead of the request hanging until a timeout. At
	 * start-up, before the first connection is up and nothing has failed yet,
	 * the batch waits (bounded by query_timeout_ms) instead. */
	if (!db_pool.running || (!db_pool_ready() && db_pool.outage)) {
		db_batch_fail_later(b, DB_ERR_UNAVAILABLE);
		return;
	}
	b->state = BATCH_QUEUED;
	TAILQ_INSERT_TAIL(&db_pool.queue, b, link);
	if (db_pool.query_timeout_ms > 0) {
		struct timeval tv = db_ms_to_tv(db_pool.query_timeout_ms);
		evtimer_add(b->timer, &tv);
	}
	db_pool_dispatch();
}

