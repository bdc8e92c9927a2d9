/* test_db.c - the PostgreSQL pool on the event loop, against a real server.
 *
 * Needs PARLEY_TEST_DSN (tests skip without it); the restart test also needs
 * PARLEY_TEST_PG_STOP and PARLEY_TEST_PG_START, shell commands that stop and
 * start that server. A fresh database is created for this binary and dropped
 * at the end. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <libpq-fe.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "util.h"
#include "pg_testdb.h"

static char *test_dsn;          /* the fresh database, or NULL: skip */
static char test_dbname[64];
static struct event_base *base;

#define NEED_DB() \
	do { \
		if (test_dsn == NULL) \
			skip(); \
	} while (0)

/* ------------------------------------------------------------ fixtures */

static void admin_exec(const char *dsn, const char *sql)
{
	char err[1024];
	if (!pg_testdb_exec(dsn, sql, err, sizeof(err)))
		fail_msg("%s", err);
}

static int group_setup(void **state)
{
	const char *dsn = getenv("PARLEY_TEST_DSN");
	if (dsn == NULL || dsn[0] == '\0')
		return 0;
	test_dsn = pg_testdb_create(dsn, "parley_test_db", test_dbname, sizeof(test_dbname));
	if (test_dsn == NULL)
		fprintf(stderr, "%s\n", test_dbname);
	return test_dsn ? 0 : -1;
}

static int group_teardown(void **state)
{
	if (test_dsn == NULL)
		return 0;
	pg_testdb_drop(getenv("PARLEY_TEST_DSN"), test_dbname);
	free(test_dsn);
	test_dsn = NULL;
	return 0;
}

static int setup(void **state)
{
	base = event_base_new();
	return base ? 0 : -1;
}

static int teardown(void **state)
{
	db_pool_stop();
	event_base_free(base);
	base = NULL;
	return 0;
}

/* Blocking SQL on the test database, for arranging and checking. */
static void sql(const char *q)
{
	admin_exec(test_dsn, q);
}

static long sql_long(const char *q)
{
	PGconn *pg = PQconnectdb(test_dsn);
	assert_int_equal(PQstatus(pg), CONNECTION_OK);
	PGresult *r = PQexec(pg, q);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		fail_msg("%s: %s", q, PQresultErrorMessage(r));
	long v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(pg);
	return v;
}

/* --------------------------------------------------------- loop helpers */

static void tick(evutil_socket_t fd, short what, void *arg) { }

/* Run the loop until cond(arg) holds or timeout_ms pass. */
static bool loop_until(bool (*cond)(void *), void *arg, int timeout_ms)
{
	struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
	struct timeval tv = { 0, 5000 };
	event_add(t, &tv);
	uint64_t end = util_mono_us() + (uint64_t)timeout_ms * 1000u;
	bool ok;
	while (!(ok = cond(arg)) && util_mono_us() < end)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return ok;
}

static bool always_false(void *arg) { return false; }
static void run_loop_ms(int ms) { loop_until(always_false, NULL, ms); }

static bool pool_is_ready(void *arg) { return db_pool_ready(); }
static bool pool_is_down(void *arg) { return !db_pool_ready(); }

static bool all_idle(void *arg)
{
	int idle = 0;
	db_pool_counts(NULL, &idle, NULL, NULL);
	return idle == *(int *)arg;
}

static void start_pool_dsn(const char *dsn, int size, int query_timeout_ms)
{
	db_pool_options o = {
		.dsn = dsn,
		.pool_size = size,
		.connect_timeout_ms = 2000,
		.query_timeout_ms = query_timeout_ms,
	};
	assert_true(db_pool_start(base, &o));
}

/* Start a pool on the test database and wait until every connection is up. */
static void start_pool(int size, int query_timeout_ms)
{
	start_pool_dsn(test_dsn, size, query_timeout_ms);
	assert_true(loop_until(all_idle, &size, 10000));
}

/* What one callback saw. */
typedef struct outcome {
	int calls;
	bool ok;
	char error[512];
	bool during_submit;  /* the callback ran inside db_batch_submit */
	uint64_t at_us;      /* when it ran */
	char values[8][64];  /* first row of result 0, when ok */
	bool nulls[8];
	int ntuples[4];      /* rows of results 0..3, -1 if NULL */
} outcome;

