/* migrate.h - numbered SQL migrations from sql/, embedded in the binary.
 *
 * Applied under a PostgreSQL advisory lock so that several daemons starting
 * at once apply each migration exactly once. A database whose schema is
 * newer than this binary is refused. These functions block: they run before
 * the event loop starts (or from `parleyd --migrate`). */
#ifndef PARLEY_CORE_MIGRATE_H
#define PARLEY_CORE_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct migration {
	int version;        /* from the file name: 001_foundation.sql -> 1 */
	const char *name;   /* "001_foundation" */
	const char *sql;
} migration;

/* Embedded migrations, ordered by version (generated from the sql/ folder). */
extern const migration migrate_embedded[];
extern const size_t migrate_embedded_count;

/* The schema version this binary expects (the highest embedded). */
int migrate_latest_version(void);

/* Connect to dsn, take the advisory lock, apply what is missing, each in its
 * own transaction. *applied gets how many were applied (may be NULL).
 * Fails with a reason if the database is newer than this binary. */
bool migrate_apply(const char *dsn, int *applied, char *err, size_t errlen);

/* The SQL that reads the current version: one row, one int column. */
#define MIGRATE_VERSION_SQL "SELECT coalesce(max(version), 0) FROM schema_migrations"

#endif
