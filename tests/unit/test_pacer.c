/* test_pacer.c - the plugins' shared pacer against a fake clock and timers:
 * the bucket's rate and burst, the wait check that hands new work back, the
 * 429 pause (and the hand-back when it is long), the in-flight limit, the
 * front of the queue for started work, reload, stop and destroy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../plugins/common/pacer.h"

/* ---- a fake host: a settable clock and one pending timer at most ---- */

static int64_t clock_ms;
static struct fake_timer {
	bool pending;
	int64_t due_ms;
	parley_timer_fn fn;
	void *arg;
} timer;
static bool timer_fails;

static int64_t fake_now(void)
{
	return clock_ms;
}

static parley_timer *fake_timer_start(parley_instance *inst, uint64_t delay_ms,
                                      parley_timer_fn fn, void *arg)
{
	(void)inst;
	if (timer_fails)
		return NULL;
	assert_false(timer.pending);   /* the pacer never runs two */
	timer.pending = true;
	timer.due_ms = clock_ms + (int64_t)delay_ms;
	timer.fn = fn;
	timer.arg = arg;
	return (parley_timer *)&timer;
}

static void fake_timer_cancel(parley_timer *t)
{
	assert_ptr_equal(t, &timer);
	assert_true(timer.pending);
	timer.pending = false;
}

static const parley_host host = {
	.size = sizeof(parley_host),
	.timer_start = fake_timer_start,
	.timer_cancel = fake_timer_cancel,
	.now_ms = fake_now,
};

/* ---- work items and what happened to them ---- */

typedef struct job {
	int id;
	pu_pacer_item link;
} job;

#define MAX_EVENTS 64
static struct event {
	char what;               /* 's' started, 'b' handed back, 'f' freed */
	int id;
	int64_t at_ms;           /* clock when it happened */
	int64_t retry_at_ms;     /* 'b' only */
	const char *reason;      /* 'b' only */
} events[MAX_EVENTS];
static size_t n_events;
static bool start_in_flight;   /* what the start callback reports */
static int take_extra;          /* the start callback takes this many more */

static void record(char what, const job *j, int64_t retry_at, const char *reason)
{
	assert_true(n_events < MAX_EVENTS);
	events[n_events++] = (struct event){ what, j->id, clock_ms, retry_at, reason };
}

static bool on_start(void *owner, pu_pacer_item *item)
{
	pu_pacer *p = owner;
	job *j = PU_PACER_OWNER(item, job, link);

	record('s', j, 0, NULL);
	for (int i = 0; i < take_extra; i++) {
		pu_pacer_item *more = pu_pacer_take(p);
		if (more != NULL)
			record('s', PU_PACER_OWNER(more, job, link), 0, NULL);
	}
	return start_in_flight;
}

static void on_back(void *owner, pu_pacer_item *item, int64_t retry_at_ms, const char *reason)
{
	(void)owner;
	record('b', PU_PACER_OWNER(item, job, link), retry_at_ms, reason);
}

static void on_free(pu_pacer_item *item)
{
	record('f', PU_PACER_OWNER(item, job, link), 0, NULL);
}

static job jobs[32];
static pu_pacer pacer;

static int setup(void **state)
{
	(void)state;
	clock_ms = 1000000;
	memset(&timer, 0, sizeof(timer));
	timer_fails = false;
	n_events = 0;
	start_in_flight = false;
	take_extra = 0;
	for (int i = 0; i < 32; i++)
		jobs[i].id = i;
	return 0;
}

static void init(int64_t tokens, int64_t period_ms, int64_t burst, int64_t max_in_flight,
                 int64_t max_wait_ms)
{
	pu_pacer_rate r = { tokens, period_ms, burst, max_in_flight, max_wait_ms };

	assert_true(pu_pacer_init(&pacer, &host, NULL, &r, &pacer, on_start, on_back,
	                          "rate limit: waiting for Retry-After"));
}

/* Move the clock to `until`, firing the timer whenever it falls due. */
static void run_until(int64_t until)
{
	while (timer.pending && timer.due_ms <= until) {
		clock_ms = timer.due_ms;
		timer.pending = false;
		timer.fn(timer.arg);
	}
	clock_ms = until;
}

static void push_jobs(int from, int n)
{
	for (int i = from; i < from + n; i++)
		pu_pacer_push(&pacer, &jobs[i].link, false);
}

/* The times at which the started events happened, in order. */
static size_t start_times(int64_t *out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < n_events && n < max; i++)
		if (events[i].what == 's')
			out[n++] = events[i].at_ms - 1000000;
	return n;
}