static bool in_submit;

static void record(db_batch *b, bool ok, const char *error, void *arg)
{
	outcome *o = arg;
	o->calls++;
	o->ok = ok;
	o->during_submit = in_submit;
	o->at_us = util_mono_us();
	snprintf(o->error, sizeof(o->error), "%s", error ? error : "");
	for (int i = 0; i < 4; i++) {
		PGresult *r = db_batch_result(b, i);
		o->ntuples[i] = r ? PQntuples(r) : -1;
	}
	PGresult *r = db_batch_result(b, 0);
	if (ok && r != NULL && PQntuples(r) > 0) {
		for (int c = 0; c < PQnfields(r) && c < 8; c++) {
			o->nulls[c] = PQgetisnull(r, 0, c);
			snprintf(o->values[c], sizeof(o->values[c]), "%s", PQgetvalue(r, 0, c));
		}
	}
}

static void submit(db_batch *b, outcome *o)
{
	in_submit = true;
	db_batch_submit(b, record, o);
	in_submit = false;
}

static bool called(void *arg) { return ((outcome *)arg)->calls > 0; }

/* Submit a one-statement batch and wait for its callback. */
static void run_one(const char *q, outcome *o)
{
	memset(o, 0, sizeof(*o));
	db_batch *b = db_batch_new();
	db_batch_add(b, q, 0, NULL);
	submit(b, o);
	assert_true(loop_until(called, o, 10000));
}

/* ---------------------------------------------------------------- tests */

/* A batch submitted right after start, before any connection is up, waits
 * for the first connection instead of failing: a daemon that has just
 * started must not answer its first webhooks 503. */
static void batch_submitted_before_first_connect_waits_for_it(void **state)
{
	NEED_DB();
	start_pool_dsn(test_dsn, 2, 5000);
	assert_false(db_pool_ready());
	outcome o;
	memset(&o, 0, sizeof(o));
	db_batch *b = db_batch_new();
	db_batch_add(b, "SELECT 42", 0, NULL);
	submit(b, &o);
	assert_true(loop_until(called, &o, 10000));
	assert_int_equal(o.calls, 1);
	if (!o.ok)
		fail_msg("batch failed: %s", o.error);
	assert_string_equal(o.values[0], "42");
}

static void batch_of_statements_commits_together(void **state)
{
	NEED_DB();
	sql("CREATE TABLE t_commit (id int PRIMARY KEY, name text NOT NULL)");
	start_pool(2, 10000);

	db_batch *b = db_batch_new();
	const char *p1[] = { "1", "ada" }, *p2[] = { "2", "grace" }, *p3[] = { "3", "edsger" };
	db_batch_add(b, "INSERT INTO t_commit (id, name) VALUES ($1, $2)", 2, p1);
	db_batch_add(b, "INSERT INTO t_commit (id, name) VALUES ($1, $2)", 2, p2);
	db_batch_add(b, "INSERT INTO t_commit (id, name) VALUES ($1, $2)", 2, p3);
	assert_int_equal(db_batch_count(b), 3);
	outcome o = { 0 };
	submit(b, &o);
	assert_int_equal(db_pool_pending(), 1);
	assert_true(loop_until(called, &o, 10000));

	assert_true(o.ok);
	assert_string_equal(o.error, "");
	assert_false(o.during_submit);
	assert_int_equal(sql_long("SELECT count(*) FROM t_commit"), 3);
	assert_int_equal(sql_long("SELECT count(*) FROM t_commit WHERE id = 2 AND name = 'grace'"), 1);
	assert_int_equal(db_pool_pending(), 0);
}

