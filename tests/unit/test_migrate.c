/* test_migrate.c - embedded migrations and the function set applied under an
 * advisory lock.
 *
 * Needs PARLEY_TEST_DSN (tests that need a server skip without it). Every
 * test gets a fresh database of its own, dropped afterwards. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <libpq-fe.h>

#include "log.h"
#include "migrate.h"
#include "util.h"
#include "pg_testdb.h"

static const char *server_dsn;  /* PARLEY_TEST_DSN, or NULL: skip */
static char dbname[64];         /* this test's fresh database */
static char *dsn;               /* ... and how to reach it */

#define NEED_DB() \
	do { \
		if (server_dsn == NULL) \
			skip(); \
	} while (0)

/* ------------------------------------------------------------ fixtures */

static PGconn *connect_or_fail(const char *to)
{
	PGconn *pg = PQconnectdb(to);
	if (PQstatus(pg) != CONNECTION_OK)
		fail_msg("cannot connect to the test server: %s", PQerrorMessage(pg));
	return pg;
}

static void exec_on(PGconn *pg, const char *sql)
{
	PGresult *r = PQexec(pg, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
}

static void exec_at(const char *to, const char *sql)
{
	PGconn *pg = connect_or_fail(to);
	exec_on(pg, sql);
	PQfinish(pg);
}

static long query_long(const char *sql)
{
	PGconn *pg = connect_or_fail(dsn);
	PGresult *r = PQexec(pg, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		fail_msg("%s: %s", sql, PQresultErrorMessage(r));
	long v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(pg);
	return v;
}

static int group_setup(void **state)
{
	const char *s = getenv("PARLEY_TEST_DSN");
	server_dsn = (s != NULL && s[0] != '\0') ? s : NULL;
	return 0;
}

/* A fresh, empty database per test. */
static int setup(void **state)
{
	if (server_dsn == NULL)
		return 0;
	dsn = pg_testdb_create(server_dsn, "parley_test_migrate", dbname, sizeof(dbname));
	if (dsn == NULL)
		fprintf(stderr, "%s\n", dbname);
	return dsn ? 0 : -1;
}

static int teardown(void **state)
{
	if (dsn == NULL)
		return 0;
	pg_testdb_drop(server_dsn, dbname);
	free(dsn);
	dsn = NULL;
	return 0;
}

/* ---------------------------------------------------------------- tests */

static void latest_version_is_the_highest_embedded_migration(void **state)
{
	assert_true(migrate_embedded_count >= 1);
	int prev = 0;
	for (size_t i = 0; i < migrate_embedded_count; i++) {
		const migration *m = &migrate_embedded[i];
		assert_true(m->version > prev);
		char prefix[16];
		snprintf(prefix, sizeof(prefix), "%03d_", m->version);
		assert_memory_equal(m->name, prefix, strlen(prefix));
		assert_non_null(m->sql);
		prev = m->version;
	}
	assert_int_equal(migrate_latest_version(), prev);
}

/* Migrations are schema only; each function is defined once, in one file
 * of the set, and nothing is a trigger. */
static void migrations_hold_schema_and_each_function_is_defined_once(void **state)
{
	for (size_t i = 0; i < migrate_embedded_count; i++) {
		const char *sql = migrate_embedded[i].sql;
		if (strstr(sql, "CREATE FUNCTION") || strstr(sql, "CREATE OR REPLACE") ||
		    strstr(sql, "CREATE TRIGGER") || strstr(sql, "CREATE PROCEDURE"))
			fail_msg("migration %s defines code; it belongs in sql/functions/", migrate_embedded[i].name);
	}
	assert_true(migrate_functions_count >= 1);
	char seen[1024][64];
	size_t n = 0;
	for (size_t i = 0; i < migrate_functions_count; i++) {
		const char *sql = migrate_functions[i].sql;
		assert_null(strstr(sql, "CREATE TRIGGER"));
		assert_null(strstr(sql, "RETURNS trigger"));
		for (const char *p = sql; (p = strstr(p, "CREATE ")) != NULL; p++) {
			const char *name = p + 7;
			if (strncmp(name, "OR REPLACE ", 11) == 0)
				name += 11;
			if (strncmp(name, "FUNCTION ", 9) != 0)
				continue;
			name += 9;
			size_t len = strcspn(name, "( \n");
			assert_true(len > 0 && len < sizeof(seen[0]));
			assert_true(n < sizeof(seen) / sizeof(seen[0]));
			for (size_t k = 0; k < n; k++)
				if (strlen(seen[k]) == len && memcmp(seen[k], name, len) == 0)
					fail_msg("function %.*s is defined twice (again in %s.sql)", (int)len, name,
					         migrate_functions[i].name);
			memcpy(seen[n], name, len);
			seen[n++][len] = '\0';
		}
	}
	assert_true(n > 10);
	/* The checksum is stable and has its documented shape. */
	const char *sum = migrate_functions_checksum();
	assert_int_equal(strlen(sum), 8 + 16);
	assert_memory_equal(sum, "fnv1a64:", 8);
	assert_ptr_equal(migrate_functions_checksum(), sum);
}

static void fresh_database_gets_every_migration(void **state)
{
	NEED_DB();
	int applied = -1;
	char err[512];
	assert_true(migrate_apply(dsn, &applied, err, sizeof(err)));
	assert_int_equal(applied, (int)migrate_embedded_count);

	assert_int_equal(query_long("SELECT count(*) FROM schema_migrations"), (long)migrate_embedded_count);
	assert_int_equal(query_long(MIGRATE_VERSION_SQL), migrate_latest_version());
	for (size_t i = 0; i < migrate_embedded_count; i++) {
		char q[256];
		snprintf(q, sizeof(q),
		         "SELECT count(*) FROM schema_migrations WHERE version = %d AND name = '%s' "
		         "AND applied_at <= now()",
		         migrate_embedded[i].version, migrate_embedded[i].name);
		assert_int_equal(query_long(q), 1);
	}
	/* The foundation's tables exist. */
	assert_int_equal(query_long("SELECT count(*) FROM inbound_event"), 0);
	assert_int_equal(query_long("SELECT count(*) FROM plugin_state"), 0);
	/* So do the functions, with their checksum, and no trigger at all. */
	assert_int_equal(query_long("SELECT count(*) FROM pg_proc WHERE proname = 'parley_ingest_batch'"), 1);
	assert_int_equal(query_long("SELECT count(*) FROM pg_proc WHERE proname = 'parley_after_ingest'"), 1);
	assert_int_equal(query_long("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal"), 0);
	char q[160];
	snprintf(q, sizeof(q), "SELECT count(*) FROM schema_functions WHERE checksum = '%s'",
	         migrate_functions_checksum());
	assert_int_equal(query_long(q), 1);
}

static long functions_applied_at(void)
{
	return query_long("SELECT (extract(epoch FROM applied_at) * 1000000)::bigint FROM schema_functions");
}

/* An unchanged set is not applied again: a function dropped by hand stays
 * dropped, the recorded time stays. */
static void unchanged_function_set_is_not_applied_again(void **state)
{
	NEED_DB();
	char err[512];
	assert_true(migrate_apply(dsn, NULL, err, sizeof(err)));
	long stamp = functions_applied_at();
	exec_at(dsn, "DROP FUNCTION parley_job_next_due_ms()");
	int applied = -1;
	assert_true(migrate_apply(dsn, &applied, err, sizeof(err)));
	assert_int_equal(applied, 0);
	assert_int_equal(functions_applied_at(), stamp);
	assert_int_equal(query_long("SELECT count(*) FROM pg_proc WHERE proname = 'parley_job_next_due_ms'"), 0);
}

/* A changed set (another checksum recorded) is applied as a whole: what it
 * defines is back, a parley_ function it no longer has is gone, the new
 * checksum is recorded. Migrations are not touched. */
static void changed_function_set_is_applied_again(void **state)
{
	NEED_DB();
	char err[512];
	assert_true(migrate_apply(dsn, NULL, err, sizeof(err)));
	long stamp = functions_applied_at();
	exec_at(dsn, "UPDATE schema_functions SET checksum = 'fnv1a64:0000000000000000'");
	exec_at(dsn, "DROP FUNCTION parley_job_next_due_ms()");
	exec_at(dsn, "CREATE FUNCTION parley_retired(x int) RETURNS int LANGUAGE sql AS 'SELECT x'");
	exec_at(dsn, "CREATE FUNCTION not_ours() RETURNS int LANGUAGE sql AS 'SELECT 1'");
	int applied = -1;
	assert_true(migrate_apply(dsn, &applied, err, sizeof(err)));
	assert_int_equal(applied, 0);
	assert_true(functions_applied_at() > stamp);
	char q[160];
	snprintf(q, sizeof(q), "SELECT count(*) FROM schema_functions WHERE checksum = '%s'",
	         migrate_functions_checksum());
	assert_int_equal(query_long(q), 1);
	assert_int_equal(query_long("SELECT count(*) FROM pg_proc WHERE proname = 'parley_job_next_due_ms'"), 1);
	assert_int_equal(query_long("SELECT count(*) FROM pg_proc WHERE proname = 'parley_retired'"), 0);
	assert_int_equal(query_long("SELECT count(*) FROM pg_proc WHERE proname = 'not_ours'"), 1);
	assert_int_equal(query_long("SELECT count(*) FROM schema_migrations"), (long)migrate_embedded_count);
}

/* A development database from before the schema was folded (migrations
 * 001_foundation ... 007_ingest_batch) is refused, naming what to do, and
 * left as it was. */
static void database_of_the_earlier_migrations_is_refused(void **state)
{
	NEED_DB();
	exec_at(dsn, "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
	             "applied_at timestamptz NOT NULL DEFAULT now())");
	exec_at(dsn, "INSERT INTO schema_migrations (version, name) VALUES (1, '001_foundation'), "
	             "(2, '002_customer_model'), (3, '003_jobs'), (4, '004_replies'), (5, '005_tickets'), "
	             "(6, '006_job_outcomes'), (7, '007_ingest_batch')");
	int applied = -1;
	char err[512];
	assert_false(migrate_apply(dsn, &applied, err, sizeof(err)));
	assert_int_equal(applied, 0);
	assert_non_null(strstr(err, "the database was made by migration 001_foundation, which this parleyd "
	                            "does not have"));
	assert_non_null(strstr(err, "cannot be upgraded"));
	assert_non_null(strstr(err, "create a new, empty database"));
	assert_non_null(strstr(err, "run parleyd --migrate"));
	assert_int_equal(query_long("SELECT count(*) FROM schema_migrations"), 7);
	assert_int_equal(query_long("SELECT count(*) FROM pg_class WHERE relname = 'inbound_event'"), 0);
	assert_int_equal(query_long("SELECT count(*) FROM pg_class WHERE relname = 'schema_functions'"), 0);
}

static void second_run_applies_nothing(void **state)
{
	NEED_DB();
	int applied = -1;
	char err[512];
	assert_true(migrate_apply(dsn, &applied, err, sizeof(err)));
	assert_true(applied > 0);
	long first_stamp = query_long("SELECT (extract(epoch FROM max(applied_at)) * 1000000)::bigint "
	                              "FROM schema_migrations");

	assert_true(migrate_apply(dsn, &applied, err, sizeof(err)));
	assert_int_equal(applied, 0);
	assert_int_equal(query_long("SELECT count(*) FROM schema_migrations"), (long)migrate_embedded_count);
	assert_int_equal(query_long("SELECT (extract(epoch FROM max(applied_at)) * 1000000)::bigint "
	                            "FROM schema_migrations"),
	                 first_stamp);
	/* applied may be NULL. */
	assert_true(migrate_apply(dsn, NULL, err, sizeof(err)));
}

/* Child: wait for the go signal, migrate, exit with the count (or 100+). */
static pid_t spawn_migrator(const int *go)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char c;
		if (go != NULL)
			close(go[1]); /* else this child would never see EOF */
		if (go != NULL && read(go[0], &c, 1) < 0)
			_exit(101);
		int applied = 0;
		char err[512];
		bool ok = migrate_apply(dsn, &applied, err, sizeof(err));
		if (!ok)
			fprintf(stderr, "migrator %d: %s\n", (int)getpid(), err);
		_exit(ok ? applied : 100);
	}
	return pid;
}

