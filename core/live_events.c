/* live_events.c - the live event stream's start and stop, its LISTEN
 * subscriptions and its sweep. See live_events.h.
 *
 * One LISTEN connection (db_listen.c) carries both channels:
 * 'parley_live_pending' (a transaction queued events: the sequencer runs)
 * and 'parley_live' (a sequencer numbered some, its payload the newest id:
 * the hub reads). Notifications sent while the connection was down are
 * lost, so its (re)establishment runs both, and a sweep every second does
 * too: a missed notification costs at most that much delay, never an
 * event. */
#include "live_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_listen.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define LIVE_SWEEP_MS 1000

live_limits live_cfg = { 2000, 15000, 10000, 86400 };

static struct {
	bool started, stopping;
	db_listen *listen;
	struct event *sweep;
} L;

void live_event_from_row(PGresult *res, int row, live_event *ev)
{
	ev->id = atoll(PQgetvalue(res, row, 0));
	ev->kind = PQgetvalue(res, row, 1);
	ev->instance = PQgetisnull(res, row, 2) ? NULL : PQgetvalue(res, row, 2);
	ev->agent_id = PQgetisnull(res, row, 3) ? 0 : atoll(PQgetvalue(res, row, 3));
	ev->payload = PQgetvalue(res, row, 4);
	ev->payload_len = (size_t)PQgetlength(res, row, 4);
}

static void on_pending(void *arg, const char *channel, const char *payload)
{
	(void)arg;
	(void)channel;
	(void)payload;
	live_sequencer_poke();
}

static void on_numbered(void *arg, const char *channel, const char *payload)
{
	(void)arg;
	(void)channel;
	live_hub_read(atoll(payload));
}

static void on_listening(void *arg, bool again)
{
	(void)arg;
	if (again)
		log_info(LIVE_LOG, "listening for live events again; looking for what was missed");
	live_sequencer_poke();
	live_hub_read(0);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	live_sequencer_poke();
	live_hub_read(0);
}

static void collect_metrics(void *arg)
{
	(void)arg;
	metrics_gauge_set("parley_live_clients", "Event stream clients connected to this node.", NULL,
	                  (double)live_hub_clients());
}

bool live_events_start(struct event_base *base, const live_options *opts, char *err, size_t errlen)
{
	char why[256];
	if (L.started) {
		util_set_err(err, errlen, "live events: already started");
		return false;
	}
	db_listen_options lo = {
		.dsn = opts->dsn, .connect_timeout_ms = opts->connect_timeout_ms,
		.application_name = "parleyd-live", .log_component = LIVE_LOG,
		.what = "the live events' LISTEN connection",
	};
	L.listen = db_listen_new(base, &lo, why, sizeof(why));
	if (L.listen == NULL) {
		util_set_err(err, errlen, "live events: %s", why);
		return false;
	}
	if (!db_listen_subscribe(L.listen, "parley_live_pending", on_pending, on_listening, NULL) ||
	    !db_listen_subscribe(L.listen, "parley_live", on_numbered, NULL, NULL)) {
		db_listen_free(L.listen);
		L.listen = NULL;
		util_set_err(err, errlen, "live events: cannot subscribe");
		return false;
	}
	live_cfg = opts->limits;
	L.sweep = event_new(base, -1, EV_PERSIST, on_sweep, NULL);
	if (L.sweep == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
	live_stream_set_base(base);
	live_sequencer_start(base);
	live_scope_start(base);
	live_hub_start(base);
	struct timeval tv = { LIVE_SWEEP_MS / 1000, (LIVE_SWEEP_MS % 1000) * 1000 };
	evtimer_add(L.sweep, &tv);
	db_listen_start(L.listen);
	metrics_add_collector(collect_metrics, NULL);
	L.started = true;
	L.stopping = false;
	return true;
}

void live_events_set_limits(const live_limits *limits)
{
	live_cfg = *limits;
	if (L.started && !L.stopping)
		live_hub_set_heartbeat(limits->heartbeat_ms);
}

void live_events_stop(void)
{
	if (!L.started || L.stopping)
		return;
	L.stopping = true;
	evtimer_del(L.sweep);
	db_listen_stop(L.listen);
	live_sequencer_stop();
	live_scope_stop();
	live_hub_stop();
}

void live_events_free(void)
{
	if (!L.started)
		return;
	live_events_stop();
	db_listen_free(L.listen);
	L.listen = NULL;
	event_free(L.sweep);
	L.sweep = NULL;
	live_hub_free();
	live_scope_free();
	live_sequencer_free();
	live_stream_set_base(NULL);
	L.started = false;
}
