/* test_http_client.c - outbound HTTP on the loop, against a peer served by
 * libevent's evhttp (and one raw socket peer) on 127.0.0.1 in the same loop.
 *
 * Each test starts a request, turns the loop until its callback ran (or a
 * guard timer fires), then checks what the callback saw and what the peer
 * received. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "http_client.h"
#include "smtp_client.h"
#include "log.h"
#include "util.h"

#define MAX_RESPONSE_BYTES (64 * 1024)
#define DEFAULT_TIMEOUT_MS 5000
#define BIG_BODY_BYTES 100000

/* ------------------------------------------------------------ the peer */

static const unsigned char post_body[] = "{\"text\":\"h\xc3\xa9llo\"}\0after-nul";
#define POST_BODY_LEN (sizeof(post_body) - 1)

static struct {
	struct event_base *base;
	struct evhttp *http;
	int port;

	/* What /echo saw. */
	int echo_requests;
	bool echo_method_ok, echo_body_ok, echo_custom_header_ok, echo_content_type_ok;
	bool echo_had_expect;

	/* What /size saw. */
	size_t size_received;
	bool size_had_expect;

	/* Client ports seen by /count: one per TCP connection. */
	uint16_t ports[64];
	int n_count_requests;

	/* The raw peer (for a 1xx before the final response). */
	struct evconnlistener *raw;
	int raw_port;
	struct bufferevent *raw_bev;
} peer;

static void reply_text(struct evhttp_request *req, int code, const char *text)
{
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, text, strlen(text));
	evhttp_send_reply(req, code, code == 200 ? "OK" : "Whatever", b);
	evbuffer_free(b);
}

static void on_hello(struct evhttp_request *req, void *arg)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "X-Reply-Token", "abc123");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
	reply_text(req, 200, "hello world");
}

static void on_echo(struct evhttp_request *req, void *arg)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(body);
	unsigned char *bytes = evbuffer_pullup(body, -1);
	const char *custom = evhttp_find_header(in, "X-Custom");
	const char *ctype = evhttp_find_header(in, "Content-Type");

	peer.echo_requests++;
	peer.echo_method_ok = evhttp_request_get_command(req) == EVHTTP_REQ_POST;
	peer.echo_body_ok = len == POST_BODY_LEN && memcmp(bytes, post_body, len) == 0;
	peer.echo_custom_header_ok = custom != NULL && strcmp(custom, "value-1") == 0;
	peer.echo_content_type_ok = ctype != NULL && strcmp(ctype, "application/json") == 0;
	peer.echo_had_expect = evhttp_find_header(in, "Expect") != NULL;

	struct evbuffer *out = evbuffer_new();
	evbuffer_add(out, bytes, len);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Location", "/things/1");
	evhttp_send_reply(req, 201, "Created", out);
	evbuffer_free(out);
}

static void on_size(struct evhttp_request *req, void *arg)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	peer.size_received = evbuffer_get_length(evhttp_request_get_input_buffer(req));
	peer.size_had_expect = evhttp_find_header(in, "Expect") != NULL;
	reply_text(req, 200, "ok");
}

/* Replies "<METHOD> <body length>". */
static void on_method(struct evhttp_request *req, void *arg)
{
	static const struct { enum evhttp_cmd_type cmd; const char *name; } names[] = {
		{ EVHTTP_REQ_GET, "GET" }, { EVHTTP_REQ_POST, "POST" }, { EVHTTP_REQ_PUT, "PUT" },
		{ EVHTTP_REQ_DELETE, "DELETE" }, { EVHTTP_REQ_PATCH, "PATCH" },
		{ EVHTTP_REQ_HEAD, "HEAD" },
	};
	const char *name = "?";
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].cmd == evhttp_request_get_command(req))
			name = names[i].name;
	char text[64];
	snprintf(text, sizeof(text), "%s %zu", name,
	         evbuffer_get_length(evhttp_request_get_input_buffer(req)));
	reply_text(req, 200, text);
}

