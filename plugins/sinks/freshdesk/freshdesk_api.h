/* freshdesk_api.h - the pure half of the freshdesk sink: the requests it
 * makes to Freshdesk's API v2 (paths, headers, JSON bodies), the
 * classification of Freshdesk's answers, HTML in both directions, and the
 * parser of the automation webhook Parley receives.
 *
 * Nothing here calls the host table or the event loop, so the unit tests and
 * the fuzz target drive it directly; the rest of the plugin
 * (freshdesk_sink.h) passes the host's secure_equals and clock values in.
 *
 *   freshdesk_text.c     HTML both ways, fingerprints, tags, ids
 *   freshdesk_request.c  Authorization, ticket and note bodies, the lookup
 *   freshdesk_answer.c   what an answer means for the delivery
 *   freshdesk_webhook.c  the webhook's credentials and its ticket event */
#ifndef PARLEY_FRESHDESK_API_H
#define PARLEY_FRESHDESK_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "parley/parley.h"
#include "../../common/plugin_util.h"

/* Linked into the plugin but not part of its interface. */
#if defined(__GNUC__)
#define FD_INTERNAL __attribute__((visibility("hidden")))
#else
#define FD_INTERNAL
/* ------------------------------------------------------------------------ */
/* Shared by the files above                                                */
/* ------------------------------------------------------------------------ */

/* Append one byte to b. */
FD_INTERNAL void fd_buf_char(pu_buf *b, char c);
/* The buffer's text, owned by the caller from now on (an empty string for an
 * empty buffer); NULL when an append failed. */
FD_INTERNAL char *fd_buf_take(pu_buf *b);
/* snprintf into out that never fails loudly: a cut text is still a text. */
FD_INTERNAL void fd_fmt(char *out, size_t outlen, const char *f, ...) PARLEY_PRINTF(3, 4);
/* The id of a JSON value (an integer, or a string of digits) in out. */
FD_INTERNAL bool fd_json_id(const json_t *v, char out[FD_ID_BYTES]);

#endif

#define FD_TAG_BYTES 33             /* a Freshdesk tag (at most 32 chars) and NUL */
#define FD_ID_BYTES 24              /* a ticket or note id (decimal) and NUL */
#define FD_COMMENT_ID_BYTES 64      /* "<ticket>:pub:<16 hex>" and NUL */
#define FD_REASON_BYTES 512         /* a delivery reason, with its NUL */
#define FD_MAX_RETRY_AFTER_S 3600   /* a larger Retry-After is capped */
#define FD_SUBJECT_TEXT_BYTES 80    /* the message excerpt in a subject */

/* ------------------------------------------------------------------------ */
/* Small building blocks                                                    */
/* ------------------------------------------------------------------------ */

/* "Authorization: Basic base64(api_key ":X")", owned by the caller (a secret:
 * wipe it before freeing); NULL when out of memory or when api_key (borrowed)
 * is empty or holds control characters. */
FD_INTERNAL char *fd_auth_header(const char *api_key);

/* text (borrowed, UTF-8) as HTML for a Freshdesk description or note: & < > "
 * ' escaped, line breaks as <br>. Owned by the caller; NULL when out of
 * memory. */
FD_INTERNAL char *fd_html_escape(const char *text);

/* Freshdesk's HTML (borrowed, need not be NUL-terminated) as plain text: tags
 * dropped (script/style with their content), <br>, </p>, </div>, </li> as
 * line breaks, entities decoded (named: amp lt gt quot apos nbsp; numeric),
 * runs of blank lines squeezed, trimmed. Invalid UTF-8 and code points become
 * U+FFFD. Owned by the caller; NULL when out of memory. */
FD_INTERNAL char *fd_html_to_text(const char *html, size_t len);

/* The 16-hex-digit fingerprint of a text (borrowed): SHA-256 of the text with
 * every run of white space (including U+00A0) turned into one space and the
 * ends trimmed, so a message and Freshdesk's rendering of the note made from
 * it give the same value. out: 17 bytes. */
FD_INTERNAL void fd_fingerprint(const char *text, char out[17]);

/* The tag that marks the ticket opened by one job: "parley-" and the first 16
 * hex digits of SHA-256(idempotency_key). out: FD_TAG_BYTES. */
FD_INTERNAL void fd_key_tag(const char *idempotency_key, char out[FD_TAG_BYTES]);

