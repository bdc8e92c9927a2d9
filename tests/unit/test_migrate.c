/* test_migrate.c - embedded migrations applied under an advisory lock.
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
		cmocka_unit_test_setup_teardown(fresh_database_gets_every_migration, setup, teardown),
		cmocka_unit_test_setup_teardown(second_run_applies_nothing, setup, teardown),
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