static void on_fail(struct evhttp_request *req, void *arg)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "30");
	reply_text(req, 500, "{\"error\":\"boom\"}");
}

/* Never answers: evhttp frees the request when the client goes away. */
static void on_hang(struct evhttp_request *req, void *arg)
{
}

static void on_big(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = evbuffer_new();
	char chunk[1000];
	memset(chunk, 'b', sizeof(chunk));
	for (int i = 0; i < BIG_BODY_BYTES / (int)sizeof(chunk); i++)
		evbuffer_add(out, chunk, sizeof(chunk));
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

/* The same size, chunked: the length is not announced up front. */
static void on_big_chunked(struct evhttp_request *req, void *arg)
{
	evhttp_send_reply_start(req, 200, "OK");
	char chunk[1000];
	memset(chunk, 'c', sizeof(chunk));
	for (int i = 0; i < BIG_BODY_BYTES / (int)sizeof(chunk); i++) {
		struct evbuffer *out = evbuffer_new();
		evbuffer_add(out, chunk, sizeof(chunk));
		evhttp_send_reply_chunk(req, out);
		evbuffer_free(out);
	}
	evhttp_send_reply_end(req);
}

/* Exactly the cap: still allowed. */
static void on_exact(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = evbuffer_new();
	char *buf = malloc(MAX_RESPONSE_BYTES);
	memset(buf, 'e', MAX_RESPONSE_BYTES);
	evbuffer_add(out, buf, MAX_RESPONSE_BYTES);
	free(buf);
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

static void on_count(struct evhttp_request *req, void *arg)
{
	char *addr;
	ev_uint16_t port;
	evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr, &port);
	if (peer.n_count_requests < (int)(sizeof(peer.ports) / sizeof(peer.ports[0])))
		peer.ports[peer.n_count_requests] = port;
	peer.n_count_requests++;
	reply_text(req, 200, "ok");
}

static int distinct_ports(void)
{
	int distinct = 0;
	for (int i = 0; i < peer.n_count_requests; i++) {
		bool seen = false;
		for (int j = 0; j < i; j++)
			seen = seen || peer.ports[j] == peer.ports[i];
		distinct += !seen;
	}
	return distinct;
}

/* Raw peer: an informational 100 with its own header, then the real answer. */
static const char raw_reply[] =
	"HTTP/1.1 100 Continue\r\n"
	"X-Interim: yes\r\n"
	"\r\n"
	"HTTP/1.1 200 OK\r\n"
	"Content-Length: 2\r\n"
	"X-Final:   padded value  \r\n"
	"connection: close\r\n"
	"\r\n"
	"ok";

static void raw_on_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void raw_on_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		bufferevent_free(bev);
		peer.raw_bev = NULL;
	}
}

static void raw_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int len, void *arg)
{
	struct bufferevent *bev = bufferevent_socket_new(peer.base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(bev, raw_on_read, NULL, raw_on_event, NULL);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	bufferevent_write(bev, raw_reply, strlen(raw_reply));
	if (peer.raw_bev != NULL)
		bufferevent_free(peer.raw_bev);
	peer.raw_bev = bev;
}

static int bound_port(evutil_socket_t fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

/* A port nothing listens on: bind one, note it, close it. */
static int closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = 0 };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	int port = bound_port(fd);
	close(fd);
	return port;
}

