/* http_parse.c - turning bytes into requests with http-parser.
 *
 * The parser callbacks collect the request line, headers and body; they
 * pause the parser after the headers (to apply the limits and answer
 * Expect before any body byte is read) and after the message (to hand the
 * request over). Header bytes are fed at most one past the limit, so no
 * client can make us parse an unbounded header block. */
#include "http_conn.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <event2/buffer.h>
#include <event2/http.h>     /* evhttp_uridecode() only */
#include <event2/util.h>

#include "log.h"

/* http_parser_parse_url() keeps offsets in 16 bits. */
#define MAX_URL_BYTES 65535u

static const http_parser_settings parser_settings;

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

/* ------------------------------------------------------------ the request */

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

/* -------------------------------------------------------------- parsing */

/* The whole request is read: hand it over and stop reading until answered. */
static void conn_dispatch(http_conn *c)
{
	http_server *s = c->srv;
	http_request *r = c->req;
	c->state = CONN_HANDLER;
	evtimer_del(c->timer);
	bufferevent_disable(c->bev, EV_READ);
	http_inflight_link(s, r);
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
		http_conn_fail(c, 431, "headers_too_large", detail);
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
		http_conn_fail(c, 414, "uri_too_long", NULL);
		return false;
	}
	if (!request_parse_url(r, p->method == HTTP_CONNECT)) {
		http_conn_fail(c, 400, "bad_request", "invalid URL");
		return false;
	}

	bool chunked = (p->flags & F_CHUNKED) != 0;
	uint64_t declared = (chunked || p->content_length == ULLONG_MAX) ? 0 : p->content_length;
	if (declared > s->limits.max_body_bytes) {
		snprintf(detail, sizeof(detail), "limit is %zu bytes", s->limits.max_body_bytes);
		http_conn_fail(c, 413, "body_too_large", detail);
		return false;
	}

	/* RFC 7231 5.1.1: ignore Expect from HTTP/1.0 clients. */
	const char *expect = http_req_header(r, "Expect");
	bool http11 = p->http_major > 1 || (p->http_major == 1 && p->http_minor >= 1);
	r->http11 = http11;
	if (expect != NULL && http11) {
		if (evutil_ascii_strcasecmp(expect, "100-continue") != 0) {
			http_conn_fail(c, 417, "expectation_failed", "only 100-continue is supported");
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

/* See http_conn.h. */
void http_conn_process(http_conn *c)
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
			http_conn_fail(c, c->fail_status, c->fail_code, c->fail_detail[0] ? c->fail_detail : NULL);
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
			http_conn_fail(c, 431, "headers_too_large", detail);
			return;
		}
		if (err != HPE_OK) {
			http_conn_fail(c, 400, "bad_request", http_errno_description(err));
			return;
		}
	}
}

/* ------------------------------------------------------ parser callbacks */

static int on_message_begin(http_parser *p)
{
	http_conn *c = p->data;
	c->state = CONN_READING;
	c->req = http_request_new(c);
	http_conn_set_timer(c, c->srv->limits.read_timeout_ms);
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


void http_conn_parser_reset(http_conn *c)
{
	c->header_bytes = 0;
	c->headers_done = false;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
}
