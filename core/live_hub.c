/* live_hub.c - one reader of live_event per node, and the fan-out to the
 * node's clients.
 *
 * At start the hub learns the newest id; from then on it reads what follows
 * the last id it read, in pages of LIVE_PAGE, whenever a sequencer
 * announces new ids (any node's: the announcement is a NOTIFY) and on the
 * sweep. Each event is formatted once and written to every streaming client
 * that may see it (live_client_sees). Because ids become visible in
 * increasing order (sql/functions/live_events.sql), "after the last id
 * read" never skips one.
 *
 * Each client keeps a cursor (last_sent): the newest id it was given or
 * passed by. A client still replaying from the table is skipped here; it
 * joins once its replay has reached the hub's last id, and the cursor keeps
 * it from getting an event twice if its replay read past the hub. A client
 * whose unsent answer would grow past half its bound goes back to reading
 * from the table at its own pace (live_stream.c) instead of being fed more.
 *
 * A heartbeat comment goes to every client every live_events.heartbeat_ms,
 * from one timer for all of them. */
#include "live_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

static struct {
	bool started, stopping;
	bool ready;              /* last_read is known */
	bool reading, again;
	bool db_outage;
	long long last_read;
	live_client *clients;
	size_t n_clients;
	struct event *heartbeat;
	int heartbeat_ms;
	char *frame;             /* the event being fanned out */
	size_t frame_cap;
} H;

bool live_hub_ready(void)
{
	return H.started && !H.stopping && H.ready;
}

long long live_hub_last_read(void)
{
	return H.last_read;
}

size_t live_hub_clients(void)
{
	return H.n_clients;
}

void live_hub_add(live_client *c)
{
	c->prev = NULL;
	c->next = H.clients;
	if (H.clients != NULL)
		H.clients->prev = c;
	H.clients = c;
	H.n_clients++;
}

void live_hub_remove(live_client *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else if (H.clients == c)
		H.clients = c->next;
	else
		return;   /* not in the list */
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	H.n_clients--;
}

bool live_client_sees(const live_client *c, const live_event *ev)
{
	/* An agent's own presence is no news to them. */
	if (ev->agent_id != 0 && ev->agent_id == c->agent_id && strcmp(ev->kind, "presence") == 0)
		return false;
	if (ev->instance != NULL)
		return live_scope_sees(c->scope, ev->instance);
	if (ev->agent_id != 0)
		return ev->agent_id == c->agent_id ? live_scope_valid(c->scope) : live_scope_all(c->scope);
	return live_scope_all(c->scope);
}

void live_hub_end_scope(const live_scope *s)
{
	live_client *next;
	for (live_client *c = H.clients; c != NULL; c = next) {
		next = c->next;
		if (c->scope == s && !c->stopped)
			live_stream_close(c);
	}
}

/* ---------------------------------------------------------------- reading */

static void fan_out(const live_event *ev)
{
	size_t len = 0;
	for (live_client *c = H.clients; c != NULL; c = c->next) {
		if (c->state != LIVE_STREAMING || c->stopped || ev->id <= c->last_sent)
			continue;
		if (!live_client_sees(c, ev)) {
			c->last_sent = ev->id;
			continue;
		}
		if (len == 0)
			len = live_frame(&H.frame, &H.frame_cap, ev);
		if (live_stream_must_wait(c, len)) {
			/* Behind: it reads this event and the next from the table. */
			live_stream_catch_up(c, len);
			continue;
		}
		c->last_sent = ev->id;
		(void)live_stream_send(c, H.frame, len);   /* false: its end is on its way */
	}
}

static void note_failure(const char *what, const char *error)
{
	if (!H.db_outage)
		log_warn(LIVE_LOG, "%s: %s", what, error ? error : "unknown error");
	else
		log_debug(LIVE_LOG, "%s: %s", what, error ? error : "unknown error");
	H.db_outage = true;
}

static void read_done(db_batch *b, bool ok, const char *error, void *arg)
{
	(void)arg;
	H.reading = false;
	if (!H.started || H.stopping)
		return;
	if (!ok) {
		note_failure("reading live events failed (the sweep tries again)", error);
		return;
	}
	if (H.db_outage)
		log_info(LIVE_LOG, "reading live events again");
	H.db_outage = false;
	PGresult *res = db_batch_result(b, 0);
	int n = PQntuples(res);
	size_t bytes = 0;
	if (!H.ready) {
		H.last_read = atoll(PQgetvalue(res, 0, 0));
		H.ready = true;
		log_info(LIVE_LOG, "live events: streaming from id %lld", H.last_read);
	} else {
		bool teams_changed = false;
		for (int row = 0; row < n; row++) {
			live_event ev;
			live_event_from_row(res, row, &ev);
			bytes += ev.payload_len;
			if (ev.id <= H.last_read)
				continue;
			fan_out(&ev);
			H.last_read = ev.id;
			if (strcmp(ev.kind, "team.updated") == 0 || strcmp(ev.kind, "agent.updated") == 0)
				teams_changed = true;
		}
		metrics_counter_add("parley_live_events_read_total", "Live events this node read for its clients.",
		                    NULL, (uint64_t)n);
		if (teams_changed)
			live_scope_refresh_soon();
	}
	if (live_page_full(n, bytes) || H.again) {
		H.again = false;
		live_hub_read(0);
	}
}

void live_hub_read(long long announced)
{
	if (!H.started || H.stopping)
		return;
	if (H.ready && announced > 0 && announced <= H.last_read)
		return;   /* read already (another node's announcement, or a repeat) */
	if (H.reading) {
		H.again = true;
		return;
	}
	H.reading = true;
	db_batch *b = db_batch_new();
	if (!H.ready) {
		db_batch_add(b, "SELECT coalesce(max(id), 0) FROM live_event", 0, NULL);
	} else {
		char after[24];
		snprintf(after, sizeof(after), "%lld", H.last_read);
		const char *params[] = { after };
		db_batch_add(b, LIVE_PAGE_SQL, 1, params);
	}
	db_batch_submit(b, read_done, NULL);
}

/* -------------------------------------------------------------- heartbeat */

static void beat(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	static const char ping[] = ": ping\n\n";
	for (live_client *c = H.clients; c != NULL; c = c->next)
		if (c->began && !c->stopped)
			(void)live_stream_send(c, ping, sizeof(ping) - 1);
}

void live_hub_set_heartbeat(int ms)
{
	if (!H.started || ms == H.heartbeat_ms)
		return;
	H.heartbeat_ms = ms;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(H.heartbeat, &tv);
}

void live_hub_start(struct event_base *base)
{
	H.heartbeat = event_new(base, -1, EV_PERSIST, beat, NULL);
	if (H.heartbeat == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
	H.started = true;
	H.stopping = false;
	H.heartbeat_ms = 0;
	live_hub_set_heartbeat(live_cfg.heartbeat_ms);
	live_hub_read(0);
}

void live_hub_stop(void)
{
	if (!H.started)
		return;
	H.stopping = true;
	evtimer_del(H.heartbeat);
}

void live_hub_free(void)
{
	if (!H.started)
		return;
	/* Streams the server did not end yet (a shutdown that timed out). */
	while (H.clients != NULL) {
		live_client *c = H.clients;
		live_hub_remove(c);
		live_stream_close(c);
	}
	event_free(H.heartbeat);
	H.heartbeat = NULL;
	free(H.frame);
	H.frame = NULL;
	H.frame_cap = 0;
	H.started = false;
	H.ready = false;
}
