/* db_pipeline.c - a batch on a connection of the PostgreSQL pool: BEGIN,
 * the caller's statements and COMMIT sent in one pipeline followed by a
 * sync, so it costs one round trip and is all or nothing; then the results
 * read back as the socket allows, the first error kept as the batch's, and
 * an aborted transaction rolled back before the connection runs another. */
#include <stdio.h>
#include <stdlib.h>

#include "db_internal.h"
#include "log.h"
#include "util.h"

/* Flush what libpq buffered; keep EV_WRITE in the watch while it cannot. */
static bool conn_flush(db_conn *c)
{
	int r = PQflush(c->pg);
	if (r < 0)
		return false;
	c->flushing = r == 1;
	return db_conn_watch(c, EV_READ | EV_PERSIST | (c->flushing ? EV_WRITE : 0), false);
}

static bool conn_send(db_conn *c, const char *sql, int nparams, char *const *params)
{
	return PQsendQueryParams(c->pg, sql, nparams, NULL, (const char *const *)params, NULL, NULL,
	                         0) == 1;
}

void db_conn_run(db_conn *c, db_batch *b)
{
	b->state = BATCH_RUNNING;
	b->conn = c;
	b->results = b->n > 0 ? xcalloc((size_t)b->n, sizeof(PGresult *)) : NULL;
	c->batch = b;
	c->state = CONN_BUSY;
	c->stage = 0;
	c->nqueries = b->n + 2;
	c->failed = false;

	bool sent = PQenterPipelineMode(c->pg) == 1 && conn_send(c, "BEGIN", 0, NULL);
	for (int i = 0; sent && i < b->n; i++)
		sent = conn_send(c, b->stmts[i].sql, b->stmts[i].nparams, b->stmts[i].params);
	sent = sent && conn_send(c, "COMMIT", 0, NULL) && PQpipelineSync(c->pg) == 1 && conn_flush(c);
	if (!sent) {
		/* A half-sent pipeline cannot be recovered; closing the connection
		 * rolls back whatever the server started. */
		char msg[DB_MSG_MAX], why[DB_MSG_MAX + 64];
		db_conn_message(c, msg, sizeof(msg));
		snprintf(why, sizeof(why), "cannot send to PostgreSQL: %s", msg);
		db_conn_drop(c, why, PQstatus(c->pg) == CONNECTION_BAD);
	}
}

typedef enum collect_status {
	COLLECT_MORE,       /* wait for more input */
	COLLECT_DONE,       /* the sync arrived: every result is in */
	COLLECT_CONFUSED    /* results do not match what was sent */
} collect_status;

static void conn_record_result(db_conn *c, PGresult *r)
{
	db_batch *b = c->batch;
	ExecStatusType st = PQresultStatus(r);
	bool good = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
	if (!good) {
		c->failed = true;
		/* The first error is the cause; statements after it only report
		 * PGRES_PIPELINE_ABORTED. */
		if (b != NULL && b->error == NULL && st != PGRES_PIPELINE_ABORTED) {
			char msg[DB_MSG_MAX];
			db_result_message(r, msg, sizeof(msg));
			b->error = xstrdup(msg);
			const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
			snprintf(b->sqlstate, sizeof(b->sqlstate), "%s", state != NULL ? state : "");
		}
	}
	/* Keep the caller's statements' results (stage 0 is BEGIN). */
	if (b != NULL && b->results != NULL && c->stage >= 1 && c->stage <= b->n) {
		PQclear(b->results[c->stage - 1]);
		b->results[c->stage - 1] = r;
		return;
	}
	PQclear(r);
}

static collect_status conn_collect(db_conn *c)
{
	for (;;) {
		if (PQstatus(c->pg) == CONNECTION_BAD)
			return COLLECT_CONFUSED;
		if (PQisBusy(c->pg))
			return COLLECT_MORE;
		PGresult *r = PQgetResult(c->pg);
		if (r == NULL) {
			/* Each query's results end with NULL; then the next begins. */
			if (++c->stage > c->nqueries)
				return COLLECT_CONFUSED;
			continue;
		}
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			return c->stage == c->nqueries ? COLLECT_DONE : COLLECT_CONFUSED;
		}
		if (c->stage >= c->nqueries || st == PGRES_COPY_IN || st == PGRES_COPY_OUT ||
		    st == PGRES_COPY_BOTH) {
			PQclear(r);
			return COLLECT_CONFUSED;
		}
		conn_record_result(c, r);
	}
}

/* The sync arrived: every result of the pipeline is in. */
static void conn_pipeline_done(db_conn *c)
{
	db_batch *b = c->batch;

	if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
		if (b == NULL) {
			/* Our own ROLLBACK did not end the transaction: start afresh. */
			db_conn_drop(c, NULL, false);
			return;
		}
		/* With an explicit BEGIN, an error leaves the connection in an aborted
		 * transaction at the end of the pipeline (the COMMIT was skipped).
		 * Roll it back before the connection takes another batch. The batch
		 * has failed already; it need not wait for that. */
		c->batch = NULL;
		c->stage = 0;
		c->nqueries = 1;
		c->failed = false;
		if (b->error == NULL)
			b->error = xstrdup("the batch left a transaction open");
		db_batch_fail_later(b, NULL);
		if (!conn_send(c, "ROLLBACK", 0, NULL) || PQpipelineSync(c->pg) != 1 || !conn_flush(c))
			db_conn_drop(c, NULL, PQstatus(c->pg) == CONNECTION_BAD);
		return;
	}
	if (PQexitPipelineMode(c->pg) != 1) {
		char msg[DB_MSG_MAX], why[DB_MSG_MAX + 64];
		db_conn_message(c, msg, sizeof(msg));
		snprintf(why, sizeof(why), "database connection confused: %s", msg);
		db_conn_drop(c, why, false);
		return;
	}
	bool failed = c->failed;
	c->batch = NULL;
	c->state = CONN_IDLE;
	c->failed = false;
	c->flushing = false;
	if (!db_conn_watch(c, EV_READ | EV_PERSIST, false)) {
		if (b != NULL)
			c->batch = b;
		db_conn_broken(c);
		return;
	}
	if (b != NULL) {
		b->conn = NULL;
		if (failed) {
			db_batch_fail_later(b, NULL);
		} else {
			/* The connection is idle and consistent: the callback may submit
			 * or even stop the db_pool. Touch nothing of `c` after it. */
			db_batch_complete(b, true, NULL);
		}
	}
	db_pool_dispatch();
}

void db_conn_busy_io(db_conn *c, short what)
{
	/* Reading is always safe and is what lets a blocked flush progress:
	 * the server may be waiting for us to read before it reads more. */
	if (PQconsumeInput(c->pg) != 1) {
		db_conn_broken(c);
		return;
	}
	if (c->flushing && !conn_flush(c)) {
		db_conn_broken(c);
		return;
	}
	switch (conn_collect(c)) {
	case COLLECT_MORE:
		return;
	case COLLECT_DONE:
		conn_pipeline_done(c);
		return;
	case COLLECT_CONFUSED:
		if (PQstatus(c->pg) == CONNECTION_BAD) {
			db_conn_broken(c);
		} else {
			log_warn(DB_LOG, "unexpected results in pipeline; closing connection %d", c->id);
			db_conn_drop(c, "database connection confused: unexpected results", false);
		}
		return;
	}
}

