/* test_http_server.c - the inbound HTTP/1.1 server, over real sockets.
 *
 * The server runs on the test's event loop in the main thread; the client
 * side is plain blocking sockets in a second thread, so every test reads as
 * "a client sends these bytes and sees this answer". The client thread only
 * records what it saw; all assertions run in the main thread once the loop
 * has stopped. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

#define CLIENT_TIMEOUT_MS 3000   /* a blocking client never waits longer */
#define RUN_DEADLINE_MS 5000     /* a test's loop never runs longer */
#define DELAY_MS 50              /* how late the handler answers "/slow" */
#define BIG_BODY (16u * 1024 * 1024)
#define MAX_RESPONSES 3
#define MAX_CAPTURED 12

/* ----------------------------------------------------------- the client */

typedef struct response {
	int status;
	char head[8192];     /* status line and headers, NUL-terminated */
	char body[8192];     /* NUL-terminated for convenience */
	size_t body_len;
} response;

typedef struct client {
	int fd;
	char buf[1 << 16];
	size_t len;
} client;

static int client_connect(int port, int rcvbuf)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = { CLIENT_TIMEOUT_MS / 1000, (CLIENT_TIMEOUT_MS % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static bool client_open(client *cl, int port)
{
	cl->len = 0;
	cl->fd = client_connect(port, 0);
	return cl->fd >= 0;
}

static bool send_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static bool send_str(int fd, const char *s)
{
	return send_all(fd, s, strlen(s));
}

/* Value of a header in a response head, or NULL. Copies into out. */
static const char *head_header(const char *head, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	const char *line = strstr(head, "\r\n");
	while (line != NULL && line[2] != '\0') {
		line += 2;
		const char *end = strstr(line, "\r\n");
		if (end == NULL)
			end = line + strlen(line);
		if ((size_t)(end - line) > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
			const char *v = line + nl + 1;
			while (*v == ' ')
				v++;
			snprintf(out, outlen, "%.*s", (int)(end - v), v);
			return out;
		}
		line = end;
	}
	return NULL;
}

/* Reads one whole response: head, then Content-Length bytes of body (none
 * when it answers a HEAD request). */
static bool client_read_answer(client *cl, response *out, bool to_head)
{
	for (;;) {
		char *end = memmem(cl->buf, cl->len, "\r\n\r\n", 4);
		if (end != NULL) {
			size_t head_len = (size_t)(end - cl->buf) + 4;
			if (head_len >= sizeof(out->head))
				return false;
			memcpy(out->head, cl->buf, head_len);
			out->head[head_len] = '\0';
			char v[32];
			size_t body_len = head_header(out->head, "Content-Length", v, sizeof(v))
			                  ? strtoul(v, NULL, 10) : 0;
			if (to_head)
				body_len = 0;
			if (body_len >= sizeof(out->body))
				return false;
			if (cl->len >= head_len + body_len) {
				out->status = atoi(out->head + 9);
				memcpy(out->body, cl->buf + head_len, body_len);
				out->body[body_len] = '\0';
				out->body_len = body_len;
				cl->len -= head_len + body_len;
				memmove(cl->buf, cl->buf + head_len + body_len, cl->len);
				return true;
			}
		}
		if (cl->len == sizeof(cl->buf))
			return false;
		ssize_t n = recv(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len, 0);
		if (n <= 0)
			return false;
		cl->len += (size_t)n;
	}
}

static bool client_read_response(client *cl, response *out)
{
	return client_read_answer(cl, out, false);
}

/* True when the server closed the connection with nothing more to say. */
static bool client_at_eof(client *cl)
{
	char c;
	return cl->len == 0 && recv(cl->fd, &c, 1, 0) == 0;
}

static double ms_since(uint64_t start_us)
{
	return (double)(util_mono_us() - start_us) / 1000.0;
}

/* ---------------------------------------------------------- the fixture */

typedef struct fixture fixture;
typedef void (*client_fn)(fixture *fx);
typedef bool (*until_fn)(fixture *fx);

typedef struct pending_answer {
	fixture *fx;
	http_request *req;
	struct event *timer;
} pending_answer;

struct fixture {
	struct event_base *base;
	http_server *srv;
	http_server_limits limits;
	int port;

	/* Server side; main thread only. */
	int calls;
	int answers;
	size_t max_inflight;
	size_t inflight_when_answering;
	char order[4][32];
	void (*inspect)(fixture *fx, http_request *r);
	char *captured[MAX_CAPTURED];
	unsigned char *captured_body;
	size_t captured_body_len;
	bool captured_body_nul;
	pending_answer *pending[4];
	/* Streamed answers (paths /stream...): the stream, its pace, and how
	 * it was stopped. */
	http_request *stream;
	struct event *stream_timer;
	const char *stream_mode;
	int stream_step;
	size_t streamed;
	int stop_calls;
	http_stream_stop_reason stop_why;

	/* The client's script and what it saw; written by the client thread,
	 * read by the main thread after the join. */
	const char *request;
	size_t request_len;
	size_t piece;              /* send in pieces of this size, 0: at once */
	int want_responses;
	bool first_is_head;        /* the first request is a HEAD */
	response resp[MAX_RESPONSES];
	int n_resp;
	bool eof;
	double elapsed_ms;         /* from the last byte sent to the first answer */
	int refused_errno;
	int send_errno;            /* why sending the request failed, 0 if it did not */
	char raw[8192];            /* client_read_raw: all it read, NUL-terminated */
	size_t raw_len;
	const char *stop_at;       /* client_read_raw hangs up once this arrived */
	bool idle_eof;
	atomic_int client_done;
	sem_t stopped;             /* posted by the handler after stop_accepting */
	sem_t may_finish;          /* posted by the test to let the client end */
};

static void answer_now(fixture *fx, http_request *r)
{
	static const char *const extra[] = { "X-Extra: yes", NULL };
	const char *path = http_req_path(r);
	fx->answers++;
	http_req_respond(r, 200, "text/plain", path, strlen(path), extra);
}

static void on_delayed_answer(evutil_socket_t fd, short what, void *arg)
{
	pending_answer *p = arg;
	fixture *fx = p->fx;
	fx->inflight_when_answering = http_server_inflight(fx->srv);
	answer_now(fx, p->req);
	for (size_t i = 0; i < 4; i++)
		if (fx->pending[i] == p)
			fx->pending[i] = NULL;
	event_free(p->timer);
	free(p);
}

static void answer_later(fixture *fx, http_request *r)
{
	pending_answer *p = xcalloc(1, sizeof(*p));
	p->fx = fx;
	p->req = r;
	p->timer = evtimer_new(fx->base, on_delayed_answer, p);
	for (size_t i = 0; i < 4; i++) {
		if (fx->pending[i] == NULL) {
			fx->pending[i] = p;
			break;
		}
	}
	struct timeval tv = { 0, DELAY_MS * 1000 };
	evtimer_add(p->timer, &tv);
}

/* ------------------------------------------------- a streaming handler */

static void stream_on_stop(http_request *r, http_stream_stop_reason why, void *arg)
{
	fixture *fx = arg;
	fx->stop_calls++;
	fx->stop_why = why;
	evtimer_del(fx->stream_timer);
	http_req_stream_end(r);
	fx->stream = NULL;
}

static void stream_arm(fixture *fx, int ms)
{
	struct timeval tv = { 0, ms * 1000 };
	evtimer_add(fx->stream_timer, &tv);
}

/* One step of the stream in fx->stream_mode:
 *   pieces  "one", "two", "three" 10 ms apart, then the end
 *   hold    nothing more after "first": waits for on_stop
 *   flood   64 KiB a millisecond for as long as the client is kept
 *   stop    stops the server 50 ms after "first"; on_stop ends the stream */
static void stream_tick(evutil_socket_t fd, short what, void *arg)
{
	fixture *fx = arg;
	static const char *const pieces[] = { "one", "two", "three" };
	if (strcmp(fx->stream_mode, "pieces") == 0) {
		const char *p = pieces[fx->stream_step++];
		assert_true(http_req_stream_write(fx->stream, p, strlen(p)));
		if (fx->stream_step == 3) {
			http_req_stream_end(fx->stream);
			fx->stream = NULL;
		} else {
			stream_arm(fx, 10);
		}
	} else if (strcmp(fx->stream_mode, "flood") == 0) {
		static char block[65536];
		memset(block, 'f', sizeof(block));
		if (http_req_stream_write(fx->stream, block, sizeof(block))) {
			fx->streamed += sizeof(block);
			stream_arm(fx, 1);
		}
	} else if (strcmp(fx->stream_mode, "stop") == 0) {
		http_server_stop_accepting(fx->srv);
	}
}

static void stream_start(fixture *fx, http_request *r, const char *mode)
{
	static const char *const extra[] = { "Cache-Control: no-store", NULL };
	fx->stream = r;
	fx->stream_mode = mode;
	fx->stream_timer = evtimer_new(fx->base, stream_tick, fx);
	assert_true(http_req_stream_begin(r, 200, "text/event-stream", extra, stream_on_stop, fx));
	if (strcmp(mode, "hold") == 0 || strcmp(mode, "stop") == 0)
		assert_true(http_req_stream_write(r, "first", 5));
	if (strcmp(mode, "hold") != 0)
		stream_arm(fx, strcmp(mode, "stop") == 0 ? 50 : 10);
}

/* The application under test, by path:
 *   /slow     answered 50 ms later
 *   /stop     stops accepting, then answered 50 ms later
 *   /big      a 16 MiB answer
 *   /missing  http_req_respond_error(404, "not_found", NULL)
 *   /stream/MODE  a streamed answer, see stream_tick
 *   anything  200 text/plain, the path as body, X-Extra: yes
 * Paths under /things/ get the route label "/things/{id}". */
static void handler(http_request *r, void *arg)
{
	fixture *fx = arg;
	const char *path = http_req_path(r);
	size_t inflight = http_server_inflight(fx->srv);
	if (inflight > fx->max_inflight)
		fx->max_inflight = inflight;
	if (fx->calls < 4)
		snprintf(fx->order[fx->calls], sizeof(fx->order[0]), "%s", path);
	fx->calls++;
	if (fx->inspect != NULL)
		fx->inspect(fx, r);
	if (strncmp(path, "/things/", 8) == 0)
		http_req_set_route(r, "/things/{id}");

	if (strcmp(path, "/slow") == 0) {
		answer_later(fx, r);
	} else if (strcmp(path, "/stop") == 0) {
		http_server_stop_accepting(fx->srv);
		sem_post(&fx->stopped);
		answer_later(fx, r);
	} else if (strcmp(path, "/big") == 0) {
		char *big = xmalloc(BIG_BODY);
		memset(big, 'x', BIG_BODY);
		fx->answers++;
		http_req_respond(r, 200, "text/plain", big, BIG_BODY, NULL);
		free(big);
	} else if (strncmp(path, "/stream/", 8) == 0) {
		stream_start(fx, r, path + 8);
	} else if (strcmp(path, "/missing") == 0) {
		fx->answers++;
		http_req_respond_error(r, 404, "not_found", NULL, NULL);
	} else {
		answer_now(fx, r);
	}
}

static int setup(void **state)
{
	fixture *fx = xcalloc(1, sizeof(*fx));
	fx->base = event_base_new();
	assert_non_null(fx->base);
	fx->limits.max_body_bytes = 1000;
	fx->limits.max_header_bytes = 1024;
	fx->limits.read_timeout_ms = 2000;
	fx->limits.write_timeout_ms = 2000;
	fx->limits.idle_timeout_ms = 5000;
	fx->limits.max_connections = 64;
	fx->want_responses = 1;
	sem_init(&fx->stopped, 0, 0);
	sem_init(&fx->may_finish, 0, 0);
	metrics_reset();
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	fixture *fx = *state;
	for (size_t i = 0; i < 4; i++) {
		if (fx->pending[i] != NULL) {
			event_free(fx->pending[i]->timer);
			free(fx->pending[i]);
		}
	}
	http_server_free(fx->srv);
	if (fx->stream_timer != NULL)
		event_free(fx->stream_timer);
	event_base_free(fx->base);
	for (size_t i = 0; i < MAX_CAPTURED; i++)
		free(fx->captured[i]);
	free(fx->captured_body);
	sem_destroy(&fx->stopped);
	sem_destroy(&fx->may_finish);
	metrics_reset();
	free(fx);
	return 0;
}

static void start_server(fixture *fx)
{
	char err[256] = "";
	fx->srv = http_server_new(fx->base, "127.0.0.1", 0, &fx->limits, handler, fx, err, sizeof(err));
	if (fx->srv == NULL)
		fail_msg("http_server_new: %s", err);
	fx->port = http_server_port(fx->srv);
	assert_true(fx->port > 0);
}

/* ------------------------------------------------------------ the runner */

typedef struct run_ctx {
	fixture *fx;
	until_fn until;
	uint64_t deadline_us;
	client_fn client;
} run_ctx;

static void *client_thread(void *arg)
{
	run_ctx *rc = arg;
	rc->client(rc->fx);
	atomic_store(&rc->fx->client_done, 1);
	return NULL;
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	run_ctx *rc = arg;
	if (rc->until(rc->fx) || util_mono_us() > rc->deadline_us)
		event_base_loopbreak(rc->fx->base);
}

/* The client is done and the server has nothing left open. */
static bool until_quiet(fixture *fx)
{
	return atomic_load(&fx->client_done) && http_server_connections(fx->srv) == 0 &&
	       http_server_inflight(fx->srv) == 0;
}

/* Runs the loop while `client` talks to the server, until `until` holds
 * (or the deadline passes). Returns whether it held. */
static bool run(fixture *fx, client_fn script, until_fn until)
{
	run_ctx rc = { fx, until, util_mono_us() + RUN_DEADLINE_MS * 1000ull, script };
	atomic_store(&fx->client_done, 0);
	struct event *poll = event_new(fx->base, -1, EV_PERSIST, on_poll, &rc);
	struct timeval tv = { 0, 5000 };
	event_add(poll, &tv);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, client_thread, &rc), 0);
	event_base_dispatch(fx->base);
	event_free(poll);
	bool held = until(fx);
	sem_post(&fx->may_finish);
	pthread_join(th, NULL);
	return held;
}

