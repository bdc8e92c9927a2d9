/* live_internal.h - what the live event files share; not an API (the rest
 * of the core uses live_events.h).
 *
 *   live_events.c     start and stop, the LISTEN subscriptions, the sweep
 *   live_sequencer.c  numbering queued events; retention
 *   live_hub.c        reading new events, fan-out, heartbeats, the clients
 *   live_scope.c      what a client's credential sees, re-checked
 *   live_stream.c     the handler, resume, frames, a client's end */
#ifndef PARLEY_CORE_LIVE_INTERNAL_H
#define PARLEY_CORE_LIVE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>
#include <libpq-fe.h>

#include "http_server.h"
#include "live_events.h"

#define LIVE_LOG "live"

/* A page of events after id $1, as live_event_from_row reads them: at most
 * LIVE_PAGE events and, beyond the first, LIVE_PAGE_BYTES of payload. A
 * page is written to a client before the loop sends any of it, so it must
 * fit well within the client's output bound (max_output_bytes, at least
 * 4 KiB, 1 MiB by default); a page cut short has at least LIVE_PAGE_BYTES
 * (see live_page_full). */
#define LIVE_PAGE 200
#define LIVE_PAGE_BYTES 262144
#define LIVE_STR_(x) #x
#define LIVE_STR(x) LIVE_STR_(x)
#define LIVE_PAGE_SQL \
	"SELECT id, kind, channel_instance, agent_id, payload FROM (" \
	" SELECT *, sum(octet_length(payload)) OVER (ORDER BY id) - octet_length(payload) AS before" \
	" FROM (SELECT id, kind, channel_instance, agent_id, payload::text AS payload FROM live_event" \
	"       WHERE id > $1::bigint ORDER BY id LIMIT " LIVE_STR(LIVE_PAGE) ") AS page) AS sized" \
	" WHERE before < " LIVE_STR(LIVE_PAGE_BYTES) " ORDER BY id"

/* Whether more events may follow a page of `rows` events and `bytes` of payload. */
static inline bool live_page_full(int rows, size_t bytes)
{
	return rows >= LIVE_PAGE || bytes >= LIVE_PAGE_BYTES;
}

/* The current limits (live_events.c). */
extern live_limits live_cfg;

/* One event as read; every pointer borrowed from the result row. */
typedef struct live_event {
	long long id;
	const char *kind;
	const char *instance;       /* NULL: none */
	long long agent_id;         /* 0: none */
	const char *payload;        /* JSON text */
	size_t payload_len;
} live_event;

void live_event_from_row(PGresult *res, int row, live_event *ev);

typedef struct live_scope live_scope;

typedef enum live_client_state {
	LIVE_CONNECTING,    /* checking the caller and where a resume stands */
	LIVE_REPLAYING,     /* resuming or catching up from the table; fan-out passes it by */
	LIVE_STREAMING      /* gets what the hub reads */
} live_client_state;

/* A connected client: small on purpose (a node holds thousands). */
typedef struct live_client {
	struct live_client *prev, *next;   /* the hub's list */
	http_request *req;
	live_scope *scope;                 /* shared with the credential's other streams */
	long long agent_id;                /* 0: a token without an agent */
	long long last_sent;               /* newest id given or passed by: the stream's cursor */
	long long resume_after;            /* Last-Event-ID; -1: none */
	live_client_state state;
	unsigned char empty_pages;         /* replay: pages in a row that found nothing new */
	unsigned blocked_len;              /* replay: the frame that did not fit, until it does */
	bool began;                        /* the 200 and headers are out */
	bool announced;                    /* 'ready' is out */
	bool db_busy;                      /* a batch for this client is in flight */
	bool stopped;                      /* ended: freed when db_busy clears */
	struct event *pace;                /* replay waits for the client to read (replay only) */
} live_client;

/* ---- live_sequencer.c */
void live_sequencer_start(struct event_base *base);
void live_sequencer_poke(void);     /* queued events may be waiting */
void live_sequencer_stop(void);
void live_sequencer_free(void);

/* ---- live_hub.c */
void live_hub_start(struct event_base *base);
void live_hub_stop(void);
void live_hub_free(void);
bool live_hub_ready(void);          /* the newest id is known */
long long live_hub_last_read(void);
size_t live_hub_clients(void);
void live_hub_add(live_client *c);
void live_hub_remove(live_client *c);
/* Read what is new; `announced` is the newest id a NOTIFY named (0: unknown). */
void live_hub_read(long long announced);
void live_hub_set_heartbeat(int ms);
/* The credential behind `s` is no longer good: end its streams. */
void live_hub_end_scope(const live_scope *s);
bool live_client_sees(const live_client *c, const live_event *ev);

/* ---- live_scope.c */
void live_scope_start(struct event_base *base);
void live_scope_stop(void);
void live_scope_free(void);
/* The scope of a credential, shared (a new reference); unknown until
 * live_scope_apply. */
live_scope *live_scope_get(const char *kind, const char *secret_hash);
void live_scope_put(live_scope *s);
const char *live_scope_kind(const live_scope *s);
const char *live_scope_hash(const live_scope *s);
/* From a parley_live_scopes row: valid, instances JSON (NULL: every one). */
void live_scope_apply(live_scope *s, bool valid, const char *instances_json);
bool live_scope_valid(const live_scope *s);
bool live_scope_all(const live_scope *s);
bool live_scope_sees(const live_scope *s, const char *instance);
/* Check every credential again soon (a team changed). */
void live_scope_refresh_soon(void);

/* ---- live_stream.c */
void live_stream_set_base(struct event_base *base);   /* NULL: forget (free) */
/* Queue a frame; false once the stream has stopped (its end is on its way). */
bool live_stream_send(live_client *c, const char *frame, size_t len);
/* Whether a frame of len bytes would leave too much unsent: the client
 * must catch up from the table instead. */
bool live_stream_must_wait(const live_client *c, size_t len);
/* Take a streaming client off the fan-out; it reads from the table from
 * c->last_sent at its own pace, then streams again. blocked_len: the frame
 * that would not fit now. */
void live_stream_catch_up(live_client *c, size_t blocked_len);
/* End the stream now (or when its batch returns) and free the client. */
void live_stream_close(live_client *c);
/* "id: N\nevent: KIND\ndata: JSON\n\n" into *buf (grown as needed); its length. */
size_t live_frame(char **buf, size_t *cap, const live_event *ev);

#endif
