/* bare_responder.c - the ceiling for bench/http: a libevent evhttp server
 * that answers every request "200 ok" and does nothing else.
 *
 * Whatever parleyd does per request costs something on top of this; the
 * benchmark reports parleyd's figures as a fraction of this one, measured
 * in the same run on the same machine.
 *
 * Usage: bare_responder PORT   (listens on 127.0.0.1; SIGINT/SIGTERM stop it) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

static void answer_ok(struct evhttp_request *req, void *arg)
{
	struct evbuffer *body = arg;

	/* evhttp_send_reply drains the buffer it is given: refill it each time. */
	evbuffer_add(body, "ok", 2);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
	evhttp_send_reply(req, 200, "OK", body);
}

static void stop_loop(evutil_socket_t sig, short events, void *arg)
{
	event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
	char *end = NULL;
	long port = argc == 2 ? strtol(argv[1], &end, 10) : 0;

	if (argc != 2 || *end != '\0' || port < 1 || port > 65535) {
		fprintf(stderr, "usage: %s PORT\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	struct event_base *base = event_base_new();
	struct evhttp *http = base ? evhttp_new(base) : NULL;
	struct evbuffer *body = evbuffer_new();
	struct event *sigint = base ? evsignal_new(base, SIGINT, stop_loop, base) : NULL;
	struct event *sigterm = base ? evsignal_new(base, SIGTERM, stop_loop, base) : NULL;
	int rc = 1;

	if (!http || !body || !sigint || !sigterm) {
		fprintf(stderr, "bare_responder: out of memory\n");
		goto out;
	}
	if (evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)port) != 0) {
		fprintf(stderr, "bare_responder: cannot listen on 127.0.0.1:%ld\n", port);
		goto out;
	}
	evhttp_set_gencb(http, answer_ok, body);
	event_add(sigint, NULL);
	event_add(sigterm, NULL);
	fprintf(stderr, "bare_responder: listening on 127.0.0.1:%ld\n", port);
	rc = event_base_dispatch(base) < 0 ? 1 : 0;
out:
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (http)
		evhttp_free(http);
	if (body)
		evbuffer_free(body);
	if (base)
		event_base_free(base);
	return rc;
}