/* Sends fx->request (in pieces if asked), reads fx->want_responses answers,
 * notes whether the server then closed, and closes. */
static void client_exchange(fixture *fx)
{
	client cl;
	if (!client_open(&cl, fx->port))
		return;
	size_t len = fx->request_len ? fx->request_len : strlen(fx->request);
	size_t sent = 0;
	while (sent < len) {
		size_t n = fx->piece ? fx->piece : len;
		if (n > len - sent)
			n = len - sent;
		if (!send_all(cl.fd, fx->request + sent, n)) {
			fx->send_errno = errno;
			break;
		}
		sent += n;
		if (sent < len)
			usleep(10 * 1000);
	}
	uint64_t start = util_mono_us();
	for (fx->n_resp = 0; fx->n_resp < fx->want_responses; fx->n_resp++) {
		bool to_head = fx->n_resp == 0 && fx->first_is_head;
		if (!client_read_answer(&cl, &fx->resp[fx->n_resp], to_head))
			break;
		if (fx->n_resp == 0)
			fx->elapsed_ms = ms_since(start);
	}
	fx->eof = client_at_eof(&cl);
	close(cl.fd);
}

/* Sends fx->request and hangs up without waiting for the answer. */
static void client_send_and_vanish(fixture *fx)
{
	client cl;
	if (!client_open(&cl, fx->port))
		return;
	send_str(cl.fd, fx->request);
	close(cl.fd);
}

