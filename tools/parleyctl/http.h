/* http.h - parleyctl's calls to the API: one libcurl easy handle, so the
 * pages of one command share a connection; bounded in time and size. */
#ifndef PARLEYCTL_HTTP_H
#define PARLEYCTL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "ctl.h"

#define CTL_CONNECT_TIMEOUT_S 5L
#define CTL_TOTAL_TIMEOUT_S 30L
#define CTL_MAX_RESPONSE (16u * 1024 * 1024)

typedef struct ctl_client {
	void *curl;             /* CURL * */
	char *base;             /* the API's base URL, no trailing '/' */
	char *auth_header;      /* "Authorization: Bearer ...", or NULL */
	long total_timeout_s;
} ctl_client;

typedef struct ctl_response {
	long status;            /* the HTTP status; 0 when there was no answer */
	json_t *json;           /* the body, when it is JSON */
	char error[320];        /* why there is no (usable) answer */
} ctl_response;

/* base: "http://host:port[/prefix]"; token may be NULL. */
bool ctl_client_init(ctl_client *c, const char *base, const char *token,
                     long total_timeout_s) CTL_MUSTCHECK;
void ctl_client_free(ctl_client *c);

/* One request: target is the path and query ("/api/v1/me"), body NULL or
 * sent as JSON, auth whether to send the token. False, with r->error set,
 * when no JSON answer came back (unreachable, timeout, too big, not JSON);
 * any HTTP status with a JSON body is true: the caller reads r->status. */
bool ctl_call(ctl_client *c, const char *method, const char *target, json_t *body, bool auth,
              ctl_response *r) CTL_MUSTCHECK;
void ctl_response_free(ctl_response *r);

/* s URL-encoded (RFC 3986 unreserved characters kept), a new string. */
char *ctl_url_escape(const char *s);

/* target with "?name=value" or "&name=value" added, value URL-encoded. */
void ctl_query_add(ctl_buf *target, const char *name, const char *value);

#endif