static int setup(void **state)
{
	memset(&peer, 0, sizeof(peer));
	peer.base = event_base_new();
	assert_non_null(peer.base);

	peer.http = evhttp_new(peer.base);
	evhttp_set_allowed_methods(peer.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
	                           EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD);
	evhttp_set_cb(peer.http, "/hello", on_hello, NULL);
	evhttp_set_cb(peer.http, "/echo", on_echo, NULL);
	evhttp_set_cb(peer.http, "/method", on_method, NULL);
	evhttp_set_cb(peer.http, "/size", on_size, NULL);
	evhttp_set_cb(peer.http, "/fail", on_fail, NULL);
	evhttp_set_cb(peer.http, "/hang", on_hang, NULL);
	evhttp_set_cb(peer.http, "/big", on_big, NULL);
	evhttp_set_cb(peer.http, "/bigchunked", on_big_chunked, NULL);
	evhttp_set_cb(peer.http, "/exact", on_exact, NULL);
	evhttp_set_cb(peer.http, "/count", on_count, NULL);
	struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(peer.http, "127.0.0.1", 0);
	assert_non_null(bs);
	peer.port = bound_port(evhttp_bound_socket_get_fd(bs));

	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = 0 };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	peer.raw = evconnlistener_new_bind(peer.base, raw_on_accept, NULL,
	                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
	                                   (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(peer.raw);
	peer.raw_port = bound_port(evconnlistener_get_fd(peer.raw));

	assert_true(http_client_init(peer.base, DEFAULT_TIMEOUT_MS, MAX_RESPONSE_BYTES));
	return 0;
}

static int teardown(void **state)
{
	http_client_shutdown();
	if (peer.raw_bev != NULL)
		bufferevent_free(peer.raw_bev);
	evconnlistener_free(peer.raw);
	evhttp_free(peer.http);
	event_base_free(peer.base);
	return 0;
}

/* ------------------------------------------------- the client's side */

/* What one callback saw (the response itself is only borrowed). */
struct result {
	int calls;
	bool called_inside_request;
	long status;
	char *error;
	unsigned char *body;
	size_t body_len;
	size_t n_headers;
	char *header_a;       /* the header named by header_a_name, if any */
	const char *header_a_name;
	char *header_b;
	const char *header_b_name;
	uint64_t started_us, finished_us;
};

static bool in_request;  /* set around http_client_request() */

static void result_free(struct result *r)
{
	free(r->error);
	free(r->body);
	free(r->header_a);
	free(r->header_b);
}

static void on_done(void *arg, const parley_http_response *resp)
{
	struct result *r = arg;
	r->calls++;
	r->called_inside_request = r->called_inside_request || in_request;
	r->finished_us = util_mono_us();
	if (r->calls > 1)
		return;  /* a test asserts calls == 1; keep the first answer */
	r->status = resp->status;
	r->error = resp->error ? strdup(resp->error) : NULL;
	r->body = malloc(resp->body_len + 1);
	memcpy(r->body, resp->body, resp->body_len + 1);  /* NUL included */
	r->body_len = resp->body_len;
	r->n_headers = resp->n_headers;
	assert_null(resp->headers[resp->n_headers]);
	if (r->header_a_name != NULL) {
		const char *v = http_client_response_header(resp, r->header_a_name);
		r->header_a = v ? strdup(v) : NULL;
	}
	if (r->header_b_name != NULL) {
		const char *v = http_client_response_header(resp, r->header_b_name);
		r->header_b = v ? strdup(v) : NULL;
	}
}

static bool guard_fired;

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
	guard_fired = true;
}

/* Turn the loop until *counter reaches target or `limit_ms` pass. */
static void run_until(const int *counter, int target, int limit_ms)
{
	struct event *guard = evtimer_new(peer.base, on_guard, NULL);
	struct timeval tv = { limit_ms / 1000, (limit_ms % 1000) * 1000 };
	guard_fired = false;
	evtimer_add(guard, &tv);
	while (*counter < target && !guard_fired)
		event_base_loop(peer.base, EVLOOP_ONCE);
	event_free(guard);
}

/* Turn the loop for `ms` whatever happens (to catch late double callbacks). */
static void run_for(int ms)
{
	int never = 0;
	run_until(&never, 1, ms);
}

static char *url(const char *path)
{
	static char buf[256];
	snprintf(buf, sizeof(buf), "http://127.0.0.1:%d%s", peer.port, path);
	return buf;
}

static int start(const char *method, const char *u, const char *const *headers,
                 const void *body, size_t body_len, long timeout_ms, struct result *r)
{
	parley_http_call call = {
		.size = sizeof(call),
		.method = method,
		.url = u,
		.headers = headers,
		.body = body,
		.body_len = body_len,
		.timeout_ms = timeout_ms,
	};
	r->started_us = util_mono_us();
	in_request = true;
	int rc = http_client_request(&call, on_done, r);
	in_request = false;
	return rc;
}