/* ------------------------------------------------------ checking answers */

static const char *resp_header(const response *r, const char *name)
{
	static char value[256];
	return head_header(r->head, name, value, sizeof(value));
}

static void assert_json_error(const response *r, const char *code, const char *detail)
{
	assert_string_equal(resp_header(r, "Content-Type"), "application/json");
	json_error_t jerr;
	json_t *o = json_loadb(r->body, r->body_len, 0, &jerr);
	if (o == NULL)
		fail_msg("answer is not JSON: %s", r->body);
	assert_string_equal(json_string_value(json_object_get(o, "error")), code);
	if (detail != NULL)
		assert_string_equal(json_string_value(json_object_get(o, "detail")), detail);
	json_decref(o);
}

/* Was parley_http_requests_total{route,method,status} counted? */
static bool metrics_counted(const char *route, const char *method, int status)
{
	struct evbuffer *b = evbuffer_new();
	metrics_render(b);
	size_t n = evbuffer_get_length(b);
	char *text = xmalloc(n + 1);
	evbuffer_remove(b, text, n);
	text[n] = '\0';
	evbuffer_free(b);

	char r[128], m[64], s[32];
	snprintf(r, sizeof(r), "route=\"%s\"", route);
	snprintf(m, sizeof(m), "method=\"%s\"", method);
	snprintf(s, sizeof(s), "status=\"%d\"", status);
	bool found = false;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, "parley_http_requests_total{", 27) == 0 && strstr(line, r) &&
		    strstr(line, m) && strstr(line, s))
			found = true;
	free(text);
	return found;
}

static void capture(fixture *fx, size_t i, const char *value)
{
	free(fx->captured[i]);
	fx->captured[i] = xstrdup(value);
}

/* ------------------------------------------------------------ the tests */

static void inspect_get(fixture *fx, http_request *r)
{
	capture(fx, 0, http_req_method(r));
	capture(fx, 1, http_req_path(r));
	capture(fx, 2, http_req_query(r, "name"));
	capture(fx, 3, http_req_query(r, "empty"));
	capture(fx, 4, http_req_query(r, "flag"));
	capture(fx, 5, http_req_query(r, "x"));
	capture(fx, 6, http_req_query(r, "absent"));
	capture(fx, 7, http_req_header(r, "x-custom-header"));
	capture(fx, 8, http_req_header(r, "X-TWICE"));
	capture(fx, 9, http_req_header(r, "absent"));
	capture(fx, 10, http_req_peer(r));
	capture(fx, 11, http_req_query(r, "Name"));
}

