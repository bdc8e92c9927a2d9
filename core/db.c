/* db.c - PostgreSQL on the event loop: a small pool of non-blocking libpq
 * connections, each running one batch at a time in pipeline mode.
 *
 * A connection is in one of four states:
 *   DOWN        closed; its timer fires the next connection attempt (backoff)
 *   CONNECTING  PQconnectPoll driven by socket events, under a timeout
 *   IDLE        established, waiting for a batch (socket watched for EOF)
 *   BUSY        running a batch, or rolling back after a failed one
 *
 * A batch is BEGIN, the caller's statements and COMMIT sent in one pipeline
 * followed by a sync, so it costs one round trip and is all or nothing.
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
 * Limitation inherited from libpq: PQconnectStartParams resolves host names
 * with a blocking getaddrinfo(). Use an IP address (or hostaddr=) or a Unix
 * socket directory in the connection string to keep connecting fully
 * non-blocking. */
#include "db.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#define DB_LOG "db"
#define DB_BACKOFF_MIN_MS 100
#define DB_BACKOFF_MAX_MS 5000
#define DB_MAX_PARAMS 65535      /* the protocol's limit per statement */
#define DB_MSG_MAX 512


typedef struct db_stmt {
	char *sql;
	int nparams;
	char **params;            /* nparams entries; NULL entries are SQL NULL */
} db_stmt;

