/* x_parse.h - the pure half of the x channel: the CRC answer, webhook
 * signatures, Account Activity payloads and recent-search results into
 * normalized events, outbound request bodies and the classification of the
 * X API's answers.
 *
 * Nothing here calls the host table or the event loop, so the unit test and
 * the fuzz target drive it directly. The plugin glue (x.c) passes the host's
 * hmac_sha256 and secure_equals. */
#ifndef PARLEY_X_PARSE_H
#define PARLEY_X_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/parley.h"
#include "x_oauth.h"

/* X ids are unsigned 64-bit decimals (19 digits today); 20 digits at most. */
#define X_MAX_ID_LEN 20
/* "<smaller user id>-<larger user id>": the id of a 1:1 DM conversation. */
#define X_MAX_DM_CONVERSATION_LEN (2 * X_MAX_ID_LEN + 1)

typedef void (*x_hmac_fn)(const void *key, size_t key_len, const void *data, size_t len,
                          unsigned char out[32]);
typedef int (*x_equals_fn)(const void *a, size_t a_len, const void *b, size_t b_len);

/* ------------------------------------------------------------------------ */
/* CRC and signatures                                                       */
/* ------------------------------------------------------------------------ */

/* {"response_token":"sha256=" + 44 base64 characters + "\"}" and a NUL. */
#define X_CRC_RESPONSE_LEN (sizeof("{\"response_token\":\"sha256=\"}") - 1 + 44)

/* The CRC answer for crc_token: {"response_token":"sha256=<base64
 * HMAC-SHA256(consumer_secret, crc_token)>"} into out (caller's buffer of
 * X_CRC_RESPONSE_LEN + 1 bytes). secret, crc_token: borrowed. */
X_INTERNAL void x_crc_response(const void *secret, size_t secret_len, const char *crc_token,
                               x_hmac_fn hmac, char out[X_CRC_RESPONSE_LEN + 1]);

typedef enum x_sig_result {
	X_SIG_OK = 0,
	X_SIG_MISSING = 1,   /* no x-twitter-webhooks-signature header */
	X_SIG_BAD = 2        /* malformed or wrong */
} x_sig_result;

/* Check x-twitter-webhooks-signature ("sha256=<base64>") against
 * HMAC-SHA256(consumer_secret, raw body), comparing with `equals` (constant
 * time). header: borrowed, NULL when absent. secret, body: borrowed. */
X_INTERNAL x_sig_result x_verify_signature(const char *header, const void *secret,
                                           size_t secret_len, const void *body,
                                           size_t body_len, x_hmac_fn hmac,
                                           x_equals_fn equals);

/* ------------------------------------------------------------------------ */
/* Ids and times                                                            */
/* ------------------------------------------------------------------------ */

/* True when s is 1..20 decimal digits (an X id as text). */
X_INTERNAL bool x_id_is_valid(const char *s);

/* The 1:1 DM conversation id of two users, "<smaller>-<larger>" compared as
 * numbers, into out (X_MAX_DM_CONVERSATION_LEN + 1 bytes). False when an id
 * is not a valid X id. a, b: borrowed. */
X_INTERNAL bool x_dm_conversation_id(const char *a, const char *b,
                                     char out[X_MAX_DM_CONVERSATION_LEN + 1]);

/* v1.1 created_at ("Fri Dec 13 04:48:09 +0000 2019") to Unix ms. (v2's
 * RFC 3339 times go through the plugins' shared pu_rfc3339_ms.) */
X_INTERNAL bool x_parse_v1_time(const char *s, int64_t *out_ms);

/* ------------------------------------------------------------------------ */
/* Inbound                                                                  */
/* ------------------------------------------------------------------------ */

/* Receives each event. `ev` and its strings are borrowed for the call.
 * Return 0, or -1 to stop parsing (the parse then fails). */
typedef int (*x_emit_fn)(void *ctx, const parley_event *ev);

typedef struct x_parse_stats {
	size_t emitted;          /* events handed to emit */
	size_t skipped;          /* items without what an event needs, retweets,
	                            DM typing/read indicators */
	size_t unknown;          /* top-level event types this channel ignores */
	char first_unknown[48];  /* the first of them, for a log line; "" if none */
	char first_skip[96];     /* why the first item was skipped; "" if none */
} x_parse_stats;

typedef struct x_parse_error {
	int http_status;         /* 400 */
	const char *code;        /* static: "invalid_json", "invalid_field", "event_rejected" */
	char detail[160];
} x_parse_error;

