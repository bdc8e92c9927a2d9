/* pg_testdb.c - shared by the unit tests that need PostgreSQL. */
#include "pg_testdb.h"

#include <stdio.h>
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
