/* http_client.h - outbound HTTP through libcurl's multi-socket API on the
 * libevent loop (the transfer core, transfer.h, which SMTP shares: see
 * smtp_client.h). TLS verification is on unless a call turns it off; handles
 * share a connection cache so connections are reused. */
#ifndef PARLEY_CORE_HTTP_CLIENT_H
#define PARLEY_CORE_HTTP_CLIENT_H

#include <stdbool.h>
#include <event2/event.h>
#include "parley/parley.h"
#include "transfer.h"  /* struct parley_http_response */


/* Sets up the transfer core for HTTP and SMTP alike. */
PARLEY_MUSTCHECK bool http_client_init(struct event_base *base, long default_timeout_ms,
                      size_t max_response_bytes);
/* Abort every transfer (their callbacks run with status 0, "aborted") and
 * free the multi handle. */
void http_client_shutdown(void);
/* Transfers in flight. */
int http_client_active(void);

/* Start a request; everything in `call` is copied. Returns 0 if started (the
 * callback runs exactly once, later, on the loop), -1 otherwise. */
PARLEY_MUSTCHECK
int http_client_request(const parley_http_call *call, parley_http_done_fn done, void *arg);

/* Accessors used by the host table. */
const char *http_client_response_header(const struct parley_http_response *r,
                                        const char *name);

#endif
