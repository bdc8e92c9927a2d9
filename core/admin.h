/* admin.h - one-shot operator commands run from the command line against the
 * database (blocking; never on the daemon's loop): merging two customers and
 * undoing a merge. The API will expose the same core operations. */
#ifndef PARLEY_CORE_ADMIN_H
#define PARLEY_CORE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

/* Merge customer `source` into `target` (decimal ids) as `actor`. On success
 * *audit_id is the merge's audit entry (what --unmerge takes). On failure err
 * holds PostgreSQL's reason (e.g. "customer 5 is already merged"). */
bool admin_merge_customers(const char *dsn, const char *source, const char *target,
                           const char *actor, long long *audit_id, char *err, size_t errlen);
/* Undo the merge recorded as audit entry `audit_id`. */
bool admin_unmerge(const char *dsn, const char *audit_id, const char *actor, char *err,
                   size_t errlen);

#endif
