/* live_sequencer.c - numbering queued live events, and their retention.
 *
 * Every node runs parley_live_events_sequence when a transaction announces
 * queued events, a few milliseconds later so that a burst of announcements
 * makes one run. The function takes a try-lock: on the node that gets it,
 * the committed queue moves into live_event under fresh ids; the others
 * return at once (the lock holder heard the same announcement and runs
 * again after its run). A run is foreground database work: the stream's
 * latency is the point (db_batch_set_background would queue it behind
 * every other batch).
 *
 * Retention: once a minute, parley_live_events_expire deletes up to a
 * thousand events older than live_events.retention_s; a full thousand means
 * more are waiting, and the next run comes a second later. */
#include "live_internal.h"

#include <stdio.h>
#include <stdlib.h>

#include "db.h"
#include "log.h"

#define SEQ_COALESCE_MS 5
#define SEQ_BATCH 5000
#define SEQ_BATCH_TEXT "5000"
#define EXPIRE_EVERY_MS 60000
#define EXPIRE_AGAIN_MS 1000
#define EXPIRE_BATCH 1000
#define EXPIRE_BATCH_TEXT "1000"

static struct {
	bool started, stopping;
	bool running;         /* a run is in flight */
	bool again;           /* announced during the run: run once more after it */
	bool db_outage;       /* a failure was logged */
	bool expiring;
	struct event *coalesce;
	struct event *expire;
} Q;

static struct event *new_timer(struct event_base *base, event_callback_fn fn)
{
	struct event *ev = evtimer_new(base, fn, NULL);
	if (ev == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
	return ev;
}

static void add_ms(struct event *ev, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(ev, &tv);
}

static void sequenced(db_batch *b, bool ok, const char *error, void *arg)
{
	(void)arg;
	Q.running = false;
	if (!Q.started || Q.stopping)
		return;
	if (!ok) {
		/* The sweep tries again; one warning per outage. */
		if (!Q.db_outage)
			log_warn(LIVE_LOG, "numbering live events failed: %s", error ? error : "unknown error");
		Q.db_outage = true;
		return;
	}
	if (Q.db_outage)
		log_info(LIVE_LOG, "numbering live events again");
	Q.db_outage = false;
	int moved = atoi(PQgetvalue(db_batch_result(b, 0), 0, 0));
	if (moved >= SEQ_BATCH || Q.again) {
		Q.again = false;
		live_sequencer_poke();
	}
}

static void run(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (Q.stopping)
		return;
	Q.running = true;
	Q.again = false;
	db_batch *b = db_batch_new();
	const char *params[] = { SEQ_BATCH_TEXT };
	db_batch_add(b, "SELECT parley_live_events_sequence($1::int)", 1, params);
	db_batch_submit(b, sequenced, NULL);
}

void live_sequencer_poke(void)
{
	if (!Q.started || Q.stopping)
		return;
	if (Q.running) {
		Q.again = true;
		return;
	}
	if (!evtimer_pending(Q.coalesce, NULL))
		add_ms(Q.coalesce, SEQ_COALESCE_MS);
}

static void expired(db_batch *b, bool ok, const char *error, void *arg)
{
	(void)arg;
	Q.expiring = false;
	if (!Q.started || Q.stopping)
		return;
	int deleted = 0;
	if (!ok)
		log_debug(LIVE_LOG, "deleting old live events failed: %s", error ? error : "unknown error");
	else
		deleted = atoi(PQgetvalue(db_batch_result(b, 0), 0, 0));
	if (deleted > 0)
		log_debug(LIVE_LOG, "deleted %d live events older than %d s", deleted, live_cfg.retention_s);
	add_ms(Q.expire, deleted >= EXPIRE_BATCH ? EXPIRE_AGAIN_MS : EXPIRE_EVERY_MS);
}

static void expire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (Q.stopping || Q.expiring)
		return;
	Q.expiring = true;
	char keep[16];
	snprintf(keep, sizeof(keep), "%d", live_cfg.retention_s);
	const char *params[] = { keep, EXPIRE_BATCH_TEXT };
	db_batch *b = db_batch_new();
	db_batch_add(b, "SELECT parley_live_events_expire($1::int, $2::int)", 2, params);
	db_batch_set_background(b);   /* unlike numbering, nobody waits for this */
	db_batch_submit(b, expired, NULL);
}

void live_sequencer_start(struct event_base *base)
{
	Q.coalesce = new_timer(base, run);
	Q.expire = new_timer(base, expire);
	Q.started = true;
	Q.stopping = false;
	add_ms(Q.expire, EXPIRE_AGAIN_MS);
}

void live_sequencer_stop(void)
{
	if (!Q.started)
		return;
	Q.stopping = true;
	evtimer_del(Q.coalesce);
	evtimer_del(Q.expire);
}

void live_sequencer_free(void)
{
	if (!Q.started)
		return;
	event_free(Q.coalesce);
	event_free(Q.expire);
	Q.coalesce = Q.expire = NULL;
	Q.started = false;
}