static int wait_exit_code(pid_t pid)
{
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

static void concurrent_processes_apply_each_migration_once(void **state)
{
	NEED_DB();
	int go[2];
	assert_int_equal(pipe(go), 0);
	pid_t a = spawn_migrator(go);
	pid_t b = spawn_migrator(go);
	close(go[0]);
	close(go[1]); /* both start now: EOF releases them together */

	int applied_a = wait_exit_code(a);
	int applied_b = wait_exit_code(b);
	assert_true(applied_a < 100);
	assert_true(applied_b < 100);
	assert_int_equal(applied_a + applied_b, (int)migrate_embedded_count);
	assert_int_equal(query_long("SELECT count(*) FROM schema_migrations"), (long)migrate_embedded_count);
	assert_int_equal(query_long("SELECT count(DISTINCT version) FROM schema_migrations"),
	                 (long)migrate_embedded_count);
}

/* The lock key is documented: FNV-1a 64 of "parley.migrate". */
static int64_t documented_lock_key(void)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (const char *p = "parley.migrate"; *p; p++) {
		h ^= (unsigned char)*p;
		h *= 0x100000001b3ull;
	}
	return (int64_t)h;
}

static void migration_waits_while_another_holds_the_lock(void **state)
{
	NEED_DB();
	PGconn *holder = connect_or_fail(dsn);
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT pg_advisory_lock(%" PRId64 ")", documented_lock_key());
	exec_on(holder, sql);

	pid_t child = spawn_migrator(NULL);
	usleep(500000);
	int status;
	assert_int_equal(waitpid(child, &status, WNOHANG), 0); /* still waiting */
	assert_int_equal(query_long("SELECT count(*) FROM pg_class WHERE relname = 'schema_migrations'"), 0);

	snprintf(sql, sizeof(sql), "SELECT pg_advisory_unlock(%" PRId64 ")", documented_lock_key());
	exec_on(holder, sql);
	assert_int_equal(wait_exit_code(child), (int)migrate_embedded_count);
	PQfinish(holder);
}