/* An Account Activity POST body: tweet_create_events, direct_message_events
 * and tweet_delete_events to events. brand_user_id (the configured account,
 * borrowed, may be NULL) and the payload's for_user_id mark the brand's own
 * tweets and DMs as from_brand. body: borrowed, need not be NUL-terminated.
 * True with *stats set; false with *err set for a body that is not a JSON
 * object, an event list that is not an array, or when emit refused. */
X_INTERNAL bool x_parse_activity(const void *body, size_t len, const char *brand_user_id,
                                 x_emit_fn emit, void *ctx, x_parse_stats *stats,
                                 x_parse_error *err);

/* What a recent-search page says besides its tweets. */
typedef struct x_search_meta {
	char newest_id[X_MAX_ID_LEN + 1];   /* "" when the page has no results */
	char next_token[128];               /* "" on the last page */
	size_t result_count;                /* tweets on the page */
} x_search_meta;

/* A GET /2/tweets/search/recent answer: every tweet to a PUBLIC
 * MESSAGE_CREATED event (thread_id = conversation_id), the author's username
 * and name from includes.users; the brand's own tweets marked from_brand,
 * retweets skipped. brand_user_id, body: borrowed. */
X_INTERNAL bool x_parse_search(const void *body, size_t len, const char *brand_user_id,
                               x_emit_fn emit, void *ctx, x_search_meta *meta,
                               x_parse_stats *stats, x_parse_error *err);

/* ------------------------------------------------------------------------ */
/* Outbound                                                                 */
/* ------------------------------------------------------------------------ */

/* {"text":...,"reply":{"in_reply_to_tweet_id":...}} (owned by the caller,
 * free()), or NULL for text that is not valid UTF-8 or out of memory.
 * text, in_reply_to: borrowed. */
X_INTERNAL char *x_reply_body(const char *text, const char *in_reply_to);
/* {"text":...}, likewise. */
X_INTERNAL char *x_dm_body(const char *text);

/* A send as an HTTP request: always POST with a JSON body. */
typedef struct x_send_request {
	char *url;     /* owned by the caller: free() */
	char *body;    /* owned by the caller: free() */
} x_send_request;

typedef enum x_build_result {
	X_BUILD_OK = 0,
	X_BUILD_BAD_TEXT = 1,     /* empty, or not valid UTF-8 */
	X_BUILD_BAD_TARGET = 2,   /* no valid recipient / post id */
	X_BUILD_NO_MEMORY = 3
} x_build_result;

/* Build a send: a DM (dm != 0) to recipient_id through
 * {api_url}/2/dm_conversations/with/{recipient_id}/messages, else a public
 * reply to reply_to through {api_url}/2/tweets. All arguments borrowed;
 * on X_BUILD_OK *out holds both strings, otherwise nothing. */
X_INTERNAL x_build_result x_build_send(const char *api_url, int dm, const char *recipient_id,
                                       const char *reply_to, const char *text,
                                       x_send_request *out);

/* The recent-search URL for a query (owned by the caller, free()), or NULL.
 * since_id and pagination_token may be NULL or "". All borrowed. */
X_INTERNAL char *x_search_url(const char *api_url, const char *query, const char *since_id,
                              const char *pagination_token);

/* What an answer of the X API means for a send. */
typedef struct x_send_result {
	parley_outcome outcome;
	int64_t retry_at_ms;                 /* RETRY: Unix ms, 0 = core backoff */
	char reason[400];                    /* "" when OK */
	char external_id[X_MAX_ID_LEN + 1];  /* the tweet or DM event id; "" if none */
	char dm_conversation_id[64];         /* DM answers; "" if none */
} x_send_result;

/* Classify a POST /2/tweets or DM answer. status: the HTTP status (0 =
 * transport error, then transport_error says why, may be NULL); rate_reset:
 * the x-rate-limit-reset header (Unix seconds) or NULL; body: borrowed;
 * what: "reply" or "direct message", for the reason; now_ms: the clock. */
X_INTERNAL void x_classify_send(long status, const char *transport_error,
                                const char *rate_reset, const void *body, size_t len,
                                const char *what, int64_t now_ms, x_send_result *out);

/* Unix ms of x-rate-limit-reset (Unix seconds), capped at a day from now;
 * 0 when absent, malformed or already past. value: borrowed. */
X_INTERNAL int64_t x_rate_limit_reset_ms(const char *value, int64_t now_ms);

#endif
