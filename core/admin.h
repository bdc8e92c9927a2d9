/* admin.h - one-shot operator commands run from the command line against the
 * database (blocking; never on the daemon's loop): merging two customers and
 * undoing a merge. The API will expose the same core operations. */
#ifndef PARLEY_CORE_ADMIN_H
#define PARLEY_CORE_ADMIN_H

#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

#include <stdbool.h>
#include <stddef.h>

/* Merge customer `source` into `target` (decimal ids) as `actor`. On success
 * *audit_id is the merge's audit entry (what --unmerge takes). On failure err
 * holds PostgreSQL's reason (e.g. "customer 5 is already merged"). */
PARLEY_MUSTCHECK
bool admin_merge_customers(const char *dsn, const char *source, const char *target,
                           const char *actor, long long *audit_id, char *err, size_t errlen);
/* Undo the merge recorded as audit entry `audit_id`. */
PARLEY_MUSTCHECK
bool admin_unmerge(const char *dsn, const char *audit_id, const char *actor, char *err,
                   size_t errlen);

/* Reply to conversation `conversation` with `text`; visibility: "public",
 * "private" or NULL (the conversation's); agent_email: the agent written
 * down as its author, or NULL (the brand). On success *message_id is the
 * new outbound message; its send is queued for the channel. */
PARLEY_MUSTCHECK
bool admin_reply(const char *dsn, const char *conversation, const char *text,
                 const char *visibility, const char *actor, const char *agent_email,
                 long long *message_id, char *err, size_t errlen);
/* Move public conversation `conversation` to private with `text` as the
 * private message. public_text: the public note, or NULL for the channel
 * instance's move_to_private_text, looked up in texts_json ({"instance":
 * "text", ...}); agent_email as for admin_reply. On success *private_id is
 * the new private conversation. */
PARLEY_MUSTCHECK
bool admin_move_to_private(const char *dsn, const char *conversation, const char *text,
                           const char *public_text, const char *texts_json, const char *actor,
                           const char *agent_email, long long *private_id, char *err, size_t errlen);

#endif