static void newer_schema_is_refused_naming_both_versions(void **state)
{
	NEED_DB();
	char err[512];
	assert_true(migrate_apply(dsn, NULL, err, sizeof(err)));
	exec_at(dsn, "INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future')");

	int applied = -1;
	assert_false(migrate_apply(dsn, &applied, err, sizeof(err)));
	assert_int_equal(applied, 0);
	char want[256];
	snprintf(want, sizeof(want),
	         "database schema version 9999 is newer than this parleyd (knows up to %d); upgrade parleyd",
	         migrate_latest_version());
	assert_string_equal(err, want);
	/* The lock is released on the way out: a second try says the same, not hangs. */
	assert_false(migrate_apply(dsn, NULL, err, sizeof(err)));
	assert_string_equal(err, want);
}

static void missing_migration_is_applied_on_an_older_schema(void **state)
{
	NEED_DB();
	/* A database that recorded nothing yet but already has the table. */
	exec_at(dsn, "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
	             "applied_at timestamptz NOT NULL DEFAULT now())");
	int applied = -1;
	char err[512];
	assert_true(migrate_apply(dsn, &applied, err, sizeof(err)));
	assert_int_equal(applied, (int)migrate_embedded_count);
}

static void failing_migration_names_itself_and_applies_nothing(void **state)
{
	NEED_DB();
	/* 001 creates inbound_event, then plugin_state: make the second collide. */
	exec_at(dsn, "CREATE TABLE plugin_state (x int)");
	int applied = -1;
	char err[512];
	assert_false(migrate_apply(dsn, &applied, err, sizeof(err)));
	assert_int_equal(applied, 0);
	char want[128];
	snprintf(want, sizeof(want), "migration %s failed: ", migrate_embedded[0].name);
	assert_memory_equal(err, want, strlen(want));
	assert_non_null(strstr(err, "already exists"));
	/* Its transaction rolled back: not recorded, nothing half-created. */
	assert_int_equal(query_long("SELECT count(*) FROM schema_migrations"), 0);
	assert_int_equal(query_long("SELECT count(*) FROM pg_class WHERE relname = 'inbound_event'"), 0);
}

