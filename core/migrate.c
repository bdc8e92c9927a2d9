/* migrate.c - apply the embedded numbered migrations and the function set
 * before the loop starts.
 *
 * Blocking on purpose: it runs once at startup (or from `parleyd --migrate`)
 * before anything is served. Several daemons starting together serialize on
 * a PostgreSQL advisory lock; whoever comes second finds the work done.
 *
 * Each migration runs in its own transaction together with its row in
 * schema_migrations, so a migration is either applied and recorded or not at
 * all. Migration files must therefore not contain transaction control
 * (BEGIN/COMMIT) or statements that refuse to run in a transaction
 * (CREATE INDEX CONCURRENTLY).
 *
 * The functions (sql/functions/) are not migrations: they are one set,
 * applied after the migrations under the same lock whenever its checksum
 * differs from the one in schema_functions. Applying drops every parley_*
 * function and creates the set, in one transaction, so a function removed
 * or renamed in the set does not linger, and a function defined twice in
 * the set fails the apply ("already exists"). */
#include "migrate.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

#include "db.h"
#include "log.h"
#include "util.h"

#define MIGRATE_LOG "migrate"
#define MIGRATE_MSG_MAX 1024

#define MIGRATE_TABLE_SQL \
	"CREATE TABLE IF NOT EXISTS schema_migrations (" \
	"version int PRIMARY KEY, " \
	"name text NOT NULL, " \
	"applied_at timestamptz NOT NULL DEFAULT now())"

/* One row: the checksum of the function set last applied. */
#define MIGRATE_FUNCTIONS_TABLE_SQL \
	"CREATE TABLE IF NOT EXISTS schema_functions (" \
	"id boolean PRIMARY KEY DEFAULT true CHECK (id), " \
	"checksum text NOT NULL, " \
	"applied_at timestamptz NOT NULL DEFAULT now())"

/* Every function of ours, whatever its arguments: the set replaces them all. */
#define MIGRATE_DROP_FUNCTIONS_SQL \
	"DO $$DECLARE f regprocedure; BEGIN " \
	"FOR f IN SELECT p.oid::regprocedure FROM pg_proc p " \
	"WHERE p.pronamespace = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = current_schema()) " \
	"AND p.proname LIKE 'parley\\_%' AND p.prokind IN ('f', 'p') " \
	"LOOP EXECUTE 'DROP ROUTINE ' || f; END LOOP; END$$"


/* The advisory lock key: FNV-1a (64 bit) of "parley.migrate", so any tool
 * can derive the same key from the name. */
static int64_t migrate_lock_key(void)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (const char *p = "parley.migrate"; *p; p++) {
		h ^= (unsigned char)*p;
		h *= 0x100000001b3ull;
	}
	return (int64_t)h;
}

int migrate_latest_version(void)
{
	int latest = 0;
	for (size_t i = 0; i < migrate_embedded_count; i++)
		if (migrate_embedded[i].version > latest)
			latest = migrate_embedded[i].version;
	return latest;
}

const char *migrate_functions_checksum(void)
{
	static char sum[32];
	if (sum[0] != '\0')
		return sum;
	/* FNV-1a 64 over "name\0sql\0" of each file, in order: a change of
	 * text, name or order is a new set. Detects change, not tampering. */
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < migrate_functions_count; i++) {
		const char *parts[] = { migrate_functions[i].name, migrate_functions[i].sql };
		for (size_t k = 0; k < 2; k++) {
			for (const char *p = parts[k];; p++) {
				h ^= (unsigned char)*p;
				h *= 0x100000001b3ull;
				if (*p == '\0')
					break;
			}
		}
	}
	snprintf(sum, sizeof(sum), "fnv1a64:%016" PRIx64, h);
	return sum;
}

static void migrate_notice(void *arg, const PGresult *res)
{
	/* "relation already exists, skipping" and the like: not for stderr. */
	char msg[MIGRATE_MSG_MAX];
	util_one_line(PQresultErrorMessage(res), msg, sizeof(msg));
	log_debug(MIGRATE_LOG, "server: %s", msg);
}

/* Run one statement; true when it returned `want`. On failure err gets
 * "what: PostgreSQL's message". */
static bool run(PGconn *pg, const char *sql, int nparams, const char *const *params,
                ExecStatusType want, PGresult **out, const char *what, char *err, size_t errlen)
{
	PGresult *r = nparams > 0 ? PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0)
	                          : PQexec(pg, sql);
	if (r == NULL || PQresultStatus(r) != want) {
		char msg[MIGRATE_MSG_MAX];
		util_one_line(r ? PQresultErrorMessage(r) : PQerrorMessage(pg), msg, sizeof(msg));
		if (msg[0] == '\0')
			snprintf(msg, sizeof(msg), "unexpected result %s",
			         r ? PQresStatus(PQresultStatus(r)) : "(none)");
		util_set_err(err, errlen, "%s: %s", what, msg);
		PQclear(r);
		return false;
	}
	if (out != NULL)
		*out = r;
	else
		PQclear(r);
	return true;
}

