/* test_db_listen.c - LISTEN subscriptions against a real PostgreSQL:
 * notifications go to their channel's callback with their payload, every
 * subscriber hears when the LISTEN takes effect, and after the backend is
 * terminated the listener reconnects, LISTENs again and says so. Option
 * and channel-name checks need no database. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "db_listen.h"
#include "log.h"
#include "util.h"
#include "pg_testdb.h"

static char *test_dsn;          /* the fresh database, or NULL: skip */
static char test_dbname[64];
static struct event_base *base;

typedef struct heard {
	int notes, ready, again;
	char channel[64], payload[64];
} heard;

static void on_note(void *arg, const char *channel, const char *payload)
{
	heard *h = arg;
	h->notes++;
	snprintf(h->channel, sizeof(h->channel), "%s", channel);
	snprintf(h->payload, sizeof(h->payload), "%s", payload);
}

static void on_ready(void *arg, bool again)
{
	heard *h = arg;
	h->ready++;
	h->again += again;
}

static int group_setup(void **state)
{
	const char *dsn = getenv("PARLEY_TEST_DSN");
	log_set_level(LOGL_ERROR);
	if (dsn == NULL || dsn[0] == '\0')
		return 0;
	test_dsn = pg_testdb_create(dsn, "parley_test_listen", test_dbname, sizeof(test_dbname));
	if (test_dsn == NULL)
		fprintf(stderr, "%s\n", test_dbname);
	return test_dsn ? 0 : -1;
}

static int group_teardown(void **state)
{
	if (test_dsn != NULL) {
		pg_testdb_drop(getenv("PARLEY_TEST_DSN"), test_dbname);
		free(test_dsn);
	}
	return 0;
}

static int setup(void **state)
{
	base = event_base_new();
	return base ? 0 : -1;
}

static int teardown(void **state)
{
	event_base_free(base);
	base = NULL;
	return 0;
}

static void tick(evutil_socket_t fd, short what, void *arg) { }

/* Run the loop until *counter reaches n or timeout_ms pass. */
static bool loop_until(const int *counter, int n, int timeout_ms)
{
	struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
	struct timeval tv = { 0, 5000 };
	event_add(t, &tv);
	uint64_t end = util_mono_us() + (uint64_t)timeout_ms * 1000u;
	while (*counter < n && util_mono_us() < end)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return *counter >= n;
}

static void exec_sql(const char *q)
{
	char err[1024];
	if (!pg_testdb_exec(test_dsn, q, err, sizeof(err)))
		fail_msg("%s: %s", q, err);
}

static db_listen *new_listener(const char *dsn)
{
	char err[256];
	db_listen_options o = { .dsn = dsn, .connect_timeout_ms = 5000,
	                        .application_name = "parley-test-listen", .log_component = "test" };
	db_listen *l = db_listen_new(base, &o, err, sizeof(err));
	if (l == NULL)
		fail_msg("%s", err);
	return l;
}

static void test_bad_options_and_channel_names(void **state)
{
	char err[256];
	db_listen_options o = { .dsn = "host=x password=hunter2 nonsense" };
	assert_null(db_listen_new(base, &o, err, sizeof(err)));
	assert_null(strstr(err, "hunter2"));
	o.dsn = NULL;
	assert_null(db_listen_new(base, &o, err, sizeof(err)));

	db_listen *l = new_listener("host=127.0.0.1 port=1 dbname=none");
	heard h = { 0 };
	assert_false(db_listen_subscribe(l, "", on_note, NULL, &h));
	assert_false(db_listen_subscribe(l, "Upper", on_note, NULL, &h));
	assert_false(db_listen_subscribe(l, "semi;colon", on_note, NULL, &h));
	assert_false(db_listen_subscribe(l, "quote\"d", on_note, NULL, &h));
	assert_false(db_listen_subscribe(l, "a123456789012345678901234567890123456789012345678901234567890123",
	                                 on_note, NULL, &h));
	assert_false(db_listen_subscribe(l, "jobs", NULL, NULL, &h));
	assert_true(db_listen_subscribe(l, "parley_jobs_2", on_note, NULL, &h));
	/* Nothing listens there: it keeps trying, and refuses new channels meanwhile. */
	db_listen_start(l);
	assert_false(db_listen_subscribe(l, "more", on_note, NULL, &h));
	assert_false(db_listen_is_ready(l));
	db_listen_free(l);
	db_listen_free(NULL);
}

static void test_notifications_reach_their_channel(void **state)
{
	if (test_dsn == NULL)
		skip();
	heard a = { 0 }, b = { 0 };
	db_listen *l = new_listener(test_dsn);
	assert_true(db_listen_subscribe(l, "alpha", on_note, on_ready, &a));
	assert_true(db_listen_subscribe(l, "beta", on_note, on_ready, &b));
	db_listen_start(l);
	assert_true(loop_until(&b.ready, 1, 5000));
	assert_int_equal(a.ready, 1);
	assert_int_equal(a.again + b.again, 0);
	assert_true(db_listen_is_ready(l));

	exec_sql("SELECT pg_notify('alpha', 'one')");
	assert_true(loop_until(&a.notes, 1, 5000));
	assert_string_equal(a.channel, "alpha");
	assert_string_equal(a.payload, "one");
	exec_sql("NOTIFY beta");
	assert_true(loop_until(&b.notes, 1, 5000));
	assert_string_equal(b.payload, "");
	assert_int_equal(a.notes, 1);
	exec_sql("NOTIFY gamma");   /* not subscribed: nobody hears it */
	exec_sql("SELECT pg_notify('alpha', 'two')");
	assert_true(loop_until(&a.notes, 2, 5000));
	assert_string_equal(a.payload, "two");
	assert_int_equal(b.notes, 1);
	db_listen_free(l);
}

static void test_reconnects_and_listens_again_after_the_backend_goes(void **state)
{
	if (test_dsn == NULL)
		skip();
	heard h = { 0 };
	db_listen *l = new_listener(test_dsn);
	assert_true(db_listen_subscribe(l, "alpha", on_note, on_ready, &h));
	db_listen_start(l);
	assert_true(loop_until(&h.ready, 1, 5000));
	exec_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	         "WHERE application_name = 'parley-test-listen'");
	assert_true(loop_until(&h.ready, 2, 10000));
	assert_int_equal(h.again, 1);
	exec_sql("SELECT pg_notify('alpha', 'back')");
	assert_true(loop_until(&h.notes, 1, 5000));
	assert_string_equal(h.payload, "back");
	/* Stopped: no callbacks, no reconnecting. */
	db_listen_stop(l);
	assert_false(db_listen_is_ready(l));
	exec_sql("SELECT pg_notify('alpha', 'late')");
	int never = 0;
	loop_until(&never, 1, 300);
	assert_int_equal(h.notes, 1);
	db_listen_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bad_options_and_channel_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notifications_reach_their_channel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconnects_and_listens_again_after_the_backend_goes,
		                                setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
