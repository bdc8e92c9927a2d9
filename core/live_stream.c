/* live_stream.c - GET /api/v1/events: one client's stream from admission
 * to its end.
 *
 * The handler runs once api.c has authenticated the caller. It admits the
 * client (the hub knows where the stream stands; fewer than
 * live_events.max_clients streams on this node), then one transaction
 * checks the caller's credential the way the stream will re-check it
 * (parley_live_scopes: the instances it sees) and, for a resume, whether
 * every event after Last-Event-ID is still there and not too many
 * (parley_live_resume_check). Then the 200 goes out and:
 *   - without Last-Event-ID the stream starts at the hub's last id;
 *   - with one that cannot be resumed, an event 'reset' says so (reload,
 *     then go on from its id);
 *   - otherwise the missed events are read from the table in pages,
 *     each page only once the client has taken most of the previous one,
 *     until the replay reaches the hub's last id; then the hub's fan-out
 *     takes over.
 * Either way an event 'ready' marks the moment the stream is live; its id
 * is the cursor a later resume starts from.
 *
 * A client that falls behind (its unsent answer would pass half the
 * server's max_output_bytes) is taken off the fan-out and catches up from
 * the table the same way, at the pace it reads. Nothing is buffered for a
 * client beyond that bound: it is dropped when it takes nothing for
 * limits.write_timeout_ms, or falls more than live_events.replay_max events
 * behind (it resumes, or gets 'reset', when it reconnects).
 *
 * The stream ends then, when the client goes away, when its credential
 * stops being good, or when the server stops. */
#include "live_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define PACE_MS 20
#define EMPTY_PAGES_MAX 3     /* behind the hub, yet the table shows nothing new */

static struct event_base *stream_base;
static char *page_frame;      /* a replayed event being written */
static size_t page_frame_cap;

void live_stream_set_base(struct event_base *base)
{
	stream_base = base;
	if (base == NULL) {
		free(page_frame);
		page_frame = NULL;
		page_frame_cap = 0;
	}
}

/* ----------------------------------------------------------------- frames */

static char *put_line(char *p, const char *s, size_t n)
{
	/* A field ends at a line break: anything that would end it early is a
	 * space (jsonb's text has none outside strings, and none inside). */
	for (size_t i = 0; i < n; i++)
		*p++ = (s[i] == '\n' || s[i] == '\r') ? ' ' : s[i];
	return p;
}

size_t live_frame(char **buf, size_t *cap, const live_event *ev)
{
	size_t kind_len = strlen(ev->kind);
	size_t need = 48 + kind_len + ev->payload_len;
	if (*cap < need) {
		*cap = need + need / 2;
		*buf = xrealloc(*buf, *cap);
	}
	char *p = *buf + snprintf(*buf, *cap, "id: %lld\nevent: ", ev->id);
	p = put_line(p, ev->kind, kind_len);
	memcpy(p, "\ndata: ", 7);
	p = put_line(p + 7, ev->payload, ev->payload_len);
	memcpy(p, "\n\n", 2);
	return (size_t)(p + 2 - *buf);
}

bool live_stream_send(live_client *c, const char *frame, size_t len)
{
	if (!c->began || c->stopped)
		return false;
	return http_req_stream_write(c->req, frame, len);
}

/* ------------------------------------------------------------ the client */

/* Free a client whose batch is not in flight, ending its stream if begun. */
static void client_free(live_client *c)
{
	live_hub_remove(c);
	live_scope_put(c->scope);
	if (c->pace != NULL)
		event_free(c->pace);
	if (c->began)
		http_req_stream_end(c->req);
	free(c);
}

void live_stream_close(live_client *c)
{
	c->stopped = true;
	if (!c->db_busy)
		client_free(c);
}

static void on_stop(http_request *req, http_stream_stop_reason why, void *arg)
{
	live_client *c = arg;
	(void)req;
	if (why == HTTP_STREAM_TOO_SLOW) {
		log_info(LIVE_LOG, "%s: dropped an event stream client that does not keep up",
		         http_req_peer(c->req));
		metrics_counter_add("parley_live_clients_dropped_total",
		                    "Event stream clients dropped for reading too slowly.", NULL, 1);
	}
	live_stream_close(c);
}

static void send_text(live_client *c, const char *text)
{
	(void)live_stream_send(c, text, strlen(text));
}

/* Whether a frame of len bytes must wait: it would leave more than half
 * the output bound unsent (a frame goes out alone whatever its size). */
bool live_stream_must_wait(const live_client *c, size_t len)
{
	size_t unsent = http_req_stream_unsent(c->req);
	return unsent > 0 && unsent + len > http_req_stream_bound(c->req) / 2;
}

static void drop_behind(live_client *c)
{
	log_info(LIVE_LOG, "%s: dropped an event stream client more than %d events behind",
	         http_req_peer(c->req), live_cfg.replay_max);
	metrics_counter_add("parley_live_clients_dropped_total",
	                    "Event stream clients dropped for reading too slowly.", NULL, 1);
	live_stream_close(c);
}