/* ---- the bucket: table-driven ---- */

static const struct rate_case {
	const char *name;
	int64_t tokens, period_ms, burst;
	int jobs;
	int64_t starts[8];      /* ms after the start */
} rate_cases[] = {
	{ "one a second, no burst", 1, 1000, 1, 4, { 0, 1000, 2000, 3000 } },
	{ "60 a minute is one a second", 60, 60000, 1, 3, { 0, 1000, 2000 } },
	{ "burst of three, then the rate", 60, 60000, 3, 5, { 0, 0, 0, 1000, 2000 } },
	{ "200 a minute rounds its wait up", 200, 60000, 1, 3, { 0, 300, 600 } },
	{ "7 s interval (Slack's min_interval_ms)", 1, 7000, 1, 3, { 0, 7000, 14000 } },
	{ "fast: a thousand a second", 1000, 1000, 1, 4, { 0, 1, 2, 3 } },
};

static void test_bucket_paces_at_its_rate(void **state)
{
	for (size_t c = 0; c < sizeof(rate_cases) / sizeof(rate_cases[0]); c++) {
		const struct rate_case *rc = &rate_cases[c];
		int64_t got[8];
		size_t n;

		setup(state);
		init(rc->tokens, rc->period_ms, rc->burst, 0, 1000000);
		push_jobs(0, rc->jobs);
		pu_pacer_kick(&pacer);
		run_until(clock_ms + 100000);
		n = start_times(got, 8);
		assert_int_equal(n, (size_t)rc->jobs);
		for (size_t i = 0; i < n; i++) {
			if (got[i] != rc->starts[i])
				fail_msg("%s: start %zu at %lld, want %lld", rc->name, i,
				         (long long)got[i], (long long)rc->starts[i]);
		}
		assert_int_equal(pacer.waiting.count, 0);
	}
}

static void test_bucket_refills_while_idle_up_to_its_burst(void **state)
{
	(void)state;
	init(60, 60000, 2, 0, 100000);
	push_jobs(0, 2);
	pu_pacer_kick(&pacer);
	run_until(clock_ms + 60000);   /* idle for a minute: two tokens, not sixty */
	push_jobs(2, 3);
	pu_pacer_kick(&pacer);
	run_until(clock_ms + 10000);
	int64_t got[8];
	assert_int_equal(start_times(got, 8), 5);
	assert_int_equal(got[2], 60000);
	assert_int_equal(got[3], 60000);
	assert_int_equal(got[4], 61000);
}

/* ---- admission: a new item's turn behind the queue ---- */

static void test_submit_hands_back_when_the_turn_is_too_far(void **state)
{
	int64_t retry_at = -1;

	(void)state;
	init(1, 1000, 1, 0, 3000);   /* one a second, hold at most 3 s */
	/* The bucket's token and 3 s of waiting: four fit. */
	for (int i = 0; i < 4; i++)
		assert_true(pu_pacer_submit(&pacer, &jobs[i].link, &retry_at));
	assert_int_equal(retry_at, -1);
	assert_false(pu_pacer_submit(&pacer, &jobs[4].link, &retry_at));
	assert_int_equal(retry_at, clock_ms + 4000);
	assert_int_equal(pacer.waiting.count, 4);
	pu_pacer_kick(&pacer);
	/* One started; the rest wait for the timer. */
	assert_int_equal(pacer.waiting.count, 3);
	assert_true(timer.pending);
	assert_int_equal(timer.due_ms, clock_ms + 1000);
}

/* ---- the 429 pause ---- */

static void test_short_pause_delays_and_allows_no_burst(void **state)
{
	int64_t got[8];

	(void)state;
	init(60, 60000, 5, 0, 20000);
	push_jobs(0, 1);
	pu_pacer_kick(&pacer);                 /* 0: starts from the full bucket */
	pu_pacer_pause(&pacer, clock_ms + 5000);
	push_jobs(1, 3);
	pu_pacer_kick(&pacer);
	assert_true(timer.pending);
	assert_int_equal(timer.due_ms, clock_ms + 5000);
	run_until(clock_ms + 20000);
	assert_int_equal(start_times(got, 8), 4);
	assert_int_equal(got[1], 5000);        /* the pause's end: one token */
	assert_int_equal(got[2], 6000);        /* then the rate, not the burst */
	assert_int_equal(got[3], 7000);
}

