/* http_stream.c - answers sent in pieces: begin, write, end.
 *
 * A streamed answer keeps its request in flight and its connection in
 * STREAMING: reading (only to notice the client's close; anything it sends
 * is dropped), never idle-timed. Three things stop a stream from outside
 * the handler, each reported once through on_stop from the loop:
 *   - the client closes or the connection fails (http_server.c closes the
 *     connection and calls http_stream_stop);
 *   - the client reads too slowly: a write that would leave more than the
 *     output bound unsent drops the connection, so a stalled reader costs a
 *     bounded amount of memory, not all of it. (The write timeout alone
 *     would not do: each write re-arms it, so a stream that keeps writing
 *     to a client that never reads would never time out.)
 *   - the server stops accepting (SIGTERM): the connection stays up so the
 *     handler's http_req_stream_end() can end the body cleanly.
 * on_stop runs from a zero-delay event, never inside a call of the API, so
 * a handler may end the stream from its callback without pulling the
 * request out from under its own caller. */
#include "http_conn.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"

#define DEFAULT_OUTPUT_BOUND (1024u * 1024)

size_t http_stream_output_bound(const http_server *s)
{
	return s->limits.max_output_bytes ? s->limits.max_output_bytes : DEFAULT_OUTPUT_BOUND;
}

static void on_stop_event(evutil_socket_t fd, short what, void *arg)
{
	http_request *r = arg;
	(void)fd;
	(void)what;
	/* The handler will normally end the stream here, freeing r. */
	r->on_stop(r, r->stop_reason, r->stop_arg);
}

void http_stream_stop(http_request *r, http_stream_stop_reason why)
{
	if (!r->streaming || r->stop_told)
		return;
	r->stop_told = true;
	r->stop_reason = why;
	event_active(r->stop_ev, EV_TIMEOUT, 0);
}

bool http_req_stream_begin(http_request *r, int status, const char *content_type,
                           const char *const *extra_headers, http_stream_stop_fn on_stop,
                           void *stop_arg)
{
	http_server *s = r->srv;
	if (status < 200 || status > 599 || status == 204 || status == 304) {
		log_warn(HTTP_LOG, "handler streamed with status %d; sending 500", status);
		status = 500;
	}
	r->streaming = true;
	r->on_stop = on_stop;
	r->stop_arg = stop_arg;
	r->stop_ev = event_new(s->base, -1, 0, on_stop_event, r);
	if (r->stop_ev == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
	metrics_http_observe(r->route, r->method_label, status,
	                     (double)(util_mono_us() - r->start_us) / 1e6);

	http_conn *c = r->conn;
	if (c == NULL) {
		r->stop_told = true;   /* the caller learns it from the false */
		return false;
	}
	r->chunked = r->http11 && !r->is_head;
	http_write_head(bufferevent_get_output(c->bev), status, content_type,
	                r->chunked ? "Transfer-Encoding: chunked" : NULL, extra_headers, false);
	c->state = CONN_STREAMING;
	/* Read again, so the client's close is noticed while nothing is sent. */
	bufferevent_enable(c->bev, EV_READ);
	if (s->stopping)
		http_stream_stop(r, HTTP_STREAM_SHUTDOWN);
	return true;
}

bool http_req_stream_write(http_request *r, const void *data, size_t len)
{
	http_conn *c = r->conn;
	if (!r->streaming || c == NULL || (r->stop_told && r->stop_reason != HTTP_STREAM_SHUTDOWN))
		return false;
	if (len == 0 || r->is_head)
		return true;   /* an empty chunk would end a chunked body */
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t unsent = evbuffer_get_length(out);
	size_t bound = http_stream_output_bound(r->srv);
	if (len > bound || unsent > bound - len) {
		char why[128];
		snprintf(why, sizeof(why), "the client does not read: %zu bytes unsent (bound %zu)",
		         unsent, bound);
		http_stream_stop(r, HTTP_STREAM_TOO_SLOW);
		http_conn_close(c, why);
		return false;
	}
	if (r->chunked) {
		evbuffer_add_printf(out, "%zx\r\n", len);
		evbuffer_add(out, data, len);
		evbuffer_add(out, "\r\n", 2);
	} else {
		evbuffer_add(out, data, len);
	}
	c->streamed_queued += len;
	return true;
}

size_t http_req_stream_unsent(const http_request *r)
{
	if (!r->streaming || r->conn == NULL)
		return 0;
	return evbuffer_get_length(bufferevent_get_output(r->conn->bev));
}

size_t http_req_stream_bound(const http_request *r)
{
	return http_stream_output_bound(r->srv);
}

void http_req_stream_end(http_request *r)
{
	if (!r->streaming) {
		log_warn(HTTP_LOG, "http_req_stream_end without http_req_stream_begin; ignored");
		return;
	}
	http_inflight_unlink(r->srv, r);
	http_conn *c = r->conn;
	if (c != NULL) {
		if (r->chunked)
			evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
		c->req = NULL;
		http_conn_finish(c);
	}
	event_free(r->stop_ev);
	r->stop_ev = NULL;
	http_request_free(r);
}
