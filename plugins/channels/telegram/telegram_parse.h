/* telegram_parse.h - the pure half of the telegram channel: the webhook's
 * secret header, Update objects to normalized events, getUpdates answers,
 * and the sendMessage request and its answer.
 *
 * Nothing here calls the host table or the event loop, so the unit tests and
 * the fuzz target drive it directly. The plugin glue (telegram.c) passes the
 * host's secure_equals and clock values in. */
#ifndef PARLEY_TELEGRAM_PARSE_H
#define PARLEY_TELEGRAM_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/parley.h"

/* Linked into the plugin but not part of its interface: keep these out of
 * the dynamic symbol table even without an export list. */
#if defined(__GNUC__)
#define TELEGRAM_INTERNAL __attribute__((visibility("hidden")))
#else
#define TELEGRAM_INTERNAL
#endif

#define TELEGRAM_SECRET_MAX 256          /* setWebhook's secret_token: 1..256 chars */
#define TELEGRAM_MAX_RETRY_AFTER_S 86400 /* a larger retry_after is capped */
#define TELEGRAM_MAX_UNIX_S 253402300799LL /* 9999-12-31T23:59:59Z; a later "date" is not a date */
#define TELEGRAM_REASON_BYTES 300        /* a delivery reason, with its NUL */
#define TELEGRAM_ID_BYTES 48             /* "<chat id>:<message id>" and NUL */

/* ------------------------------------------------------------------------ */
/* The webhook's secret header                                              */
/* ------------------------------------------------------------------------ */

typedef int (*telegram_equals_fn)(const void *a, size_t a_len, const void *b, size_t b_len);

typedef enum telegram_secret_result {
	TELEGRAM_SECRET_OK = 0,
	TELEGRAM_SECRET_MISSING = 1,   /* no X-Telegram-Bot-Api-Secret-Token header */
	TELEGRAM_SECRET_BAD = 2        /* present but not the configured secret */
} telegram_secret_result;

/* Compare the header's value (borrowed, NULL when absent) with the
 * configured secret (borrowed) using `equals` (constant time in the
 * contents; the lengths are not secret). */
TELEGRAM_INTERNAL telegram_secret_result
telegram_check_secret(const char *header, const char *secret, size_t secret_len,
                      telegram_equals_fn equals);

/* True when s (borrowed) is a valid secret_token for setWebhook: 1..256 of
 * A-Z a-z 0-9 _ -. */
TELEGRAM_INTERNAL bool telegram_secret_is_valid(const char *s);

/* True when s (borrowed) looks like a bot token "<digits>:<A-Za-z0-9_->":
 * it goes into the URL path, so nothing else may be in it. */
TELEGRAM_INTERNAL bool telegram_token_is_valid(const char *s);

/* ------------------------------------------------------------------------ */
/* Inbound: Update objects                                                  */
/* ------------------------------------------------------------------------ */

typedef struct telegram_parse_opts {
	int channel_posts;   /* nonzero: channel_post / edited_channel_post become events */
} telegram_parse_opts;

/* Receives each event. `ev` and all its strings are borrowed for the call.
 * Return 0, or -1 to refuse it. */
typedef int (*telegram_emit_fn)(void *ctx, const parley_event *ev);

typedef enum telegram_parse_result {
	TELEGRAM_PARSE_EMITTED = 0,   /* one event was handed to emit and taken */
	TELEGRAM_PARSE_IGNORED = 1,   /* a valid update we do not store (unknown
	                                 type, service message, channel post when
	                                 not configured): answer 200 */
	TELEGRAM_PARSE_INVALID = 2,   /* not JSON, or a known update missing a
	                                 required field: why says which */
	TELEGRAM_PARSE_REFUSED = 3    /* emit returned -1 */
} telegram_parse_result;

/* One webhook body: exactly one Update object. body: borrowed, need not be
 * NUL-terminated. *update_id receives the update's id when it has one (else
 * -1). why (caller's buffer) says what was wrong or why it was ignored.
 * emit runs at most once, only after the whole update has been validated. */
TELEGRAM_INTERNAL telegram_parse_result
telegram_parse_update(const void *body, size_t len, const telegram_parse_opts *opts,
                      telegram_emit_fn emit, void *ctx, int64_t *update_id,
                      char *why, size_t whylen);

/* What one getUpdates answer held. */
typedef struct telegram_poll_summary {
	size_t updates;        /* Update objects in "result" */
	size_t emitted;        /* became events (taken by emit) */
	size_t ignored;        /* valid but not stored */
	size_t skipped;        /* invalid or refused: logged, skipped, offset still moves */
	int64_t next_offset;   /* highest update_id + 1; the given offset when none */
} telegram_poll_summary;

