/* test_router.c - the route matcher, table-driven: patterns and paths,
 * params by name, trailing segments, percent-encoding, no match, and the
 * method check with its Allow list; then the core's own table answering
 * over a socket (405 with Allow, 404s as JSON). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <event2/event.h>

#include "log.h"
#include "route_match.h"
#include "router.h"
#include "util.h"

/* ---------------------------------------------------- pattern vs. path */

typedef struct match_case {
	const char *pattern;
	const char *path;
	bool matches;
	const char *name1, *value1;   /* a param to look up, or NULL */
	const char *name2, *value2;
	const char *rest;             /* expected rest when matching */
} match_case;

#define NO_MATCH(pattern, path) { pattern, path, false, NULL, NULL, NULL, NULL, NULL }

static const match_case match_cases[] = {
	/* literals */
	{ "/healthz", "/healthz", true, NULL, NULL, NULL, NULL, "" },
	NO_MATCH("/healthz", "/healthz/"),
	NO_MATCH("/healthz", "/health"),
	NO_MATCH("/healthz", "/healthzz"),
	NO_MATCH("/healthz", "/"),
	NO_MATCH("/healthz", "/HEALTHZ"),
	NO_MATCH("/healthz", "/health%7A"),   /* literals compare undecoded */
	/* one param */
	{ "/sinks/{sink}/events", "/sinks/zd/events", true, "sink", "zd", NULL, NULL, "" },
	NO_MATCH("/sinks/{sink}/events", "/sinks//events"),   /* empty segment */
	NO_MATCH("/sinks/{sink}/events", "/sinks/zd"),
	NO_MATCH("/sinks/{sink}/events", "/sinks/zd/events/x"),
	NO_MATCH("/sinks/{sink}/events", "/sinks/zd/eventsx"),
	/* trailing segments */
	{ "/webhooks/{channel}/...", "/webhooks/site", true, "channel", "site", NULL, NULL, "" },
	{ "/webhooks/{channel}/...", "/webhooks/site/", true, "channel", "site", NULL, NULL, "/" },
	{ "/webhooks/{channel}/...", "/webhooks/site/a/b", true, "channel", "site", NULL, NULL, "/a/b" },
	{ "/webhooks/{channel}/...", "/webhooks/site/a%20b", true, "channel", "site", NULL, NULL, "/a%20b" },
	NO_MATCH("/webhooks/{channel}/...", "/webhooks/"),
	NO_MATCH("/webhooks/{channel}/...", "/webhooks"),
	NO_MATCH("/webhooks/{channel}/...", "/webhooksx/site"),
	{ "/sinks/{sink}/events/...", "/sinks/fd/events/ticket", true, "sink", "fd", NULL, NULL, "/ticket" },
	NO_MATCH("/sinks/{sink}/events/...", "/sinks/fd/eventsx"),
	/* percent-encoding in params */
	{ "/webhooks/{channel}/...", "/webhooks/my%20shop", true, "channel", "my shop", NULL, NULL, "" },
	{ "/webhooks/{channel}/...", "/webhooks/%73ite", true, "channel", "site", NULL, NULL, "" },
	{ "/webhooks/{channel}/...", "/webhooks/a+b", true, "channel", "a+b", NULL, NULL, "" },
	{ "/webhooks/{channel}/...", "/webhooks/%C3%A9t%C3%A9", true, "channel", "\xC3\xA9t\xC3\xA9", NULL, NULL, "" },
	NO_MATCH("/webhooks/{channel}/...", "/webhooks/a%2Fb"),   /* an encoded slash */
	NO_MATCH("/webhooks/{channel}/...", "/webhooks/a%00b"),   /* an encoded NUL */
	NO_MATCH("/webhooks/{channel}/...", "/webhooks/a%zzb"),   /* not hex */
	NO_MATCH("/webhooks/{channel}/...", "/webhooks/a%2"),     /* cut short */
	NO_MATCH("/webhooks/{channel}/...", "/webhooks/a%"),
	/* two params */
	{ "/a/{x}/b/{y}", "/a/1/b/2", true, "x", "1", "y", "2", "" },
	NO_MATCH("/a/{x}/b/{y}", "/a/1/c/2"),
	NO_MATCH("/a/{x}/b/{y}", "/a/1/b/"),
};

