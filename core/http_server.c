/* http_server.c - the inbound HTTP/1.1 server: listening and connections.
 *
 * Why not evhttp: it answers an oversized body or header block with its own
 * HTML page before user code sees the request, and every error Parley gives
 * must be JSON. So an evconnlistener accepts, each connection is a
 * bufferevent, and http-parser does the parsing (request line, headers,
 * chunked bodies).
 *
 * A connection is always in exactly one state:
 *
 *   IDLE       waiting for the first byte of a request  reading, idle timer
 *   READING    part of a request has arrived             reading, read deadline
 *   HANDLER    the request is with the handler           not reading
 *   WRITING    the answer is being flushed; keep-alive   not reading
 *   CLOSING    the last answer is being flushed          not reading
 *   STREAMING  a streamed answer is being sent           reading (discarded,
 *              (http_stream.c); the last on the conn.    to notice a close)
 *   LINGER     answer sent and write side shut down;     reading (discarded),
 *              wait for the peer to close, bounded in    linger timer
 *              time and bytes (lingering close)
 *
 * Not reading while a request is with the handler is what keeps pipelined
 * requests in order: the next one stays in the buffers until the answer to
 * this one has been flushed. LINGER exists because closing a socket with
 * unread input makes the kernel send a reset, which can destroy an error
 * answer (a 413, say) before the client has read it: a client that sends a
 * large body without waiting for 100 Continue is still uploading when its
 * 413 is out.
 *
 * Writes to a peer that has gone away raise SIGPIPE; the daemon ignores that
 * signal at start-up, as any program that writes to sockets must. */
#include "http_conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/util.h>

#include "log.h"
#include "metrics.h"

/* Lingering close, when the limits leave it at 0: a closing connection
 * reads and discards the peer's input for at most LINGER_MS in all, gives
 * up after LINGER_IDLE_MS without input, and after LINGER_MAX_BYTES. The
 * byte bound is well above a refused body of a few times the default
 * max_body_bytes (4 MiB), so its sender still reads the 413, not a reset. */
#define LINGER_MS 5000
#define LINGER_IDLE_MS 1000
#define LINGER_MAX_BYTES (64u * 1024 * 1024)
/* After accept() fails for lack of descriptors, accepting pauses this long
 * instead of spinning on a listener that stays readable. */
#define ACCEPT_PAUSE_MS 1000

/* ------------------------------------------------------- small utilities */

static void format_peer(const struct sockaddr *sa, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		evutil_inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		port = ntohs(in->sin_port);
		snprintf(out, len, "%s:%d", ip, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		evutil_inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		port = ntohs(in6->sin6_port);
		snprintf(out, len, "[%s]:%d", ip, port);
	} else {
		snprintf(out, len, "unknown");
	}
}

/* -------------------------------------------------------- connection life */

void http_conn_set_timer(http_conn *c, int ms)
{
	if (ms > 0) {
		struct timeval tv = ms_to_tv(ms);
		evtimer_add(c->timer, &tv);
	} else {
		evtimer_del(c->timer);
	}
}

static void conn_apply_write_timeout(http_conn *c)
{
	int ms = c->srv->limits.write_timeout_ms;
	struct timeval tv = ms_to_tv(ms);
	bufferevent_set_timeouts(c->bev, NULL, ms > 0 ? &tv : NULL);
}

/* Frees the connection. A request with the handler stays valid (the
 * handler still owns the obligation to answer it); the answer is dropped. */