static void failing_statement_rolls_back_the_whole_batch(void **state)
{
	NEED_DB();
	sql("CREATE TABLE t_rollback (id int PRIMARY KEY)");
	sql("INSERT INTO t_rollback VALUES (1)");
	/* One connection, so the next batch reuses the one that failed. */
	start_pool(1, 10000);

	db_batch *b = db_batch_new();
	const char *two[] = { "2" }, *three[] = { "3" }, *one[] = { "1" }, *four[] = { "4" };
	db_batch_add(b, "INSERT INTO t_rollback (id) VALUES ($1)", 1, two);
	db_batch_add(b, "INSERT INTO t_rollback (id) VALUES ($1)", 1, three);
	db_batch_add(b, "INSERT INTO t_rollback (id) VALUES ($1)", 1, one);   /* duplicate */
	db_batch_add(b, "INSERT INTO t_rollback (id) VALUES ($1)", 1, four);
	outcome o = { 0 };
	submit(b, &o);
	assert_true(loop_until(called, &o, 10000));

	assert_false(o.ok);
	assert_non_null(strstr(o.error, "duplicate key value violates unique constraint"));
	assert_int_equal(o.ntuples[0], -1); /* no results on failure */
	assert_int_equal(sql_long("SELECT count(*) FROM t_rollback"), 1);

	/* The connection is clean again: not stuck in the aborted transaction. */
	outcome next;
	run_one("INSERT INTO t_rollback (id) VALUES (5)", &next);
	assert_true(next.ok);
	assert_int_equal(sql_long("SELECT count(*) FROM t_rollback"), 2);
	assert_int_equal(sql_long("SELECT count(*) FROM pg_stat_activity "
	                          "WHERE datname = current_database() AND application_name = 'parleyd' "
	                          "AND state LIKE '%aborted%'"),
	                 0);
}

static void returning_rows_are_readable_in_the_callback(void **state)
{
	NEED_DB();
	sql("CREATE TABLE t_returning (id serial PRIMARY KEY, name text NOT NULL)");
	start_pool(1, 10000);

	db_batch *b = db_batch_new();
	const char *a[] = { "first" }, *c[] = { "second" };
	db_batch_add(b, "INSERT INTO t_returning (name) VALUES ($1) RETURNING id, name", 1, a);
	db_batch_add(b, "INSERT INTO t_returning (name) VALUES ($1) RETURNING id, name", 1, c);
	db_batch_add(b, "SELECT id FROM t_returning", 0, NULL);
	outcome o = { 0 };
	submit(b, &o);
	assert_true(loop_until(called, &o, 10000));

	assert_true(o.ok);
	assert_string_equal(o.values[0], "1");
	assert_string_equal(o.values[1], "first");
	assert_int_equal(o.ntuples[0], 1);
	assert_int_equal(o.ntuples[1], 1);
	assert_int_equal(o.ntuples[2], 2);  /* the batch sees its own inserts */
	assert_int_equal(o.ntuples[3], -1); /* no statement 3 */
}

static void error_at_commit_fails_the_batch(void **state)
{
	NEED_DB();
	/* A deferred constraint is only checked by COMMIT. */
	sql("CREATE TABLE t_deferred (id int, CONSTRAINT t_deferred_once UNIQUE (id) "
	    "DEFERRABLE INITIALLY DEFERRED)");
	start_pool(1, 10000);
	db_batch *b = db_batch_new();
	db_batch_add(b, "INSERT INTO t_deferred VALUES (7)", 0, NULL);
	db_batch_add(b, "INSERT INTO t_deferred VALUES (7)", 0, NULL);
	outcome o = { 0 };
	submit(b, &o);
	assert_true(loop_until(called, &o, 10000));
	assert_false(o.ok);
	assert_non_null(strstr(o.error, "t_deferred_once"));
	assert_int_equal(sql_long("SELECT count(*) FROM t_deferred"), 0);

	outcome next;
	run_one("INSERT INTO t_deferred VALUES (8)", &next);
	assert_true(next.ok);
}

static void empty_batch_succeeds(void **state)
{
	NEED_DB();
	start_pool(1, 10000);
	outcome o = { 0 };
	submit(db_batch_new(), &o);
	assert_true(loop_until(called, &o, 10000));
	assert_true(o.ok);
	assert_int_equal(o.ntuples[0], -1);
}

