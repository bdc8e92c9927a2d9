/* meta_parse.h - the pure inbound half of the meta channel: the GET
 * verification handshake, X-Hub-Signature-256 checks, webhook bodies of the
 * page, instagram and whatsapp_business_account objects, and the thread ids
 * that tie inbound events to outbound sends.
 *
 * Nothing here calls the host table or libevent, so the unit tests and the
 * fuzz target drive it directly. The plugin glue (meta.c) passes the host's
 * hmac_sha256 and secure_equals. */
#ifndef PARLEY_META_PARSE_H
#define PARLEY_META_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parley/parley.h"

/* Linked into the plugin but not part of its interface. */
#if defined(__GNUC__)
#define META_INTERNAL __attribute__((visibility("hidden")))
#else
#define META_INTERNAL
#endif

#define META_MAX_ID_BYTES 256           /* any platform id we accept */
#define META_MAX_CHALLENGE_BYTES 256    /* hub.challenge echoed back */
/* kind ":" asset ":" peer, all bounded by META_MAX_ID_BYTES. */
#define META_MAX_THREAD_BYTES (24 + 2 * META_MAX_ID_BYTES)

/* ------------------------------------------------------------------------ */
/* Signatures and the handshake                                             */
/* ------------------------------------------------------------------------ */

typedef void (*meta_hmac_fn)(const void *key, size_t key_len, const void *data,
                             size_t len, unsigned char out[32]);
typedef int (*meta_equals_fn)(const void *a, size_t a_len, const void *b, size_t b_len);

typedef enum meta_sig_result {
	META_SIG_OK = 0,
	META_SIG_MISSING = 1,   /* no X-Hub-Signature-256 header */
	META_SIG_BAD = 2        /* malformed or not the body's HMAC */
} meta_sig_result;

/* Check "sha256=<hex>" (either case of hex digits) against
 * HMAC-SHA256(app_secret, body) where body is the raw bytes as received.
 * header: borrowed, NULL when absent. secret, body: borrowed. The decoded 32
 * bytes are compared with `equals` (constant time). */
META_INTERNAL meta_sig_result
meta_verify_signature(const char *header, const void *secret, size_t secret_len,
                      const void *body, size_t body_len,
                      meta_hmac_fn hmac, meta_equals_fn equals);

typedef enum meta_handshake_result {
	META_HANDSHAKE_OK = 0,          /* answer 200 with the challenge */
	META_HANDSHAKE_BAD_REQUEST = 1, /* not a subscribe request: 400 */
	META_HANDSHAKE_FORBIDDEN = 2    /* wrong verify token: 403 */
} meta_handshake_result;

/* Decide a GET verification request. mode, token, challenge: the decoded
 * query parameters hub.mode, hub.verify_token and hub.challenge (borrowed,
 * NULL when absent). verify_token: the configured one (borrowed). */
META_INTERNAL meta_handshake_result
meta_check_handshake(const char *mode, const char *token, const char *challenge,
                     const char *verify_token, meta_equals_fn equals);

/* ------------------------------------------------------------------------ */
/* Thread ids                                                               */
/* ------------------------------------------------------------------------ */

/* Which conversation a thread id names. The text form is
 * "<kind>:<asset id>:<peer>", where the asset is the Page, Instagram account
 * or WhatsApp phone number id that owns the conversation (so send() can pick
 * its token) and the peer is the customer (private) or the root post/media
 * (public). */
typedef enum meta_thread_kind {
	META_THREAD_NONE = 0,
	META_THREAD_MESSENGER = 1,       /* "messenger:<page id>:<PSID>" */
	META_THREAD_INSTAGRAM_DM = 2,    /* "instagram:<IG account id>:<IGSID>" */
	META_THREAD_WHATSAPP = 3,        /* "whatsapp:<phone number id>:<wa_id or BSUID>" */
	META_THREAD_FACEBOOK_POST = 4,   /* "facebook:<page id>:<post id>" */
	META_THREAD_INSTAGRAM_MEDIA = 5  /* "instagram_media:<IG account id>:<media id>" */
} meta_thread_kind;

typedef struct meta_thread {
	meta_thread_kind kind;
	char asset[META_MAX_ID_BYTES + 1];
	char peer[META_MAX_ID_BYTES + 1];
} meta_thread;

/* Write the thread id into out (caller's buffer of outlen bytes). asset,
 * peer: borrowed. False when it does not fit or an id is empty. */
META_INTERNAL bool meta_thread_format(meta_thread_kind kind, const char *asset,
                                      const char *peer, char *out, size_t outlen);

/* Split a thread id made by meta_thread_format. thread_id: borrowed. */
META_INTERNAL bool meta_thread_parse(const char *thread_id, meta_thread *out);

/* ------------------------------------------------------------------------ */
/* Webhook bodies                                                           */
/* ------------------------------------------------------------------------ */

/* One event, borrowed for the call (copy what you keep). Return 0, or -1
 * when the event was refused: it is counted and parsing goes on, because
 * Meta would redeliver the whole batch forever if one item failed it. */
typedef int (*meta_emit_fn)(void *ctx, const parley_event *ev);

/* Something accepted but not turned into an event (an unknown object, field
 * or event type, the dashboard's test shape, an item without the ids it
 * needs). what: a short description without secrets, borrowed. */
typedef void (*meta_note_fn)(void *ctx, const char *what);

typedef struct meta_parse_stats {
	size_t events;    /* handed to emit and accepted */
	size_t refused;   /* handed to emit and refused */
	size_t ignored;   /* items noted and skipped */
} meta_parse_stats;

/* Parse one webhook POST body (raw bytes, need not be NUL-terminated;
 * borrowed). emit receives each event in order; note may be NULL.
 * Returns false only when the body is not a JSON object or its envelope is
 * malformed (then answer 400: nothing has been emitted, since the envelope is
 * checked before any item). err: the reason (caller's buffer). */
META_INTERNAL bool meta_parse(const void *body, size_t len, meta_emit_fn emit,
                              meta_note_fn note, void *ctx, meta_parse_stats *stats,
                              char *err, size_t errlen);

#endif
