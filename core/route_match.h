/* route_match.h - a route table and the matcher that picks a route for a
 * request: method, path pattern with {params}, handler, auth requirement.
 *
 * Patterns are literal segments and `{name}` segments, optionally ending in
 * `/...`:
 *   /healthz                     exactly that path
 *   /sinks/{sink}/events         {sink} is one non-empty segment
 *   /webhooks/{channel}/...      followed by nothing, or by a slash and
 *                                anything (the rest, handed over undecoded)
 * Literal segments compare byte for byte. A {param} is percent-decoded; a
 * segment that decodes badly (a stray '%', an encoded '/' or NUL) or is
 * longer than ROUTE_PARAM_MAX matches nothing. */
#ifndef PARLEY_CORE_ROUTE_MATCH_H
#define PARLEY_CORE_ROUTE_MATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "http_server.h"

#define ROUTE_MAX_PARAMS 4
#define ROUTE_PARAM_MAX 127     /* bytes of one decoded value */

/* Who may call a route. The router checks it before the handler runs. */
typedef enum route_auth {
	ROUTE_AUTH_NONE,     /* anyone: health, readiness, metrics */
	ROUTE_AUTH_PLUGIN    /* the plugin checks the platform's signature itself */
	/* next: ROUTE_AUTH_TOKEN (API bearer token), ROUTE_AUTH_SESSION (agent UI) */
} route_auth;

/* The params of a matched route. Names borrow the pattern's text (not
 * NUL-terminated, hence the lengths); values are decoded copies. */
typedef struct route_match {
	size_t n_params;
	struct {
		const char *name;
		size_t name_len;
		char value[ROUTE_PARAM_MAX + 1];
	} params[ROUTE_MAX_PARAMS];
	const char *rest;    /* borrowed from the path: what "/..." matched, "" or "/x/y" */
} route_match;

typedef void (*route_handler_fn)(http_request *req, const route_match *m);

typedef struct route {
	const char *method;    /* "GET" (answers HEAD too), "POST", ...; NULL: any */
	const char *pattern;
	const char *label;     /* the metrics label, e.g. "/webhooks/{instance}" */
	route_auth auth;
	route_handler_fn handler;
} route;

typedef enum route_result {
	ROUTE_FOUND,
	ROUTE_NO_PATH,        /* no pattern matches: 404 */
	ROUTE_WRONG_METHOD    /* a pattern matches, the method does not: 405 */
} route_result;

/* Value of param `name`, or NULL. Borrowed from m. */
const char *route_param(const route_match *m, const char *name);

/* Whether `path` (undecoded, without query) matches `pattern`; fills m. */
bool route_match_path(const char *pattern, const char *path, route_match *m);

/* The first route in table[0..n) matching method and path (*found, m). On
 * ROUTE_WRONG_METHOD *found is the first route matching the path (for its
 * label) and `allow` gets the methods the path does take, as an Allow
 * header value ("GET, HEAD, POST"); on ROUTE_NO_PATH *found is NULL. */
route_result route_lookup(const route *table, size_t n, const char *method, const char *path,
                          const route **found, route_match *m, char *allow, size_t allow_len);

#endif