static void invalid_statement_fails_in_the_callback(void **state)
{
	NEED_DB();
	start_pool(1, 10000);
	outcome o = { 0 };
	db_batch *b = db_batch_new();
	db_batch_add(b, "SELECT 1", 70000, NULL); /* more than the protocol allows */
	submit(b, &o);
	assert_int_equal(o.calls, 0);
	assert_true(loop_until(called, &o, 10000));
	assert_false(o.ok);
	assert_non_null(strstr(o.error, "too many parameters"));

	/* SQL errors come back as PostgreSQL's message. */
	run_one("SELECT * FROM no_such_table", &o);
	assert_false(o.ok);
	assert_string_equal(o.error, "relation \"no_such_table\" does not exist");
}

static void batch_larger_than_the_socket_buffers_commits(void **state)
{
	NEED_DB();
	sql("CREATE TABLE t_large (n int PRIMARY KEY, blob text NOT NULL)");
	start_pool(1, 30000);
	/* About 16 MB: libpq cannot write it at once, so the pool must wait for
	 * writability while also reading what the server already answers. */
	enum { ROWS = 256, SIZE = 64 * 1024 };
	char *blob = xmalloc(SIZE + 1);
	memset(blob, 'x', SIZE);
	blob[SIZE] = '\0';
	db_batch *b = db_batch_new();
	for (int i = 0; i < ROWS; i++) {
		char n[16];
		snprintf(n, sizeof(n), "%d", i);
		const char *p[] = { n, blob };
		db_batch_add(b, "INSERT INTO t_large (n, blob) VALUES ($1, $2)", 2, p);
	}
	free(blob);
	outcome o = { 0 };
	submit(b, &o);
	assert_true(loop_until(called, &o, 30000));
	assert_true(o.ok);
	assert_int_equal(sql_long("SELECT count(*) FROM t_large"), ROWS);
	assert_int_equal(sql_long("SELECT sum(length(blob)) FROM t_large"), (long)ROWS * SIZE);
}

#define MANY 500

static int many_calls[MANY];
static bool many_ok[MANY];
static char many_pid[MANY][16];
static int many_done;

static void many_cb(db_batch *b, bool ok, const char *error, void *arg)
{
	int i = (int)(intptr_t)arg;
	many_calls[i]++;
	many_ok[i] = ok;
	PGresult *r = db_batch_result(b, 1);
	if (ok && r != NULL && PQntuples(r) == 1)
		snprintf(many_pid[i], sizeof(many_pid[i]), "%s", PQgetvalue(r, 0, 0));
	many_done++;
}

static bool many_finished(void *arg) { return many_done >= MANY; }

static void many_concurrent_batches_each_complete_exactly_once(void **state)
{
	NEED_DB();
	sql("CREATE TABLE t_many (n int PRIMARY KEY)");
	start_pool(4, 30000);
	memset(many_calls, 0, sizeof(many_calls));
	memset(many_pid, 0, sizeof(many_pid));
	many_done = 0;

	for (int i = 0; i < MANY; i++) {
		char n[16];
		snprintf(n, sizeof(n), "%d", i);
		const char *p[] = { n };
		db_batch *b = db_batch_new();
		db_batch_add(b, "INSERT INTO t_many (n) VALUES ($1)", 1, p);
		db_batch_add(b, "SELECT pg_backend_pid()", 0, NULL);
		db_batch_submit(b, many_cb, (void *)(intptr_t)i);
	}
	assert_int_equal(db_pool_pending(), MANY);
	assert_true(loop_until(many_finished, NULL, 60000));
	run_loop_ms(50); /* nothing may be called back twice afterwards */

	int distinct = 0;
	for (int i = 0; i < MANY; i++) {
		assert_int_equal(many_calls[i], 1);
		assert_true(many_ok[i]);
		bool seen = false;
		for (int j = 0; j < i && !seen; j++)
			seen = strcmp(many_pid[i], many_pid[j]) == 0;
		distinct += !seen;
	}
	assert_int_equal(many_done, MANY);
	assert_int_equal(db_pool_pending(), 0);
	assert_int_equal(sql_long("SELECT count(*) FROM t_many"), MANY);
	/* All four connections took work. */
	assert_int_equal(distinct, 4);
}