/* COMMIT, checked: COMMIT of an aborted transaction "succeeds" as ROLLBACK,
 * so only its tag says whether anything was kept. */
static bool commit(PGconn *pg, const char *what, char *err, size_t errlen)
{
	PGresult *r = NULL;
	if (!run(pg, "COMMIT", 0, NULL, PGRES_COMMAND_OK, &r, what, err, errlen))
		return false;
	bool committed = strcmp(PQcmdStatus(r), "COMMIT") == 0;
	PQclear(r);
	if (!committed)
		util_set_err(err, errlen, "%s: the transaction was rolled back", what);
	return committed;
}

static bool embedded_in_order(char *err, size_t errlen)
{
	/* A build mistake, but one that would apply migrations out of order. */
	for (size_t i = 0; i < migrate_embedded_count; i++) {
		const migration *m = &migrate_embedded[i];
		if (m->version < 1 || (i > 0 && m->version <= migrate_embedded[i - 1].version)) {
			util_set_err(err, errlen, "embedded migrations are not in ascending order at %s", m->name);
			return false;
		}
	}
	return true;
}

static bool is_applied(PGconn *pg, const migration *m, bool *applied, char *err, size_t errlen)
{
	char version[16];
	snprintf(version, sizeof(version), "%d", m->version);
	const char *params[] = { version };
	PGresult *r = NULL;
	if (!run(pg, "SELECT 1 FROM schema_migrations WHERE version = $1::int", 1, params,
	         PGRES_TUPLES_OK, &r, "reading schema_migrations", err, errlen))
		return false;
	*applied = PQntuples(r) > 0;
	PQclear(r);
	return true;
}

static bool apply_one(PGconn *pg, const migration *m, char *err, size_t errlen)
{
	char what[160];
	snprintf(what, sizeof(what), "migration %s failed", m->name);
	if (!run(pg, "BEGIN", 0, NULL, PGRES_COMMAND_OK, NULL, what, err, errlen))
		return false;

	/* Simple query protocol: a migration holds several statements, and it
	 * is a trusted file shipped in the binary, not input. */
	PGresult *r = PQexec(pg, m->sql);
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
		char msg[MIGRATE_MSG_MAX];
		util_one_line(r ? PQresultErrorMessage(r) : PQerrorMessage(pg), msg, sizeof(msg));
		util_set_err(err, errlen, "%s: %s", what, msg);
		PQclear(r);
		PQclear(PQexec(pg, "ROLLBACK"));
		return false;
	}
	PQclear(r);

	char version[16];
	snprintf(version, sizeof(version), "%d", m->version);
	const char *params[] = { version, m->name };
	if (!run(pg, "INSERT INTO schema_migrations (version, name) VALUES ($1::int, $2)", 2, params,
	         PGRES_COMMAND_OK, NULL, what, err, errlen)) {
		PQclear(PQexec(pg, "ROLLBACK"));
		return false;
	}
	if (!commit(pg, what, err, errlen))
		return false;
	log_info(MIGRATE_LOG, "applied migration %s", m->name);
	return true;
}

/* Every recorded migration this binary knows must be the one it has under
 * that version. A development database from before the schema was folded
 * (001_foundation ... 007_ingest_batch) fails here: it cannot be upgraded. */
static bool recorded_migrations_known(PGconn *pg, char *err, size_t errlen)
{
	PGresult *r = NULL;
	if (!run(pg, "SELECT version, name FROM schema_migrations ORDER BY version", 0, NULL,
	         PGRES_TUPLES_OK, &r, "reading schema_migrations", err, errlen))
		return false;
	int latest = migrate_latest_version();
	bool ok = true;
	for (int row = 0; ok && row < PQntuples(r); row++) {
		int version = atoi(PQgetvalue(r, row, 0));
		const char *name = PQgetvalue(r, row, 1);
		if (version > latest)
			break; /* newer than this binary: said below */
		const migration *have = NULL;
		for (size_t i = 0; i < migrate_embedded_count; i++)
			if (migrate_embedded[i].version == version)
				have = &migrate_embedded[i];
		if (have != NULL && strcmp(have->name, name) == 0)
			continue;
		util_set_err(err, errlen,
		        "the database was made by migration %s, which this parleyd does not have "
		        "(its migration %d is %s): a development database from before the schema was "
		        "folded cannot be upgraded; create a new, empty database (or drop and recreate "
		        "this one) and run parleyd --migrate",
		        name, version, have ? have->name : "missing");
		ok = false;
	}
	PQclear(r);
	return ok;
}

/* Apply the function set when its checksum differs from the recorded one.
 * *done: whether it was applied. */
