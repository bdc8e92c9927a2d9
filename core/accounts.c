/* accounts.c - operator commands for API access: create a token, create an
 * admin. The rules (what a role is, which teams exist, whether an e-mail is
 * taken) are in sql/functions/agents.sql; this file makes the secrets and
 * hashes the passwords, and keeps both out of the database. */
#include "accounts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "api.h"
#include "db.h"
#include "password.h"
#include "util.h"

bool accounts_new_secret(char *out, size_t outlen, char hash[65])
{
	unsigned char raw[32], b64[64];
	if (outlen < ACCOUNTS_SECRET_MAX || RAND_bytes(raw, sizeof(raw)) != 1)
		return false;
	int n = EVP_EncodeBlock(b64, raw, sizeof(raw));   /* 44 characters with one '=' */
	size_t o = 0;
	memcpy(out, "prl_", 4);
	o = 4;
	for (int i = 0; i < n && b64[i] != '='; i++)
		out[o++] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
	out[o] = '\0';
	api_sha256_hex(out, o, hash);
	return true;
}

bool accounts_create_token(const char *dsn, const char *name, const char *role,
                           const char *agent_email, const char *teams, const char *actor,
                           long long *id, char *secret, size_t secretlen, char *err, size_t errlen)
{
	char hash[65], prefix[13];
	if (!accounts_new_secret(secret, secretlen, hash)) {
		util_set_err(err, errlen, "no random bytes for the secret");
		return false;
	}
	snprintf(prefix, sizeof(prefix), "%.12s", secret);
	PGconn *pg = db_connect_blocking(dsn, err, errlen);
	if (pg == NULL)
		return false;
	const char *params[] = { name, role, agent_email, teams, hash, prefix, actor };
	PGresult *r = PQexecParams(pg,
	                           "SELECT parley_token_create($1, $2, $3, "
	                           "string_to_array(nullif($4, ''), ',')::bigint[], $5, $6, $7)",
	                           7, NULL, params, NULL, NULL, 0);
	bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
	if (ok) {
		*id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	} else {
		const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		char msg[512];
		util_one_line(primary != NULL ? primary : PQerrorMessage(pg), msg, sizeof(msg));
		util_set_err(err, errlen, "%s", msg);
		memset(secret, 0, secretlen);
	}
	PQclear(r);
	PQfinish(pg);
	return ok;
}

bool accounts_read_password(FILE *in, char *buf, size_t len, char *err, size_t errlen)
{
	int fd = fileno(in);
	struct termios saved, quiet;
	bool tty = isatty(fd) && tcgetattr(fd, &saved) == 0;
	if (tty) {
		fputs("Password: ", stderr);
		fflush(stderr);
		quiet = saved;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(fd, TCSAFLUSH, &quiet);
	}
	bool got = fgets(buf, (int)len, in) != NULL;
	if (tty) {
		tcsetattr(fd, TCSAFLUSH, &saved);
		fputc('\n', stderr);
	}
	if (!got) {
		util_set_err(err, errlen, "no password on standard input");
		return false;
	}
	size_t n = strcspn(buf, "\r\n");
	if (buf[n] == '\0' && n + 1 >= len) {
		OPENSSL_cleanse(buf, len);
		util_set_err(err, errlen, "the password is longer than %zu bytes", len - 2);
		return false;
	}
	buf[n] = '\0';
	return true;
}

bool accounts_create_admin(const char *dsn, const char *email, const char *name, const char *password,
                           const char *actor, long long *id, char *err, size_t errlen)
{
	char why[200], hash[PASSWORD_HASH_MAX];
	if (!password_acceptable(password, why, sizeof(why))) {
		util_set_err(err, errlen, "%s", why);
		return false;
	}
	if (!password_hash(password, hash, sizeof(hash))) {
		util_set_err(err, errlen, "the password could not be hashed");
		return false;
	}
	PGconn *pg = db_connect_blocking(dsn, err, errlen);
	if (pg == NULL)
		return false;
	const char *params[] = { email, name, hash, actor };
	PGresult *r = PQexecParams(pg, "SELECT parley_admin_create($1, $2, $3, $4)", 4, NULL, params, NULL,
	                           NULL, 0);
	bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
	if (ok) {
		*id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	} else {
		const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		char msg[512];
		util_one_line(primary != NULL ? primary : PQerrorMessage(pg), msg, sizeof(msg));
		util_set_err(err, errlen, "%s", msg);
	}
	OPENSSL_cleanse(hash, sizeof(hash));
	PQclear(r);
	PQfinish(pg);
	return ok;
}
