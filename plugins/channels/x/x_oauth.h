/* x_oauth.h - OAuth 1.0a request signing (HMAC-SHA1) for the X API, and
 * the percent-encoding it rests on (into the plugins' shared pu_buf).
 *
 * Pure: no host table, no event loop. The signature follows X's "Creating a
 * signature" guide (RFC 5849 section 3.4): percent-encode every parameter,
 * sort, join, build the base string "METHOD&url&params", and sign it with
 * HMAC-SHA1 keyed by "consumer_secret&token_secret". The unit test checks
 * it byte for byte against the worked example of that guide. */
#ifndef PARLEY_X_OAUTH_H
#define PARLEY_X_OAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/plugin_util.h"

#if defined(__GNUC__)
#define X_INTERNAL __attribute__((visibility("hidden")))
#else
#define X_INTERNAL
#endif

/* Append s percent-encoded as RFC 3986 (only ALPHA, DIGIT, "-._~" stay
 * literal; every other byte becomes %XX with uppercase hex), as OAuth 1.0a
 * requires. s: borrowed. */
X_INTERNAL void x_oauth_percent_encode(pu_buf *b, const char *s);

/* One request parameter, not encoded (query string or form body). */
typedef struct x_oauth_param {
	const char *key;     /* borrowed */
	const char *value;   /* borrowed */
} x_oauth_param;

/* Credentials and the per-request values; all borrowed. */
typedef struct x_oauth_request {
	const char *method;            /* "POST" */
	const char *base_url;          /* scheme://host/path, no query string */
	const x_oauth_param *params;   /* query and form parameters; may be NULL */
	size_t n_params;
	const char *consumer_key;
	const char *consumer_secret;
	const char *token;
	const char *token_secret;
	const char *nonce;             /* unique per request (x_oauth_nonce) */
	const char *timestamp;         /* Unix seconds as decimal text */
} x_oauth_request;

/* The signature base string (owned by the caller, free()), or NULL when out
 * of memory. */
X_INTERNAL char *x_oauth_base_string(const x_oauth_request *r);

/* The base64 HMAC-SHA1 signature into out (caller's buffer of at least
 * X_OAUTH_SIGNATURE_LEN + 1 bytes). False when out of memory. */
#define X_OAUTH_SIGNATURE_LEN 28
X_INTERNAL bool x_oauth_signature(const x_oauth_request *r, char *out);

/* The whole Authorization header line "Authorization: OAuth ..." with the
 * oauth_* parameters in X's documented order (owned by the caller, free()),
 * or NULL when out of memory. */
X_INTERNAL char *x_oauth_header(const x_oauth_request *r);

/* A fresh random nonce: 32 lowercase hex characters from RAND_bytes, into
 * out (caller's buffer of at least 33 bytes). False when the random source
 * failed (then do not send). */
X_INTERNAL bool x_oauth_nonce(char out[33]);

/* Standard base64 (with padding) of len bytes into out (caller's buffer of
 * at least 4 * ((len + 2) / 3) + 1 bytes). Returns the length written. */
X_INTERNAL size_t x_base64(const unsigned char *in, size_t len, char *out);

#endif