static bool apply_functions(PGconn *pg, bool *done, char *err, size_t errlen)
{
	*done = false;
	if (!run(pg, MIGRATE_FUNCTIONS_TABLE_SQL, 0, NULL, PGRES_COMMAND_OK, NULL,
	         "creating schema_functions", err, errlen))
		return false;
	const char *sum = migrate_functions_checksum();
	PGresult *r = NULL;
	if (!run(pg, "SELECT checksum FROM schema_functions", 0, NULL, PGRES_TUPLES_OK, &r,
	         "reading schema_functions", err, errlen))
		return false;
	bool same = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), sum) == 0;
	PQclear(r);
	if (same)
		return true;

	const char *what = "applying the SQL functions failed";
	if (!run(pg, "BEGIN", 0, NULL, PGRES_COMMAND_OK, NULL, what, err, errlen))
		return false;
	bool ok = run(pg, MIGRATE_DROP_FUNCTIONS_SQL, 0, NULL, PGRES_COMMAND_OK, NULL,
	              "dropping the previous SQL functions", err, errlen);
	for (size_t i = 0; ok && i < migrate_functions_count; i++) {
		char label[160];
		snprintf(label, sizeof(label), "SQL functions %s.sql failed", migrate_functions[i].name);
		/* Simple query protocol: several statements, a trusted embedded file. */
		r = PQexec(pg, migrate_functions[i].sql);
		ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
			char msg[MIGRATE_MSG_MAX];
			util_one_line(r ? PQresultErrorMessage(r) : PQerrorMessage(pg), msg, sizeof(msg));
			util_set_err(err, errlen, "%s: %s", label, msg);
			ok = false;
		}
		PQclear(r);
	}
	const char *params[] = { sum };
	ok = ok && run(pg,
	               "INSERT INTO schema_functions (checksum) VALUES ($1) "
	               "ON CONFLICT (id) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
	               1, params, PGRES_COMMAND_OK, NULL, what, err, errlen);
	if (!ok) {
		PQclear(PQexec(pg, "ROLLBACK"));
		return false;
	}
	if (!commit(pg, what, err, errlen))
		return false;
	log_info(MIGRATE_LOG, "applied the SQL functions (%zu files, %s)", migrate_functions_count, sum);
	*done = true;
	return true;
}

/* Everything that happens while the advisory lock is held. */
static bool apply_locked(PGconn *pg, int *count, char *err, size_t errlen)
{
	if (!run(pg, MIGRATE_TABLE_SQL, 0, NULL, PGRES_COMMAND_OK, NULL, "creating schema_migrations",
	         err, errlen))
		return false;

	PGresult *r = NULL;
	if (!run(pg, MIGRATE_VERSION_SQL, 0, NULL, PGRES_TUPLES_OK, &r, "reading the schema version",
	         err, errlen))
		return false;
	int current = PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : 0;
	PQclear(r);

	if (!recorded_migrations_known(pg, err, errlen))
		return false;
	int latest = migrate_latest_version();
	if (current > latest) {
		util_set_err(err, errlen,
		        "database schema version %d is newer than this parleyd (knows up to %d); "
		        "upgrade parleyd",
		        current, latest);
		return false;
	}
	for (size_t i = 0; i < migrate_embedded_count; i++) {
		const migration *m = &migrate_embedded[i];
		bool applied = false;
		if (!is_applied(pg, m, &applied, err, errlen))
			return false;
		if (applied)
			continue;
		if (!apply_one(pg, m, err, errlen))
			return false;
		(*count)++;
	}
	bool functions = false;
	return apply_functions(pg, &functions, err, errlen);
}

bool migrate_apply(const char *dsn, int *applied, char *err, size_t errlen)
{
	int count = 0;
	if (applied != NULL)
		*applied = 0;
	util_set_err(err, errlen, "%s", "");
	if (dsn == NULL) {
		util_set_err(err, errlen, "no database connection string");
		return false;
	}
	if (!embedded_in_order(err, errlen))
		return false;

	PGconn *pg = db_connect_blocking(dsn, err, errlen);
	if (pg == NULL)
		return false;
	PQsetNoticeReceiver(pg, migrate_notice, NULL);

	char key[24];
	snprintf(key, sizeof(key), "%" PRId64, migrate_lock_key());
	const char *key_param[] = { key };
	PGresult *r = NULL;
	bool ok = run(pg, "SELECT pg_try_advisory_lock($1::bigint)", 1, key_param, PGRES_TUPLES_OK, &r,
	              "taking the migration lock", err, errlen);
	if (ok) {
		bool got = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
		PQclear(r);
		if (!got) {
			log_info(MIGRATE_LOG, "another process is applying migrations; waiting for it");
			ok = run(pg, "SELECT pg_advisory_lock($1::bigint)", 1, key_param, PGRES_TUPLES_OK,
			         NULL, "taking the migration lock", err, errlen);
		}
	}
	if (ok) {
		ok = apply_locked(pg, &count, err, errlen);
		/* Closing the connection would release it too; unlocking says so. */
		PQclear(PQexecParams(pg, "SELECT pg_advisory_unlock($1::bigint)", 1, NULL, key_param, NULL,
		                     NULL, 0));
	}
	PQfinish(pg);
	if (applied != NULL)
		*applied = count;
	if (ok && count > 0)
		log_info(MIGRATE_LOG, "schema is at version %d", migrate_latest_version());
	return ok;
}
