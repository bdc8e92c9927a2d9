/* zendesk_api.h - the pure half of the zendesk sink: which Support API
 * request each step is (URL, headers, body), what an answer means, and the
 * webhook's signature and events.
 *
 * No host calls: the unit tests check every request byte for byte and every
 * answer's outcome; the fuzz target feeds the parsers garbage. The rest of
 * the plugin (zendesk_sink.h) does the HTTP calls, the pacing and the
 * bookkeeping.
 *
 *   zendesk_request.c  requests: Authorization, URLs, bodies
 *   zendesk_answer.c   answers: outcomes, tickets, comments, users
 *   zendesk_webhook.c  webhooks: signature and ticket events */
#ifndef PARLEY_ZENDESK_API_H
#define PARLEY_ZENDESK_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "parley/parley.h"

#if defined(__GNUC__)
#define ZD_INTERNAL __attribute__((visibility("hidden")))
#else
#define ZD_INTERNAL
/* ------------------------------------------------------------------------ */
/* Shared by the files above                                                */
/* ------------------------------------------------------------------------ */

/* base64 of len bytes, owned by the caller; NULL when out of memory. */
ZD_INTERNAL char *zd_base64(const void *data, size_t len);

/* A JSON id (a positive integer, or a string of digits as in event
 * webhooks) as text into out. False for anything else. v: borrowed. */
ZD_INTERNAL bool zd_json_id(const json_t *v, char out[ZD_ID_BYTES]);

/* "2024-05-01T12:34:56Z" or with fractional seconds / an offset: Unix ms;
 * 0 when it is not such a time. s: borrowed, may be NULL. */
ZD_INTERNAL int64_t zd_parse_time(const char *s);

#endif

#define ZD_REASON_BYTES 512
#define ZD_ID_BYTES 32                 /* a Zendesk id as decimal text */
#define ZD_MAX_RETRY_AFTER_S 3600      /* a larger Retry-After is capped */
#define ZD_DEFAULT_PAUSE_MS 10000      /* a 429 without Retry-After pauses this long */
#define ZD_SUBJECT_BYTES 80            /* the first words of the message */
#define ZD_USER_EXTERNAL_PREFIX "parley-"  /* + Parley's customer id: the user's external_id */
#define ZD_CUSTOMER_ID_MAX 200         /* a longer customer id is no external_id */

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

/* The Authorization header line: "Authorization: Bearer <oauth_token>" when
 * oauth_token is set, else "Authorization: Basic base64(<email>/token:<api_token>)".
 * All arguments borrowed. Owned by the caller, a secret: wipe it before it
 * is freed. NULL when out of memory or when no credential is given. */
ZD_INTERNAL char *zd_auth_header(const char *email, const char *api_token,
                                 const char *oauth_token);

/* True when s is a Zendesk id: 1..19 decimal digits. */
ZD_INTERNAL bool zd_is_id(const char *s);

/* URLs below base_url (e.g. "https://acme.zendesk.com", a trailing '/' is
 * ignored). All owned by the caller; NULL when out of memory.
 *   zd_url_lookup:  {base}/api/v2/tickets.json?external_id={percent-encoded}
 *   zd_url_create:  {base}/api/v2/tickets.json
 *   zd_url_ticket:  {base}/api/v2/tickets/{id}.json   (id: zd_is_id)
 *   zd_url_me:      {base}/api/v2/users/me.json
 *   zd_url_user_upsert: {base}/api/v2/users/create_or_update.json
 *   zd_url_comments: {base}/api/v2/tickets/{id}/comments.json?sort_order=desc */
ZD_INTERNAL char *zd_url_lookup(const char *base_url, const char *external_id);
ZD_INTERNAL char *zd_url_create(const char *base_url);
ZD_INTERNAL char *zd_url_ticket(const char *base_url, const char *ticket_id);
ZD_INTERNAL char *zd_url_me(const char *base_url);
ZD_INTERNAL char *zd_url_user_upsert(const char *base_url);
ZD_INTERNAL char *zd_url_comments(const char *base_url, const char *ticket_id);

/* The subject: "<channel instance>: <first words of text>" (at most
 * ZD_SUBJECT_BYTES bytes of words, "..." when cut), into out. Arguments
 * borrowed, may be NULL. */
