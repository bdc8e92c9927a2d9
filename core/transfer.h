/* transfer.h - the libcurl transfer core under the outbound clients.
 *
 * One curl multi handle driven by the libevent loop (multi-socket API), one
 * share handle (DNS, connections, TLS sessions), and the life of a transfer:
 * created by a protocol module (http_client.c, smtp_client.c), given its
 * protocol's options on `easy`, started, and finished exactly once with a
 * parley_http_response handed to its callback. A callback never runs inside
 * the call that started the transfer: a transfer can only finish after the
 * loop has turned. Internal to the core; plugins see http_request/smtp_send. */
#ifndef PARLEY_CORE_TRANSFER_H
#define PARLEY_CORE_TRANSFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>
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

typedef struct transfer {
	CURL *easy;                      /* owned; set options on it before transfer_start */
	parley_http_done_fn done;
	void *done_arg;
	char *label;                     /* owned: "GET", "MAIL", … for the log line */
	char *log_url;                   /* owned: the URL without path, query or userinfo */
	uint64_t started_us;

	unsigned char *body;             /* owned; grows up to the response cap */
	size_t body_len, body_cap;
	char **headers;                  /* owned "name: value" lines of the final response */
	size_t n_headers, headers_cap;
	size_t header_bytes;
	bool too_large;                  /* the body or the headers went over a cap */
	/* A failed transfer whose server still gave a reply code >= 400 reports
	 * it (SMTP: a refusal is an answer, 4xx retry, 5xx give up). */
	bool refusal_is_status;

	struct curl_slist *slist_a;      /* owned lists curl borrows (headers, recipients) */
	struct curl_slist *slist_b;
	unsigned char *upload;           /* owned: what a protocol uploads */
	size_t upload_len, upload_pos;

	char errbuf[CURL_ERROR_SIZE];
	struct transfer *prev, *next;
} transfer;

/* Connections kept open per host: enough for parallel deliveries, few enough
 * not to look like an attack to the platform's API. */
#define TRANSFER_MAX_HOST_CONNECTIONS 8L
/* The connect phase never needs more than this, whatever the call's timeout. */
#define TRANSFER_MAX_CONNECT_TIMEOUT_MS 10000L

/* base: borrowed, the loop. Timeouts and the response cap apply to every
 * transfer that does not set its own. false (logged) when curl cannot be set up. */
PARLEY_MUSTCHECK bool transfer_init(struct event_base *base, long default_timeout_ms,
                                    size_t max_response_bytes);
/* Abort every transfer (callbacks run now with status 0, "aborted") and let go of curl. */
void transfer_shutdown(void);
/* Transfers in flight. */
int transfer_active(void);
/* Accepting new transfers (initialized and not shutting down)? */
bool transfer_ready(void);
size_t transfer_max_response_bytes(void);

/* A new transfer with its easy handle, not started. label and url are
 * copied (the URL only in redacted form). NULL when curl has no handle. */
transfer *transfer_new(const char *label, const char *url, parley_http_done_fn done, void *arg);
/* What every transfer sets: the URL and allowed protocols ("http,https"),
 * no signals, the private pointer, the error buffer, whole-call and connect
 * timeouts, TLS verification (insecure: tests only). false if curl refused one. */
PARLEY_MUSTCHECK bool transfer_common_options(transfer *x, const char *url, const char *protocols,
                                              long timeout_ms, bool insecure);
/* curl write callback that collects the body up to the response cap
 * (CURLOPT_WRITEFUNCTION with CURLOPT_WRITEDATA = the transfer). */
size_t transfer_on_body(char *data, size_t size, size_t nmemb, void *userp);
/* Forget the response headers collected so far. */
void transfer_clear_headers(transfer *x);
/* Hand the transfer to the multi handle. On false the caller still owns x
 * and frees it with transfer_discard. */
PARLEY_MUSTCHECK bool transfer_start(transfer *x);
/* Free a transfer that was never started (no callback runs). */
void transfer_discard(transfer *x);

#endif
