/* http_server.c - the inbound HTTP/1.1 server on the libevent loop.
 *
 * Why not evhttp: it answers an oversized body or header block with its own
 * HTML page before user code sees the request, and every error Parley gives
 * must be JSON. So an evconnlistener accepts, each connection is a
 * bufferevent, and http-parser does the parsing (request line, headers,
 * chunked bodies).
 *
 * A connection is always in exactly one state:
 *
 *   IDLE     waiting for the first byte of a request   reading, idle timer
 *   READING  part of a request has arrived              reading, read deadline
 *   HANDLER  the request is with the handler            not reading
 *   WRITING  the answer is being flushed; keep-alive    not reading
 *   CLOSING  the last answer is being flushed           not reading
 *   LINGER   answer sent and write side shut down;      reading (discarded),
 *            wait briefly for the peer to close         linger timer
 *
 * Not reading while a request is with the handler is what keeps pipelined
 * requests in order: the next one stays in the buffers until the answer to
 * this one has been flushed. LINGER exists because closing a socket with
 * unread input makes the kernel send a reset, which can destroy an error
 * answer (a 413, say) before the client has read it.
 *
 * Writes to a peer that has gone away raise SIGPIPE; the daemon ignores that
 * signal at start-up, as any program that writes to sockets must. */
#include "http_server.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>     /* evhttp_uridecode() only */
#include <event2/listener.h>
#include <event2/util.h>
#include <http_parser.h>
#include <jansson.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#define HTTP_LOG "http"
/* How long a closing connection waits for the peer to close its side. */
#define LINGER_MS 1000
/* ... and how much of the peer's input it discards meanwhile. */
#define LINGER_MAX_BYTES (256u * 1024)
/* After accept() fails for lack of descriptors, accepting pauses this long
 * instead of spinning on a listener that stays readable. */
#define ACCEPT_PAUSE_MS 1000
/* http_parser_parse_url() keeps offsets in 16 bits. */
#define MAX_URL_BYTES 65535u
#define PEER_LEN 64

/* ------------------------------------------------------------------ types */

typedef struct strbuf {
	char *data;  /* NUL-terminated when not NULL */
	size_t len;
	size_t cap;
} strbuf;

typedef struct http_header {
	strbuf name;
	strbuf value;
} http_header;

typedef struct http_param {
	char *name;   /* decoded */
	char *value;  /* decoded; "" for a bare name */
} http_param;

typedef enum conn_state {
	CONN_IDLE,
	CONN_READING,
	CONN_HANDLER,
	CONN_WRITING,
	CONN_CLOSING,
	CONN_LINGER
} conn_state;

/* What stopped the parser (the callbacks pause it at these two points). */
typedef enum parse_event {
	PARSE_NONE,
	PARSE_HEADERS_DONE,
	PARSE_MESSAGE_DONE
} parse_event;

typedef struct http_conn http_conn;

struct http_request {
	http_server *srv;
	http_conn *conn;              /* NULL once the connection is gone */
	http_request *prev, *next;    /* srv->inflight, while with the handler */
	const char *method;           /* static, from http-parser */
	const char *method_label;     /* static: the method or "other" */
	const char *route;            /* borrowed static label; "other" by default */
	bool is_head;
	bool keep_alive;
	strbuf url;
	char *path;                   /* owned */
	http_header *headers;         /* owned, n_headers of them */
	size_t n_headers, cap_headers;
	bool in_value;                /* last header callback was a value */
	http_param *params;           /* owned, n_params of them */
	size_t n_params;
	strbuf body;
	char peer[PEER_LEN];
	uint64_t start_us;            /* first byte of the request */
};

struct http_conn {
	http_server *srv;
	http_conn *prev, *next;       /* srv->conns */
	struct bufferevent *bev;
	struct event *timer;          /* idle, read deadline or linger, by state */
	http_parser parser;
	conn_state state;
	parse_event event;
	http_request *req;            /* being read (READING) or with the handler */
	size_t header_bytes;          /* request line + headers read so far */
	bool headers_done;
	bool peer_eof;
	size_t lingered;
	/* Set by a parser callback that refuses the request. */
	int fail_status;
	const char *fail_code;
	char fail_detail[96];
	char peer[PEER_LEN];
};

