/* pg_testdb.c - shared by the unit tests that need PostgreSQL. */
#include "pg_testdb.h"

#include <stdio.h>
#include <unistd.h>
#include <string.h>
#include <libpq-fe.h>

#include "util.h"

char *pg_testdb_dsn(const char *base, const char *name)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(base, &err);
	if (opts == NULL) {
		PQfreemem(err);
		return NULL;
	}
	size_t cap = 1024, len = 0;
	char *out = xmalloc(cap);
	out[0] = '\0';
	/* Re-quote every value so a password with spaces or quotes survives. */
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || strcmp(o->keyword, "dbname") == 0)
			continue;
		size_t need = len + strlen(o->keyword) + 2 * strlen(o->val) + 8;
		if (need > cap) {
			cap = need * 2;
			out = xrealloc(out, cap);
		}
		len += (size_t)sprintf(out + len, "%s='", o->keyword);
		for (const char *p = o->val; *p; p++) {
			if (*p == '\'' || *p == '\\')
				out[len++] = '\\';
			out[len++] = *p;
		}
		len += (size_t)sprintf(out + len, "' ");
	}
	PQconninfoFree(opts);
	out = xrealloc(out, len + strlen(name) + 16);
	sprintf(out + len, "dbname=%s", name);
	return out;
}

static void ignore_notice(void *arg, const char *message) { (void)arg; (void)message; }

bool pg_testdb_exec(const char *dsn, const char *sql, char *err, size_t errlen)
{
	PGconn *pg = PQconnectdb(dsn);
	PQsetNoticeProcessor(pg, ignore_notice, NULL);  /* "does not exist, skipping" */
	bool ok = PQstatus(pg) == CONNECTION_OK;
	if (!ok) {
		snprintf(err, errlen, "cannot connect to the test server: %s", PQerrorMessage(pg));
	} else {
		PGresult *r = PQexec(pg, sql);
		ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
		if (!ok)
			snprintf(err, errlen, "%s: %s", sql, PQresultErrorMessage(r));
		PQclear(r);
	}
	PQfinish(pg);
	return ok;
}

char *pg_testdb_create(const char *base, const char *prefix, char *name, size_t namelen)
{
	static int seq;
	char sql[160], err[512];
	snprintf(name, namelen, "%s_%d_%d", prefix, (int)getpid(), ++seq);
	/* A leftover from a crashed run with the same pid would make CREATE fail. */
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	pg_testdb_exec(base, sql, err, sizeof(err));
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	if (!pg_testdb_exec(base, sql, err, sizeof(err))) {
		snprintf(name, namelen, "%s", err);
		return NULL;
	}
	return pg_testdb_dsn(base, name);
}

void pg_testdb_drop(const char *base, const char *name)
{
	char sql[160], err[512];
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	pg_testdb_exec(base, sql, err, sizeof(err));
}
