/* accounts.h - one-shot operator commands for who may use the API (blocking;
 * never on the daemon's loop): API tokens, and the first admin. */
#ifndef PARLEY_CORE_ACCOUNTS_H
#define PARLEY_CORE_ACCOUNTS_H

#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define ACCOUNTS_SECRET_MAX 64   /* "prl_" + 43 base64url characters + NUL */

/* A new random token secret ("prl_" + 32 random bytes, base64url) into out
 * (ACCOUNTS_SECRET_MAX bytes) and its SHA-256 digest in hex into hash. */
PARLEY_MUSTCHECK
bool accounts_new_secret(char *out, size_t outlen, char hash[65]);

/* Create API token `name` with `role`; agent_email (or NULL): the agent it
 * acts for; teams (or NULL): "1,2" limits it to those teams. On success
 * *id is the token and secret holds what the client sends (shown once). */
PARLEY_MUSTCHECK
bool accounts_create_token(const char *dsn, const char *name, const char *role,
                           const char *agent_email, const char *teams, const char *actor,
                           long long *id, char *secret, size_t secretlen, char *err, size_t errlen);

/* The first line of `in` without its line end into buf, not echoed when
 * `in` is a terminal (a prompt then goes to standard error). false with a
 * reason when there is no line or it does not fit (len - 2 bytes at most). */
PARLEY_MUSTCHECK
bool accounts_read_password(FILE *in, char *buf, size_t len, char *err, size_t errlen);

/* Create an enabled admin with e-mail `email`, `name` (NULL: the part of
 * the e-mail before the @) and `password` (checked against the password
 * policy, stored as its scrypt hash; blocks for the KDF). Refused when the
 * e-mail exists. *id: the new agent. */
PARLEY_MUSTCHECK
bool accounts_create_admin(const char *dsn, const char *email, const char *name, const char *password,
                           const char *actor, long long *id, char *err, size_t errlen);

#endif