/* The stream is live from c->last_sent on; the first time, 'ready' says so. */
static void go_live(live_client *c)
{
	char frame[128];
	c->state = LIVE_STREAMING;
	if (c->pace != NULL) {
		event_free(c->pace);
		c->pace = NULL;
	}
	if (c->announced)
		return;
	c->announced = true;
	snprintf(frame, sizeof(frame), "id: %lld\nevent: ready\ndata: {\"last_event_id\":%lld}\n\n",
	         c->last_sent, c->last_sent);
	send_text(c, frame);
}

/* The client must reload: what it missed is not all here. It goes on from
 * the hub's last id. */
static void send_reset(live_client *c, const char *reason)
{
	char frame[160];
	c->last_sent = live_hub_last_read();
	snprintf(frame, sizeof(frame), "id: %lld\nevent: reset\ndata: {\"reason\":\"%s\",\"last_event_id\":%lld}\n\n",
	         c->last_sent, reason, c->last_sent);
	send_text(c, frame);
	go_live(c);
}

/* ----------------------------------------------------------------- replay */

static void replay_next(live_client *c);

static void page_done(db_batch *b, bool ok, const char *error, void *arg)
{
	live_client *c = arg;
	c->db_busy = false;
	if (c->stopped) {
		client_free(c);
		return;
	}
	if (!ok) {
		/* The client resumes from the last id it got when it reconnects. */
		log_debug(LIVE_LOG, "replaying live events failed: %s", error ? error : "unknown error");
		live_stream_close(c);
		return;
	}
	PGresult *res = db_batch_result(b, 0);
	int n = PQntuples(res);
	size_t bytes = 0;
	bool cut = false;
	for (int row = 0; row < n; row++) {
		live_event ev;
		live_event_from_row(res, row, &ev);
		bytes += ev.payload_len;
		if (ev.id <= c->last_sent)
			continue;
		if (!live_client_sees(c, &ev)) {
			c->last_sent = ev.id;
			continue;
		}
		size_t len = live_frame(&page_frame, &page_frame_cap, &ev);
		if (live_stream_must_wait(c, len)) {
			cut = true;   /* the rest again once the client has read enough */
			c->blocked_len = (unsigned)len;
			break;
		}
		c->last_sent = ev.id;
		if (!live_stream_send(c, page_frame, len))
			return;   /* stopped: on_stop ends it */
	}
	long long hub = live_hub_last_read();
	if (!cut && !live_page_full(n, bytes) && c->last_sent >= hub) {
		go_live(c);
		return;
	}
	if (hub - c->last_sent > live_cfg.replay_max) {
		drop_behind(c);
		return;
	}
	/* Behind the hub with nothing new in the table: the page's snapshot
	 * may predate what the hub read; after a few such pages the events
	 * are gone (retention). */
	c->empty_pages = n == 0 ? c->empty_pages + 1 : 0;
	if (c->empty_pages >= EMPTY_PAGES_MAX) {
		send_reset(c, "expired");
		return;
	}
	replay_next(c);
}

static void pace_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	replay_next(arg);
}

void live_stream_catch_up(live_client *c, size_t blocked_len)
{
	c->state = LIVE_REPLAYING;
	c->empty_pages = 0;
	c->blocked_len = (unsigned)blocked_len;
	replay_next(c);
}

/* Whether the next page must wait for the client to read: while a quarter
 * of the bound is unsent, or the frame that did not fit still would not. */
static bool replay_must_wait(const live_client *c)
{
	size_t unsent = http_req_stream_unsent(c->req), bound = http_req_stream_bound(c->req);
	return unsent > 0 && (unsent > bound / 4 || unsent + c->blocked_len > bound / 2);
}

static void replay_next(live_client *c)
{
	/* Wait rather than pile pages up until the client is dropped for it. A
	 * client that reads nothing at all is dropped by the server's write
	 * timeout. */
	if (replay_must_wait(c)) {
		if (c->pace == NULL) {
			c->pace = evtimer_new(stream_base, pace_done, c);
			if (c->pace == NULL) {
				fputs("parleyd: out of memory\n", stderr);
				abort();
			}
		}
		struct timeval tv = { 0, PACE_MS * 1000 };
		evtimer_add(c->pace, &tv);
		return;
	}
	c->blocked_len = 0;
	char after[24];
	snprintf(after, sizeof(after), "%lld", c->last_sent);
	const char *params[] = { after };
	db_batch *b = db_batch_new();
	db_batch_add(b, LIVE_PAGE_SQL, 1, params);
	c->db_busy = true;
	db_batch_submit(b, page_done, c);
}

/* -------------------------------------------------------------- admission */

static void refuse(live_client *c, int status, const char *code, const char *detail,
                   const char *const *headers)
{
	http_req_respond_error(c->req, status, code, detail, headers);
	client_free(c);
}

