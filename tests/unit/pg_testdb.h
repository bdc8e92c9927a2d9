/* pg_testdb.h - shared by the unit tests that need PostgreSQL. */
#ifndef PARLEY_TESTS_PG_TESTDB_H
#define PARLEY_TESTS_PG_TESTDB_H

/* `base` (a libpq connection string, borrowed) with its dbname replaced by
 * `name`. Returns a malloc'd string (owned by the caller), or NULL if base
 * does not parse. */
char *pg_testdb_dsn(const char *base, const char *name);

#endif
