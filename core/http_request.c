/* http_request.c - what a handler sees of a request, and how it answers.
 *
 * A request belongs to the server until it is handed to the handler; from
 * then on the handler owns the duty to answer it exactly once, and the
 * answer frees it. If the client goes away meanwhile, the request stays
 * valid and the answer is dropped. */
#include "http_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <event2/buffer.h>
#include <event2/util.h>
#include <jansson.h>

#include "log.h"
#include "metrics.h"

/* ------------------------------------------------------- small utilities */

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

char *http_error_json(const char *code, const char *detail)
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

/* -------------------------------------------------------------- requests */

http_request *http_request_new(http_conn *c)
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

void http_request_free(http_request *r)
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
	if (r->stop_ev != NULL)
		event_free(r->stop_ev);
	free(r);
}

void http_inflight_link(http_server *s, http_request *r)
{
	r->prev = NULL;
	r->next = s->inflight;
	if (s->inflight != NULL)
		s->inflight->prev = r;
	s->inflight = r;
	s->n_inflight++;
}

void http_inflight_unlink(http_server *s, http_request *r)
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

/* --------------------------------------------------------------- answers */

void http_write_head(struct evbuffer *out, int status, const char *content_type,
                     const char *framing, const char *const *extra_headers, bool keep_alive)
{
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
		if (framing != NULL)
			evbuffer_add_printf(out, "%s\r\n", framing);
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
}

void http_conn_write_answer(http_conn *c, int status, const char *content_type,
                            const void *body, size_t len, const char *const *extra_headers,
                            bool keep_alive, bool is_head)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	char framing[48];
	snprintf(framing, sizeof(framing), "Content-Length: %zu", len);
	http_write_head(out, status, content_type, framing, extra_headers, keep_alive);
	bool bodyless = status == 204 || status == 304;
	if (!bodyless && !is_head && len > 0)
		evbuffer_add(out, body, len);
}

/* --------------------------------------------------------------- the API */

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

size_t http_req_query_count(const http_request *r)
{
	return r->n_params;
}

void http_req_query_at(const http_request *r, size_t i, const char **name, const char **value)
{
	*name = r->params[i].name;
	*value = r->params[i].value;
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
	if (r->streaming) {
		log_warn(HTTP_LOG, "http_req_respond on a streamed answer; ignored (end it instead)");
		return;
	}
	if (status < 200 || status > 599) {
		log_warn(HTTP_LOG, "handler answered with status %d; sending 500", status);
		status = 500;
	}
	metrics_http_observe(r->route, r->method_label, status,
	                     (double)(util_mono_us() - r->start_us) / 1e6);
	http_inflight_unlink(s, r);

	http_conn *c = r->conn;
	if (c == NULL) {
		log_debug(HTTP_LOG, "%s: client went away; answer %d dropped", r->peer, status);
		http_request_free(r);
		return;
	}
	bool keep_alive = r->keep_alive && !s->stopping && !c->peer_eof;
	http_conn_write_answer(c, status, content_type, body, len, extra_headers, keep_alive, r->is_head);
	c->req = NULL;
	c->state = keep_alive ? CONN_WRITING : CONN_CLOSING;
	http_request_free(r);
}

void http_req_respond_error(http_request *r, int status, const char *code,
                            const char *detail, const char *const *extra_headers)
{
	char *json = http_error_json(code, detail);
	http_req_respond(r, status, "application/json", json ? json : "{}",
	                 json ? strlen(json) : 2, extra_headers);
	free(json);
}