/* --------------------------------------------------------------- tests */

static void test_get_returns_status_body_and_headers(void **state)
{
	struct result r = { .header_a_name = "x-reply-token", .header_b_name = "CONTENT-TYPE" };
	assert_int_equal(start("GET", url("/hello"), NULL, NULL, 0, 0, &r), 0);
	assert_int_equal(http_client_active(), 1);
	/* Never called back from inside the request call itself. */
	assert_int_equal(r.calls, 0);

	run_until(&r.calls, 1, 5000);
	assert_int_equal(r.calls, 1);
	assert_false(r.called_inside_request);
	assert_int_equal(r.status, 200);
	assert_null(r.error);
	assert_int_equal(r.body_len, strlen("hello world"));
	assert_string_equal((char *)r.body, "hello world");
	assert_true(r.n_headers >= 2);
	assert_non_null(r.header_a);
	assert_string_equal(r.header_a, "abc123");
	assert_non_null(r.header_b);
	assert_string_equal(r.header_b, "text/plain");
	assert_int_equal(http_client_active(), 0);
	result_free(&r);
}

static void test_missing_header_is_null(void **state)
{
	struct result r = { .header_a_name = "X-Not-There", .header_b_name = "X-Reply" };
	assert_int_equal(start("GET", url("/hello"), NULL, NULL, 0, 0, &r), 0);
	run_until(&r.calls, 1, 5000);
	assert_int_equal(r.status, 200);
	assert_null(r.header_a);
	/* A prefix of a header's name is not that header. */
	assert_null(r.header_b);
	result_free(&r);
}

static void test_post_sends_body_and_headers_exactly(void **state)
{
	const char *const headers[] = { "Content-Type: application/json", "X-Custom: value-1", NULL };
	struct result r = { .header_a_name = "location" };
	assert_int_equal(start("POST", url("/echo"), headers, post_body, POST_BODY_LEN, 0, &r), 0);
	run_until(&r.calls, 1, 5000);

	assert_int_equal(peer.echo_requests, 1);
	assert_true(peer.echo_method_ok);
	assert_true(peer.echo_body_ok);          /* every byte, including after the NUL */
	assert_true(peer.echo_custom_header_ok);
	assert_true(peer.echo_content_type_ok);
	assert_false(peer.echo_had_expect);

	assert_int_equal(r.calls, 1);
	assert_int_equal(r.status, 201);
	assert_int_equal(r.body_len, POST_BODY_LEN);
	assert_memory_equal(r.body, post_body, POST_BODY_LEN);
	assert_string_equal(r.header_a, "/things/1");
	result_free(&r);
}

/* libcurl asks "Expect: 100-continue" before large bodies and then waits for
 * the peer; many APIs never answer it, so it is never sent. */
static void test_large_body_is_sent_without_expect(void **state)
{
	enum { LEN = 1536 * 1024 };
	unsigned char *body = malloc(LEN);
	memset(body, 'L', LEN);
	struct result r = { 0 };
	assert_int_equal(start("POST", url("/size"), NULL, body, LEN, 0, &r), 0);
	free(body);
	run_until(&r.calls, 1, 10000);
	assert_int_equal(r.status, 200);
	assert_int_equal(peer.size_received, LEN);
	assert_false(peer.size_had_expect);
	result_free(&r);
}

static void test_body_is_copied_at_request_time(void **state)
{
	const char *const headers[] = { "Content-Type: application/json", "X-Custom: value-1", NULL };
	unsigned char *body = malloc(POST_BODY_LEN);
	memcpy(body, post_body, POST_BODY_LEN);
	char *u = strdup(url("/echo"));
	struct result r = { 0 };
	assert_int_equal(start("POST", u, headers, body, POST_BODY_LEN, 0, &r), 0);
	/* The caller may reuse or free everything once the call returns. */
	memset(body, 'X', POST_BODY_LEN);
	free(body);
	memset(u, 'Y', strlen(u));
	free(u);

	run_until(&r.calls, 1, 5000);
	assert_int_equal(r.status, 201);
	assert_true(peer.echo_body_ok);
	result_free(&r);
}

