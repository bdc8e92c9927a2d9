/* assignment.c - scheduling and running the assignment sweep (see
 * assignment.h; the SQL is parley_assignment_schedule and
 * parley_assignment_sweep). */
#include "assignment.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "db.h"
#include "host_api.h"
#include "log.h"
#include "util.h"

#define ASSIGN_LOG "assignment"
/* A sweep moves at most this many conversations per transaction, and runs
 * again at once while it reaches that, up to this many times per job. */
#define SWEEP_BATCH "500"
#define SWEEP_MAX_ROUNDS 20

#define SCHEDULE_SQL "SELECT parley_assignment_schedule($1::int)"
#define SWEEP_SQL "SELECT parley_assignment_sweep($1::int, $2::int)::text"

static struct {
	struct event_base *base;        /* borrowed */
	struct event *timer;            /* owned: persistent, every interval */
	int interval_ms;
	char grace_s[16];               /* away_grace_seconds as text */
	char interval[16];              /* sweep_interval_ms as text */
	bool started, stopping, schedule_pending;
} A;

/* ---------------------------------------------------------- scheduling */

static void schedule_done(db_batch *b, bool ok, const char *error, void *arg)
{
	A.schedule_pending = false;
	if (!ok)
		log_debug(ASSIGN_LOG, "cannot schedule the sweep: %s", error ? error : "unknown error");
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	if (!A.started || A.stopping || A.schedule_pending)
		return;
	const char *params[] = { A.interval };
	db_batch *b = db_batch_new();
	db_batch_add(b, SCHEDULE_SQL, 1, params);
	db_batch_set_background(b);
	A.schedule_pending = true;
	db_batch_submit(b, schedule_done, NULL);
}

static void arm_timer(void)
{
	struct timeval tv = { .tv_sec = A.interval_ms / 1000, .tv_usec = (A.interval_ms % 1000) * 1000 };
	evtimer_add(A.timer, &tv);
}

void assignment_configure(const cfg *c)
{
	snprintf(A.grace_s, sizeof(A.grace_s), "%d", c->assignment.away_grace_seconds);
	snprintf(A.interval, sizeof(A.interval), "%d", c->assignment.sweep_interval_ms);
	bool changed = A.interval_ms != c->assignment.sweep_interval_ms;
	A.interval_ms = c->assignment.sweep_interval_ms;
	if (changed && A.started && !A.stopping)
		arm_timer();
}

bool assignment_start(struct event_base *base)
{
	A.base = base;
	A.timer = event_new(base, -1, EV_PERSIST, on_timer, NULL);
	if (A.timer == NULL)
		return false;
	A.started = true;
	A.stopping = false;
	arm_timer();
	/* A sweep soon after start: whatever waited while no node ran. */
	on_timer(-1, 0, NULL);
	return true;
}

void assignment_stop(void)
{
	if (!A.started || A.stopping)
		return;
	A.stopping = true;
	evtimer_del(A.timer);
}

void assignment_free(void)
{
	if (A.timer != NULL)
		event_free(A.timer);
	memset(&A, 0, sizeof(A));
}

/* ------------------------------------------------------------ the job */

typedef struct sweep_run {
	parley_delivery *d;
	char grace_s[16];
	int rounds;
	long long returned, assigned;
} sweep_run;

static void sweep_submit(sweep_run *s);

static void sweep_done(db_batch *b, bool ok, const char *error, void *arg)
{
	sweep_run *s = arg;
	PGresult *res = ok ? db_batch_result(b, 0) : NULL;
	if (res == NULL || PQntuples(res) != 1) {
		host_api_table()->delivery_complete(s->d, PARLEY_RETRY, 0,
		                                    ok ? "the sweep returned no row" : error);
		free(s);
		return;
	}
	json_t *r = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	s->returned += json_integer_value(json_object_get(r, "returned"));
	s->assigned += json_integer_value(json_object_get(r, "assigned"));
	bool more = json_is_true(json_object_get(r, "more"));
	json_decref(r);
	/* Work left over (a limit was reached): each round is a short
	 * transaction of its own. */
	if (more && ++s->rounds < SWEEP_MAX_ROUNDS) {
		sweep_submit(s);
		return;
	}
	if (s->returned > 0 || s->assigned > 0)
		log_info(ASSIGN_LOG, "sweep: %lld conversation(s) returned to the queue, %lld assigned",
		         s->returned, s->assigned);
	host_api_table()->delivery_complete(s->d, PARLEY_OK, 0, NULL);
	free(s);
}

static void sweep_submit(sweep_run *s)
{
	const char *params[] = { s->grace_s, SWEEP_BATCH };
	db_batch *b = db_batch_new();
	db_batch_add(b, SWEEP_SQL, 2, params);
	db_batch_set_background(b);
	db_batch_submit(b, sweep_done, s);
}

void assignment_job_sweep(parley_instance *inst, job_call *call, parley_delivery *d)
{
	(void)inst;
	(void)call;
	sweep_run *s = xcalloc(1, sizeof(*s));
	s->d = d;
	/* The grace period in force when the job started. */
	snprintf(s->grace_s, sizeof(s->grace_s), "%s", A.grace_s[0] ? A.grace_s : "300");
	sweep_submit(s);
}
