/* admin.c - operator commands: merge and unmerge customers, reply to a
 * conversation, move a conversation to private.
 *
 * The work itself is in the database (parley_merge_customers and
 * parley_unmerge in sql/functions/customers.sql, parley_reply and
 * parley_move_to_private in sql/functions/replies.sql) so that the API, the
 * command line and automatic actions share one implementation and one audit
 * trail. */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

#include "db.h"
#include "util.h"

/* A positive decimal id. */
static bool is_id(const char *s)
{
	if (s == NULL || *s == '\0' || strlen(s) > 18)
		return false;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return strtoll(s, NULL, 10) > 0;
}

/* Run one parameterized statement returning one value. */
static bool call_one(const char *dsn, const char *sql, int n, const char *const *params,
                     char *value, size_t vlen, char *err, size_t errlen)
{
	PGconn *pg = db_connect_blocking(dsn, err, errlen);
	if (pg == NULL)
		return false;
	PGresult *r = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
	bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
	if (ok) {
		if (value != NULL)
			snprintf(value, vlen, "%s", PQgetvalue(r, 0, 0));
	} else {
		const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		char msg[512];
		util_one_line(primary != NULL ? primary : PQerrorMessage(pg), msg, sizeof(msg));
		util_set_err(err, errlen, "%s", msg);
	}
	PQclear(r);
	PQfinish(pg);
	return ok;
}

bool admin_merge_customers(const char *dsn, const char *source, const char *target,
                           const char *actor, long long *audit_id, char *err, size_t errlen)
{
	if (!is_id(source) || !is_id(target)) {
		util_set_err(err, errlen, "customer ids are positive whole numbers");
		return false;
	}
	const char *params[] = { source, target, actor };
	char value[32];
	if (!call_one(dsn, "SELECT parley_merge_customers($1::bigint, $2::bigint, $3)", 3, params,
	              value, sizeof(value), err, errlen))
		return false;
	*audit_id = strtoll(value, NULL, 10);
	return true;
}

bool admin_unmerge(const char *dsn, const char *audit_id, const char *actor, char *err,
                   size_t errlen)
{
	if (!is_id(audit_id)) {
		util_set_err(err, errlen, "an audit id is a positive whole number");
		return false;
	}
	const char *params[] = { audit_id, actor };
	return call_one(dsn, "SELECT parley_unmerge($1::bigint, $2)::text", 2, params, NULL, 0, err,
	                errlen);
}

bool admin_reply(const char *dsn, const char *conversation, const char *text,
                 const char *visibility, const char *actor, long long *message_id, char *err,
                 size_t errlen)
{
	if (!is_id(conversation)) {
		util_set_err(err, errlen, "a conversation id is a positive whole number");
		return false;
	}
	const char *params[] = { conversation, text, visibility, actor };
	char value[32];
	if (!call_one(dsn, "SELECT parley_reply($1::bigint, $2, $3, $4)", 4, params, value,
	              sizeof(value), err, errlen))
		return false;
	*message_id = strtoll(value, NULL, 10);
	return true;
}

bool admin_move_to_private(const char *dsn, const char *conversation, const char *text,
                           const char *public_text, const char *texts_json, const char *actor,
                           long long *private_id, char *err, size_t errlen)
{
	if (!is_id(conversation)) {
		util_set_err(err, errlen, "a conversation id is a positive whole number");
		return false;
	}
	const char *params[] = { conversation, text, public_text, texts_json, actor };
	char value[32];
	if (!call_one(dsn,
	              "SELECT parley_move_to_private($1::bigint, $2, coalesce($3, $4::jsonb ->> "
	              "(SELECT channel_instance FROM conversation WHERE id = $1::bigint)), $5)",
	              5, params, value, sizeof(value), err, errlen))
		return false;
	*private_id = strtoll(value, NULL, 10);
	return true;
}