typedef enum batch_state {
	BATCH_NEW,                /* being built; not submitted */
	BATCH_QUEUED,             /* in pool.queue, waiting for an idle connection */
	BATCH_RUNNING,            /* sent on `conn` */
	BATCH_FAILING             /* in pool.failing; callback on the next loop turn */
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
	bool background;          /* low priority: never takes the last free connection */
	TAILQ_ENTRY(db_batch) link; /* pool.queue or pool.failing */
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

static struct {
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
} pool = {
	.queue = TAILQ_HEAD_INITIALIZER(pool.queue),
	.failing = TAILQ_HEAD_INITIALIZER(pool.failing),
};

static void conn_io_cb(evutil_socket_t fd, short what, void *arg);
static void conn_start_connect(db_conn *c);
static void pool_dispatch(void);

/* ------------------------------------------------------------- helpers */


/* PostgreSQL's primary message for an error result, one line. The DETAIL
 * part is left out on purpose: it can quote row values (customer data) and
 * callers log this string. */
static void db_result_message(const PGresult *r, char *out, size_t len)
{
	const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	util_one_line(primary ? primary : PQresultErrorMessage(r), out, len);
	if (out[0] == '\0')
		snprintf(out, len, "%s", PQresStatus(PQresultStatus(r)));
}

/* Why a connection failed: the server's FATAL if it sent one, else libpq's. */
static void conn_message(const db_conn *c, char *out, size_t len)
{
	if (c->fatal[0] != '\0')
		snprintf(out, len, "%s", c->fatal);
	else if (c->pg != NULL)
		util_one_line(PQerrorMessage(c->pg), out, len);
	else
		snprintf(out, len, "out of memory");
	if (out[0] == '\0')
		snprintf(out, len, "unknown error");
}

static uint64_t db_random(void)
{
	/* xorshift64*: only for jitter, so reconnecting daemons do not stampede. */
	if (pool.rng == 0)
		pool.rng = util_mono_us() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
	pool.rng ^= pool.rng >> 12;
	pool.rng ^= pool.rng << 25;
	pool.rng ^= pool.rng >> 27;
	return pool.rng * 2685821657736338717ull;
}

static struct timeval db_ms_to_tv(int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	return tv;
}

/* ------------------------------------------------------------- batches */

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

/* Call back and free. The batch must be detached from every list and
 * connection; after this returns nothing may touch it. */
static void batch_complete(db_batch *b, bool ok, const char *error)
{
	if (b->timer != NULL)
		evtimer_del(b->timer);
	if (!ok)
		batch_clear_results(b);
	pool.pending--;
	if (b->done != NULL)
		b->done(b, ok, ok ? NULL : (error ? error : "unknown error"), b->arg);
	db_batch_free(b);
}

/* Fail on the next loop turn. `why` (borrowed, may be NULL to keep the error
 * already recorded) replaces the recorded error. */
static void batch_fail_later(db_batch *b, const char *why)
{
	if (b->state == BATCH_QUEUED)
		TAILQ_REMOVE(&pool.queue, b, link);
	else if (b->state == BATCH_FAILING)
		return;
	if (why != NULL) {
		free(b->error);
		b->error = xstrdup(why);
	} else if (b->error == NULL) {
		b->error = xstrdup("unknown error");
	}
	b->state = BATCH_FAILING;
	b->conn = NULL;
	batch_clear_results(b);
	TAILQ_INSERT_TAIL(&pool.failing, b, link);
	struct timeval now = { 0, 0 };
	evtimer_add(b->timer, &now);
}

static void pool_fail_queue(const char *why)
{
	while (!TAILQ_EMPTY(&pool.queue))
		batch_fail_later(TAILQ_FIRST(&pool.queue), why);
}

/* ----------------------------------------------------------- connections */

static void pool_note_failure(const char *what, const char *msg)
{
	/* One warning per outage; the next established connection ends it. */
	if (!pool.outage) {
		log_warn(DB_LOG, "%s: %s", what, msg);
		pool.outage = true;
	} else {
		log_debug(DB_LOG, "%s: %s", what, msg);
	}
}

/* Watch the connection's socket for `what`. libpq may replace its socket
 * (another host, SSL/GSS fallback), and a new socket can reuse the old
 * number, so `force` re-registers even when the number did not change. */
static bool conn_watch(db_conn *c, short what, bool force)
{
	evutil_socket_t fd = PQsocket(c->pg);
	if (fd < 0)
		return false;
	if (c->io != NULL && !force && fd == c->io_fd && what == c->io_what)
		return true;
	if (c->io != NULL) {
		event_free(c->io);
		c->io = NULL;
	}
	c->io = event_new(pool.base, fd, what, conn_io_cb, c);
	if (c->io == NULL)
		return false;
	if (event_add(c->io, NULL) != 0) {
		event_free(c->io);
		c->io = NULL;
		return false;
	}
	c->io_fd = fd;
	c->io_what = what;
	return true;
}

static void conn_close(db_conn *c)
{
	if (c->io != NULL) {
		event_free(c->io);
		c->io = NULL;
	}
	if (c->pg != NULL) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	if (c->timer != NULL)
		evtimer_del(c->timer);
	c->io_fd = -1;
	c->io_what = 0;
	c->flushing = false;
	c->failed = false;
	c->fatal[0] = '\0';
	c->state = CONN_DOWN;
}

static void conn_schedule_reconnect(db_conn *c)
{
	/* 100 ms doubling to 5 s; the delay is drawn from the upper half of the
	 * step so that many connections (and daemons) spread out. */
	if (c->backoff_ms == 0)
		c->backoff_ms = DB_BACKOFF_MIN_MS;
	else if (c->backoff_ms < DB_BACKOFF_MAX_MS)
		c->backoff_ms = c->backoff_ms * 2 > DB_BACKOFF_MAX_MS ? DB_BACKOFF_MAX_MS : c->backoff_ms * 2;
	int half = c->backoff_ms / 2;
	int delay = half + (int)(db_random() % (uint64_t)(half + 1));
	struct timeval tv = db_ms_to_tv(delay);
	c->state = CONN_DOWN;
	evtimer_add(c->timer, &tv);
}

static void conn_connect_failed(db_conn *c)
{
	char msg[DB_MSG_MAX];
	conn_message(c, msg, sizeof(msg));
	pool_note_failure("cannot connect to PostgreSQL", msg);
	conn_close(c);
	conn_schedule_reconnect(c);
	/* Batches that waited for the first connection must not wait out their
	 * timeout once it is clear PostgreSQL is not there. */
	if (!db_pool_ready())
		pool_fail_queue(DB_ERR_UNAVAILABLE);
}

/* Take the connection out of service. Its batch (if any) fails with
 * `batch_error`. `broken`: the server or network failed, so back off and
 * count it as an outage; otherwise it was closed on purpose (timeout,
 * protocol confusion) and a new one starts at once. */
static void conn_drop(db_conn *c, const char *batch_error, bool broken)
{
	db_batch *b = c->batch;
	c->batch = NULL;
	if (broken) {
		char msg[DB_MSG_MAX];
		conn_message(c, msg, sizeof(msg));
		pool_note_failure("lost connection to PostgreSQL", msg);
	}
	conn_close(c);
	if (broken) {
		conn_schedule_reconnect(c);
	} else {
		c->backoff_ms = 0;
		conn_start_connect(c);
	}
	if (b != NULL)
		batch_fail_later(b, batch_error);
	/* PostgreSQL went away and nothing is left to run the queue on: answer
	 * now rather than at the timeout. (A connection closed on purpose is
	 * back in a moment; its queue waits.) */
	if (broken && !db_pool_ready())
		pool_fail_queue(DB_ERR_UNAVAILABLE);
}

/* The connection failed in a way libpq reports on the connection. */
static void conn_broken(db_conn *c)
{
	char msg[DB_MSG_MAX], why[DB_MSG_MAX + 64];
	conn_message(c, msg, sizeof(msg));
	snprintf(why, sizeof(why), "database connection lost: %s", msg);
	conn_drop(c, why, true);
}

/* Server notices (and the FATAL a server sends before hanging up on an idle
 * connection) arrive here instead of libpq's default stderr printer. */
static void conn_notice(void *arg, const PGresult *res)
{
	db_conn *c = arg;
	const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	char msg[DB_MSG_MAX];
	db_result_message(res, msg, sizeof(msg));
	if (severity != NULL && (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0))
		snprintf(c->fatal, sizeof(c->fatal), "%s", msg);
	log_debug(DB_LOG, "server %s: %s", severity ? severity : "notice", msg);
}

static void conn_start_connect(db_conn *c)
{
	/* The DSN goes in as "dbname" with expand_dbname so that it may be a
	 * key=value string or a URI; the application name is only a fallback,
	 * the DSN may set its own. */
	static const char *const keys[] = { "fallback_application_name", "dbname", NULL };
	const char *values[] = { "parleyd", pool.dsn, NULL };

	c->fatal[0] = '\0';
	c->pg = PQconnectStartParams(keys, values, 1);
	if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
		conn_connect_failed(c);
		return;
	}
	PQsetNoticeReceiver(c->pg, conn_notice, c);
	c->state = CONN_CONNECTING;
	if (pool.connect_timeout_ms > 0) {
		struct timeval tv = db_ms_to_tv(pool.connect_timeout_ms);
		evtimer_add(c->timer, &tv);
	}
	/* Before the first PQconnectPoll, libpq says to wait for writability. */
	if (!conn_watch(c, EV_WRITE, true))
		conn_connect_failed(c);
}