/* A getUpdates answer body {"ok":true,"result":[Update...]}: every update is
 * parsed as telegram_parse_update does and its event handed to emit, in
 * order. An update that cannot be used is skipped (counted), not fatal: one
 * odd update must not stop the stream for good. body: borrowed.
 * Returns false (why filled: Telegram's description, or what is malformed)
 * when the answer as a whole is not a successful getUpdates result; then
 * emit has not been called. */
TELEGRAM_INTERNAL bool
telegram_parse_updates(const void *body, size_t len, int64_t offset,
                       const telegram_parse_opts *opts, telegram_emit_fn emit, void *ctx,
                       telegram_poll_summary *sum, char *why, size_t whylen);

/* The getUpdates request body (owned by the caller; NULL when out of
 * memory): {"offset":N,"timeout":T,"limit":100,"allowed_updates":[...]}.
 * offset <= 0 leaves "offset" out (Telegram then starts with the oldest
 * unconfirmed update). */
TELEGRAM_INTERNAL char *
telegram_get_updates_body(int64_t offset, int64_t timeout_s, const telegram_parse_opts *opts);

/* ------------------------------------------------------------------------ */
/* Outbound: sendMessage                                                    */
/* ------------------------------------------------------------------------ */

/* "<api_url>/bot<token>/<method>" (owned by the caller; NULL when out of
 * memory). Trailing slashes of api_url are dropped. The result holds the
 * token: never log it. */
TELEGRAM_INTERNAL char *
telegram_method_url(const char *api_url, const char *token, const char *method);

/* Replace every occurrence of secret (borrowed; NULL or "" does nothing) in
 * s (caller's buffer of size bytes, NUL-terminated) by "<bot_token>"; when
 * the buffer has no room for the mask, s is cut before the secret. */
TELEGRAM_INTERNAL void telegram_scrub(char *s, size_t size, const char *secret);

/* What a send is, as the core handed it (all borrowed). */
typedef struct telegram_send_in {
	parley_send_kind kind;
	const char *recipient_id;   /* the customer's user id */
	const char *thread_id;      /* the chat id */
	const char *in_reply_to;    /* "<chat id>:<message id>", or NULL */
	const char *text;
} telegram_send_in;

/* Build the sendMessage body for `in` (owned by the caller in *body_out).
 * A message goes to chat_id = thread_id (the recipient's id when there is
 * none) as a reply to in_reply_to when that message is in the same chat.
 * A private reply goes to chat_id = recipient_id, without a reply (the
 * message answered is in another chat). Returns false with a reason for
 * operators in why when the send cannot be built (no chat, an id that is
 * not a Telegram id, empty text, invalid UTF-8). */
TELEGRAM_INTERNAL bool
telegram_send_body(const telegram_send_in *in, char **body_out, char *why, size_t whylen);

/* How a sendMessage answer ends the delivery. */
typedef struct telegram_send_result {
	parley_outcome outcome;
	int64_t retry_at_ms;                   /* RETRY: not before (Unix ms); 0 = backoff */
	char reason[TELEGRAM_REASON_BYTES];    /* RETRY/FAIL: for operators; "" for OK */
	char external_id[TELEGRAM_ID_BYTES];   /* OK: "<chat id>:<message id>", or "" */
	char chat_id[TELEGRAM_ID_BYTES];       /* OK: the chat it went to, or "" */
} telegram_send_result;

/* Classify an answer. status: HTTP status, 0 for a transport failure with
 * transport_error (borrowed, may be NULL). body: borrowed, may be NULL.
 * retry_after: the Retry-After header (borrowed, may be NULL). now_ms: the
 * clock, for retry_at_ms.
 *   2xx with ok:true        -> OK (+ the sent message's ids)
 *   429                     -> RETRY at now + parameters.retry_after, or the
 *                              "retry after N" of description, or Retry-After
 *   0, 408, 5xx             -> RETRY (backoff)
 *   other 4xx               -> FAIL with Telegram's description
 *   2xx without ok:true     -> RETRY (an answer we do not understand) */
TELEGRAM_INTERNAL void
telegram_classify_send(long status, const char *transport_error, const void *body, size_t len,
                       const char *retry_after, int64_t now_ms, telegram_send_result *out);

/* Telegram's "description" of an error answer (or a printable excerpt of a
 * body that is not the Bot API's shape) into out (caller's buffer, always
 * NUL-terminated). body: borrowed. */
TELEGRAM_INTERNAL void
telegram_describe(const void *body, size_t len, char *out, size_t outlen);

#endif
