/* http_conn.h - what the inbound HTTP server's own files share; not an API.
 *
 * The server is three files with one job each:
 *   http_server.c   listening, accepting, a connection's states and timers,
 *                   keep-alive, lingering close, stopping
 *   http_parse.c    feeding http-parser and turning its callbacks into a
 *                   request (limits on headers, URL and body; Expect)
 *   http_request.c  the request accessors and the answers (whole or streamed)
 * Everything here is owned by the server; handlers only see http_server.h. */
#ifndef PARLEY_CORE_HTTP_CONN_H
#define PARLEY_CORE_HTTP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <http_parser.h>

#include "http_server.h"
#include "util.h"

#define HTTP_LOG "http"
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
	CONN_LINGER,
	CONN_STREAMING
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
	bool http11;                  /* HTTP/1.1 or later: may be sent chunked */
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
	/* A streamed answer (http_stream.c), once begun. */
	bool streaming;
	bool chunked;                 /* else delimited by the close */
	bool stop_told;               /* on_stop is scheduled or has run */
	http_stream_stop_reason stop_reason;
	http_stream_stop_fn on_stop;
	void *stop_arg;
	struct event *stop_ev;        /* runs on_stop from the loop */
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
	size_t lingered;              /* bytes discarded in LINGER */
	uint64_t linger_until_us;     /* LINGER ends by then at the latest */
	size_t streamed_queued;       /* STREAMING: bytes ever queued, for the log */
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

/* ---------------------------------------------------------------- strbuf */

static inline void strbuf_reserve(strbuf *b, size_t need)
{
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

static inline void strbuf_append(strbuf *b, const char *p, size_t n)
{
	strbuf_reserve(b, b->len + n + 1);
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static inline const char *strbuf_str(const strbuf *b)
{
	return b->data ? b->data : "";
}

static inline struct timeval ms_to_tv(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	return tv;
}

/* ------------------------------------------------ http_server.c: conns */

/* Frees the connection; a request with the handler stays valid. */
void http_conn_close(http_conn *c, const char *why);
/* Refuses the request being read (or the connection) with a JSON error and
 * closes once the answer is out. */
void http_conn_fail(http_conn *c, int status, const char *code, const char *detail);
void http_conn_set_timer(http_conn *c, int ms);
/* The connection's last answer is queued: close once it is flushed. */
void http_conn_finish(http_conn *c);

/* ------------------------------------------------ http_parse.c: parsing */

/* Ready the parser for the next request on `c`. */
void http_conn_parser_reset(http_conn *c);
/* Feeds buffered input to the parser until a request is complete, the
 * input runs out, or the request is refused. */
void http_conn_process(http_conn *c);

/* ---------------------------------------------- http_request.c: answers */

http_request *http_request_new(http_conn *c);
void http_request_free(http_request *r);
void http_inflight_link(http_server *s, http_request *r);
void http_inflight_unlink(http_server *s, http_request *r);
/* {"error":code,"detail":detail}; malloc'd (caller frees) or NULL. */
char *http_error_json(const char *code, const char *detail);
/* Status line, Date, Connection, Content-Type, `framing` (a header such as
 * "Content-Length: 12", or NULL) and the extra headers, then the blank line. */
void http_write_head(struct evbuffer *out, int status, const char *content_type,
                     const char *framing, const char *const *extra_headers, bool keep_alive);
/* Queues a whole answer on c's output. The caller sets the next state. */
void http_conn_write_answer(http_conn *c, int status, const char *content_type,
                            const void *body, size_t len, const char *const *extra_headers,
                            bool keep_alive, bool is_head);


/* --------------------------------------------- http_stream.c: streaming */

/* The stream on r cannot go on: schedules r's on_stop (once). The caller
 * closes the connection where the reason calls for it. */
void http_stream_stop(http_request *r, http_stream_stop_reason why);
/* Unsent bytes a streaming connection may hold before it is dropped. */
size_t http_stream_output_bound(const http_server *s);

#endif
