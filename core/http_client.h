/* http_client.h - outbound HTTP through libcurl's multi-socket API on the
 * libevent loop. TLS verification is on unless a call turns it off; handles
 * share a connection cache so connections are reused. */
#ifndef PARLEY_CORE_HTTP_CLIENT_H
#define PARLEY_CORE_HTTP_CLIENT_H

#include <stdbool.h>
#include <event2/event.h>
#include "parley/parley.h"

/* The response handed to callbacks (it is the ABI's opaque type). */
struct parley_http_response {
	long status;              /* 0 on transport error */
	const char *error;        /* NULL or curl's error text */
	unsigned char *body;      /* NUL-terminated for convenience */
	size_t body_len;
	char **headers;           /* "name: value" lines, NULL-terminated */
	size_t n_headers;
};

bool http_client_init(struct event_base *base, long default_timeout_ms,
                      size_t max_response_bytes);
/* Abort every transfer (their callbacks run with status 0, "aborted") and
 * free the multi handle. */
void http_client_shutdown(void);
/* Transfers in flight. */
int http_client_active(void);

/* Start a request; everything in `call` is copied. Returns 0 if started (the
 * callback runs exactly once, later, on the loop), -1 otherwise. */
int http_client_request(const parley_http_call *call, parley_http_done_fn done, void *arg);

/* Send one mail through SMTP (smtp:// with STARTTLS, or smtps://); everything
 * in `call` is copied. The callback's status is the server's last reply code
 * (250 when accepted; a 4xx/5xx refusal too, with its text as the error), or
 * 0 for a transport failure. Returns 0 if started, -1 otherwise. */
int http_client_smtp(const parley_smtp_call *call, parley_http_done_fn done, void *arg);

/* Accessors used by the host table. */
const char *http_client_response_header(const struct parley_http_response *r,
                                        const char *name);

#endif