static void conn_established(db_conn *c)
{
	evtimer_del(c->timer);
	if (PQsetnonblocking(c->pg, 1) != 0 || !conn_watch(c, EV_READ | EV_PERSIST, true)) {
		conn_connect_failed(c);
		return;
	}
	c->state = CONN_IDLE;
	c->backoff_ms = 0;
	c->fatal[0] = '\0';
	if (pool.outage) {
		log_info(DB_LOG, "connection to PostgreSQL restored");
		pool.outage = false;
		pool.announced = true;
	} else if (!pool.announced) {
		log_info(DB_LOG, "connected to PostgreSQL");
		pool.announced = true;
	}
	log_debug(DB_LOG, "connection %d established", c->id);
	pool_dispatch();
}

static void conn_connect_step(db_conn *c)
{
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_OK:
		conn_established(c);
		return;
	case PGRES_POLLING_READING:
		if (!conn_watch(c, EV_READ, true))
			conn_connect_failed(c);
		return;
	case PGRES_POLLING_WRITING:
		if (!conn_watch(c, EV_WRITE, true))
			conn_connect_failed(c);
		return;
	default:
		conn_connect_failed(c);
		return;
	}
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	db_conn *c = arg;
	if (c->state == CONN_DOWN) {
		conn_start_connect(c);
	} else if (c->state == CONN_CONNECTING) {
		snprintf(c->fatal, sizeof(c->fatal), "no connection within %d ms", pool.connect_timeout_ms);
		conn_connect_failed(c);
	}
}

/* Flush what libpq buffered; keep EV_WRITE in the watch while it cannot. */
static bool conn_flush(db_conn *c)
{
	int r = PQflush(c->pg);
	if (r < 0)
		return false;
	c->flushing = r == 1;
	return conn_watch(c, EV_READ | EV_PERSIST | (c->flushing ? EV_WRITE : 0), false);
}

static bool conn_send(db_conn *c, const char *sql, int nparams, char *const *params)
{
	return PQsendQueryParams(c->pg, sql, nparams, NULL, (const char *const *)params, NULL, NULL,
	                         0) == 1;
}