static void patterns_match_paths(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
		const match_case *c = &match_cases[i];
		route_match m;
		bool got = route_match_path(c->pattern, c->path, &m);
		if (got != c->matches)
			fail_msg("%s vs %s: %s, expected %s", c->pattern, c->path, got ? "match" : "no match",
			         c->matches ? "match" : "no match");
		if (!got)
			continue;
		if (c->name1 != NULL)
			assert_string_equal(route_param(&m, c->name1), c->value1);
		if (c->name2 != NULL)
			assert_string_equal(route_param(&m, c->name2), c->value2);
		assert_null(route_param(&m, "absent"));
		assert_string_equal(m.rest, c->rest);
	}
}

static void a_param_over_the_size_limit_matches_nothing(void **state)
{
	(void)state;
	char path[400];
	route_match m;
	snprintf(path, sizeof(path), "/webhooks/%0*d", ROUTE_PARAM_MAX, 0);
	assert_true(route_match_path("/webhooks/{channel}/...", path, &m));
	assert_int_equal(strlen(route_param(&m, "channel")), ROUTE_PARAM_MAX);
	snprintf(path, sizeof(path), "/webhooks/%0*d", ROUTE_PARAM_MAX + 1, 0);
	assert_false(route_match_path("/webhooks/{channel}/...", path, &m));
}

/* ------------------------------------------------------------- lookup */

static void h_health(http_request *r, const route_match *m) { (void)r; (void)m; }
static void h_get_thing(http_request *r, const route_match *m) { (void)r; (void)m; }
static void h_put_thing(http_request *r, const route_match *m) { (void)r; (void)m; }
static void h_hook(http_request *r, const route_match *m) { (void)r; (void)m; }

static const route table[] = {
	{ "GET", "/healthz", "/healthz", ROUTE_AUTH_NONE, h_health },
	{ "GET", "/things/{id}", "/things/{id}", ROUTE_AUTH_NONE, h_get_thing },
	{ "PUT", "/things/{id}", "/things/{id}", ROUTE_AUTH_NONE, h_put_thing },
	{ NULL, "/webhooks/{channel}/...", "/webhooks/{instance}", ROUTE_AUTH_PLUGIN, h_hook },
};

typedef struct lookup_case {
	const char *method;
	const char *path;
	route_result result;
	route_handler_fn handler;   /* FOUND: the route's handler */
	const char *allow;          /* WRONG_METHOD: the Allow list */
	const char *label;          /* WRONG_METHOD: the label of the path's first route */
} lookup_case;

static const lookup_case lookup_cases[] = {
	{ "GET", "/healthz", ROUTE_FOUND, h_health, NULL, NULL },
	{ "HEAD", "/healthz", ROUTE_FOUND, h_health, NULL, NULL },   /* GET routes answer HEAD */
	{ "POST", "/healthz", ROUTE_WRONG_METHOD, NULL, "GET, HEAD", "/healthz" },
	{ "GET", "/things/7", ROUTE_FOUND, h_get_thing, NULL, NULL },
	{ "PUT", "/things/7", ROUTE_FOUND, h_put_thing, NULL, NULL },   /* same pattern, by method */
	{ "DELETE", "/things/7", ROUTE_WRONG_METHOD, NULL, "GET, HEAD, PUT", "/things/{id}" },
	{ "GET", "/webhooks/site", ROUTE_FOUND, h_hook, NULL, NULL },   /* any method */
	{ "PATCH", "/webhooks/site/x", ROUTE_FOUND, h_hook, NULL, NULL },
	{ "GET", "/nothing-here", ROUTE_NO_PATH, NULL, NULL, NULL },
	{ "GET", "/things", ROUTE_NO_PATH, NULL, NULL, NULL },
	{ "GET", "/", ROUTE_NO_PATH, NULL, NULL, NULL },
};

static void lookup_picks_by_path_then_method(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(lookup_cases) / sizeof(lookup_cases[0]); i++) {
		const lookup_case *c = &lookup_cases[i];
		const route *found = NULL;
		route_match m;
		char allow[64];
		route_result got = route_lookup(table, sizeof(table) / sizeof(table[0]), c->method, c->path,
		                                &found, &m, allow, sizeof(allow));
		if (got != c->result)
			fail_msg("%s %s: result %d, expected %d", c->method, c->path, got, c->result);
		switch (got) {
		case ROUTE_FOUND:
			assert_non_null(found);
			assert_ptr_equal(found->handler, c->handler);
			break;
		case ROUTE_WRONG_METHOD:
			assert_string_equal(allow, c->allow);
			assert_string_equal(found->label, c->label);
			break;
		case ROUTE_NO_PATH:
			assert_null(found);
			break;
		}
	}
}

