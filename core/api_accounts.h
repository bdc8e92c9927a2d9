/* api_accounts.h - the agent API's account operations that need C: a
 * password is checked and hashed off the loop (password_worker.h) and never
 * reaches the database; secrets (session cookies, CSRF tokens, API tokens)
 * are made here and only their digests are stored; cookies are set here.
 * The rules stay in SQL (sql/functions/api_sessions.sql, api_accounts.sql):
 * these handlers call its functions with the hashes in req.internal.
 *
 * Each is an api_handler_fn of the operation table in api.c. */
#ifndef PARLEY_CORE_API_ACCOUNTS_H
#define PARLEY_CORE_API_ACCOUNTS_H

#include "api.h"

/* POST /api/v1/session {email, password}: log in (public). 201 {agent,
 * csrf_token, expires_at} and the session cookie; 401 invalid_credentials
 * for an unknown e-mail, a wrong password or a disabled agent alike; 429
 * with Retry-After when the account or the client address is throttled. */
void api_session_login(http_request *req, const route_match *m, const api_actor *actor);
/* GET /api/v1/session: the session's agent, expiry and CSRF token. */
void api_session_get(http_request *req, const route_match *m, const api_actor *actor);
/* DELETE /api/v1/session: log out; the cookie is cleared. */
void api_session_logout(http_request *req, const route_match *m, const api_actor *actor);
/* PUT /api/v1/me/password {current_password, new_password} */
void api_session_change_password(http_request *req, const route_match *m, const api_actor *actor);

/* POST /api/v1/agents and PATCH /api/v1/agents/{id}: an optional
 * "password" is hashed here and reaches SQL as its hash. */
void api_accounts_agent_create(http_request *req, const route_match *m, const api_actor *actor);
void api_accounts_agent_update(http_request *req, const route_match *m, const api_actor *actor);
/* POST /api/v1/tokens: 201 with the token's secret, shown this once. */
void api_accounts_token_create(http_request *req, const route_match *m, const api_actor *actor);

/* --- shared by the two files --- */

/* The CSRF token of the session whose cookie value is secret: derived from
 * it (HMAC-SHA256 keyed with the secret), so GET /api/v1/session can show it
 * again after a page reload without the database holding more than its
 * digest, and every tab of one browser holds the same token. out: at least
 * API_CSRF_MAX bytes. */
#define API_CSRF_MAX 48
void api_session_csrf(const char *secret, size_t len, char out[API_CSRF_MAX]);

/* Answer 503 busy when the password worker refused a job (queue full or
 * stopping). */
void api_respond_password_busy(http_request *req);

#endif