/* True when s (borrowed) is a plain Freshdesk id: 1 to 20 decimal digits. */
FD_INTERNAL bool fd_id_is_valid(const char *s);

/* The id of a comment as the webhook reports it and append_message records
 * it: "<ticket id>:pub:<fingerprint>" or "<ticket id>:priv:<fingerprint>".
 * false when it does not fit. */
FD_INTERNAL bool fd_comment_id(const char *ticket_id, int is_public, const char *text,
                               char out[FD_COMMENT_ID_BYTES]);

/* ------------------------------------------------------------------------ */
/* Outbound requests                                                        */
/* ------------------------------------------------------------------------ */

typedef enum fd_requester_kind {
	FD_REQUESTER_NONE = 0,
	FD_REQUESTER_EMAIL = 1,             /* "email" */
	FD_REQUESTER_PHONE = 2,             /* "phone" with "name" */
	FD_REQUESTER_EXTERNAL_ID = 3        /* "unique_external_id" */
} fd_requester_kind;

/* What a ticket is made of. All strings borrowed; any may be NULL except
 * idempotency_key. */
typedef struct fd_ticket_in {
	const char *idempotency_key;
	const char *case_number;
	const char *channel_instance;
	const char *channel_kind;
	int is_public;                      /* the conversation is public */
	const char *customer_id;            /* Parley's customer id */
	const char *customer_name;
	const char *customer_email;
	const char *customer_phone;
	const char *customer_handle;
	const char *author_name;            /* of the first message */
	const char *text;                   /* the first message */
	const char *follow_up_of;           /* the closed ticket this one follows */
	int64_t priority;                   /* 1..4 */
	int64_t source;                     /* Freshdesk's source code */
	const char *group_id;               /* a Freshdesk group id, or NULL */
} fd_ticket_in;

/* Which requester field a ticket for t gets: the customer's e-mail address,
 * else their phone number, else unique_external_id "parley-<customer_id>". */
FD_INTERNAL fd_requester_kind fd_requester(const fd_ticket_in *t);

/* The JSON body of POST /api/v2/tickets for t, in *body (owned by the caller).
 * false with why filled when it cannot be built (no requester, not UTF-8,
 * out of memory). */
FD_INTERNAL bool fd_ticket_body(const fd_ticket_in *t, char **body, char *why, size_t whylen);

/* The path and query of the lookup that finds the ticket a previous attempt
 * of t's job opened, in *path (owned by the caller): the requester's recent
 * tickets (GET /api/v2/tickets?email=..|unique_external_id=..), or, for a
 * requester known only by phone, the filter API by the job's tag. false when
 * out of memory or there is no requester. */
FD_INTERNAL bool fd_lookup_path(const fd_ticket_in *t, char **path);

/* POST /api/v2/tickets/{id}/notes: the path (owned by the caller; NULL when
 * ticket_id is not a valid id or out of memory) and the body of an incoming
 * public note with text (borrowed) as HTML (owned; NULL on failure). */
FD_INTERNAL char *fd_note_path(const char *ticket_id);
FD_INTERNAL char *fd_note_body(const char *text);

/* ------------------------------------------------------------------------ */
/* Answers                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct fd_result {
	parley_outcome outcome;
	int64_t retry_after_s;              /* 429 with a usable Retry-After; else 0 */
	int rate_limited;                   /* a 429 */
	char id[FD_ID_BYTES];               /* OK: the created object's id */
	char reason[FD_REASON_BYTES];       /* RETRY/FAIL: for operators, no secrets */
} fd_result;

/* Classify the answer to a create (ticket or note): 201/200 with an integer
 * "id" -> OK; 0 (transport: error says why, may be NULL), 408, 5xx -> RETRY;
 * 429 -> RETRY honouring Retry-After (header value borrowed, may be NULL);
 * 401/403 -> FAIL "unauthorized: check the API token"; 400/422 -> FAIL with
 * Freshdesk's validation details; other 4xx -> FAIL; 2xx without an id ->
 * FAIL (a retry could duplicate). what: "ticket" or "note". */
FD_INTERNAL void fd_classify_create(long status, const char *error, const void *body,
                                    size_t len, const char *retry_after, const char *what,
                                    fd_result *r);

/* Classify an answer that is not a success (transport error, 408, 429,
 * 5xx, 4xx) the way fd_classify_create does; fills r. what: what the
 * request was for, e.g. "conversation lookup". */
