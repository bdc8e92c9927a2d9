/* webhook_parse.h - the pure half of the webhook channel: signature checks,
 * request body validation and RFC 3339 times.
 *
 * Nothing here calls the host table, so the unit tests can drive it with
 * libcrypto-backed crypto functions and no daemon. The plugin glue
 * (webhook.c) passes the host's hmac_sha256 and secure_equals. */
#ifndef PARLEY_WEBHOOK_PARSE_H
#define PARLEY_WEBHOOK_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/parley.h"

/* These functions are linked into the plugin but are not part of its
 * interface: keep them out of the dynamic symbol table even when the plugin
 * is built without an export list. */
#if defined(__GNUC__)
#define WEBHOOK_INTERNAL __attribute__((visibility("hidden")))
#else
#define WEBHOOK_INTERNAL
#endif

/* Limits on what one request may carry. */
#define WEBHOOK_MAX_ITEMS 1000
#define WEBHOOK_MAX_ID_BYTES 256         /* id, author.id, thread, in_reply_to */
#define WEBHOOK_MAX_PROFILE_BYTES 1024   /* author name, handle, email, phone */
#define WEBHOOK_MAX_TEXT_BYTES 65536     /* text */

/* "sha256=" followed by 64 hex digits, plus the terminating NUL. */
#define WEBHOOK_SIGNATURE_PREFIX "sha256="
#define WEBHOOK_SIGNATURE_LEN (sizeof(WEBHOOK_SIGNATURE_PREFIX) - 1 + 64)

/* The crypto the signature functions need; the host table has both. */
typedef void (*webhook_hmac_fn)(const void *key, size_t key_len, const void *data,
                                size_t len, unsigned char out[32]);
typedef int (*webhook_equals_fn)(const void *a, size_t a_len, const void *b, size_t b_len);

typedef enum webhook_sig_result {
	WEBHOOK_SIG_OK = 0,
	WEBHOOK_SIG_MISSING = 1,   /* no header at all: 401 missing_signature */
	WEBHOOK_SIG_BAD = 2        /* malformed or wrong: 401 bad_signature */
} webhook_sig_result;

/* Check an X-Parley-Signature header against HMAC-SHA256(secret, body).
 * header: borrowed, NULL when the request has none. secret, body: borrowed.
 * Accepts upper- or lowercase hex. The header is decoded to 32 bytes and
 * compared with `equals`, so the time taken does not depend on how many
 * leading bytes match. */
WEBHOOK_INTERNAL webhook_sig_result
webhook_verify_signature(const char *header, const void *secret, size_t secret_len,
                         const void *body, size_t body_len,
                         webhook_hmac_fn hmac, webhook_equals_fn equals);

/* Write "sha256=<lowercase hex>" of HMAC-SHA256(secret, body) into out
 * (caller's buffer, WEBHOOK_SIGNATURE_LEN + 1 bytes). secret, body: borrowed. */
WEBHOOK_INTERNAL void
webhook_sign(const void *secret, size_t secret_len, const void *body, size_t body_len,
             webhook_hmac_fn hmac, char out[WEBHOOK_SIGNATURE_LEN + 1]);

/* Why a body was refused: the HTTP status, the error code of the JSON error
 * shape and a detail such as "[3].author.id: required". */
typedef struct webhook_error {
	int http_status;     /* 400 or 413 */
	const char *code;    /* static string: "invalid_json", "invalid_field",
	                        "empty_batch", "batch_too_large", "event_rejected" */
	char detail[256];
} webhook_error;

/* Called once per item, in order, after every item has been validated.
 * `ev` and every string it points to are borrowed for the call (copy what you
 * keep). `index` is the item's position (0 for a single object). Return false
 * to stop: webhook_parse then fails with 400 event_rejected. */
typedef bool (*webhook_item_fn)(void *arg, size_t index, const parley_event *ev);

/* Validate a request body (one message object or an array of 1..1000 of
 * them) and hand each item to fn as a parley_event. body: borrowed, need not
 * be NUL-terminated. Nothing is handed out unless every item is valid.
 * Returns true with *n_items set, or false with *err filled (fn may have been
 * called for earlier items only when fn itself refused one). */
WEBHOOK_INTERNAL bool
webhook_parse(const void *body, size_t len, webhook_item_fn fn, void *arg,
              size_t *n_items, webhook_error *err);

#endif
