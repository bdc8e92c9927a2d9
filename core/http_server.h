/* http_server.h - the inbound HTTP/1.1 server on the libevent loop.
 *
 * Connections are bufferevents; parsing is done by http-parser. Limits come
 * from the config (body, header bytes, read/write/idle timeouts, connection
 * count). Every error the server itself produces is the JSON shape
 * {"error":"code","detail":"..."}: 400 malformed request, 408 request
 * timeout (a half-sent request is cut off after read_timeout_ms), 413 body
 * too large (checked on Content-Length before reading and while reading
 * chunked bodies), 431 headers too large. After a refusal the rest of the
 * client's input is read and dropped, bounded in time and bytes, so a
 * client still uploading reads the answer instead of a connection reset.
 *
 * A request is handed to the handler once the whole body is read. The
 * handler answers with http_req_respond*() now or later; until then the
 * request stays valid even if the client goes away (the answer is then
 * dropped). Keep-alive and pipelined requests are served in order. An answer
 * can also be streamed: sent in pieces for as long as the handler likes
 * (see http_req_stream_begin). */
#ifndef PARLEY_CORE_HTTP_SERVER_H
#define PARLEY_CORE_HTTP_SERVER_H

#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>

typedef struct http_request http_request;
typedef struct http_server http_server;

typedef void (*http_handler_fn)(http_request *req, void *arg);

/* Why a streamed answer cannot go on. */
typedef enum http_stream_stop_reason {
	HTTP_STREAM_CLIENT_GONE,   /* closed, reset, or the connection failed */
	HTTP_STREAM_TOO_SLOW,      /* did not read: over max_output_bytes unsent, or write timeout */
	HTTP_STREAM_SHUTDOWN       /* the server is stopping (SIGTERM) */
} http_stream_stop_reason;

typedef void (*http_stream_stop_fn)(http_request *req, http_stream_stop_reason why, void *arg);

typedef struct http_server_limits {
	size_t max_body_bytes;
	size_t max_header_bytes;
	int read_timeout_ms;
	int write_timeout_ms;
	int idle_timeout_ms;
	int max_connections;
	/* Lingering close (0: built-in defaults 5000 ms, 1000 ms, 64 MiB): after
	 * the last answer on a connection the peer's input is read and dropped
	 * for at most linger_ms, until it is quiet for linger_idle_ms, and up to
	 * linger_max_bytes, so a client still sending a refused body reads its
	 * 413 instead of a reset. */
	int linger_ms;
	int linger_idle_ms;
	size_t linger_max_bytes;
	/* A streamed answer's unsent bytes above which the client is dropped as
	 * too slow (0: 1 MiB); whole answers are not bounded by it. */
	size_t max_output_bytes;
} http_server_limits;

/* Bind and listen on host:port (host may be an IPv4/IPv6 literal or
 * "localhost"). Returns NULL with a reason in err. port 0 picks a free port
 * (see http_server_port). */
http_server *http_server_new(struct event_base *base, const char *host, int port,
                             const http_server_limits *limits,
                             http_handler_fn handler, void *arg,
                             char *err, size_t errlen);
int http_server_port(const http_server *s);
void http_server_set_limits(http_server *s, const http_server_limits *limits);
/* Stop accepting new connections; idle keep-alive connections are closed,
 * requests being handled are still answered. */
void http_server_stop_accepting(http_server *s);
/* Requests handed to the handler and not answered yet. */
size_t http_server_inflight(const http_server *s);
size_t http_server_connections(const http_server *s);
/* Close everything and free. Unanswered requests are dropped. */
void http_server_free(http_server *s);

/* --- request accessors; returned pointers borrowed until the answer --- */
const char *http_req_method(const http_request *r);  /* "GET", "POST", ... */
const char *http_req_path(const http_request *r);    /* URL path, not decoded, no query */
const char *http_req_query(const http_request *r, const char *name); /* decoded or NULL */
/* The query's parameters in order, decoded: how many, and the i-th. */
size_t http_req_query_count(const http_request *r);
void http_req_query_at(const http_request *r, size_t i, const char **name, const char **value);
const char *http_req_header(const http_request *r, const char *name); /* case-insensitive */
const unsigned char *http_req_body(const http_request *r, size_t *len);
const char *http_req_peer(const http_request *r);    /* "ip:port" */
/* Route label for metrics, e.g. "/webhooks/{instance}"; borrowed static string. */
void http_req_set_route(http_request *r, const char *route_label);

/* Answer. `extra_headers` is a NULL-terminated list of "Name: value" or NULL.
 * Content-Length, Date and Connection are added by the server. Copies body.
 * Records the request in metrics (route label, method, status, latency). */
void http_req_respond(http_request *r, int status, const char *content_type,
                      const void *body, size_t len, const char *const *extra_headers);
/* {"error":code,"detail":detail} with Content-Type application/json. */
void http_req_respond_error(http_request *r, int status, const char *code,
                            const char *detail, const char *const *extra_headers);

/* --- streamed answers (what Server-Sent Events need) ---
 *
 * Instead of http_req_respond(): begin sends the status line and headers at
 * once; write queues a piece of the body; end finishes it. HTTP/1.1 clients
 * get chunked transfer coding (they can tell a clean end from a cut one),
 * HTTP/1.0 clients a body ended by the close. A streamed answer is the last
 * on its connection. Metrics record the request at begin.
 *
 * `on_stop(req, why, stop_arg)` is called when the stream cannot go on: the
 * client went away, it reads too slowly (more than max_output_bytes unsent:
 * it is dropped rather than buffered for), or the server is stopping. It is
 * always called from the loop, never from inside these functions, and at
 * most once. The handler then calls http_req_stream_end().
 *
 * Ownership: from begin on the handler must call http_req_stream_end()
 * exactly once, whatever happened; it frees the request. Until then the
 * request counts as in flight, so a stopping server waits for it. */

/* False when the client is gone already: call http_req_stream_end() and
 * stop. `extra_headers` as for http_req_respond. */
PARLEY_MUSTCHECK
bool http_req_stream_begin(http_request *r, int status, const char *content_type,
                           const char *const *extra_headers, http_stream_stop_fn on_stop,
                           void *stop_arg);
/* Queues len bytes (copied; 0 is a no-op). False once the stream has
 * stopped (on_stop is then on its way): stop writing. */
PARLEY_MUSTCHECK bool http_req_stream_write(http_request *r, const void *data, size_t len);
/* Bytes queued and not yet taken by the client (0 once the stream has
 * stopped): a handler with much to send paces itself by it instead of
 * running into max_output_bytes. */
size_t http_req_stream_unsent(const http_request *r);
/* The unsent bytes above which the client is dropped (max_output_bytes). */
size_t http_req_stream_bound(const http_request *r);
/* Ends the body and frees the request; the connection closes once the
 * rest is flushed. */
void http_req_stream_end(http_request *r);

#endif
