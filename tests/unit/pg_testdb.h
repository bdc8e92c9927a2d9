/* pg_testdb.h - shared by the unit tests that need PostgreSQL. */
#ifndef PARLEY_TESTS_PG_TESTDB_H
#define PARLEY_TESTS_PG_TESTDB_H

#include <stdbool.h>
#include <stddef.h>

/* `base` (a libpq connection string, borrowed) with its dbname replaced by
 * `name`. Returns a malloc'd string (owned by the caller), or NULL if base
 * does not parse. */
char *pg_testdb_dsn(const char *base, const char *name);

/* Run one statement on dsn in its own connection. false with PostgreSQL's
 * message in err on failure. */
bool pg_testdb_exec(const char *dsn, const char *sql, char *err, size_t errlen);

/* Create an empty database named PREFIX_<pid>_<n> on the server `base`; its
 * name goes to name (namelen bytes). Returns its DSN (owned by the caller) or
 * NULL with the reason in name. */
char *pg_testdb_create(const char *base, const char *prefix, char *name, size_t namelen);

/* Drop it again, even with clients still connected. */
void pg_testdb_drop(const char *base, const char *name);

#endif