static void conn_run(db_conn *c, db_batch *b)
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
		conn_message(c, msg, sizeof(msg));
		snprintf(why, sizeof(why), "cannot send to PostgreSQL: %s", msg);
		conn_drop(c, why, PQstatus(c->pg) == CONNECTION_BAD);
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
			conn_drop(c, NULL, false);
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
		batch_fail_later(b, NULL);
		if (!conn_send(c, "ROLLBACK", 0, NULL) || PQpipelineSync(c->pg) != 1 || !conn_flush(c))
			conn_drop(c, NULL, PQstatus(c->pg) == CONNECTION_BAD);
		return;
	}
	if (PQexitPipelineMode(c->pg) != 1) {
		char msg[DB_MSG_MAX], why[DB_MSG_MAX + 64];
		conn_message(c, msg, sizeof(msg));
		snprintf(why, sizeof(why), "database connection confused: %s", msg);
		conn_drop(c, why, false);
		return;
	}
	bool failed = c->failed;
	c->batch = NULL;
	c->state = CONN_IDLE;
	c->failed = false;
	c->flushing = false;
	if (!conn_watch(c, EV_READ | EV_PERSIST, false)) {
		if (b != NULL)
			c->batch = b;
		conn_broken(c);
		return;
	}
	if (b != NULL) {
		b->conn = NULL;
		if (failed) {
			batch_fail_later(b, NULL);
		} else {
			/* The connection is idle and consistent: the callback may submit
			 * or even stop the pool. Touch nothing of `c` after it. */
			batch_complete(b, true, NULL);
		}
	}
	pool_dispatch();
}

static void conn_busy_io(db_conn *c, short what)
{
	/* Reading is always safe and is what lets a blocked flush progress:
	 * the server may be waiting for us to read before it reads more. */
	if (PQconsumeInput(c->pg) != 1) {
		conn_broken(c);
		return;
	}
	if (c->flushing && !conn_flush(c)) {
		conn_broken(c);
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
			conn_broken(c);
		} else {
			log_warn(DB_LOG, "unexpected results in pipeline; closing connection %d", c->id);
			conn_drop(c, "database connection confused: unexpected results", false);
		}
		return;
	}
}

static void conn_idle_input(db_conn *c)
{
	/* Nothing is expected while idle but notices and, when the server goes
	 * away, its FATAL and then EOF. */
	if (PQconsumeInput(c->pg) != 1 || PQstatus(c->pg) == CONNECTION_BAD) {
		conn_broken(c);
		return;
	}
	PGnotify *n;
	while ((n = PQnotifies(c->pg)) != NULL)
		PQfreemem(n);
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
	db_conn *c = arg;
	switch (c->state) {
	case CONN_CONNECTING:
		conn_connect_step(c);
		return;
	case CONN_IDLE:
		conn_idle_input(c);
		return;
	case CONN_BUSY:
		conn_busy_io(c, what);
		return;
	case CONN_DOWN:
		return;
	}
}

/* ------------------------------------------------------------------ pool */

static db_conn *pool_idle_conn(void)
{
	for (int i = 0; i < pool.nconns; i++)
		if (pool.conns[i].state == CONN_IDLE)
			return &pool.conns[i];
	return NULL;
}

/* Connections running a background batch right now. */
static int pool_background_busy(void)
{
	int n = 0;
	for (int i = 0; i < pool.nconns; i++)
		if (pool.conns[i].state == CONN_BUSY && pool.conns[i].batch != NULL &&
		    pool.conns[i].batch->background)
			n++;
	return n;
}

/* The next batch to start: the oldest foreground one, else the oldest
 * background one while background work leaves a connection for the
 * foreground (inbound events must never wait behind a backlog of jobs). */
static db_batch *pool_next_batch(void)
{
	db_batch *b, *first_bg = NULL;
	TAILQ_FOREACH(b, &pool.queue, link) {
		if (!b->background)
			return b;
		if (first_bg == NULL)
			first_bg = b;
	}
	if (first_bg == NULL)
		return NULL;
	int bg_limit = pool.nconns > 1 ? pool.nconns - 1 : 1;
	return pool_background_busy() < bg_limit ? first_bg : NULL;
}

/* Start queued batches on idle connections, oldest first, foreground first. */
static void pool_dispatch(void)
{
	while (pool.running && !TAILQ_EMPTY(&pool.queue)) {
		db_conn *c = pool_idle_conn();
		if (c == NULL)
			return;
		db_batch *b = pool_next_batch();
		if (b == NULL)
			return;
		TAILQ_REMOVE(&pool.queue, b, link);
		conn_run(c, b);
	}
}