void http_conn_close(http_conn *c, const char *why)
{
	http_server *s = c->srv;
	if (why != NULL)
		log_debug(HTTP_LOG, "%s: closing: %s", c->peer, why);
	if (c->req != NULL) {
		if (c->state == CONN_HANDLER || c->state == CONN_STREAMING) {
			c->req->conn = NULL;
			http_stream_stop(c->req, HTTP_STREAM_CLIENT_GONE);   /* no-op unless streaming */
		} else {
			http_request_free(c->req);
		}
		c->req = NULL;
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	s->n_conns--;
	event_free(c->timer);
	bufferevent_free(c->bev);
	free(c);
}

/* Refuses the request being read (or the connection itself) with a JSON
 * error and closes the connection once the answer is out. */
void http_conn_fail(http_conn *c, int status, const char *code, const char *detail)
{
	http_request *r = c->req;
	const char *method = r ? r->method_label : "other";
	double seconds = r ? (double)(util_mono_us() - r->start_us) / 1e6 : 0.0;

	log_debug(HTTP_LOG, "%s: %d %s%s%s", c->peer, status, code, detail ? ": " : "",
	          detail ? detail : "");
	metrics_http_observe("other", method, status, seconds);

	char *json = http_error_json(code, detail);
	http_conn_write_answer(c, status, "application/json", json ? json : "{}",
	                  json ? strlen(json) : 2, NULL, false, false);
	free(json);
	http_request_free(r);
	c->req = NULL;
	c->state = CONN_CLOSING;
	evtimer_del(c->timer);
	bufferevent_disable(c->bev, EV_READ);
}

/* Ready for the next request; pipelined bytes may already be buffered. */
static void conn_enter_idle(http_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	if (c->srv->stopping) {
		http_conn_close(c, NULL);
		return;
	}
	if (c->peer_eof && evbuffer_get_length(in) == 0) {
		http_conn_close(c, NULL);
		return;
	}
	c->state = CONN_IDLE;
	http_conn_parser_reset(c);
	http_conn_set_timer(c, c->srv->limits.idle_timeout_ms);
	bufferevent_enable(c->bev, EV_READ);
	http_conn_process(c);
}

static int limit_or(int value, int fallback)
{
	return value > 0 ? value : fallback;
}

/* LINGER: drops what the peer sent and closes once it sent too much or for
 * too long; else waits for more, or for its close, until the next bound. */
static void linger_discard(http_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t max_bytes = c->srv->limits.linger_max_bytes ? c->srv->limits.linger_max_bytes
	                                                   : LINGER_MAX_BYTES;
	c->lingered += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
	uint64_t now = util_mono_us();
	if (c->lingered > max_bytes || now >= c->linger_until_us) {
		http_conn_close(c, "peer kept sending after the last answer");
		return;
	}
	int wait_ms = limit_or(c->srv->limits.linger_idle_ms, LINGER_IDLE_MS);
	uint64_t left_ms = (c->linger_until_us - now + 999) / 1000;
	http_conn_set_timer(c, left_ms < (uint64_t)wait_ms ? (int)left_ms : wait_ms);
}

/* The last answer is flushed: stop writing and give the peer time to close
 * first, reading (and dropping) what it still sends, the rest of a refused
 * body say. Closing with unread input would make the kernel send a reset,
 * which destroys the answer before a client that is still uploading reads
 * it (nginx's lingering close). */
static void conn_linger(http_conn *c)
{
	if (c->peer_eof) {
		http_conn_close(c, NULL);
		return;
	}
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	c->state = CONN_LINGER;
	c->lingered = 0;
	c->linger_until_us = util_mono_us() + (uint64_t)limit_or(c->srv->limits.linger_ms, LINGER_MS) * 1000;
	linger_discard(c);
	bufferevent_enable(c->bev, EV_READ);
}

void http_conn_finish(http_conn *c)
{
	c->state = CONN_CLOSING;
	evtimer_del(c->timer);
	bufferevent_disable(c->bev, EV_READ);
	/* Nothing left to flush means no write callback will come. */
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_linger(c);
}

/* ------------------------------------------------------- event callbacks */

static void on_read(struct bufferevent *bev, void *arg)
{
	http_conn *c = arg;
	if (c->state == CONN_LINGER) {
		linger_discard(c);
		return;
	}
	if (c->state == CONN_STREAMING) {
		/* Read only to notice a close; a streamed answer is the last. */
		struct evbuffer *in = bufferevent_get_input(bev);
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	http_conn_process(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	http_conn *c = arg;
	/* Called whenever the output buffer drains, e.g. after a 100 Continue;
	 * only the end of an answer moves the connection on. */
	if (c->state == CONN_WRITING)
		conn_enter_idle(c);
	else if (c->state == CONN_CLOSING)
		conn_linger(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	http_conn *c = arg;
	if (what & BEV_EVENT_ERROR) {
		int err = EVUTIL_SOCKET_ERROR();
		char why[128];
		snprintf(why, sizeof(why), "socket error: %s", evutil_socket_error_to_string(err));
		http_conn_close(c, why);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (c->state == CONN_STREAMING)
			http_stream_stop(c->req, HTTP_STREAM_TOO_SLOW);
		http_conn_close(c, "write timeout: the peer does not read");
		return;
	}
	if (what & BEV_EVENT_EOF) {
		c->peer_eof = true;
		switch (c->state) {
		case CONN_IDLE:
		case CONN_LINGER:
			http_conn_close(c, NULL);
			return;
		case CONN_READING:
			http_conn_close(c, "peer closed in the middle of a request");
			return;
		case CONN_STREAMING:
			http_conn_close(c, "peer closed during a streamed answer");
			return;
		case CONN_HANDLER:
		case CONN_WRITING:
		case CONN_CLOSING:
			/* Half-closed: the answer still goes out, then we close. */
			return;
		}
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	http_conn *c = arg;
	switch (c->state) {
	case CONN_IDLE:
		http_conn_close(c, "idle timeout");
		return;
	case CONN_READING:
		http_conn_fail(c, 408, "request_timeout", NULL);
		return;
	case CONN_LINGER:
		/* Quiet for linger_idle_ms, or still sending at the deadline. */
		http_conn_close(c, util_mono_us() >= c->linger_until_us
		                   ? "peer kept sending after the last answer" : NULL);
		return;
	default:
		return;
	}
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
	http_server *s = arg;
	struct bufferevent *bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		evutil_closesocket(fd);
		log_warn(HTTP_LOG, "cannot set up a connection (out of memory?)");
		return;
	}
	int one = 1;
	/* Answers are small and written whole; do not hold them back. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	http_conn *c = xcalloc(1, sizeof(*c));
	c->srv = s;
	c->bev = bev;
	c->timer = evtimer_new(s->base, on_timer, c);
	if (c->timer == NULL) {
		bufferevent_free(bev);
		free(c);
		log_warn(HTTP_LOG, "cannot set up a connection (out of memory?)");
		return;
	}
	format_peer(sa, c->peer, sizeof(c->peer));
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	bufferevent_setcb(bev, on_read, on_write, on_event, c);
	conn_apply_write_timeout(c);

	if (s->limits.max_connections > 0 && s->n_conns > (size_t)s->limits.max_connections) {
		http_conn_fail(c, 503, "overloaded", "too many connections");
		return;
	}
	conn_enter_idle(c);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	http_server *s = arg;
	if (s->listener != NULL && !s->stopping)
		evconnlistener_enable(s->listener);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	http_server *s = arg;
	int err = EVUTIL_SOCKET_ERROR();
	log_warn(HTTP_LOG, "accept failed: %s", evutil_socket_error_to_string(err));
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		struct timeval tv = ms_to_tv(ACCEPT_PAUSE_MS);
		evconnlistener_disable(l);
		evtimer_add(s->accept_pause, &tv);
	}
}

/* ---------------------------------------------------------------- server */

/* "cannot VERB HOST:PORT: REASON" into err. */
static void set_err(char *err, size_t errlen, const char *verb, const char *host, int port,
                    const char *reason)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "cannot %s %s:%d: %s", verb, host, port, reason);
}

http_server *http_server_new(struct event_base *base, const char *host, int port,
                             const http_server_limits *limits,
                             http_handler_fn handler, void *arg,
                             char *err, size_t errlen)
{
	const char *shown = host ? host : "*";
	if (port < 0 || port > 65535) {
		set_err(err, errlen, "listen on", shown, port, "port out of range");
		return NULL;
	}
	if (base == NULL || limits == NULL || handler == NULL) {
		set_err(err, errlen, "listen on", shown, port, "missing argument");
		return NULL;
	}

	/* Accept "[::1]" as well as "::1". */
	char name[256];
	const char *node = NULL;
	if (host != NULL && host[0] != '\0') {
		size_t hl = strlen(host);
		if (hl >= sizeof(name)) {
			set_err(err, errlen, "listen on", shown, port, "host name too long");
			return NULL;
		}
		if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
			memcpy(name, host + 1, hl - 2);
			name[hl - 2] = '\0';
		} else {
			memcpy(name, host, hl + 1);
		}
		node = name;
	}
	char service[16];
	snprintf(service, sizeof(service), "%d", port);

	struct evutil_addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_PASSIVE;
	int gai = evutil_getaddrinfo(node, service, &hints, &res);
	if (gai != 0) {
		set_err(err, errlen, "resolve", shown, port, evutil_gai_strerror(gai));
		return NULL;
	}

	http_server *s = xcalloc(1, sizeof(*s));
	s->base = base;
	s->limits = *limits;
	s->handler = handler;
	s->arg = arg;

	/* "localhost" may resolve to both ::1 and 127.0.0.1: take the first
	 * address that binds. */
	char reason[128] = "no address";
	for (struct evutil_addrinfo *ai = res; ai != NULL && s->listener == NULL; ai = ai->ai_next) {
		s->listener = evconnlistener_new_bind(base, on_accept, s,
		                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
		                                      LEV_OPT_CLOSE_ON_EXEC,
		                                      SOMAXCONN, ai->ai_addr, (int)ai->ai_addrlen);
		if (s->listener == NULL)
			snprintf(reason, sizeof(reason), "%s",
			         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	}
	evutil_freeaddrinfo(res);
	if (s->listener == NULL) {
		set_err(err, errlen, "listen on", shown, port, reason);
		free(s);
		return NULL;
	}
	evconnlistener_set_error_cb(s->listener, on_accept_error);

	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(evconnlistener_get_fd(s->listener), (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	s->accept_pause = evtimer_new(base, on_accept_resume, s);
	if (s->accept_pause == NULL) {
		set_err(err, errlen, "listen on", shown, port, "out of memory");
		evconnlistener_free(s->listener);
		free(s);
		return NULL;
	}
	return s;
}

int http_server_port(const http_server *s)
{
	return s->port;
}

void http_server_set_limits(http_server *s, const http_server_limits *limits)
{
	s->limits = *limits;
	/* Read and idle timers pick the new values up at their next start. */
	for (http_conn *c = s->conns; c != NULL; c = c->next)
		conn_apply_write_timeout(c);
}

void http_server_stop_accepting(http_server *s)
{
	s->stopping = true;
	if (s->listener != NULL) {
		/* Closing the socket (not just pausing it) makes new clients see a
		 * refusal instead of waiting in the backlog. */
		evconnlistener_free(s->listener);
		s->listener = NULL;
	}
	evtimer_del(s->accept_pause);
	http_conn *next;
	for (http_conn *c = s->conns; c != NULL; c = next) {
		next = c->next;
		/* Streams are told to end; others finish what they do and close
		 * after their answer. */
		if (c->state == CONN_IDLE)
			http_conn_close(c, NULL);
		else if (c->state == CONN_STREAMING)
			http_stream_stop(c->req, HTTP_STREAM_SHUTDOWN);
	}
}

size_t http_server_inflight(const http_server *s)
{
	return s->n_inflight;
}

size_t http_server_connections(const http_server *s)
{
	return s->n_conns;
}

void http_server_free(http_server *s)
{
	if (s == NULL)
		return;
	if (s->listener != NULL)
		evconnlistener_free(s->listener);
	while (s->conns != NULL)
		http_conn_close(s->conns, NULL);
	while (s->inflight != NULL) {
		http_request *r = s->inflight;
		http_inflight_unlink(s, r);
		http_request_free(r);
	}
	event_free(s->accept_pause);
	free(s);
}