ZD_INTERNAL void zd_subject(const char *channel, const char *text, char *out, size_t outlen);

/* A Zendesk tag from free text: lower-case [a-z0-9_-], anything else '_',
 * prefixed; into out. */
ZD_INTERNAL void zd_tag(const char *prefix, const char *value, char *out, size_t outlen);

/* The body of POST /api/v2/tickets.json for t (borrowed):
 *   {"ticket":{"subject","comment":{"body"},"requester":{"name","email"},
 *              "external_id","tags":[...],"via_followup_source_id"}}
 * Owned by the caller; NULL with a reason in err when t cannot become a
 * ticket (a follow_up_of that is not an id, text that is not UTF-8) or when
 * out of memory. */
ZD_INTERNAL char *zd_ticket_body(const parley_ticket_request *t, char *err, size_t errlen);

/* The body of POST /api/v2/users/create_or_update.json for customer c
 * (borrowed), the ticket's requester:
 *   {"user":{"name","email","external_id":"parley-<customer_id>"}}
 * name as in zd_ticket_body's requester, email only when Parley knows one.
 * Zendesk finds the user by external_id or email, or creates an end user.
 * No "role": it would also apply to an existing user found by email, e.g.
 * make an agent who wrote in as a customer an end user.
 * Owned by the caller; NULL with a reason in err when c has no customer_id,
 * one longer than ZD_CUSTOMER_ID_MAX or not UTF-8, or when out of memory. */
ZD_INTERNAL char *zd_user_body(const parley_customer_info *c, char *err, size_t errlen);

/* body (a zd_ticket_body, borrowed) with its inline "requester" replaced by
 * "requester_id":user_id (a zd_is_id), right after "comment". Owned by the
 * caller; NULL when body is not a ticket body, user_id is not an id, or out
 * of memory. */
ZD_INTERNAL char *zd_ticket_body_requester_id(const char *body, const char *user_id);

/* The body of PUT /api/v2/tickets/{id}.json adding text as a public comment
 * by author_id (a zd_is_id; NULL: the API user):
 *   {"ticket":{"comment":{"body","public":true,"author_id":N}}}
 * Owned by the caller; NULL when text is not UTF-8 or out of memory. */
ZD_INTERNAL char *zd_comment_body(const char *text, const char *author_id);

/* ------------------------------------------------------------------------ */
/* Answers                                                                  */
/* ------------------------------------------------------------------------ */

/* What an answer means for the delivery. */
typedef struct zd_result {
	parley_outcome outcome;     /* OK only for a 2xx */
	int64_t retry_at_ms;        /* RETRY: not before (0: the core's backoff) */
	int64_t pause_until_ms;     /* 429: start no request before this (0: no pause) */
	int unauthorized;           /* 401/403: the credential is refused */
	int closed;                 /* 422 because the ticket is closed */
	char reason[ZD_REASON_BYTES];
} zd_result;

/* Classify an answer. status: the HTTP status, 0 for a transport failure
 * (error says which, may be NULL). retry_after: the header, may be NULL.
 * body: borrowed, may be NULL. what: the step for the reason ("creating the
 * ticket"). Never puts a credential in the reason. */
ZD_INTERNAL void zd_classify(long status, const char *error, const char *retry_after,
                             const unsigned char *body, size_t len, int64_t now_ms,
                             const char *what, zd_result *r);

/* The ticket in a create / show answer {"ticket":{"id","requester_id","status"}}.
 * id and requester_id go into ZD_ID_BYTES buffers (requester "" when absent),
 * status (may be NULL) into a 16-byte buffer. False when there is no id. */
ZD_INTERNAL bool zd_parse_ticket(const unsigned char *body, size_t len,
                                 char id[ZD_ID_BYTES], char requester[ZD_ID_BYTES],
                                 char *status);

/* The ticket a lookup answer {"tickets":[...]} names for case external_id:
 * the one with that external_id that is not closed and is not follow_up_of
 * (with follow_up_of set: whose id is greater, as it was created after it);
 * the lowest id when several are. Returns 1 with id and requester filled, 0 when
 * none matches, -1 when the answer is not a ticket list. */