FD_INTERNAL void fd_classify_failure(long status, const char *error, const void *body,
                                     size_t len, const char *retry_after, const char *what,
                                     fd_result *r);

typedef enum fd_lookup_result {
	FD_LOOKUP_FOUND = 0,                /* id_out holds the ticket's id */
	FD_LOOKUP_NONE = 1,                 /* no ticket carries the tag: create it */
	FD_LOOKUP_ERROR = 2                 /* r says what to do with the delivery */
} fd_lookup_result;

/* Classify the answer to the lookup: a list of tickets (an array) or a filter
 * answer ({"results": [...]}); a ticket whose "tags" hold tag (borrowed) is
 * the one. 400/404 (Freshdesk knows no such contact yet) mean none. Other
 * answers are errors classified like fd_classify_create. */
FD_INTERNAL fd_lookup_result fd_classify_lookup(long status, const char *error, const void *body,
                                                size_t len, const char *retry_after,
                                                const char *tag, char id_out[FD_ID_BYTES],
                                                fd_result *r);

/* ------------------------------------------------------------------------ */
/* Inbound: the automation webhook                                          */
/* ------------------------------------------------------------------------ */

typedef int (*fd_equals_fn)(const void *a, size_t a_len, const void *b, size_t b_len);

typedef enum fd_auth_result {
	FD_AUTH_OK = 0,
	FD_AUTH_MISSING = 1,                /* neither the secret header nor Basic auth */
	FD_AUTH_BAD = 2                     /* present but wrong */
} fd_auth_result;

/* Check a webhook's credentials: the X-Parley-Webhook-Secret header's value
 * (borrowed, NULL when absent) against secret, or else an Authorization
 * header (borrowed, NULL when absent) "Basic base64(user:password)" against
 * username (NULL: Basic auth not accepted) and secret. equals compares in
 * constant time. */
FD_INTERNAL fd_auth_result fd_check_auth(const char *secret_header, const char *authorization,
                                         const char *username, const char *secret,
                                         fd_equals_fn equals);

/* Receives each ticket event; `ev` and its strings are borrowed for the
 * call. Return 0, or -1 to refuse it. */
typedef int (*fd_emit_fn)(void *ctx, const parley_ticket_event *ev);

typedef enum fd_parse_result {
	FD_PARSE_EMITTED = 0,               /* one event was handed to emit and taken */
	FD_PARSE_IGNORED = 1,               /* valid, but nothing Parley acts on: 200 */
	FD_PARSE_INVALID = 2,               /* malformed: why says what; 400 */
	FD_PARSE_REFUSED = 3                /* emit returned -1 */
} fd_parse_result;

/* One webhook body (borrowed, need not be NUL-terminated), in the shape
 * docs/sinks/freshdesk.md defines. now_ms: the receipt time (status events
 * are deduplicated per second). Validates everything before it emits at most
 * one event. why: a reason for INVALID and IGNORED. */
FD_INTERNAL fd_parse_result fd_parse_webhook(const void *body, size_t len, int64_t now_ms,
                                             fd_emit_fn emit, void *ctx, char *why,
                                             size_t whylen);

/* True when body (borrowed) is a public comment's webhook for a valid
 * ticket, whose id goes to ticket_id: the one kind of event that may be
 * Parley's own note, which the caller checks before fd_parse_webhook. */
FD_INTERNAL bool fd_webhook_public_ticket(const void *body, size_t len,
                                          char ticket_id[FD_ID_BYTES]);

/* ------------------------------------------------------------------------ */
/* Shared by the files above                                                */
/* ------------------------------------------------------------------------ */

/* Append one byte to b. */
FD_INTERNAL void fd_buf_char(pu_buf *b, char c);
/* The buffer's text, owned by the caller from now on (an empty string for an
 * empty buffer); NULL when an append failed. */
FD_INTERNAL char *fd_buf_take(pu_buf *b);
/* snprintf into out that never fails loudly: a cut text is still a text. */
FD_INTERNAL void fd_fmt(char *out, size_t outlen, const char *f, ...) PARLEY_PRINTF(3, 4);
/* The id of a JSON value (an integer, or a string of digits) in out. */
FD_INTERNAL bool fd_json_id(const json_t *v, char out[FD_ID_BYTES]);

#endif