static void test_other_methods(void **state)
{
	struct result put = { 0 }, del = { 0 }, patch = { 0 };
	assert_int_equal(start("PUT", url("/method"), NULL, "abcd", 4, 0, &put), 0);
	assert_int_equal(start("DELETE", url("/method"), NULL, NULL, 0, 0, &del), 0);
	assert_int_equal(start("PATCH", url("/method"), NULL, "xy", 2, 0, &patch), 0);
	run_until(&put.calls, 1, 5000);
	run_until(&del.calls, 1, 5000);
	run_until(&patch.calls, 1, 5000);
	assert_string_equal((char *)put.body, "PUT 4");
	assert_string_equal((char *)del.body, "DELETE 0");
	assert_string_equal((char *)patch.body, "PATCH 2");
	result_free(&put);
	result_free(&del);
	result_free(&patch);
}

static void test_server_error_is_a_status_not_a_failure(void **state)
{
	struct result r = { .header_a_name = "Retry-After" };
	assert_int_equal(start("GET", url("/fail"), NULL, NULL, 0, 0, &r), 0);
	run_until(&r.calls, 1, 5000);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.status, 500);
	assert_null(r.error);
	assert_string_equal((char *)r.body, "{\"error\":\"boom\"}");
	assert_string_equal(r.header_a, "30");
	result_free(&r);
}

static void test_timeout_gives_status_zero(void **state)
{
	struct result r = { 0 };
	assert_int_equal(start("GET", url("/hang"), NULL, NULL, 0, 300, &r), 0);
	run_until(&r.calls, 1, 5000);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.status, 0);
	assert_non_null(r.error);
	assert_true(strcasestr(r.error, "timed out") != NULL || strcasestr(r.error, "timeout") != NULL);
	assert_int_equal(r.body_len, 0);
	uint64_t ms = (r.finished_us - r.started_us) / 1000;
	assert_true(ms >= 290);
	assert_true(ms <= 300 + 1500);
	result_free(&r);
}

static void test_default_timeout_applies_when_call_has_none(void **state)
{
	http_client_shutdown();
	assert_true(http_client_init(peer.base, 400, MAX_RESPONSE_BYTES));
	struct result r = { 0 };
	assert_int_equal(start("GET", url("/hang"), NULL, NULL, 0, 0, &r), 0);
	run_until(&r.calls, 1, 5000);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.status, 0);
	uint64_t ms = (r.finished_us - r.started_us) / 1000;
	assert_true(ms >= 390);
	assert_true(ms <= 400 + 1500);
	result_free(&r);
}

static void test_connection_refused_gives_status_zero(void **state)
{
	char u[64];
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/", closed_port());
	struct result r = { 0 };
	assert_int_equal(start("GET", u, NULL, NULL, 0, 0, &r), 0);
	run_until(&r.calls, 1, 5000);
	assert_int_equal(r.calls, 1);
	assert_false(r.called_inside_request);
	assert_int_equal(r.status, 0);
	assert_non_null(r.error);
	assert_true(strlen(r.error) > 0);
	result_free(&r);
}

static void test_response_over_cap_fails(void **state)
{
	struct result announced = { 0 }, chunked = { 0 };
	assert_int_equal(start("GET", url("/big"), NULL, NULL, 0, 0, &announced), 0);
	assert_int_equal(start("GET", url("/bigchunked"), NULL, NULL, 0, 0, &chunked), 0);
	run_until(&announced.calls, 1, 5000);
	run_until(&chunked.calls, 1, 5000);

	assert_int_equal(announced.calls, 1);
	assert_int_equal(announced.status, 0);
	assert_string_equal(announced.error, "response too large");
	assert_int_equal(announced.body_len, 0);

	assert_int_equal(chunked.calls, 1);
	assert_int_equal(chunked.status, 0);
	assert_string_equal(chunked.error, "response too large");
	assert_int_equal(chunked.body_len, 0);
	result_free(&announced);
	result_free(&chunked);
}