static void submit_sleep(outcome *o, bool background)
{
	memset(o, 0, sizeof(*o));
	db_batch *b = db_batch_new();
	db_batch_add(b, background ? "SELECT pg_sleep(0.3)" : "SELECT 1", 0, NULL);
	if (background)
		db_batch_set_background(b);
	submit(b, o);
}

static bool all_called(void *arg)
{
	outcome *o = arg;
	for (int i = 0; i < 4; i++)
		if (o[i].calls == 0)
			return false;
	return true;
}

/* Background work (the job runner's) never takes the pool's last free
 * connection: a foreground batch submitted behind a backlog of background
 * batches starts at once and finishes first. */
static void background_batches_leave_a_connection_for_foreground(void **state)
{
	NEED_DB();
	start_pool(2, 30000);
	outcome o[4];
	submit_sleep(&o[0], true);
	submit_sleep(&o[1], true);
	submit_sleep(&o[2], true);
	submit_sleep(&o[3], false);
	assert_true(loop_until(all_called, o, 20000));
	for (int i = 0; i < 4; i++)
		if (!o[i].ok)
			fail_msg("batch %d failed: %s", i, o[i].error);
	/* The foreground batch did not wait for any background one. */
	assert_true(o[3].at_us < o[0].at_us);
	/* Background batches ran one at a time, in order, on one connection. */
	assert_true(o[0].at_us < o[1].at_us && o[1].at_us < o[2].at_us);
	assert_true(o[2].at_us - o[0].at_us >= 500000);
}

static void parameters_round_trip_byte_for_byte(void **state)
{
	NEED_DB();
	sql("CREATE TABLE t_params (k int PRIMARY KEY, v text)");
	start_pool(1, 10000);
	/* If parameters were pasted into the SQL, these would break it. */
	const char *values[] = {
		"it's a \"quote\"; DROP TABLE t_params; --",
		"back\\slash \\x41 \\' and $1 and E'\\n'",
		"ünïcødé — ✓ 🎉 日本",
		"",
		NULL,
	};
	db_batch *b = db_batch_new();
	db_batch_add(b, "SELECT $1::text, $2::text, $3::text, $4::text, $5::text", 5, values);
	for (int i = 0; i < 5; i++) {
		char k[16];
		snprintf(k, sizeof(k), "%d", i);
		const char *p[] = { k, values[i] };
		db_batch_add(b, "INSERT INTO t_params (k, v) VALUES ($1, $2)", 2, p);
	}
	outcome o = { 0 };
	submit(b, &o);
	assert_true(loop_until(called, &o, 10000));
	assert_true(o.ok);
	for (int i = 0; i < 4; i++) {
		assert_false(o.nulls[i]);
		assert_string_equal(o.values[i], values[i]);
	}
	assert_true(o.nulls[4]); /* NULL is SQL NULL, not "" */

	/* And stored as sent. */
	assert_int_equal(sql_long("SELECT count(*) FROM t_params"), 5);
	assert_int_equal(sql_long("SELECT count(*) FROM t_params WHERE k = 4 AND v IS NULL"), 1);
	assert_int_equal(sql_long("SELECT octet_length(v) FROM t_params WHERE k = 2"),
	                 (long)strlen(values[2]));
	assert_int_equal(sql_long("SELECT count(*) FROM t_params WHERE k = 0 AND "
	                          "v = 'it''s a \"quote\"; DROP TABLE t_params; --'"),
	                 1);
}

static int free_tcp_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
	close(s);
	return ntohs(a.sin_port);
}