static void test_pause_counts_in_the_admission_wait(void **state)
{
	int64_t retry_at = 0;

	(void)state;
	init(1, 1000, 1, 0, 10000);
	pu_pacer_pause(&pacer, clock_ms + 8000);
	assert_true(pu_pacer_submit(&pacer, &jobs[0].link, &retry_at));   /* at 8 s */
	assert_true(pu_pacer_submit(&pacer, &jobs[1].link, &retry_at));   /* at 9 s */
	assert_true(pu_pacer_submit(&pacer, &jobs[2].link, &retry_at));   /* at 10 s */
	assert_false(pu_pacer_submit(&pacer, &jobs[3].link, &retry_at));
	assert_int_equal(retry_at, clock_ms + 11000);
}

static void test_long_pause_hands_every_waiting_item_back(void **state)
{
	int64_t until;

	(void)state;
	init(1, 1000, 1, 0, 5000);
	push_jobs(0, 3);
	until = clock_ms + 30000;
	pu_pacer_pause(&pacer, until);
	pu_pacer_kick(&pacer);
	assert_int_equal(n_events, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(events[i].what, 'b');
		assert_int_equal(events[i].id, i);      /* in their order */
		assert_int_equal(events[i].retry_at_ms, until);
		assert_string_equal(events[i].reason, "rate limit: waiting for Retry-After");
	}
	assert_int_equal(pacer.waiting.count, 0);
	assert_false(timer.pending);
}

static void test_an_earlier_pause_does_not_shorten_a_later_one(void **state)
{
	(void)state;
	init(1, 1000, 1, 0, 60000);
	pu_pacer_pause(&pacer, clock_ms + 9000);
	pu_pacer_pause(&pacer, clock_ms + 2000);
	push_jobs(0, 1);
	pu_pacer_kick(&pacer);
	assert_int_equal(timer.due_ms, clock_ms + 9000);
}

static void test_default_pause(void **state)
{
	static const struct {
		int64_t tokens, period_ms, want;
	} cases[] = {
		{ 1, 1000, 1000 }, { 200, 60000, 1000 }, { 1, 7000, 7000 }, { 2, 60000, 30000 },
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		setup(state);
		init(cases[c].tokens, cases[c].period_ms, 1, 0, 1000);
		assert_int_equal(pu_pacer_default_pause_ms(&pacer), cases[c].want);
	}
}

/* ---- in flight, several items a request, the front of the queue ---- */

static void test_in_flight_limit_waits_for_done(void **state)
{
	int64_t got[8];

	(void)state;
	start_in_flight = true;
	init(1000, 1000, 10, 1, 60000);   /* tokens plenty, one at a time */
	push_jobs(0, 3);
	pu_pacer_kick(&pacer);
	assert_int_equal(start_times(got, 8), 1);
	run_until(clock_ms + 5000);
	assert_int_equal(start_times(got, 8), 1);  /* nothing while one is in flight */
	pu_pacer_done(&pacer);
	assert_int_equal(start_times(got, 8), 2);
	pu_pacer_done(&pacer);
	assert_int_equal(start_times(got, 8), 3);
	pu_pacer_done(&pacer);
	assert_int_equal(pacer.in_flight, 0);
}

static void test_failed_start_is_not_in_flight(void **state)
{
	int64_t got[8];

	(void)state;
	start_in_flight = false;          /* each start finishes on the spot */
	init(1000, 1000, 10, 1, 60000);
	push_jobs(0, 3);
	pu_pacer_kick(&pacer);
	assert_int_equal(start_times(got, 8), 3);
	assert_int_equal(pacer.in_flight, 0);
}

static void test_start_may_take_the_rest_into_one_request(void **state)
{
	(void)state;
	take_extra = 10;
	start_in_flight = true;
	init(1, 1000, 1, 1, 60000);
	push_jobs(0, 4);
	pu_pacer_kick(&pacer);
	assert_int_equal(n_events, 4);
	assert_int_equal(pacer.waiting.count, 0);
	assert_int_equal(pacer.in_flight, 1);
	assert_false(timer.pending);
}

static void test_front_push_goes_first(void **state)
{
	(void)state;
	init(1, 1000, 1, 0, 60000);
	push_jobs(0, 2);
	pu_pacer_push(&pacer, &jobs[9].link, true);
	pu_pacer_kick(&pacer);
	run_until(clock_ms + 10000);
	assert_int_equal(n_events, 3);
	assert_int_equal(events[0].id, 9);
	assert_int_equal(events[1].id, 0);
	assert_int_equal(events[2].id, 1);
}

/* ---- failures, reload, stop, destroy ---- */