ZD_INTERNAL int zd_parse_lookup(const unsigned char *body, size_t len, const char *external_id,
                                const char *follow_up_of, char id[ZD_ID_BYTES],
                                char requester[ZD_ID_BYTES]);

/* The comment an update answer created: the id of the first "Comment" event
 * in {"audit":{"events":[...]}}. False when there is none. */
ZD_INTERNAL bool zd_parse_comment_id(const unsigned char *body, size_t len, char id[ZD_ID_BYTES]);

/* A comment that an earlier, uncertain attempt may have added: in a
 * comment list {"comments":[{"id","author_id","body","created_at"}]}, the
 * newest one by author_id whose body is text (as zd_comment_body sends it,
 * ignoring surrounding whitespace) and that was created at since_ms or
 * later. Returns 1 with id filled, 0 when there is none, -1 when the answer
 * is not a comment list. */
ZD_INTERNAL int zd_parse_comments_find(const unsigned char *body, size_t len,
                                       const char *author_id, const char *text,
                                       int64_t since_ms, char id[ZD_ID_BYTES]);

/* The user in {"user":{"id"}} (GET users/me, POST users/create_or_update). */
ZD_INTERNAL bool zd_parse_user_id(const unsigned char *body, size_t len, char id[ZD_ID_BYTES]);

/* ------------------------------------------------------------------------ */
/* Webhooks (Zendesk event subscriptions)                                   */
/* ------------------------------------------------------------------------ */

typedef void (*zd_hmac_fn)(const void *key, size_t key_len, const void *data, size_t len,
                           unsigned char out[32]);
typedef int (*zd_equals_fn)(const void *a, size_t a_len, const void *b, size_t b_len);

/* True when signature (X-Zendesk-Webhook-Signature) is
 * base64(HMAC-SHA256(secret, timestamp + body)) with timestamp the
 * X-Zendesk-Webhook-Signature-Timestamp header. NULL headers are false. */
ZD_INTERNAL bool zd_verify_signature(const char *signature, const char *timestamp,
                                     const void *secret, size_t secret_len,
                                     const void *body, size_t len,
                                     zd_hmac_fn hmac, zd_equals_fn equals);

typedef enum zd_webhook_status {
	ZD_WEBHOOK_EVENT = 0,     /* one ticket event was handed to emit */
	ZD_WEBHOOK_IGNORED = 1,   /* a well-formed event Parley does not use: answer 200 */
	ZD_WEBHOOK_BAD = 2,       /* malformed: answer 400, nothing stored */
	ZD_WEBHOOK_REFUSED = 3    /* emit refused the event: answer 400 */
} zd_webhook_status;

/* Called with the one event of a webhook; borrowed for the call. 0, or -1
 * when the event is refused. */
typedef int (*zd_emit_fn)(void *ctx, const parley_ticket_event *ev);

/* Parse one event-subscription webhook body
 *   {"type":"zen:event-type:ticket.comment_added"|"...status_changed",
 *    "id","time","detail":{"id","requester_id",...},"event":{...}}
 * and hand its parley_ticket_event to emit. api_user_id: the API user's id
 * (its comments are Parley's), may be NULL. what (ZD_REASON_BYTES) says
 * why for BAD and IGNORED. */
ZD_INTERNAL zd_webhook_status zd_parse_webhook(const unsigned char *body, size_t len,
                                               const char *api_user_id, zd_emit_fn emit,
                                               void *ctx, char *what, size_t whatlen);

/* ------------------------------------------------------------------------ */
/* Shared by the files above                                                */
/* ------------------------------------------------------------------------ */

/* base64 of len bytes, owned by the caller; NULL when out of memory. */
ZD_INTERNAL char *zd_base64(const void *data, size_t len);

/* A JSON id (a positive integer, or a string of digits as in event
 * webhooks) as text into out. False for anything else. v: borrowed. */
ZD_INTERNAL bool zd_json_id(const json_t *v, char out[ZD_ID_BYTES]);

/* "2024-05-01T12:34:56Z" or with fractional seconds / an offset: Unix ms;
 * 0 when it is not such a time. s: borrowed, may be NULL. */
ZD_INTERNAL int64_t zd_parse_time(const char *s);

#endif