static void get_decodes_query_and_finds_headers_case_insensitively(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	fx->inspect = inspect_get;
	fx->request = "GET /things/a%20b?name=J%C3%BCrgen+Smith&empty=&flag&x=1&x=2 HTTP/1.1\r\n"
	              "Host: localhost\r\n"
	              "X-Custom-Header:   Hello there  \r\n"
	              "x-twice: first\r\n"
	              "X-Twice: second\r\n"
	              "Connection: close\r\n"
	              "\r\n";
	assert_true(run(fx, client_exchange, until_quiet));

	assert_int_equal(fx->calls, 1);
	assert_string_equal(fx->captured[0], "GET");
	assert_string_equal(fx->captured[1], "/things/a%20b");   /* path is not decoded */
	assert_string_equal(fx->captured[2], "J\xc3\xbcrgen Smith");
	assert_string_equal(fx->captured[3], "");
	assert_string_equal(fx->captured[4], "");
	assert_string_equal(fx->captured[5], "1");               /* the first of a repeat */
	assert_null(fx->captured[6]);
	assert_string_equal(fx->captured[7], "Hello there");
	assert_string_equal(fx->captured[8], "first");
	assert_null(fx->captured[9]);
	assert_true(strncmp(fx->captured[10], "127.0.0.1:", 10) == 0);
	assert_null(fx->captured[11]);                           /* query names are exact */

	assert_int_equal(fx->n_resp, 1);
	const response *r = &fx->resp[0];
	assert_true(strncmp(r->head, "HTTP/1.1 200 OK\r\n", 17) == 0);
	assert_string_equal(resp_header(r, "Content-Type"), "text/plain");
	assert_string_equal(resp_header(r, "Content-Length"), "13");
	assert_string_equal(resp_header(r, "Connection"), "close");
	assert_string_equal(resp_header(r, "X-Extra"), "yes");
	assert_non_null(resp_header(r, "Date"));
	assert_string_equal(r->body, "/things/a%20b");
	assert_true(fx->eof);
	assert_true(metrics_counted("/things/{id}", "GET", 200));
}

static void inspect_body(fixture *fx, http_request *r)
{
	size_t len = 0;
	const unsigned char *body = http_req_body(r, &len);
	free(fx->captured_body);
	fx->captured_body = xmalloc(len + 1);
	memcpy(fx->captured_body, body, len);
	fx->captured_body_len = len;
	fx->captured_body_nul = body[len] == '\0';
	capture(fx, 0, http_req_method(r));
}

static void post_body_is_delivered_exactly(void **state)
{
	fixture *fx = *state;
	fx->limits.max_body_bytes = 4096;
	start_server(fx);
	fx->inspect = inspect_body;

	unsigned char body[3000];
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (unsigned char)(i * 7 + 3);
	body[10] = 0x00;
	body[11] = 0xff;
	body[12] = 0x80;
	char head[256];
	int hl = snprintf(head, sizeof(head),
	                  "POST /things/p HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
	                  "Connection: close\r\n\r\n", sizeof(body));
	char req[4096];
	memcpy(req, head, (size_t)hl);
	memcpy(req + hl, body, sizeof(body));
	fx->request = req;
	fx->request_len = (size_t)hl + sizeof(body);
	fx->piece = 700;   /* several reads, split inside headers and body */
	assert_true(run(fx, client_exchange, until_quiet));

	assert_int_equal(fx->calls, 1);
	assert_string_equal(fx->captured[0], "POST");
	assert_int_equal(fx->captured_body_len, sizeof(body));
	assert_memory_equal(fx->captured_body, body, sizeof(body));
	assert_true(fx->captured_body_nul);
	assert_int_equal(fx->resp[0].status, 200);
}

static void chunked_body_within_limit_is_delivered(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	fx->inspect = inspect_body;
	fx->request = "POST /things/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	              "Connection: close\r\n\r\n"
	              "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
	assert_true(run(fx, client_exchange, until_quiet));

	assert_int_equal(fx->calls, 1);
	assert_int_equal(fx->captured_body_len, 11);
	assert_memory_equal(fx->captured_body, "hello world", 11);
	assert_int_equal(fx->resp[0].status, 200);
}

static void pipelined_requests_are_answered_in_order(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	/* The first answer is slow and the second would be instant: order must
	 * still hold, with one request at a time at the handler. */
	fx->request = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
	              "POST /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
	              "Connection: close\r\n\r\nabc";
	fx->want_responses = 2;
	assert_true(run(fx, client_exchange, until_quiet));

	assert_int_equal(fx->calls, 2);
	assert_string_equal(fx->order[0], "/slow");
	assert_string_equal(fx->order[1], "/fast");
	assert_int_equal(fx->max_inflight, 1);
	assert_int_equal(fx->n_resp, 2);
	assert_string_equal(fx->resp[0].body, "/slow");
	assert_string_equal(resp_header(&fx->resp[0], "Connection"), "keep-alive");
	assert_string_equal(fx->resp[1].body, "/fast");
	assert_string_equal(resp_header(&fx->resp[1], "Connection"), "close");
	assert_true(fx->eof);
}

static void content_length_over_limit_is_413_without_reading_the_body(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	/* Only the headers are sent: the answer must not wait for the body. */
	fx->request = "POST /things/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n";
	assert_true(run(fx, client_exchange, until_quiet));

	assert_int_equal(fx->calls, 0);
	assert_int_equal(fx->n_resp, 1);
	assert_int_equal(fx->resp[0].status, 413);
	assert_json_error(&fx->resp[0], "body_too_large", "limit is 1000 bytes");
	assert_string_equal(resp_header(&fx->resp[0], "Connection"), "close");
	assert_true(fx->eof);
	assert_true(metrics_counted("other", "POST", 413));
}