static void test_response_at_cap_succeeds(void **state)
{
	struct result r = { 0 };
	assert_int_equal(start("GET", url("/exact"), NULL, NULL, 0, 0, &r), 0);
	run_until(&r.calls, 1, 5000);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, MAX_RESPONSE_BYTES);
	assert_int_equal(r.body[MAX_RESPONSE_BYTES - 1], 'e');
	assert_int_equal(r.body[MAX_RESPONSE_BYTES], '\0');
	result_free(&r);
}

static void test_fifty_concurrent_requests_each_complete_once(void **state)
{
	enum { N = 50 };
	struct result r[N];
	memset(r, 0, sizeof(r));
	for (int i = 0; i < N; i++)
		assert_int_equal(start("GET", url("/hello"), NULL, NULL, 0, 0, &r[i]), 0);
	assert_int_equal(http_client_active(), N);

	struct result *last = &r[N - 1];
	for (int i = 0; i < N; i++)
		run_until(&r[i].calls, 1, 10000);
	run_until(&last->calls, 1, 10000);
	run_for(100);  /* a second callback would show up now */

	for (int i = 0; i < N; i++) {
		assert_int_equal(r[i].calls, 1);
		assert_false(r[i].called_inside_request);
		assert_int_equal(r[i].status, 200);
		assert_string_equal((char *)r[i].body, "hello world");
		result_free(&r[i]);
	}
	assert_int_equal(http_client_active(), 0);
}

/* Ten requests one after the other, each started from the previous one's
 * callback, as a plugin chains calls. */
static struct result seq[10];
static int seq_done;

static void on_seq_done(void *arg, const parley_http_response *resp)
{
	struct result *r = arg;
	on_done(arg, resp);
	seq_done++;
	if (r + 1 < seq + 10) {
		parley_http_call call = { .size = sizeof(call), .method = "GET", .url = url("/count") };
		assert_int_equal(http_client_request(&call, on_seq_done, r + 1), 0);
	}
}

static void test_sequential_requests_reuse_connections(void **state)
{
	memset(seq, 0, sizeof(seq));
	seq_done = 0;
	parley_http_call call = { .size = sizeof(call), .method = "GET", .url = url("/count") };
	assert_int_equal(http_client_request(&call, on_seq_done, &seq[0]), 0);
	run_until(&seq_done, 10, 10000);

	assert_int_equal(seq_done, 10);
	assert_int_equal(peer.n_count_requests, 10);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(seq[i].status, 200);
		result_free(&seq[i]);
	}
	/* One TCP connection per request would mean ten distinct client ports. */
	int conns = distinct_ports();
	assert_true(conns >= 1);
	assert_true(conns < 10);
}

static bool shutdown_fired;

static void on_shutdown_timer(evutil_socket_t fd, short what, void *arg)
{
	shutdown_fired = true;
	http_client_shutdown();
}

static void test_shutdown_aborts_in_flight_requests(void **state)
{
	struct result a = { 0 }, b = { 0 };
	assert_int_equal(start("GET", url("/hang"), NULL, NULL, 0, 0, &a), 0);
	assert_int_equal(start("POST", url("/hang"), NULL, "x", 1, 0, &b), 0);

	/* Shut down from the loop while both wait for an answer. */
	shutdown_fired = false;
	struct event *t = evtimer_new(peer.base, on_shutdown_timer, NULL);
	struct timeval tv = { 0, 200 * 1000 };
	evtimer_add(t, &tv);
	run_until(&b.calls, 1, 5000);
	run_for(100);
	event_free(t);

	assert_true(shutdown_fired);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);
	assert_int_equal(a.status, 0);
	assert_string_equal(a.error, "aborted");
	assert_int_equal(b.status, 0);
	assert_string_equal(b.error, "aborted");
	assert_int_equal(http_client_active(), 0);

	/* Nothing starts after shutdown. */
	struct result c = { 0 };
	assert_int_equal(start("GET", url("/hello"), NULL, NULL, 0, 0, &c), -1);
	run_for(50);
	assert_int_equal(c.calls, 0);
	result_free(&a);
	result_free(&b);
}

