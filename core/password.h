/* password.h - password hashes for browser logins: scrypt in PHC strings.
 *
 * A hash is stored as one self-describing string in the PHC format,
 *     $scrypt$ln=15,r=8,p=1$<salt>$<key>
 * (salt and key in standard base64 without padding), so the cost can be
 * raised later without losing the hashes made before: password_verify reads
 * the parameters from the string. A stored string is data from the database,
 * not something this code wrote a moment ago, so password_verify bounds every
 * field before it spends memory or time on it.
 *
 * scrypt costs over a hundred milliseconds of CPU per call by design (see
 * the cost below): never call password_hash, password_verify or
 * password_verify_dummy on the libevent loop; password_worker.h runs them on
 * a thread of their own.
 *
 * Thread-safe (no state of its own; libcrypto 3 is thread-safe). Never log a
 * password; a stored hash is not for logs either. */
#ifndef PARLEY_CORE_PASSWORD_H
#define PARLEY_CORE_PASSWORD_H

#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

#include <stdbool.h>
#include <stddef.h>

/* The cost of new hashes: N = 2^15, r = 8, p = 1, which needs 32 MiB
 * (128*r*N bytes) per computation. Why this and no more: it is the setting
 * golang.org/x/crypto/scrypt recommends for interactive logins (as of 2017),
 * twice the scrypt paper's 2009 interactive setting (2^14), and on our
 * hardware it already costs well over the ~100 ms that paper aims at: one
 * hash took 160-180 ms of CPU on the 2-core shared development machine (AMD
 * EPYC; test_password logs the figure of whatever machine runs it). OWASP's
 * Password Storage Cheat Sheet asks for more: N=2^17 r=8 p=1 (128 MiB), or
 * at 32 MiB p=3, three times our CPU. We stay below it on purpose: every
 * login holds the memory for the whole computation, logins wait in line on
 * one worker thread, and the daemon shares a small on-prem machine with
 * PostgreSQL; at ~0.5 s a login, a burst would queue for tens of seconds.
 * 32 MiB still makes a GPU or ASIC guesser pay for memory per guess, which
 * is what a memory-hard KDF is for. Raising the cost later needs no
 * migration: old strings keep their own parameters, and the bounds below
 * already admit OWASP's setting. LN must stay a plain integer: it is pasted
 * into the dummy hash (password.c). */
#define PASSWORD_SCRYPT_LN 15
#define PASSWORD_SCRYPT_R 8
#define PASSWORD_SCRYPT_P 1
#define PASSWORD_SALT_BYTES 16  /* random per hash (RAND_bytes): no two hashes alike */
#define PASSWORD_KEY_BYTES 32   /* the derived key that is stored and compared */

/* Bounds on what a stored string may ask for (password_verify refuses the
 * rest): ln 10..20, r 1..16, p 1..4, and N*r*p at most 2^20, which is four
 * times today's work and at most 128 MiB (admits OWASP's N=2^17 r=8 p=1).
 * Salt 8..64 bytes (the PHC format's minimum; we write 16), key 16..64. */
#define PASSWORD_LN_MIN 10
#define PASSWORD_LN_MAX 20
#define PASSWORD_R_MAX 16
#define PASSWORD_P_MAX 4
#define PASSWORD_WORK_MAX (1UL << 20)

/* Big enough for any string password_hash or password_hash_with_cost writes
 * (89 bytes today, NUL included). */
#define PASSWORD_HASH_MAX 128

/* The policy's bounds on a new password, in bytes. */
#define PASSWORD_MIN_BYTES 12
#define PASSWORD_MAX_BYTES 1024

/* Hash password (NUL-terminated, borrowed) with the cost above and a fresh
 * random salt into out (at least PASSWORD_HASH_MAX bytes) as a PHC string.
 * false (out is "" if it has room) when out is smaller or NULL, or the random
 * generator or scrypt fails. Does not check the policy: call password_acceptable first
 * for a new password. */
PARLEY_MUSTCHECK
bool password_hash(const char *password, char *out, size_t outlen);

/* password_hash at another cost (within the bounds above, else false). For
 * tests, which need cheap hashes, and for trying a new cost; the daemon
 * calls password_hash. */
PARLEY_MUSTCHECK
bool password_hash_with_cost(const char *password, unsigned ln, unsigned r, unsigned p,
                             char *out, size_t outlen);

/* Does password match stored (a PHC string from password_hash)? match must
 * not be NULL. true with *match set when the check ran; false (and *match false) when stored is
 * malformed or out of bounds, or scrypt failed: an error to log, not a wrong
 * password. The comparison is constant-time (CRYPTO_memcmp). */
PARLEY_MUSTCHECK
bool password_verify(const char *password, const char *stored, bool *match);

/* The cost of a password_verify against a hash of the current cost, for a
 * login whose account does not exist, so that its answer takes as long as a
 * wrong password for a real account. Never matches. (A stored hash of an
 * older, cheaper cost still verifies faster: rehash on the next good login.) */
void password_verify_dummy(const char *password);

/* May a user choose pw as a new password? 12..1024 bytes of valid UTF-8 (no
 * overlong forms, surrogates or code points beyond U+10FFFF), not only
 * whitespace (Unicode White_Space). false with a reason for the user in why
 * (which never quotes the password; why may be NULL). */
PARLEY_MUSTCHECK
bool password_acceptable(const char *pw, char *why, size_t whylen);

#endif