static void batch_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	db_batch *b = arg;
	switch (b->state) {
	case BATCH_FAILING:
		TAILQ_REMOVE(&pool.failing, b, link);
		batch_complete(b, false, b->error);
		return;
	case BATCH_QUEUED:
		TAILQ_REMOVE(&pool.queue, b, link);
		batch_complete(b, false, DB_ERR_TIMEOUT);
		return;
	case BATCH_RUNNING: {
		/* PQcancel would block the loop: it opens a new connection and waits
		 * for the server. Closing the connection instead ends the transaction
		 * (rolled back) and frees the pool slot at once; the server stops the
		 * statement when it notices the client is gone. */
		db_conn *c = b->conn;
		log_warn(DB_LOG, "batch exceeded %d ms; closing connection %d to cancel it",
		         pool.query_timeout_ms, c->id);
		c->batch = NULL;
		b->conn = NULL;
		conn_drop(c, NULL, false);
		batch_complete(b, false, DB_ERR_TIMEOUT);
		return;
	}
	case BATCH_NEW:
		return;
	}
}

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
	if (pool.running) {
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

	pool.base = base;
	pool.dsn = xstrdup(opts->dsn);
	pool.connect_timeout_ms = opts->connect_timeout_ms;
	pool.query_timeout_ms = opts->query_timeout_ms;
	pool.nconns = opts->pool_size;
	pool.conns = xcalloc((size_t)pool.nconns, sizeof(db_conn));
	pool.outage = false;
	pool.announced = false;
	pool.running = true;
	for (int i = 0; i < pool.nconns; i++) {
		db_conn *c = &pool.conns[i];
		c->id = i;
		c->io_fd = -1;
		c->state = CONN_DOWN;
		c->timer = evtimer_new(base, conn_timer_cb, c);
		if (c->timer == NULL) {
			fputs("parleyd: out of memory\n", stderr);
			abort();
		}
	}
	for (int i = 0; i < pool.nconns; i++)
		conn_start_connect(&pool.conns[i]);
	/* Registered per start because metrics_reset() forgets collectors; a
	 * second registration after a restart only sets the same gauges twice. */
	metrics_add_collector(db_metrics_collect, NULL);
	return true;
}

void db_pool_stop(void)
{
	pool.running = false;
	for (int i = 0; i < pool.nconns; i++) {
		db_conn *c = &pool.conns[i];
		db_batch *b = c->batch;
		c->batch = NULL;
		conn_close(c);
		if (b != NULL)
			batch_fail_later(b, DB_ERR_SHUTDOWN);
		if (c->timer != NULL) {
			event_free(c->timer);
			c->timer = NULL;
		}
	}
	pool_fail_queue(DB_ERR_SHUTDOWN);
	/* Call back here rather than on a later loop turn: the loop may not run
	 * again. Batches submitted from these callbacks land on the same list
	 * and are answered by this loop too. */
	while (!TAILQ_EMPTY(&pool.failing)) {
		db_batch *b = TAILQ_FIRST(&pool.failing);
		TAILQ_REMOVE(&pool.failing, b, link);
		batch_complete(b, false, b->error);
	}
	free(pool.conns);
	pool.conns = NULL;
	pool.nconns = 0;
	free(pool.dsn);
	pool.dsn = NULL;
	pool.base = NULL;
}

bool db_pool_ready(void)
{
	for (int i = 0; i < pool.nconns; i++)
		if (pool.conns[i].state == CONN_IDLE || pool.conns[i].state == CONN_BUSY)
			return true;
	return false;
}

void db_pool_counts(int *connecting, int *idle, int *busy, int *down)
{
	int n[4] = { 0, 0, 0, 0 };
	for (int i = 0; i < pool.nconns; i++)
		n[pool.conns[i].state]++;
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
	return pool.pending;
}

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
	pool.pending++;
	if (pool.base == NULL) {
		/* Submitted before db_pool_start or after db_pool_stop: there is no
		 * loop to defer the callback to, so this one misuse answers inline
		 * rather than never. */
		log_error(DB_LOG, "batch submitted while the database pool is not started");
		b->error = xstrdup(DB_ERR_UNAVAILABLE);
		batch_complete(b, false, b->error);
		return;
	}
	b->timer = evtimer_new(pool.base, batch_timer_cb, b);
	if (b->timer == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
	if (b->invalid != NULL) {
		batch_fail_later(b, b->invalid);
		return;
	}
	/* Fail fast while PostgreSQL is away: the caller answers 503 now and the
	 * platform retries, instead of the request hanging until a timeout. At
	 * start-up, before the first connection is up and nothing has failed yet,
	 * the batch waits (bounded by query_timeout_ms) instead. */
	if (!pool.running || (!db_pool_ready() && pool.outage)) {
		batch_fail_later(b, DB_ERR_UNAVAILABLE);
		return;
	}
	b->state = BATCH_QUEUED;
	TAILQ_INSERT_TAIL(&pool.queue, b, link);
	if (pool.query_timeout_ms > 0) {
		struct timeval tv = db_ms_to_tv(pool.query_timeout_ms);
		evtimer_add(b->timer, &tv);
	}
	pool_dispatch();
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