static void on_done_then_shutdown(void *arg, const parley_http_response *resp)
{
	on_done(arg, resp);
	http_client_shutdown();
}

/* A callback may shut the client down: the rest is aborted, nothing runs twice. */
static void test_shutdown_from_a_callback(void **state)
{
	struct result first = { 0 }, hung = { 0 };
	assert_int_equal(start("GET", url("/hang"), NULL, NULL, 0, 0, &hung), 0);
	parley_http_call call = { .size = sizeof(call), .method = "GET", .url = url("/hello") };
	assert_int_equal(http_client_request(&call, on_done_then_shutdown, &first), 0);

	run_until(&hung.calls, 1, 5000);
	run_for(100);
	assert_int_equal(first.calls, 1);
	assert_int_equal(first.status, 200);
	assert_int_equal(hung.calls, 1);
	assert_int_equal(hung.status, 0);
	assert_string_equal(hung.error, "aborted");
	assert_int_equal(http_client_active(), 0);
	result_free(&first);
	result_free(&hung);
}

static void test_non_http_scheme_is_refused(void **state)
{
	struct result r = { 0 };
	int rc = start("GET", "file:///etc/passwd", NULL, NULL, 0, 0, &r);
	if (rc == 0) {
		run_until(&r.calls, 1, 5000);
		assert_int_equal(r.calls, 1);
		assert_false(r.called_inside_request);
		assert_int_equal(r.status, 0);
		assert_non_null(r.error);
		/* Refused for its protocol, not merely for lacking an HTTP status. */
		assert_non_null(strcasestr(r.error, "protocol"));
		assert_int_equal(r.body_len, 0);
	} else {
		assert_int_equal(rc, -1);
		run_for(50);
		assert_int_equal(r.calls, 0);
	}
	assert_int_equal(http_client_active(), 0);
	result_free(&r);
}

static void test_malformed_calls_are_refused_without_callback(void **state)
{
	const char *const split[] = { "X-A: 1\r\nX-Injected: 2", NULL };
	const char *const no_colon[] = { "just text", NULL };
	struct result r = { 0 };
	assert_int_equal(start("GET", url("/hello"), split, NULL, 0, 0, &r), -1);
	assert_int_equal(start("GET", url("/hello"), no_colon, NULL, 0, 0, &r), -1);
	assert_int_equal(start("GET /x HTTP/1.1\r\nHost: y\r\n\r\nGET", url("/hello"), NULL, NULL,
	                       0, 0, &r), -1);
	assert_int_equal(start("", url("/hello"), NULL, NULL, 0, 0, &r), -1);
	assert_int_equal(start("GET", NULL, NULL, NULL, 0, 0, &r), -1);

	/* A caller whose struct is too small to hold the URL field. */
	parley_http_call call = { .size = 0, .method = "GET", .url = url("/hello") };
	assert_int_equal(http_client_request(&call, on_done, &r), -1);

	run_for(50);
	assert_int_equal(r.calls, 0);
	assert_int_equal(http_client_active(), 0);
	result_free(&r);
}

/* Mail that cannot be sent as given is refused at once, without a callback:
 * not SMTP, no recipient, an address that could smuggle SMTP syntax, or a
 * struct too small. */