static void connected(db_batch *b, bool ok, const char *error, void *arg)
{
	live_client *c = arg;
	static const char *const retry[] = { "Retry-After: 1", NULL };
	c->db_busy = false;
	if (!ok) {
		api_respond_db_error(c->req, b, error);
		client_free(c);
		return;
	}
	PGresult *scope = db_batch_result(b, 0);
	if (PQntuples(scope) == 1)
		live_scope_apply(c->scope, PQgetvalue(scope, 0, 0)[0] == 't',
		                 PQgetisnull(scope, 0, 1) ? NULL : PQgetvalue(scope, 0, 1));
	if (!live_scope_valid(c->scope)) {
		static const char *const challenge[] = { "WWW-Authenticate: Bearer realm=\"parley\"", NULL };
		refuse(c, 401, "unauthorized", "the credential is no longer good", challenge);
		return;
	}
	if (c->stopped || !live_hub_ready()) {
		refuse(c, 503, "shutting_down", "the server is stopping", retry);
		return;
	}
	static const char *const headers[] = { "Cache-Control: no-store", "X-Accel-Buffering: no", NULL };
	c->began = true;
	if (!http_req_stream_begin(c->req, 200, "text/event-stream", headers, on_stop, c)) {
		client_free(c);
		return;
	}
	if (c->resume_after < 0) {
		c->last_sent = live_hub_last_read();
		go_live(c);
		return;
	}
	const char *verdict = PQgetvalue(db_batch_result(b, 1), 0, 0);
	if (strcmp(verdict, "ok") != 0) {
		send_reset(c, verdict);
		return;
	}
	c->last_sent = c->resume_after;
	c->state = LIVE_REPLAYING;
	replay_next(c);
}

/* An event id: 1..18 digits. */
static bool parse_id(const char *s, long long *out)
{
	size_t n = strlen(s);
	if (n == 0 || n > 18 || strspn(s, "0123456789") != n)
		return false;
	*out = atoll(s);
	return true;
}

void live_events_handle(http_request *req, const route_match *m, const api_actor *actor)
{
	(void)m;
	const char *id_text = NULL;
	size_t nq = http_req_query_count(req);
	for (size_t i = 0; i < nq; i++) {
		const char *name, *value;
		http_req_query_at(req, i, &name, &value);
		if (strcmp(name, "last_event_id") != 0) {
			char detail[128];
			snprintf(detail, sizeof(detail), "query: unknown field \"%.64s\"", name);
			http_req_respond_error(req, 400, "unknown_field", detail, NULL);
			return;
		}
		if (id_text != NULL) {
			http_req_respond_error(req, 400, "invalid_parameter", "last_event_id: given more than once",
			                       NULL);
			return;
		}
		id_text = value;
	}
	/* A browser's EventSource resumes with the header; it wins over the
	 * URL's parameter, which only says where the first connection starts. */
	const char *header = http_req_header(req, "Last-Event-ID");
	if (header != NULL && header[0] != '\0')
		id_text = header;
	long long resume = -1;
	if (id_text != NULL && id_text[0] != '\0' && !parse_id(id_text, &resume)) {
		http_req_respond_error(req, 400, "invalid_parameter",
		                       "Last-Event-ID: the id of an event (a whole number)", NULL);
		return;
	}
	const char *kind;
	char hash[65];
	if (!api_request_credential(req, &kind, hash)) {
		http_req_respond_error(req, 401, "unauthorized", "no credentials", NULL);
		return;
	}
	if (strcmp(http_req_method(req), "HEAD") == 0) {
		http_req_respond(req, 200, "text/event-stream", "", 0, NULL);
		return;
	}
	if (!live_hub_ready()) {
		static const char *const retry[] = { "Retry-After: 1", NULL };
		http_req_respond_error(req, 503, "not_ready", "live events are starting", retry);
		return;
	}
	if (live_hub_clients() >= (size_t)live_cfg.max_clients) {
		static const char *const retry[] = { "Retry-After: 5", NULL };
		http_req_respond_error(req, 503, "too_many_streams",
		                       "this node has as many event streams as it takes", retry);
		return;
	}

	live_client *c = xcalloc(1, sizeof(*c));
	c->req = req;
	c->scope = live_scope_get(kind, hash);
	c->agent_id = actor->agent_id;
	c->resume_after = resume;
	c->state = LIVE_CONNECTING;
	live_hub_add(c);

	const char *scope_params[] = { kind, hash };
	db_batch *b = db_batch_new();
	db_batch_add(b, "SELECT valid, instances::text FROM parley_live_scopes(ARRAY[$1], ARRAY[$2])", 2,
	             scope_params);
	if (resume >= 0) {
		char after[24], max[16];
		snprintf(after, sizeof(after), "%lld", resume);
		snprintf(max, sizeof(max), "%d", live_cfg.replay_max);
		const char *params[] = { after, max };
		db_batch_add(b, "SELECT parley_live_resume_check($1::bigint, $2::int)", 2, params);
	}
	c->db_busy = true;
	db_batch_submit(b, connected, c);
}