static void test_timer_failure_hands_back(void **state)
{
	(void)state;
	init(1, 1000, 1, 0, 60000);
	push_jobs(0, 3);
	timer_fails = true;
	pu_pacer_kick(&pacer);
	assert_int_equal(n_events, 3);
	assert_int_equal(events[0].what, 's');
	assert_int_equal(events[1].what, 'b');
	assert_string_equal(events[1].reason, "could not start a timer");
	assert_int_equal(events[1].retry_at_ms, 0);
	assert_int_equal(events[2].what, 'b');
}

static void test_bad_rates_are_refused(void **state)
{
	static const pu_pacer_rate bad[] = {
		{ 0, 1000, 1, 0, 0 }, { 1, 0, 1, 0, 0 }, { 1, 1000, 0, 0, 0 },
		{ 1, 1000, 1, -1, 0 }, { 1, 1000, 1, 0, -1 },
	};
	pu_pacer_rate good = { 1, 1000, 1, 0, 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(pu_pacer_init(&pacer, &host, NULL, &bad[i], NULL, on_start, on_back, ""));
	assert_true(pu_pacer_init(&pacer, &host, NULL, &good, NULL, on_start, on_back, ""));
	assert_false(pu_pacer_set_rate(&pacer, &bad[0]));
	assert_int_equal(pacer.rate.tokens, 1);
}

static void test_reload_caps_the_bucket_at_the_new_burst(void **state)
{
	pu_pacer_rate slower = { 1, 1000, 1, 0, 60000 };
	int64_t got[8];

	(void)state;
	init(10, 1000, 10, 0, 60000);
	assert_true(pu_pacer_set_rate(&pacer, &slower));
	push_jobs(0, 3);
	pu_pacer_kick(&pacer);
	run_until(clock_ms + 10000);
	assert_int_equal(start_times(got, 8), 3);
	assert_int_equal(got[1], 1000);
	assert_int_equal(got[2], 2000);
}

static void test_stop_hands_back_and_starts_nothing(void **state)
{
	(void)state;
	init(1, 1000, 1, 0, 60000);
	push_jobs(0, 3);
	pu_pacer_kick(&pacer);             /* one starts, a timer for the next */
	assert_true(timer.pending);
	pu_pacer_stop(&pacer, "shutting down");
	assert_false(timer.pending);
	assert_int_equal(n_events, 3);
	assert_int_equal(events[1].what, 'b');
	assert_string_equal(events[1].reason, "shutting down");
	push_jobs(5, 1);
	pu_pacer_kick(&pacer);
	assert_int_equal(n_events, 3);
	assert_int_equal(pacer.waiting.count, 1);
}

static void test_destroy_frees_waiting_items(void **state)
{
	(void)state;
	init(1, 1000, 1, 0, 60000);
	push_jobs(0, 3);
	pu_pacer_kick(&pacer);
	pu_pacer_destroy(&pacer, on_free);
	assert_false(timer.pending);
	assert_int_equal(n_events, 3);
	assert_int_equal(events[1].what, 'f');
	assert_int_equal(events[2].what, 'f');
	assert_int_equal(pacer.waiting.count, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_bucket_paces_at_its_rate, setup),
		cmocka_unit_test_setup(test_bucket_refills_while_idle_up_to_its_burst, setup),
		cmocka_unit_test_setup(test_submit_hands_back_when_the_turn_is_too_far, setup),
		cmocka_unit_test_setup(test_short_pause_delays_and_allows_no_burst, setup),
		cmocka_unit_test_setup(test_pause_counts_in_the_admission_wait, setup),
		cmocka_unit_test_setup(test_long_pause_hands_every_waiting_item_back, setup),
		cmocka_unit_test_setup(test_an_earlier_pause_does_not_shorten_a_later_one, setup),
		cmocka_unit_test_setup(test_default_pause, setup),
		cmocka_unit_test_setup(test_in_flight_limit_waits_for_done, setup),
		cmocka_unit_test_setup(test_failed_start_is_not_in_flight, setup),
		cmocka_unit_test_setup(test_start_may_take_the_rest_into_one_request, setup),
		cmocka_unit_test_setup(test_front_push_goes_first, setup),
		cmocka_unit_test_setup(test_timer_failure_hands_back, setup),
		cmocka_unit_test_setup(test_bad_rates_are_refused, setup),
		cmocka_unit_test_setup(test_reload_caps_the_bucket_at_the_new_burst, setup),
		cmocka_unit_test_setup(test_stop_hands_back_and_starts_nothing, setup),
		cmocka_unit_test_setup(test_destroy_frees_waiting_items, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