static void test_malformed_mail_is_refused_without_callback(void **state)
{
	const char *const to[] = { "ops@example.com", NULL };
	const char *const none[] = { NULL };
	const char *const angle[] = { "a@example.com>\r\nRCPT TO:<b@example.com", NULL };
	struct result r = { 0 };
	parley_smtp_call ok = { .size = sizeof(ok), .url = "smtp://127.0.0.1:1",
	                        .mail_from = "parley@example.com", .rcpt_to = to,
	                        .message = "Subject: x\r\n\r\nhi\r\n", .message_len = 19 };
	parley_smtp_call c = ok;
	c.url = "http://127.0.0.1:1";
	assert_int_equal(smtp_client_send(&c, on_done, &r), -1);
	c = ok;
	c.rcpt_to = none;
	assert_int_equal(smtp_client_send(&c, on_done, &r), -1);
	c = ok;
	c.rcpt_to = angle;
	assert_int_equal(smtp_client_send(&c, on_done, &r), -1);
	c = ok;
	c.mail_from = "no-at-sign";
	assert_int_equal(smtp_client_send(&c, on_done, &r), -1);
	c = ok;
	c.size = 8;
	assert_int_equal(smtp_client_send(&c, on_done, &r), -1);
	run_for(50);
	assert_int_equal(r.calls, 0);
	assert_int_equal(http_client_active(), 0);

	/* A well-formed one to a closed port ends once, as a transport failure. */
	assert_int_equal(smtp_client_send(&ok, on_done, &r), 0);
	run_until(&r.calls, 1, 5000);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.status, 0);
	result_free(&r);
}

static void test_only_final_response_headers_are_kept(void **state)
{
	char u[64];
	snprintf(u, sizeof(u), "http://127.0.0.1:%d/", peer.raw_port);
	struct result r = { .header_a_name = "X-Final", .header_b_name = "x-interim" };
	assert_int_equal(start("GET", u, NULL, NULL, 0, 0, &r), 0);
	run_until(&r.calls, 1, 5000);
	assert_int_equal(r.status, 200);
	assert_string_equal((char *)r.body, "ok");
	/* Values are trimmed of surrounding spaces. */
	assert_string_equal(r.header_a, "padded value");
	/* The 100's header belonged to a response that was not the answer. */
	assert_null(r.header_b);
	result_free(&r);
}

/* Read everything written to a file descriptor-backed FILE. */
static char *slurp(FILE *f)
{
	fflush(f);
	long n = ftell(f);
	char *s = calloc(1, (size_t)n + 1);
	rewind(f);
	assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
	return s;
}

static void test_debug_log_omits_path_query_and_credentials(void **state)
{
	char u[128];
	snprintf(u, sizeof(u), "http://user:pa55word@127.0.0.1:%d/hello?access_token=SECRET123#frag",
	         peer.port);
	FILE *capture = tmpfile();
	assert_non_null(capture);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(fileno(capture), STDERR_FILENO);
	log_level old = log_get_level();
	log_set_level(LOGL_DEBUG);

	struct result r = { 0 };
	int rc = start("GET", u, NULL, NULL, 0, 0, &r);
	if (rc == 0)
		run_until(&r.calls, 1, 5000);

	log_set_level(old);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	char *logged = slurp(capture);
	fclose(capture);

	assert_int_equal(rc, 0);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(logged, "http-client"));
	assert_non_null(strstr(logged, "GET http://127.0.0.1:"));
	assert_non_null(strstr(logged, "/... -> 200"));
	assert_null(strstr(logged, "hello"));
	assert_null(strstr(logged, "SECRET123"));
	assert_null(strstr(logged, "access_token"));
	assert_null(strstr(logged, "pa55word"));
	assert_null(strstr(logged, "frag"));
	free(logged);
	result_free(&r);
}

int main(void)
{
	/* A proxy from the environment would take 127.0.0.1 elsewhere. */
	unsetenv("http_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("https_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");

	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get_returns_status_body_and_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_header_is_null, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_sends_body_and_headers_exactly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_body_is_sent_without_expect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_is_copied_at_request_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_methods, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_error_is_a_status_not_a_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_gives_status_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_timeout_applies_when_call_has_none, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_refused_gives_status_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_response_over_cap_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_response_at_cap_succeeds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifty_concurrent_requests_each_complete_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sequential_requests_reuse_connections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_aborts_in_flight_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_from_a_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_non_http_scheme_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_calls_are_refused_without_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_mail_is_refused_without_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_only_final_response_headers_are_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_debug_log_omits_path_query_and_credentials, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
