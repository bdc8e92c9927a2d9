/* policy_store.c - store and read the cluster policy with a blocking
 * connection: `parleyd --apply-policy`, `--show-policy`, and a node's start
 * (before the loop runs). The work is parley_policy_apply's: one applier at
 * a time, a stale expected version refused, an unchanged body not stored. */
#include "policy_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

#include "db.h"
#include "util.h"

char *policy_body_text(const json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
	if (text == NULL)
		abort();
	return text;
}

static void set_pg_error(PGconn *pg, const PGresult *r, char *err, size_t errlen)
{
	const char *primary = r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char msg[512];
	util_one_line(primary != NULL ? primary : PQerrorMessage(pg), msg, sizeof(msg));
	util_set_err(err, errlen, "%s", msg);
}

policy_status policy_store_apply(const char *dsn, const json_t *body, long long expect,
                                 bool if_none, const char *by, policy_applied *out, char *err,
                                 size_t errlen)
{
	PGconn *pg = db_connect_blocking(dsn, err, errlen);
	if (pg == NULL)
		return POLICY_FAILED;
	char *text = policy_body_text(body);
	char expect_s[24];
	snprintf(expect_s, sizeof(expect_s), "%lld", expect);
	const char *params[] = { text, expect >= 0 ? expect_s : NULL, if_none ? "true" : "false", by };
	PGresult *r = PQexecParams(pg, POLICY_APPLY_SQL, 4, NULL, params, NULL, NULL, 0);
	free(text);
	policy_status st = POLICY_DONE;
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		out->version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		out->previous = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
		out->changed = strcmp(PQgetvalue(r, 0, 2), "t") == 0;
	} else {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		st = state != NULL && strcmp(state, POLICY_STALE_SQLSTATE) == 0 ? POLICY_STALE
		                                                                 : POLICY_FAILED;
		set_pg_error(pg, r, err, errlen);
	}
	PQclear(r);
	PQfinish(pg);
	return st;
}

bool policy_store_current(const char *dsn, long long *version, json_t **body, char *applied,
                          size_t alen, char *err, size_t errlen)
{
	*version = 0;
	*body = NULL;
	PGconn *pg = db_connect_blocking(dsn, err, errlen);
	if (pg == NULL)
		return false;
	PGresult *r = PQexec(pg, "SELECT version, body::text, applied_at::text, applied_by "
	                         "FROM cluster_policy ORDER BY version DESC LIMIT 1");
	bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok) {
		set_pg_error(pg, r, err, errlen);
	} else if (PQntuples(r) == 1) {
		json_error_t jerr;
		*body = json_loads(PQgetvalue(r, 0, 1), 0, &jerr);
		ok = *body != NULL;
		if (!ok)
			util_set_err(err, errlen, "the stored policy is not JSON: %s", jerr.text);
		*version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		if (applied != NULL)
			snprintf(applied, alen, "%s by %s", PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3));
	}
	PQclear(r);
	PQfinish(pg);
	return ok;
}