static void chunked_body_over_limit_is_413(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	static char req[2048];
	char chunk[601];
	memset(chunk, 'c', 600);
	chunk[600] = '\0';
	snprintf(req, sizeof(req),
	         "POST /things/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	         "258\r\n%s\r\n258\r\n%s\r\n0\r\n\r\n", chunk, chunk);
	fx->request = req;
	assert_true(run(fx, client_exchange, until_quiet));

	assert_int_equal(fx->calls, 0);
	assert_int_equal(fx->resp[0].status, 413);
	assert_json_error(&fx->resp[0], "body_too_large", "limit is 1000 bytes");
	assert_true(fx->eof);
}

/* A POST declaring `body_len` bytes, with that many bytes of body after the
 * headers when `with_body`. Owned by the caller. */
static char *post_of_size(size_t body_len, bool with_body, size_t *out_len)
{
	char head[128];
	int n = snprintf(head, sizeof(head), "POST /things/up HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
	                 body_len);
	size_t total = (size_t)n + (with_body ? body_len : 0);
	char *req = xmalloc(total + 1);
	memcpy(req, head, (size_t)n);
	if (with_body)
		memset(req + n, 'b', body_len);
	req[total] = '\0';
	*out_len = total;
	return req;
}

static void big_body_sent_without_waiting_still_gets_the_whole_413(void **state)
{
	fixture *fx = *state;
	fx->limits.max_body_bytes = 1024 * 1024;
	start_server(fx);
	/* Four times the limit in one go, no Expect: the server answers after
	 * the headers while the client is still uploading; only then does the
	 * client read. A close with the body unread would reset the connection
	 * and destroy the answer. */
	char *req = post_of_size(4 * fx->limits.max_body_bytes, true, &fx->request_len);
	fx->request = req;
	assert_true(run(fx, client_exchange, until_quiet));
	free(req);

	assert_int_equal(fx->send_errno, 0);   /* not ECONNRESET nor EPIPE mid-upload */
	assert_int_equal(fx->calls, 0);
	assert_int_equal(fx->n_resp, 1);
	assert_int_equal(fx->resp[0].status, 413);
	assert_json_error(&fx->resp[0], "body_too_large", "limit is 1048576 bytes");
	assert_true(fx->eof);
}

/* Sends fx->request, then keeps sending (one KiB every `piece` ms, or as
 * fast as it can with 0) until a send fails; notes the errno and how long
 * it was sent to after the request. */
static void client_sends_forever(fixture *fx)
{
	client cl;
	if (!client_open(&cl, fx->port))
		return;
	send_all(cl.fd, fx->request, fx->request_len);
	static char block[16384];
	memset(block, 'f', sizeof(block));
	uint64_t start = util_mono_us();
	fx->refused_errno = 0;
	while (ms_since(start) < CLIENT_TIMEOUT_MS) {
		size_t n = fx->piece ? 1024 : sizeof(block);
		if (send(cl.fd, block, n, MSG_NOSIGNAL) < 0) {
			fx->refused_errno = errno;
			break;
		}
		if (fx->piece)
			usleep((useconds_t)fx->piece * 1000);
	}
	fx->elapsed_ms = ms_since(start);
	close(cl.fd);
}

static void peer_that_keeps_sending_is_closed_at_the_linger_byte_bound(void **state)
{
	fixture *fx = *state;
	fx->limits.linger_max_bytes = 256 * 1024;
	start_server(fx);
	char *req = post_of_size(1000000000, false, &fx->request_len);
	fx->request = req;
	assert_true(run(fx, client_sends_forever, until_quiet));
	free(req);

	assert_true(fx->refused_errno == ECONNRESET || fx->refused_errno == EPIPE);
	assert_true(fx->elapsed_ms < 2000);
	assert_int_equal(fx->calls, 0);
}

static void peer_that_keeps_sending_is_closed_at_the_linger_deadline(void **state)
{
	fixture *fx = *state;
	fx->limits.linger_ms = 300;
	start_server(fx);
	char *req = post_of_size(1000000000, false, &fx->request_len);
	fx->request = req;
	fx->piece = 20;   /* 1 KiB every 20 ms: never quiet, far from the byte bound */
	assert_true(run(fx, client_sends_forever, until_quiet));
	free(req);

	assert_true(fx->refused_errno == ECONNRESET || fx->refused_errno == EPIPE);
	assert_true(fx->elapsed_ms >= 250 && fx->elapsed_ms < 2000);
}

/* A GET whose request line and headers are exactly `total` bytes. */
static char *request_of_size(size_t total)
{
	const char *start = "GET /things/h HTTP/1.1\r\nConnection: close\r\nX-Pad: ";
	size_t fixed = strlen(start) + 4;   /* + "\r\n\r\n" */
	char *req = xmalloc(total + 1);
	size_t pad = total - fixed;
	strcpy(req, start);
	memset(req + strlen(start), 'p', pad);
	strcpy(req + strlen(start) + pad, "\r\n\r\n");
	return req;
}

static void headers_over_limit_are_431_and_at_the_limit_pass(void **state)
{
	fixture *fx = *state;
	start_server(fx);

	char *exact = request_of_size(1024);
	fx->request = exact;
	assert_true(run(fx, client_exchange, until_quiet));
	assert_int_equal(fx->resp[0].status, 200);
	assert_int_equal(fx->calls, 1);
	free(exact);

	char *over = request_of_size(1025);
	fx->request = over;
	assert_true(run(fx, client_exchange, until_quiet));
	assert_int_equal(fx->resp[0].status, 431);
	assert_json_error(&fx->resp[0], "headers_too_large", NULL);
	assert_int_equal(fx->calls, 1);
	assert_true(fx->eof);
	free(over);

	/* A header block that never ends is cut off too. */
	char *endless = request_of_size(4000);
	endless[3000] = '\0';
	fx->request = endless;
	assert_true(run(fx, client_exchange, until_quiet));
	assert_int_equal(fx->resp[0].status, 431);
	assert_int_equal(fx->calls, 1);
	free(endless);
	assert_true(metrics_counted("other", "other", 431));
}

static void garbage_is_400_with_the_parser_reason(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	fx->request = "HELLO THERE\r\n\r\n";
	assert_true(run(fx, client_exchange, until_quiet));

	assert_int_equal(fx->calls, 0);
	assert_int_equal(fx->resp[0].status, 400);
	assert_json_error(&fx->resp[0], "bad_request", "invalid HTTP method");
	assert_true(fx->eof);
}

static void half_sent_body_is_408_after_read_timeout(void **state)
{
	fixture *fx = *state;
	fx->limits.read_timeout_ms = 200;
	start_server(fx);
	fx->request = "POST /things/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345";
	assert_true(run(fx, client_exchange, until_quiet));

	assert_int_equal(fx->calls, 0);
	assert_int_equal(fx->resp[0].status, 408);
	assert_json_error(&fx->resp[0], "request_timeout", NULL);
	assert_true(fx->elapsed_ms >= 150);   /* not before the limit */
	assert_true(fx->eof);
	assert_true(metrics_counted("other", "POST", 408));
}

static void delayed_answer_is_delivered(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	fx->request = "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	assert_true(run(fx, client_exchange, until_quiet));

	assert_int_equal(fx->calls, 1);
	assert_int_equal(fx->inflight_when_answering, 1);
	assert_int_equal(fx->resp[0].status, 200);
	assert_string_equal(fx->resp[0].body, "/slow");
	assert_true(fx->elapsed_ms >= DELAY_MS - 10);
}

static bool until_answered_and_quiet(fixture *fx)
{
	return fx->answers == 1 && until_quiet(fx);
}

static void client_gone_before_a_delayed_answer_is_harmless(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	fx->request = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_true(run(fx, client_send_and_vanish, until_answered_and_quiet));

	assert_int_equal(fx->calls, 1);
	assert_int_equal(fx->answers, 1);
	assert_int_equal(http_server_inflight(fx->srv), 0);
	assert_int_equal(http_server_connections(fx->srv), 0);
	assert_true(metrics_counted("other", "GET", 200));
}

/* An idle keep-alive connection, then a request whose handler stops the
 * server; a new client is then refused, the idle one is closed and the
 * in-flight one still gets its answer. */
static void client_stop(fixture *fx)
{
	client idle, busy;
	if (!client_open(&idle, fx->port))
		return;
	send_str(idle.fd, "GET /things/i HTTP/1.1\r\nHost: x\r\n\r\n");
	if (!client_read_response(&idle, &fx->resp[1]))
		return;
	if (!client_open(&busy, fx->port))
		return;
	send_str(busy.fd, "GET /stop HTTP/1.1\r\nHost: x\r\n\r\n");

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += CLIENT_TIMEOUT_MS / 1000;
	if (sem_timedwait(&fx->stopped, &ts) != 0)
		return;
	int fd = client_connect(fx->port, 0);
	fx->refused_errno = fd < 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	fx->idle_eof = client_at_eof(&idle);
	close(idle.fd);

	fx->n_resp = client_read_response(&busy, &fx->resp[0]) ? 1 : 0;
	fx->eof = client_at_eof(&busy);
	close(busy.fd);
}

static void stop_accepting_refuses_new_clients_and_finishes_inflight(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	assert_true(run(fx, client_stop, until_quiet));

	assert_string_equal(resp_header(&fx->resp[1], "Connection"), "keep-alive");
	assert_int_equal(fx->refused_errno, ECONNREFUSED);
	assert_true(fx->idle_eof);
	assert_int_equal(fx->n_resp, 1);
	assert_int_equal(fx->resp[0].status, 200);
	assert_string_equal(fx->resp[0].body, "/stop");
	assert_string_equal(resp_header(&fx->resp[0], "Connection"), "close");
	assert_true(fx->eof);
}

/* With room for one connection: a second one is told 503, the first one
 * is served normally. */
static void client_two_connections(fixture *fx)
{
	client first, second;
	if (!client_open(&first, fx->port))
		return;
	if (!client_open(&second, fx->port))
		return;
	if (client_read_response(&second, &fx->resp[1]))
		fx->idle_eof = client_at_eof(&second);
	close(second.fd);
	send_str(first.fd, "GET /things/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	fx->n_resp = client_read_response(&first, &fx->resp[0]) ? 1 : 0;
	fx->eof = client_at_eof(&first);
	close(first.fd);
}

static void over_max_connections_is_503(void **state)
{
	fixture *fx = *state;
	fx->limits.max_connections = 1;
	start_server(fx);
	assert_true(run(fx, client_two_connections, until_quiet));

	assert_int_equal(fx->resp[1].status, 503);
	assert_json_error(&fx->resp[1], "overloaded", NULL);
	assert_string_equal(resp_header(&fx->resp[1], "Connection"), "close");
	assert_true(fx->idle_eof);
	assert_int_equal(fx->calls, 1);
	assert_int_equal(fx->resp[0].status, 200);
	assert_true(metrics_counted("other", "other", 503));
}

static void client_expect(fixture *fx)
{
	client cl;
	if (!client_open(&cl, fx->port))
		return;
	send_str(cl.fd, "POST /things/e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
	                "Expect: 100-continue\r\nConnection: close\r\n\r\n");
	if (!client_read_response(&cl, &fx->resp[0]))
		return;
	send_str(cl.fd, "hello");
	fx->n_resp = client_read_response(&cl, &fx->resp[1]) ? 2 : 1;
	close(cl.fd);

	if (!client_open(&cl, fx->port))
		return;
	send_str(cl.fd, "POST /things/e HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
	                "Expect: 100-continue\r\n\r\n");
	if (client_read_response(&cl, &fx->resp[2]))
		fx->n_resp++;
	fx->eof = client_at_eof(&cl);
	close(cl.fd);
}

static void expect_100_continue_within_limits_only(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	fx->inspect = inspect_body;
	assert_true(run(fx, client_expect, until_quiet));

	assert_int_equal(fx->n_resp, 3);
	assert_true(strncmp(fx->resp[0].head, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
	assert_int_equal(fx->resp[1].status, 200);
	assert_int_equal(fx->captured_body_len, 5);
	assert_memory_equal(fx->captured_body, "hello", 5);
	assert_int_equal(fx->resp[2].status, 413);   /* no 100 first */
	assert_true(fx->eof);
	assert_int_equal(fx->calls, 1);
}

static void http10_is_answered_then_closed(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	fx->request = "GET /things/old HTTP/1.0\r\n\r\n";
	assert_true(run(fx, client_exchange, until_quiet));

	assert_int_equal(fx->resp[0].status, 200);
	assert_string_equal(resp_header(&fx->resp[0], "Connection"), "close");
	assert_true(fx->eof);
}

static void client_idle_after_answer(fixture *fx)
{
	client cl;
	if (!client_open(&cl, fx->port))
		return;
	send_str(cl.fd, "GET /things/k HTTP/1.1\r\nHost: x\r\n\r\n");
	fx->n_resp = client_read_response(&cl, &fx->resp[0]) ? 1 : 0;
	uint64_t start = util_mono_us();
	fx->idle_eof = client_at_eof(&cl);
	fx->elapsed_ms = ms_since(start);
	close(cl.fd);
}

static void idle_keepalive_connection_is_closed_silently(void **state)
{
	fixture *fx = *state;
	fx->limits.idle_timeout_ms = 100;
	start_server(fx);
	assert_true(run(fx, client_idle_after_answer, until_quiet));

	assert_int_equal(fx->resp[0].status, 200);
	assert_string_equal(resp_header(&fx->resp[0], "Connection"), "keep-alive");
	assert_true(fx->idle_eof);          /* closed, and not a byte said */
	assert_true(fx->elapsed_ms >= 80);
}

/* Asks for a big answer and never reads it. */
static void client_does_not_read(fixture *fx)
{
	int fd = client_connect(fx->port, 4096);
	if (fd < 0)
		return;
	send_str(fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
	sem_wait(&fx->may_finish);
	close(fd);
}

static bool until_server_closed(fixture *fx)
{
	return fx->answers == 1 && http_server_connections(fx->srv) == 0;
}

static void peer_that_does_not_read_is_closed_after_write_timeout(void **state)
{
	fixture *fx = *state;
	fx->limits.write_timeout_ms = 200;
	start_server(fx);
	assert_true(run(fx, client_does_not_read, until_server_closed));
	assert_int_equal(http_server_connections(fx->srv), 0);
}

static void respond_error_omits_a_null_detail(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	fx->request = "GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	assert_true(run(fx, client_exchange, until_quiet));

	assert_int_equal(fx->resp[0].status, 404);
	assert_true(strncmp(fx->resp[0].head, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
	assert_string_equal(resp_header(&fx->resp[0], "Content-Type"), "application/json");
	assert_string_equal(fx->resp[0].body, "{\"error\":\"not_found\"}");
}

static void head_gets_the_length_but_no_body(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	/* A GET right behind the HEAD shows the HEAD answer carried no body. */
	fx->request = "HEAD /things/h HTTP/1.1\r\nHost: x\r\n\r\n"
	              "GET /things/g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	fx->first_is_head = true;
	fx->want_responses = 2;
	assert_true(run(fx, client_exchange, until_quiet));

	assert_int_equal(fx->n_resp, 2);
	assert_int_equal(fx->resp[0].status, 200);
	assert_string_equal(resp_header(&fx->resp[0], "Content-Length"), "9");
	assert_int_equal(fx->resp[1].status, 200);
	assert_string_equal(fx->resp[1].body, "/things/g");
	assert_true(fx->eof);
	assert_true(metrics_counted("/things/{id}", "HEAD", 200));
}

/* Sends fx->request, then holds the connection open until told to end. */
static void client_send_and_wait(fixture *fx)
{
	client cl;
	if (!client_open(&cl, fx->port))
		return;
	send_str(cl.fd, fx->request);
	sem_wait(&fx->may_finish);
	close(cl.fd);
}

static bool until_handler_called(fixture *fx)
{
	return fx->calls == 1;
}

static void free_drops_unanswered_requests(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	fx->request = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_true(run(fx, client_send_and_wait, until_handler_called));
	assert_int_equal(http_server_inflight(fx->srv), 1);
	assert_int_equal(http_server_connections(fx->srv), 1);

	/* The application gives up on its answer; the server is freed with the
	 * request and the connection still open (a leak shows under ASan). */
	for (size_t i = 0; i < 4; i++) {
		if (fx->pending[i] != NULL) {
			event_free(fx->pending[i]->timer);
			free(fx->pending[i]);
			fx->pending[i] = NULL;
		}
	}
	http_server_free(fx->srv);
	fx->srv = NULL;
}

static void binding_a_taken_port_fails_with_a_reason(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	char err[256] = "";
	http_server *second = http_server_new(fx->base, "127.0.0.1", fx->port, &fx->limits, handler,
	                                      fx, err, sizeof(err));
	assert_null(second);
	char expect[64];
	snprintf(expect, sizeof(expect), "cannot listen on 127.0.0.1:%d: ", fx->port);
	assert_true(strncmp(err, expect, strlen(expect)) == 0);

	http_server *local = http_server_new(fx->base, "localhost", 0, &fx->limits, handler, fx,
	                                     err, sizeof(err));
	assert_non_null(local);
	assert_true(http_server_port(local) > 0);
	http_server_free(local);
}

/* ------------------------------------------------------ streamed answers */

/* Sends fx->request and reads everything until the server closes, into
 * fx->raw; with fx->stop_at set, hangs up as soon as that text arrived. */
static void client_read_raw(fixture *fx)
{
	client cl;
	if (!client_open(&cl, fx->port))
		return;
	send_str(cl.fd, fx->request);
	fx->raw_len = 0;
	for (;;) {
		ssize_t n = recv(cl.fd, fx->raw + fx->raw_len, sizeof(fx->raw) - 1 - fx->raw_len, 0);
		if (n <= 0) {
			fx->eof = n == 0;
			break;
		}
		fx->raw_len += (size_t)n;
		fx->raw[fx->raw_len] = '\0';
		if (fx->stop_at != NULL && strstr(fx->raw, fx->stop_at) != NULL)
			break;
		if (fx->raw_len == sizeof(fx->raw) - 1)
			break;
	}
	close(cl.fd);
}

/* Sends fx->request with a tiny receive buffer and never reads. */
static void client_never_reads(fixture *fx)
{
	int fd = client_connect(fx->port, 4096);
	if (fd < 0)
		return;
	send_str(fd, fx->request);
	sem_wait(&fx->may_finish);
	close(fd);
}

static const char *raw_body(fixture *fx)
{
	const char *b = strstr(fx->raw, "\r\n\r\n");
	return b ? b + 4 : "";
}

static void streamed_answer_is_chunked_for_http11(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	fx->request = "GET /stream/pieces HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_true(run(fx, client_read_raw, until_quiet));

	assert_true(strncmp(fx->raw, "HTTP/1.1 200 OK\r\n", 17) == 0);
	char v[64];
	assert_string_equal(head_header(fx->raw, "Transfer-Encoding", v, sizeof(v)), "chunked");
	assert_string_equal(head_header(fx->raw, "Connection", v, sizeof(v)), "close");
	assert_string_equal(head_header(fx->raw, "Content-Type", v, sizeof(v)), "text/event-stream");
	assert_string_equal(head_header(fx->raw, "Cache-Control", v, sizeof(v)), "no-store");
	assert_null(head_header(fx->raw, "Content-Length", v, sizeof(v)));
	assert_string_equal(raw_body(fx), "3\r\none\r\n3\r\ntwo\r\n5\r\nthree\r\n0\r\n\r\n");
	assert_true(fx->eof);
	assert_int_equal(fx->stop_calls, 0);
	assert_true(metrics_counted("other", "GET", 200));
}

static void streamed_answer_is_close_delimited_for_http10(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	fx->request = "GET /stream/pieces HTTP/1.0\r\n\r\n";
	assert_true(run(fx, client_read_raw, until_quiet));

	char v[64];
	assert_null(head_header(fx->raw, "Transfer-Encoding", v, sizeof(v)));
	assert_string_equal(raw_body(fx), "onetwothree");
	assert_true(fx->eof);
}

static void client_that_hangs_up_stops_the_stream(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	fx->request = "GET /stream/hold HTTP/1.1\r\nHost: x\r\n\r\n";
	fx->stop_at = "first\r\n";
	assert_true(run(fx, client_read_raw, until_quiet));

	assert_int_equal(fx->stop_calls, 1);
	assert_int_equal(fx->stop_why, HTTP_STREAM_CLIENT_GONE);
	assert_null(fx->stream);
}

static bool until_stream_dropped(fixture *fx)
{
	return fx->stop_calls == 1 && http_server_connections(fx->srv) == 0 &&
	       http_server_inflight(fx->srv) == 0;
}

static void client_that_does_not_read_is_dropped_at_the_output_bound(void **state)
{
	fixture *fx = *state;
	fx->limits.max_output_bytes = 256 * 1024;
	start_server(fx);
	fx->request = "GET /stream/flood HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_true(run(fx, client_never_reads, until_stream_dropped));

	assert_int_equal(fx->stop_why, HTTP_STREAM_TOO_SLOW);
	/* What the kernel's buffers took plus the bound, not all it was given. */
	assert_true(fx->streamed > 0 && fx->streamed < 32u * 1024 * 1024);
}

static void stopping_the_server_ends_open_streams_cleanly(void **state)
{
	fixture *fx = *state;
	start_server(fx);
	fx->request = "GET /stream/stop HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_true(run(fx, client_read_raw, until_quiet));

	assert_int_equal(fx->stop_calls, 1);
	assert_int_equal(fx->stop_why, HTTP_STREAM_SHUTDOWN);
	/* The body ends with its last chunk, then the connection closes. */
	assert_string_equal(raw_body(fx), "5\r\nfirst\r\n0\r\n\r\n");
	assert_true(fx->eof);
}

int main(void)
{
	/* A write to a peer that hung up must be an error, not a signal; the
	 * daemon makes the same choice at start-up. */
	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOGL_WARN);

#define SPEC(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		SPEC(get_decodes_query_and_finds_headers_case_insensitively),
		SPEC(post_body_is_delivered_exactly),
		SPEC(chunked_body_within_limit_is_delivered),
		SPEC(pipelined_requests_are_answered_in_order),
		SPEC(content_length_over_limit_is_413_without_reading_the_body),
		SPEC(chunked_body_over_limit_is_413),
		SPEC(big_body_sent_without_waiting_still_gets_the_whole_413),
		SPEC(peer_that_keeps_sending_is_closed_at_the_linger_byte_bound),
		SPEC(peer_that_keeps_sending_is_closed_at_the_linger_deadline),
		SPEC(headers_over_limit_are_431_and_at_the_limit_pass),
		SPEC(garbage_is_400_with_the_parser_reason),
		SPEC(half_sent_body_is_408_after_read_timeout),
		SPEC(delayed_answer_is_delivered),
		SPEC(client_gone_before_a_delayed_answer_is_harmless),
		SPEC(stop_accepting_refuses_new_clients_and_finishes_inflight),
		SPEC(over_max_connections_is_503),
		SPEC(expect_100_continue_within_limits_only),
		SPEC(http10_is_answered_then_closed),
		SPEC(idle_keepalive_connection_is_closed_silently),
		SPEC(peer_that_does_not_read_is_closed_after_write_timeout),
		SPEC(respond_error_omits_a_null_detail),
		SPEC(head_gets_the_length_but_no_body),
		SPEC(free_drops_unanswered_requests),
		SPEC(binding_a_taken_port_fails_with_a_reason),
		SPEC(streamed_answer_is_chunked_for_http11),
		SPEC(streamed_answer_is_close_delimited_for_http10),
		SPEC(client_that_hangs_up_stops_the_stream),
		SPEC(client_that_does_not_read_is_dropped_at_the_output_bound),
		SPEC(stopping_the_server_ends_open_streams_cleanly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