static int free_tcp_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
	close(s);
	return ntohs(a.sin_port);
}

static void connection_errors_give_a_reason_but_no_password(void **state)
{
	char bad[160], err[512];
	snprintf(bad, sizeof(bad), "host=127.0.0.1 port=%d user=nobody password=s3cr3t connect_timeout=2",
	         free_tcp_port());
	int applied = -1;
	assert_false(migrate_apply(bad, &applied, err, sizeof(err)));
	assert_int_equal(applied, 0);
	assert_memory_equal(err, "cannot connect to PostgreSQL: ", 30);
	assert_null(strstr(err, "s3cr3t"));

	assert_false(migrate_apply("host=127.0.0.1 password='s3cr3t", NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "invalid database connection string"));
	assert_null(strstr(err, "s3cr3t"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(latest_version_is_the_highest_embedded_migration),
		cmocka_unit_test(migrations_hold_schema_and_each_function_is_defined_once),
		cmocka_unit_test_setup_teardown(fresh_database_gets_every_migration, setup, teardown),
		cmocka_unit_test_setup_teardown(second_run_applies_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(unchanged_function_set_is_not_applied_again, setup, teardown),
		cmocka_unit_test_setup_teardown(changed_function_set_is_applied_again, setup, teardown),
		cmocka_unit_test_setup_teardown(database_of_the_earlier_migrations_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(concurrent_processes_apply_each_migration_once, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(migration_waits_while_another_holds_the_lock, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(newer_schema_is_refused_naming_both_versions, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(missing_migration_is_applied_on_an_older_schema, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(failing_migration_names_itself_and_applies_nothing, setup,
		                                teardown),
		cmocka_unit_test(connection_errors_give_a_reason_but_no_password),
	};
	log_set_level(LOGL_WARN);
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
