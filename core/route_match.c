/* route_match.c - the route matcher: pure string work, no I/O. */
#include "route_match.h"

#include <stdio.h>
#include <string.h>

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decodes seg[0..len) into out (cap bytes with the NUL). False on a
 * bad escape, a decoded '/' or NUL (a param is one segment and a C string)
 * or a value too long. '+' stays '+': that rule is for queries, not paths. */
static bool decode_segment(const char *seg, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		char c = seg[i];
		if (c == '%') {
			if (i + 2 >= len)
				return false;
			int hi = hex_value(seg[i + 1]);
			int lo = hex_value(seg[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			c = (char)(hi * 16 + lo);
			if (c == '/' || c == '\0')
				return false;
			i += 2;
		}
		if (o + 1 >= cap)
			return false;
		out[o++] = c;
	}
	out[o] = '\0';
	return true;
}

const char *route_param(const route_match *m, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < m->n_params; i++)
		if (m->params[i].name_len == n && memcmp(m->params[i].name, name, n) == 0)
			return m->params[i].value;
	return NULL;
}

bool route_match_path(const char *pattern, const char *path, route_match *m)
{
	const char *p = pattern;
	const char *s = path;
	m->n_params = 0;
	m->rest = "";
	for (;;) {
		if (strcmp(p, "/...") == 0) {
			/* Nothing more, or more segments after a slash. */
			if (*s != '\0' && *s != '/')
				return false;
			m->rest = s;
			return true;
		}
		if (*p == '\0' || *s == '\0')
			return *p == '\0' && *s == '\0';
		if (*p != '/' || *s != '/')
			return false;
		p++;
		s++;
		size_t plen = strcspn(p, "/");
		size_t slen = strcspn(s, "/");
		if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
			if (slen == 0 || m->n_params == ROUTE_MAX_PARAMS)
				return false;
			size_t i = m->n_params;
			if (!decode_segment(s, slen, m->params[i].value, sizeof(m->params[i].value)))
				return false;
			m->params[i].name = p + 1;
			m->params[i].name_len = plen - 2;
			m->n_params++;
		} else if (plen != slen || memcmp(p, s, plen) != 0) {
			return false;
		}
		p += plen;
		s += slen;
	}
}

static bool method_takes(const char *route_method, const char *method)
{
	if (route_method == NULL || strcmp(route_method, method) == 0)
		return true;
	/* A GET route answers HEAD; the server leaves the body out. */
	return strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0;
}

/* Appends `method` to the comma-separated list in allow unless present. */
static void allow_add(char *allow, size_t allow_len, const char *method)
{
	size_t n = strlen(method);
	for (const char *a = allow; *a != '\0';) {
		size_t len = strcspn(a, ",");
		if (len == n && memcmp(a, method, n) == 0)
			return;
		a += len;
		while (*a == ',' || *a == ' ')
			a++;
	}
	size_t used = strlen(allow);
	snprintf(allow + used, allow_len - used, "%s%s", used ? ", " : "", method);
}

route_result route_lookup(const route *table, size_t n, const char *method, const char *path,
                          const route **found, route_match *m, char *allow, size_t allow_len)
{
	const route *path_known = NULL;
	if (allow_len > 0)
		allow[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (!route_match_path(table[i].pattern, path, m))
			continue;
		if (method_takes(table[i].method, method)) {
			*found = &table[i];
			return ROUTE_FOUND;
		}
		if (path_known == NULL)
			path_known = &table[i];
		if (allow_len > 0) {
			allow_add(allow, allow_len, table[i].method);
			if (strcmp(table[i].method, "GET") == 0)
				allow_add(allow, allow_len, "HEAD");
		}
	}
	*found = path_known;
	m->n_params = 0;
	m->rest = "";
	return path_known != NULL ? ROUTE_WRONG_METHOD : ROUTE_NO_PATH;
}