struct http_server {
	struct event_base *base;
	struct evconnlistener *listener;   /* NULL once stopped */
	struct event *accept_pause;
	http_server_limits limits;
	http_handler_fn handler;
	void *arg;
	int port;
	bool stopping;
	http_conn *conns;
	size_t n_conns;
	http_request *inflight;
	size_t n_inflight;
};

static const http_parser_settings parser_settings;

/* ---------------------------------------------------------------- strbuf */

static void strbuf_reserve(strbuf *b, size_t need)
{
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

static void strbuf_append(strbuf *b, const char *p, size_t n)
{
	strbuf_reserve(b, b->len + n + 1);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static const char *strbuf_str(const strbuf *b)
{
	return b->data ? b->data : "";
}

/* ------------------------------------------------------- small utilities */

static struct timeval ms_to_tv(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	return tv;
}

/* Metrics label for a method: the common ones by name, the rest "other",
 * so an odd client cannot create label values at will. */
static const char *method_label(unsigned method)
{
	switch (method) {
	case HTTP_GET: return "GET";
	case HTTP_HEAD: return "HEAD";
	case HTTP_POST: return "POST";
	case HTTP_PUT: return "PUT";
	case HTTP_DELETE: return "DELETE";
	case HTTP_PATCH: return "PATCH";
	case HTTP_OPTIONS: return "OPTIONS";
	default: return "other";
	}
}

static const char *reason_phrase(int status)
{
	const char *s = http_status_str((enum http_status)status);
	return (s == NULL || s[0] == '<') ? "Unknown" : s;
}

/* IMF-fixdate (RFC 7231); spelled out so the locale cannot change it. */
static void http_date(char *buf, size_t len)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
	         months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* A header line from the handler must not smuggle in a line break. */
static bool header_text_ok(const char *s)
{
	return s != NULL && strpbrk(s, "\r\n") == NULL;
}

/* {"error":code,"detail":detail}; detail omitted when NULL. Returns a
 * malloc'd string (owned by caller) or NULL when out of memory. */
static char *error_json(const char *code, const char *detail)
{
	json_t *o = json_object();
	if (o == NULL)
		return NULL;
	/* json_string() refuses invalid UTF-8; set_new() then drops the key. */
	json_object_set_new(o, "error", json_string(code ? code : "error"));
	if (detail != NULL)
		json_object_set_new(o, "detail", json_string(detail));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

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

/* -------------------------------------------------------------- requests */

static http_request *request_new(http_conn *c)
{
	http_request *r = xcalloc(1, sizeof(*r));
	r->srv = c->srv;
	r->conn = c;
	r->method = "GET";
	r->method_label = "other";
	r->route = "other";
	memcpy(r->peer, c->peer, sizeof(r->peer));
	r->start_us = util_mono_us();
	return r;
}

static void request_free(http_request *r)
{
	if (r == NULL)
		return;
	free(r->url.data);
	free(r->path);
	for (size_t i = 0; i < r->n_headers; i++) {
		free(r->headers[i].name.data);
		free(r->headers[i].value.data);
	}
	free(r->headers);
	for (size_t i = 0; i < r->n_params; i++) {
		free(r->params[i].name);
		free(r->params[i].value);
	}
	free(r->params);
	free(r->body.data);
	free(r);
}

static void inflight_link(http_server *s, http_request *r)
{
	r->prev = NULL;
	r->next = s->inflight;
	if (s->inflight != NULL)
		s->inflight->prev = r;
	s->inflight = r;
	s->n_inflight++;
}

static void inflight_unlink(http_server *s, http_request *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		s->inflight = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	s->n_inflight--;
}

/* `%xx` and `+` decoded; returns a malloc'd string owned by the caller. */
static char *query_decode(const char *s, size_t len)
{
	char *raw = xstrndup(s, len);
	char *dec = evhttp_uridecode(raw, 1, NULL);
	free(raw);
	if (dec == NULL) {
		fputs("parleyd: out of memory\n", stderr);
		abort();
	}
	return dec;
}

/* Split "a=1&b=2" into decoded pairs. A name without '=' gets "". */
static void request_parse_query(http_request *r, const char *q, size_t len)
{
	size_t pos = 0;
	while (pos < len) {
		const char *start = q + pos;
		const char *amp = memchr(start, '&', len - pos);
		size_t n = amp ? (size_t)(amp - start) : len - pos;
		if (n > 0) {
			const char *eq = memchr(start, '=', n);
			size_t name_len = eq ? (size_t)(eq - start) : n;
			r->params = xrealloc(r->params, (r->n_params + 1) * sizeof(*r->params));
			http_param *p = &r->params[r->n_params++];
			p->name = query_decode(start, name_len);
			p->value = eq ? query_decode(eq + 1, n - name_len - 1) : xstrdup("");
		}
		pos += n + 1;
	}
}

/* Splits the request target into path and query. False on a target that
 * http-parser's URL parser does not accept. */
static bool request_parse_url(http_request *r, bool is_connect)
{
	const char *url = strbuf_str(&r->url);
	struct http_parser_url u;
	http_parser_url_init(&u);
	if (http_parser_parse_url(url, r->url.len, is_connect, &u) != 0)
		return false;
	if (u.field_set & (1u << UF_PATH))
		r->path = xstrndup(url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
	else if (is_connect)
		r->path = xstrdup(url);   /* authority form: "host:port" */
	else
		r->path = xstrdup("/");   /* absolute form without a path */
	if (u.field_set & (1u << UF_QUERY))
		request_parse_query(r, url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
	return true;
}

/* http-parser keeps trailing whitespace of a value; a field value does not
 * include it (RFC 7230 section 3.2). */
static void request_trim_headers(http_request *r)
{
	for (size_t i = 0; i < r->n_headers; i++) {
		strbuf *v = &r->headers[i].value;
		while (v->len > 0 && (v->data[v->len - 1] == ' ' || v->data[v->len - 1] == '\t'))
			v->data[--v->len] = '\0';
	}
}

/* -------------------------------------------------------- connection life */

static void conn_set_timer(http_conn *c, int ms)
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
static void conn_close(http_conn *c, const char *why)
{
	http_server *s = c->srv;
	if (why != NULL)
		log_debug(HTTP_LOG, "%s: closing: %s", c->peer, why);
	if (c->req != NULL) {
		if (c->state == CONN_HANDLER)
			c->req->conn = NULL;
		else
			request_free(c->req);
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

/* Queues an answer. The caller sets the state that follows. */
static void conn_write_answer(http_conn *c, int status, const char *content_type,
                              const void *body, size_t len, const char *const *extra_headers,
                              bool keep_alive, bool is_head)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	char date[64];
	http_date(date, sizeof(date));
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: %s\r\n", status,
	                    reason_phrase(status), date, keep_alive ? "keep-alive" : "close");
	/* 204 and 304 never carry a body nor its framing. */
	bool bodyless = status == 204 || status == 304;
	if (!bodyless) {
		if (content_type != NULL) {
			if (header_text_ok(content_type))
				evbuffer_add_printf(out, "Content-Type: %s\r\n", content_type);
			else
				log_warn(HTTP_LOG, "dropping a Content-Type with a line break");
		}
		evbuffer_add_printf(out, "Content-Length: %zu\r\n", len);
	}
	for (size_t i = 0; extra_headers != NULL && extra_headers[i] != NULL; i++) {
		const char *h = extra_headers[i];
		if (!header_text_ok(h) || strchr(h, ':') == NULL) {
			log_warn(HTTP_LOG, "dropping a malformed extra header");
			continue;
		}
		evbuffer_add(out, h, strlen(h));
		evbuffer_add(out, "\r\n", 2);
	}
	evbuffer_add(out, "\r\n", 2);
	if (!bodyless && !is_head && len > 0)
		evbuffer_add(out, body, len);
}

/* Refuses the request being read (or the connection itself) with a JSON
 * error and closes the connection once the answer is out. */
static void conn_fail(http_conn *c, int status, const char *code, const char *detail)
{
	http_request *r = c->req;
	const char *method = r ? r->method_label : "other";
	double seconds = r ? (double)(util_mono_us() - r->start_us) / 1e6 : 0.0;

	log_debug(HTTP_LOG, "%s: %d %s%s%s", c->peer, status, code, detail ? ": " : "",
	          detail ? detail : "");
	metrics_http_observe("other", method, status, seconds);

	char *json = error_json(code, detail);
	conn_write_answer(c, status, "application/json", json ? json : "{}",
	                  json ? strlen(json) : 2, NULL, false, false);
	free(json);
	request_free(r);
	c->req = NULL;
	c->state = CONN_CLOSING;
	evtimer_del(c->timer);
	bufferevent_disable(c->bev, EV_READ);
}

static void conn_process(http_conn *c);

/* Ready for the next request; pipelined bytes may already be buffered. */
static void conn_enter_idle(http_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	if (c->srv->stopping) {
		conn_close(c, NULL);
		return;
	}
	if (c->peer_eof && evbuffer_get_length(in) == 0) {
		conn_close(c, NULL);
		return;
	}
	c->state = CONN_IDLE;
	c->header_bytes = 0;
	c->headers_done = false;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	conn_set_timer(c, c->srv->limits.idle_timeout_ms);
	bufferevent_enable(c->bev, EV_READ);
	conn_process(c);
}

/* The last answer is flushed: stop writing and give the peer a moment to
 * close first, so unread input does not turn our close into a reset. */
static void conn_linger(http_conn *c)
{
	if (c->peer_eof) {
		conn_close(c, NULL);
		return;
	}
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	c->state = CONN_LINGER;
	c->lingered = 0;
	evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
	conn_set_timer(c, LINGER_MS);
	bufferevent_enable(c->bev, EV_READ);
}

/* The whole request is read: hand it over and stop reading until answered. */
static void conn_dispatch(http_conn *c)
{
	http_server *s = c->srv;
	http_request *r = c->req;
	c->state = CONN_HANDLER;
	evtimer_del(c->timer);
	bufferevent_disable(c->bev, EV_READ);
	inflight_link(s, r);
	s->handler(r, s->arg);
	/* The handler may have answered already; the connection is left to the
	 * write callback either way. */
}

/* The request line and headers are in (the parser is paused before the
 * body). Applies the limits and answers Expect. False when the connection
 * was answered with an error. */
static bool conn_headers_done(http_conn *c)
{
	http_server *s = c->srv;
	http_request *r = c->req;
	http_parser *p = &c->parser;
	char detail[96];

	if (c->header_bytes > s->limits.max_header_bytes) {
		snprintf(detail, sizeof(detail), "limit is %zu bytes", s->limits.max_header_bytes);
		conn_fail(c, 431, "headers_too_large", detail);
		return false;
	}
	c->headers_done = true;
	request_trim_headers(r);
	r->method = http_method_str((enum http_method)p->method);
	r->method_label = method_label(p->method);
	r->is_head = p->method == HTTP_HEAD;
	/* Nothing but HTTP is spoken here, so an upgrade ends the connection. */
	r->keep_alive = http_should_keep_alive(p) && !p->upgrade;

	if (r->url.len > MAX_URL_BYTES) {
		conn_fail(c, 414, "uri_too_long", NULL);
		return false;
	}
	if (!request_parse_url(r, p->method == HTTP_CONNECT)) {
		conn_fail(c, 400, "bad_request", "invalid URL");
		return false;
	}

	bool chunked = (p->flags & F_CHUNKED) != 0;
	uint64_t declared = (chunked || p->content_length == ULLONG_MAX) ? 0 : p->content_length;
	if (declared > s->limits.max_body_bytes) {
		snprintf(detail, sizeof(detail), "limit is %zu bytes", s->limits.max_body_bytes);
		conn_fail(c, 413, "body_too_large", detail);
		return false;
	}

	/* RFC 7231 5.1.1: ignore Expect from HTTP/1.0 clients. */
	const char *expect = http_req_header(r, "Expect");
	bool http11 = p->http_major > 1 || (p->http_major == 1 && p->http_minor >= 1);
	if (expect != NULL && http11) {
		if (evutil_ascii_strcasecmp(expect, "100-continue") != 0) {
			conn_fail(c, 417, "expectation_failed", "only 100-continue is supported");
			return false;
		}
		if (chunked || declared > 0) {
			static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
			bufferevent_write(c->bev, cont, sizeof(cont) - 1);
		}
	}
	if (declared > 0)
		strbuf_reserve(&r->body, (size_t)declared + 1);
	return true;
}

/* Feeds buffered input to the parser until a request is complete, the
 * input runs out, or the request is refused. */
static void conn_process(http_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	while (c->state == CONN_IDLE || c->state == CONN_READING) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			return;
		size_t len = v.iov_len;
		size_t limit = c->srv->limits.max_header_bytes;
		bool in_headers = !c->headers_done;
		/* Never feed more header bytes than one past the limit: a client
		 * cannot make us parse an unbounded header block. */
		if (in_headers) {
			size_t room = c->header_bytes < limit ? limit - c->header_bytes : 0;
			if (len > room)
				len = room + 1;
		}

		c->event = PARSE_NONE;
		size_t n = http_parser_execute(&c->parser, &parser_settings, v.iov_base, len);
		evbuffer_drain(in, n);
		if (in_headers)
			c->header_bytes += n;

		if (c->fail_status != 0) {
			conn_fail(c, c->fail_status, c->fail_code, c->fail_detail[0] ? c->fail_detail : NULL);
			return;
		}
		enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
		if (err == HPE_PAUSED) {
			http_parser_pause(&c->parser, 0);
			if (c->event == PARSE_HEADERS_DONE) {
				/* Paused on the final LF, which is still unread. */
				c->header_bytes += 1;
				if (!conn_headers_done(c))
					return;
			} else if (c->event == PARSE_MESSAGE_DONE) {
				conn_dispatch(c);
				return;
			}
			continue;
		}
		if (err == HPE_HEADER_OVERFLOW ||
		    (err == HPE_OK && in_headers && c->header_bytes > limit)) {
			char detail[64];
			snprintf(detail, sizeof(detail), "limit is %zu bytes", limit);
			conn_fail(c, 431, "headers_too_large", detail);
			return;
		}
		if (err != HPE_OK) {
			conn_fail(c, 400, "bad_request", http_errno_description(err));
			return;
		}
	}
}

/* ------------------------------------------------------ parser callbacks */

static int on_message_begin(http_parser *p)
{
	http_conn *c = p->data;
	c->state = CONN_READING;
	c->req = request_new(c);
	conn_set_timer(c, c->srv->limits.read_timeout_ms);
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	http_conn *c = p->data;
	strbuf_append(&c->req->url, at, len);
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	http_conn *c = p->data;
	http_request *r = c->req;
	if (c->headers_done)
		return 0;   /* trailers of a chunked body: not kept */
	if (r->n_headers == 0 || r->in_value) {
		if (r->n_headers == r->cap_headers) {
			r->cap_headers = r->cap_headers ? 2 * r->cap_headers : 16;
			r->headers = xrealloc(r->headers, r->cap_headers * sizeof(*r->headers));
		}
		memset(&r->headers[r->n_headers++], 0, sizeof(http_header));
		r->in_value = false;
	}
	strbuf_append(&r->headers[r->n_headers - 1].name, at, len);
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	http_conn *c = p->data;
	http_request *r = c->req;
	if (c->headers_done || r->n_headers == 0)
		return 0;
	strbuf_append(&r->headers[r->n_headers - 1].value, at, len);
	r->in_value = true;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	http_conn *c = p->data;
	c->event = PARSE_HEADERS_DONE;
	http_parser_pause(p, 1);
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	http_conn *c = p->data;
	http_request *r = c->req;
	size_t limit = c->srv->limits.max_body_bytes;
	/* Content-Length was checked already; this catches chunked bodies. */
	if (len > limit || r->body.len > limit - len) {
		c->fail_status = 413;
		c->fail_code = "body_too_large";
		snprintf(c->fail_detail, sizeof(c->fail_detail), "limit is %zu bytes", limit);
		return -1;
	}
	strbuf_append(&r->body, at, len);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	http_conn *c = p->data;
	c->event = PARSE_MESSAGE_DONE;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ------------------------------------------------------- event callbacks */

static void on_read(struct bufferevent *bev, void *arg)
{
	http_conn *c = arg;
	if (c->state == CONN_LINGER) {
		struct evbuffer *in = bufferevent_get_input(bev);
		c->lingered += evbuffer_get_length(in);
		evbuffer_drain(in, evbuffer_get_length(in));
		if (c->lingered > LINGER_MAX_BYTES)
			conn_close(c, "peer kept sending after the last answer");
		return;
	}
	conn_process(c);
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
		conn_close(c, why);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		conn_close(c, "write timeout: the peer does not read");
		return;
	}
	if (what & BEV_EVENT_EOF) {
		c->peer_eof = true;
		switch (c->state) {
		case CONN_IDLE:
		case CONN_LINGER:
			conn_close(c, NULL);
			return;
		case CONN_READING:
			conn_close(c, "peer closed in the middle of a request");
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
		conn_close(c, "idle timeout");
		return;
	case CONN_READING:
		conn_fail(c, 408, "request_timeout", NULL);
		return;
	case CONN_LINGER:
		conn_close(c, NULL);
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
		conn_fail(c, 503, "overloaded", "too many connections");
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
		/* Others finish what they do and close after their answer. */
		if (c->state == CONN_IDLE)
			conn_close(c, NULL);
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
		conn_close(s->conns, NULL);
	while (s->inflight != NULL) {
		http_request *r = s->inflight;
		inflight_unlink(s, r);
		request_free(r);
	}
	event_free(s->accept_pause);
	free(s);
}

/* -------------------------------------------------------------- requests */

const char *http_req_method(const http_request *r)
{
	return r->method;
}

const char *http_req_path(const http_request *r)
{
	return r->path ? r->path : "/";
}

const char *http_req_query(const http_request *r, const char *name)
{
	for (size_t i = 0; i < r->n_params; i++)
		if (strcmp(r->params[i].name, name) == 0)
			return r->params[i].value;
	return NULL;
}

const char *http_req_header(const http_request *r, const char *name)
{
	for (size_t i = 0; i < r->n_headers; i++)
		if (evutil_ascii_strcasecmp(strbuf_str(&r->headers[i].name), name) == 0)
			return strbuf_str(&r->headers[i].value);
	return NULL;
}

const unsigned char *http_req_body(const http_request *r, size_t *len)
{
	if (len != NULL)
		*len = r->body.len;
	return (const unsigned char *)strbuf_str(&r->body);
}

const char *http_req_peer(const http_request *r)
{
	return r->peer;
}

void http_req_set_route(http_request *r, const char *route_label)
{
	r->route = route_label ? route_label : "other";
}

void http_req_respond(http_request *r, int status, const char *content_type,
                      const void *body, size_t len, const char *const *extra_headers)
{
	http_server *s = r->srv;
	if (status < 200 || status > 599) {
		log_warn(HTTP_LOG, "handler answered with status %d; sending 500", status);
		status = 500;
	}
	metrics_http_observe(r->route, r->method_label, status,
	                     (double)(util_mono_us() - r->start_us) / 1e6);
	inflight_unlink(s, r);

	http_conn *c = r->conn;
	if (c == NULL) {
		log_debug(HTTP_LOG, "%s: client went away; answer %d dropped", r->peer, status);
		request_free(r);
		return;
	}
	bool keep_alive = r->keep_alive && !s->stopping && !c->peer_eof;
	conn_write_answer(c, status, content_type, body, len, extra_headers, keep_alive, r->is_head);
	c->req = NULL;
	c->state = keep_alive ? CONN_WRITING : CONN_CLOSING;
	request_free(r);
}

void http_req_respond_error(http_request *r, int status, const char *code,
                            const char *detail, const char *const *extra_headers)
{
	char *json = error_json(code, detail);
	http_req_respond(r, status, "application/json", json ? json : "{}",
	                 json ? strlen(json) : 2, extra_headers);
	free(json);
}