static void submit_without_a_server_fails_fast_and_never_inline(void **state)
{
	/* Needs no server: nothing listens on the port. */
	char dsn[128];
	snprintf(dsn, sizeof(dsn), "host=127.0.0.1 port=%d user=nobody dbname=nothing", free_tcp_port());
	start_pool_dsn(dsn, 2, 10000);
	assert_false(db_pool_ready());

	outcome o = { 0 };
	uint64_t t0 = util_mono_us();
	db_batch *b = db_batch_new();
	db_batch_add(b, "SELECT 1", 0, NULL);
	submit(b, &o);
	assert_int_equal(o.calls, 0);        /* never from inside submit */
	assert_int_equal(db_pool_pending(), 1);
	assert_true(loop_until(called, &o, 1000));
	assert_true(o.at_us - t0 < 1000000u);
	assert_false(o.ok);
	assert_false(o.during_submit);
	assert_string_equal(o.error, "database unavailable");
	assert_int_equal(db_pool_pending(), 0);

	/* After the first attempts failed, still fast, still not ready. */
	run_loop_ms(300);
	int connecting, idle, busy, down;
	db_pool_counts(&connecting, &idle, &busy, &down);
	assert_int_equal(idle + busy, 0);
	assert_int_equal(connecting + down, 2);
	outcome again;
	t0 = util_mono_us();
	run_one("SELECT 1", &again);
	assert_false(again.ok);
	assert_true(again.at_us - t0 < 1000000u);
}

static void query_timeout_fails_running_and_queued_batches(void **state)
{
	NEED_DB();
	start_pool(1, 300);

	outcome slow = { 0 }, queued = { 0 };
	uint64_t t0 = util_mono_us();
	db_batch *b = db_batch_new();
	db_batch_add(b, "SELECT pg_sleep(2)", 0, NULL);
	submit(b, &slow);
	b = db_batch_new();
	db_batch_add(b, "SELECT 1", 0, NULL);
	submit(b, &queued); /* waits behind the slow one on the only connection */
	assert_true(loop_until(called, &slow, 5000));
	assert_true(loop_until(called, &queued, 5000));

	assert_false(slow.ok);
	assert_string_equal(slow.error, "timeout");
	assert_true(slow.at_us - t0 >= 250000u);
	assert_true(slow.at_us - t0 < 1500000u); /* not the 2 s of the statement */
	assert_false(queued.ok);
	assert_string_equal(queued.error, "timeout");

	/* The pool replaced the connection and works. */
	int one = 1;
	assert_true(loop_until(all_idle, &one, 5000));
	outcome after;
	run_one("SELECT 42", &after);
	assert_true(after.ok);
	assert_string_equal(after.values[0], "42");
}

static void stop_fails_queued_and_running_batches(void **state)
{
	NEED_DB();
	start_pool(1, 10000);
	outcome running = { 0 }, queued = { 0 };
	db_batch *b = db_batch_new();
	db_batch_add(b, "SELECT pg_sleep(5)", 0, NULL);
	submit(b, &running);
	b = db_batch_new();
	db_batch_add(b, "SELECT 1", 0, NULL);
	submit(b, &queued);
	run_loop_ms(50);
	assert_int_equal(running.calls + queued.calls, 0);

	db_pool_stop();
	assert_int_equal(running.calls, 1);
	assert_int_equal(queued.calls, 1);
	assert_false(running.ok);
	assert_string_equal(running.error, "shutting down");
	assert_string_equal(queued.error, "shutting down");
	assert_int_equal(db_pool_pending(), 0);
	assert_false(db_pool_ready());
}

static bool line_value(const char *text, const char *prefix, double *out)
{
	for (const char *p = strstr(text, prefix); p != NULL; p = strstr(p + 1, prefix)) {
		if (p != text && p[-1] != '\n')
			continue;
		*out = strtod(p + strlen(prefix), NULL);
		return true;
	}
	return false;
}

static void counts_and_metrics_show_connection_states(void **state)
{
	NEED_DB();
	start_pool(3, 10000);
	int connecting, idle, busy, down;
	db_pool_counts(&connecting, &idle, &busy, &down);
	assert_int_equal(idle, 3);
	assert_int_equal(connecting + busy + down, 0);

	struct evbuffer *out = evbuffer_new();
	metrics_render(out);
	size_t len = evbuffer_get_length(out);
	char *text = xmalloc(len + 1);
	evbuffer_remove(out, text, len);
	text[len] = '\0';
	evbuffer_free(out);
	double v = -1;
	assert_true(line_value(text, "parley_db_connections{state=\"idle\"} ", &v));
	assert_true(v == 3.0);
	assert_true(line_value(text, "parley_db_connections{state=\"down\"} ", &v));
	assert_true(v == 0.0);
	free(text);
}

