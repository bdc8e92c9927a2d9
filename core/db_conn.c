/* db_conn.c - one connection of the PostgreSQL pool: connecting without
 * blocking (PQconnectPoll on socket events, under a timeout), reconnecting
 * with jittered backoff when PostgreSQL goes away, and the socket events of
 * an idle connection. A BUSY connection's events go to db_pipeline.c.
 *
 * Limitation inherited from libpq: PQconnectStartParams resolves host names
 * with a blocking getaddrinfo(). Use an IP address (or hostaddr=) or a Unix
 * socket directory in the connection string to keep connecting fully
 * non-blocking. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_internal.h"
#include "log.h"
#include "util.h"

#define DB_BACKOFF_MIN_MS 100
#define DB_BACKOFF_MAX_MS 5000

static void conn_io_cb(evutil_socket_t fd, short what, void *arg);

/* ------------------------------------------------------------- messages */

/* The DETAIL part is left out on purpose: it can quote row values
 * (customer data) and callers log this string. */
void db_result_message(const PGresult *r, char *out, size_t len)
{
	const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	util_one_line(primary ? primary : PQresultErrorMessage(r), out, len);
	if (out[0] == '\0')
		snprintf(out, len, "%s", PQresStatus(PQresultStatus(r)));
}

/* The server's FATAL if it sent one, else libpq's. */
void db_conn_message(const db_conn *c, char *out, size_t len)
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

void db_pool_note_failure(const char *what, const char *msg)
{
	/* One warning per outage; the next established connection ends it. */
	if (!db_pool.outage) {
		log_warn(DB_LOG, "%s: %s", what, msg);
		db_pool.outage = true;
	} else {
		log_debug(DB_LOG, "%s: %s", what, msg);
	}
}

/* ------------------------------------------------------------ lifecycle */

static uint64_t db_random(void)
{
	/* xorshift64*: only for jitter, so reconnecting daemons do not stampede. */
	if (db_pool.rng == 0)
		db_pool.rng = util_mono_us() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
	db_pool.rng ^= db_pool.rng >> 12;
	db_pool.rng ^= db_pool.rng << 25;
	db_pool.rng ^= db_pool.rng >> 27;
	return db_pool.rng * 2685821657736338717ull;
}

/* Watch the connection's socket for `what`. libpq may replace its socket
 * (another host, SSL/GSS fallback), and a new socket can reuse the old
 * number, so `force` re-registers even when the number did not change. */
bool db_conn_watch(db_conn *c, short what, bool force)
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
	c->io = event_new(db_pool.base, fd, what, conn_io_cb, c);
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

void db_conn_close(db_conn *c)
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
	db_conn_message(c, msg, sizeof(msg));
	db_pool_note_failure("cannot connect to PostgreSQL", msg);
	db_conn_close(c);
	conn_schedule_reconnect(c);
	/* Batches that waited for the first connection must not wait out their
	 * timeout once it is clear PostgreSQL is not there. */
	if (!db_pool_ready())
		db_pool_fail_queue(DB_ERR_UNAVAILABLE);
}

/* Take the connection out of service. Its batch (if any) fails with
 * `batch_error`. `broken`: the server or network failed, so back off and
 * count it as an outage; otherwise it was closed on purpose (timeout,
 * protocol confusion) and a new one starts at once. */
void db_conn_drop(db_conn *c, const char *batch_error, bool broken)
{
	db_batch *b = c->batch;
	c->batch = NULL;
	if (broken) {
		char msg[DB_MSG_MAX];
		db_conn_message(c, msg, sizeof(msg));
		db_pool_note_failure("lost connection to PostgreSQL", msg);
	}
	db_conn_close(c);
	if (broken) {
		conn_schedule_reconnect(c);
	} else {
		c->backoff_ms = 0;
		db_conn_start_connect(c);
	}
	if (b != NULL)
		db_batch_fail_later(b, batch_error);
	/* PostgreSQL went away and nothing is left to run the queue on: answer
	 * now rather than at the timeout. (A connection closed on purpose is
	 * back in a moment; its queue waits.) */
	if (broken && !db_pool_ready())
		db_pool_fail_queue(DB_ERR_UNAVAILABLE);
}

/* The connection failed in a way libpq reports on the connection. */
void db_conn_broken(db_conn *c)
{
	char msg[DB_MSG_MAX], why[DB_MSG_MAX + 64];
	db_conn_message(c, msg, sizeof(msg));
	snprintf(why, sizeof(why), "database connection lost: %s", msg);
	db_conn_drop(c, why, true);
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

void db_conn_start_connect(db_conn *c)
{
	/* The DSN goes in as "dbname" with expand_dbname so that it may be a
	 * key=value string or a URI; the application name is only a fallback,
	 * the DSN may set its own. */
	static const char *const keys[] = { "fallback_application_name", "dbname", NULL };
	const char *values[] = { "parleyd", db_pool.dsn, NULL };

	c->fatal[0] = '\0';
	c->pg = PQconnectStartParams(keys, values, 1);
	if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
		conn_connect_failed(c);
		return;
	}
	PQsetNoticeReceiver(c->pg, conn_notice, c);
	c->state = CONN_CONNECTING;
	if (db_pool.connect_timeout_ms > 0) {
		struct timeval tv = db_ms_to_tv(db_pool.connect_timeout_ms);
		evtimer_add(c->timer, &tv);
	}
	/* Before the first PQconnectPoll, libpq says to wait for writability. */
	if (!db_conn_watch(c, EV_WRITE, true))
		conn_connect_failed(c);
}

static void conn_established(db_conn *c)
{
	evtimer_del(c->timer);
	if (PQsetnonblocking(c->pg, 1) != 0 || !db_conn_watch(c, EV_READ | EV_PERSIST, true)) {
		conn_connect_failed(c);
		return;
	}
	c->state = CONN_IDLE;
	c->backoff_ms = 0;
	c->fatal[0] = '\0';
	if (db_pool.outage) {
		log_info(DB_LOG, "connection to PostgreSQL restored");
		db_pool.outage = false;
		db_pool.announced = true;
	} else if (!db_pool.announced) {
		log_info(DB_LOG, "connected to PostgreSQL");
		db_pool.announced = true;
	}
	log_debug(DB_LOG, "connection %d established", c->id);
	db_pool_dispatch();
}

static void conn_connect_step(db_conn *c)
{
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_OK:
		conn_established(c);
		return;
	case PGRES_POLLING_READING:
		if (!db_conn_watch(c, EV_READ, true))
			conn_connect_failed(c);
		return;
	case PGRES_POLLING_WRITING:
		if (!db_conn_watch(c, EV_WRITE, true))
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
		db_conn_start_connect(c);
	} else if (c->state == CONN_CONNECTING) {
		snprintf(c->fatal, sizeof(c->fatal), "no connection within %d ms", db_pool.connect_timeout_ms);
		conn_connect_failed(c);
	}
}

static void conn_idle_input(db_conn *c)
{
	/* Nothing is expected while idle but notices and, when the server goes
	 * away, its FATAL and then EOF. */
	if (PQconsumeInput(c->pg) != 1 || PQstatus(c->pg) == CONNECTION_BAD) {
		db_conn_broken(c);
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
		db_conn_busy_io(c, what);
		return;
	case CONN_DOWN:
		return;
	}
}


void db_conn_init(db_conn *c, int id)
{
	c->id = id;
	c->io_fd = -1;
	c->state = CONN_DOWN;
	c->timer = evtimer_new(db_pool.base, conn_timer_cb, c);
	if (c->timer == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
}
