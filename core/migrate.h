/* migrate.h - the SQL of sql/, embedded in the binary: numbered migrations
 * (the schema) and the function set (sql/functions/).
 *
 * Applied under a PostgreSQL advisory lock so that several daemons starting
 * at once apply each migration exactly once. A database whose schema is
 * newer than this binary is refused, and so is one made by migrations this
 * binary does not have (a development database from before the schema was
 * folded). The function set is applied after the migrations, as a whole,
 * whenever its checksum differs from the one recorded in the database.
 * These functions block: they run before the event loop starts (or from
 * `parleyd --migrate`). */
#ifndef PARLEY_CORE_MIGRATE_H
#define PARLEY_CORE_MIGRATE_H

#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

#include <stdbool.h>
#include <stddef.h>

typedef struct migration {
	int version;        /* from the file name: 001_foundation.sql -> 1 */
	const char *name;   /* "001_foundation" */
	const char *sql;
} migration;

/* One file of the function set: sql/functions/NAME.sql. */
typedef struct sql_file {
	const char *name;   /* "ingest" */
	const char *sql;
} sql_file;

/* Embedded migrations, ordered by version (generated from the sql/ folder). */
extern const migration migrate_embedded[];
extern const size_t migrate_embedded_count;

/* Embedded function files, in the order they are applied. */
extern const sql_file migrate_functions[];
extern const size_t migrate_functions_count;

/* The schema version this binary expects (the highest embedded). */
int migrate_latest_version(void);

/* The function set's checksum as recorded in schema_functions: "fnv1a64:"
 * and 16 hex digits over the files' names and text. Static storage. */
const char *migrate_functions_checksum(void);

/* Connect to dsn, take the advisory lock, apply the missing migrations,
 * each in its own transaction, then the function set if its checksum
 * changed (one transaction: every parley_* function is dropped and the set
 * created). *applied gets how many migrations were applied (may be NULL).
 * Fails with a reason if the database is newer than this binary or was made
 * by other migrations. */
PARLEY_MUSTCHECK
bool migrate_apply(const char *dsn, int *applied, char *err, size_t errlen);

/* The SQL that reads the current version: one row, one int column. */
#define MIGRATE_VERSION_SQL "SELECT coalesce(max(version), 0) FROM schema_migrations"

#endif