static char *read_stderr_while(void (*fn)(void))
{
	fflush(stderr);
	int saved = dup(2);
	FILE *tmp = tmpfile();
	dup2(fileno(tmp), 2);
	fn();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	long len = ftell(tmp);
	char *text = xcalloc(1, (size_t)len + 1);
	rewind(tmp);
	size_t got = fread(text, 1, (size_t)len, tmp);
	text[got] = '\0';
	fclose(tmp);
	return text;
}

static void start_with_broken_dsn(void)
{
	db_pool_options o = {
		.dsn = "host=127.0.0.1 password='s3cr3t-value",  /* unterminated quote */
		.pool_size = 1,
		.connect_timeout_ms = 1000,
		.query_timeout_ms = 1000,
	};
	assert_false(db_pool_start(base, &o));
}

static void bad_options_are_refused_without_echoing_the_dsn(void **state)
{
	char *logged = read_stderr_while(start_with_broken_dsn);
	assert_non_null(strstr(logged, "invalid database connection string"));
	assert_null(strstr(logged, "s3cr3t"));
	free(logged);

	db_pool_options o = { .dsn = "host=127.0.0.1", .pool_size = 0 };
	assert_false(db_pool_start(base, &o));
	o.pool_size = 1;
	assert_false(db_pool_start(NULL, &o));
	assert_false(db_pool_ready());
}

static bool server_stopped;

static int teardown_restarting_server(void **state)
{
	if (server_stopped && system(getenv("PARLEY_TEST_PG_START")) != 0)
		fprintf(stderr, "could not start the test server again\n");
	server_stopped = false;
	return teardown(state);
}

static void reconnects_after_the_server_restarts(void **state)
{
	NEED_DB();
	const char *stop = getenv("PARLEY_TEST_PG_STOP");
	const char *start = getenv("PARLEY_TEST_PG_START");
	if (stop == NULL || start == NULL)
		skip();
	start_pool(2, 5000);
	outcome o;
	run_one("SELECT 1", &o);
	assert_true(o.ok);

	server_stopped = true; /* teardown starts it again if an assert fires */
	assert_int_equal(system(stop), 0);
	/* The server hangs up on idle connections; the pool notices. */
	assert_true(loop_until(pool_is_down, NULL, 10000));
	uint64_t t0 = util_mono_us();
	run_one("SELECT 1", &o);
	assert_false(o.ok);
	assert_true(o.at_us - t0 < 1000000u);
	/* Reconnect attempts fail while it is down (and back off). */
	run_loop_ms(500);
	assert_false(db_pool_ready());

	int status = system(start);
	server_stopped = false;
	assert_int_equal(status, 0);
	/* Within a few seconds (backoff is at most 5 s) batches work again. */
	bool back = false;
	for (int i = 0; i < 100 && !back; i++) {
		loop_until(pool_is_ready, NULL, 200);
		run_one("SELECT 1", &o);
		back = o.ok;
	}
	assert_true(back);
	assert_true(util_mono_us() - t0 < 20000000u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(batch_submitted_before_first_connect_waits_for_it, setup, teardown),
		cmocka_unit_test_setup_teardown(batch_of_statements_commits_together, setup, teardown),
		cmocka_unit_test_setup_teardown(failing_statement_rolls_back_the_whole_batch, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(returning_rows_are_readable_in_the_callback, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(error_at_commit_fails_the_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(empty_batch_succeeds, setup, teardown),
		cmocka_unit_test_setup_teardown(invalid_statement_fails_in_the_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(batch_larger_than_the_socket_buffers_commits, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(many_concurrent_batches_each_complete_exactly_once, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(background_batches_leave_a_connection_for_foreground, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(parameters_round_trip_byte_for_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(submit_without_a_server_fails_fast_and_never_inline, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(query_timeout_fails_running_and_queued_batches, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(stop_fails_queued_and_running_batches, setup, teardown),
		cmocka_unit_test_setup_teardown(counts_and_metrics_show_connection_states, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(bad_options_are_refused_without_echoing_the_dsn, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(reconnects_after_the_server_restarts, setup,
		                                teardown_restarting_server),
	};
	log_set_level(LOGL_WARN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