static void lookup_hands_over_params_by_name(void **state)
{
	(void)state;
	const route *found;
	route_match m;
	char allow[64];
	assert_int_equal(route_lookup(table, 4, "PUT", "/things/a%2Bb", &found, &m, allow, sizeof(allow)),
	                 ROUTE_FOUND);
	assert_string_equal(route_param(&m, "id"), "a+b");
	assert_int_equal(route_lookup(table, 4, "POST", "/webhooks/tg/updates", &found, &m, allow,
	                              sizeof(allow)), ROUTE_FOUND);
	assert_string_equal(route_param(&m, "channel"), "tg");
	assert_string_equal(m.rest, "/updates");
	assert_int_equal(found->auth, ROUTE_AUTH_PLUGIN);
}

/* ------------------------------------------ the core's table, over HTTP */

/* Sends `request` to a server running router_handle on a loop of its own
 * and returns the whole answer (the request asks the server to close). */
static void exchange(const char *request, char *answer, size_t cap)
{
	struct event_base *base = event_base_new();
	http_server_limits lim = { .max_body_bytes = 1024, .max_header_bytes = 4096,
	                           .read_timeout_ms = 2000, .write_timeout_ms = 2000,
	                           .idle_timeout_ms = 2000, .max_connections = 8 };
	char err[256];
	router_init(NULL);   /* no plugin instances */
	http_server *srv = http_server_new(base, "127.0.0.1", 0, &lim, router_handle, NULL, err, sizeof(err));
	assert_non_null(srv);

	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)http_server_port(srv)),
	                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(send(fd, request, strlen(request), 0), (ssize_t)strlen(request));

	size_t len = 0;
	uint64_t deadline = util_mono_us() + 3000000;
	while (util_mono_us() < deadline) {
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		ssize_t n = recv(fd, answer + len, cap - 1 - len, MSG_DONTWAIT);
		if (n == 0)
			break;
		if (n > 0)
			len += (size_t)n;
		else if (errno != EAGAIN && errno != EWOULDBLOCK)
			break;
		else
			usleep(1000);
	}
	answer[len] = '\0';
	close(fd);
	http_server_free(srv);
	event_base_free(base);
}

static void router_answers_405_with_allow_and_404_as_json(void **state)
{
	(void)state;
	char answer[4096];
	exchange("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
	         answer, sizeof(answer));
	assert_non_null(strstr(answer, "HTTP/1.1 405 "));
	assert_non_null(strstr(answer, "\r\nAllow: GET, HEAD\r\n"));
	assert_non_null(strstr(answer, "{\"error\":\"method_not_allowed\",\"detail\":\"use GET, HEAD\"}"));

	exchange("GET /nothing-here HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", answer, sizeof(answer));
	assert_non_null(strstr(answer, "HTTP/1.1 404 "));
	assert_non_null(strstr(answer, "{\"error\":\"not_found\""));

	exchange("HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", answer, sizeof(answer));
	assert_non_null(strstr(answer, "HTTP/1.1 200 "));

	/* The route matches; the handler finds no such instance. */
	exchange("POST /webhooks/ghost HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
	         answer, sizeof(answer));
	assert_non_null(strstr(answer, "HTTP/1.1 404 "));
	assert_non_null(strstr(answer, "{\"error\":\"unknown_channel\""));
	exchange("POST /sinks/ghost/events/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
	         answer, sizeof(answer));
	assert_non_null(strstr(answer, "{\"error\":\"unknown_sink\""));
}

int main(void)
{
	log_set_level(LOGL_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(patterns_match_paths),
		cmocka_unit_test(a_param_over_the_size_limit_matches_nothing),
		cmocka_unit_test(lookup_picks_by_path_then_method),
		cmocka_unit_test(lookup_hands_over_params_by_name),
		cmocka_unit_test(router_answers_405_with_allow_and_404_as_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
