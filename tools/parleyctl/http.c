/* http.c - parleyctl's requests (http.h).
 *
 * The token goes only to the URL the user named: redirects are not
 * followed, only http and https are spoken, and the header that carries it
 * is wiped from memory when the request is done. Answers are JSON or an
 * error; anything larger than CTL_MAX_RESPONSE is refused while it arrives. */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif

typedef struct sink {
	ctl_buf body;
	bool too_big;
} sink;

static size_t on_data(char *data, size_t size, size_t nmemb, void *userdata)
{
	sink *s = userdata;
	size_t n = size * nmemb;
	if (s->body.len + n > CTL_MAX_RESPONSE) {
		s->too_big = true;
		return 0;   /* libcurl stops with CURLE_WRITE_ERROR */
	}
	ctl_buf_add(&s->body, data, n);
	return n;
}

static void wipe(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
}

bool ctl_client_init(ctl_client *c, const char *base, const char *token, long total_timeout_s)
{
	*c = (ctl_client){ 0 };
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return false;
	c->curl = curl_easy_init();
	if (!c->curl)
		return false;
	c->base = ctl_xstrdup(base);
	size_t n = strlen(c->base);
	while (n > 0 && c->base[n - 1] == '/')
		c->base[--n] = '\0';
	if (token) {
		ctl_buf h = { 0 };
		ctl_buf_addf(&h, "Authorization: Bearer %s", token);
		c->auth_header = ctl_buf_take(&h);
	}
	c->total_timeout_s = total_timeout_s;
	return true;
}

void ctl_client_free(ctl_client *c)
{
	if (c->curl)
		curl_easy_cleanup(c->curl);
	wipe(c->auth_header);
	free(c->auth_header);
	free(c->base);
	*c = (ctl_client){ 0 };
	curl_global_cleanup();
}

void ctl_response_free(ctl_response *r)
{
	json_decref(r->json);
	*r = (ctl_response){ 0 };
}

char *ctl_url_escape(const char *s)
{
	char *enc = curl_easy_escape(NULL, s, 0);
	if (!enc)
		ctl_out_of_memory();
	char *copy = ctl_xstrdup(enc);
	curl_free(enc);
	return copy;
}

void ctl_query_add(ctl_buf *target, const char *name, const char *value)
{
	char *enc = ctl_url_escape(value);
	ctl_buf_addc(target, strchr(ctl_buf_str(target), '?') ? '&' : '?');
	ctl_buf_addf(target, "%s=%s", name, enc);
	free(enc);
}

static void set_method(CURL *h, const char *method, const char *payload)
{
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
		return;
	}
	if (strcmp(method, "POST") == 0)
		curl_easy_setopt(h, CURLOPT_POST, 1L);
	else
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (payload || strcmp(method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload ? payload : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(payload ? strlen(payload) : 0));
	}
}

static void fail_transport(ctl_client *c, ctl_response *r, CURLcode rc, const char *errbuf, bool too_big)
{
	if (too_big || rc == CURLE_FILESIZE_EXCEEDED)
		snprintf(r->error, sizeof(r->error), "%s: the answer is larger than %u MiB", c->base,
		         CTL_MAX_RESPONSE / (1024 * 1024));
	else if (rc == CURLE_OPERATION_TIMEDOUT)
		snprintf(r->error, sizeof(r->error), "%s: no answer within the time limit (%s)", c->base,
		         errbuf[0] ? errbuf : curl_easy_strerror(rc));
	else
		snprintf(r->error, sizeof(r->error), "cannot reach %s: %s", c->base,
		         errbuf[0] ? errbuf : curl_easy_strerror(rc));
}

bool ctl_call(ctl_client *c, const char *method, const char *target, json_t *body, bool auth,
              ctl_response *r)
{
	*r = (ctl_response){ 0 };
	CURL *h = c->curl;
	curl_easy_reset(h);   /* keeps the open connection */

	ctl_buf url = { 0 };
	ctl_buf_adds(&url, c->base);
	ctl_buf_adds(&url, target);
	char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
	if (body && !payload) {
		snprintf(r->error, sizeof(r->error), "cannot encode the request body");
		ctl_buf_free(&url);
		return false;
	}

	struct curl_slist *headers = NULL;
	headers = curl_slist_append(headers, "Accept: application/json");
	headers = curl_slist_append(headers, "Expect:");
	if (payload)
		headers = curl_slist_append(headers, "Content-Type: application/json");
	if (auth && c->auth_header)
		headers = curl_slist_append(headers, c->auth_header);

	char errbuf[CURL_ERROR_SIZE] = "";
	sink s = { 0 };
	curl_easy_setopt(h, CURLOPT_URL, ctl_buf_str(&url));
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "parleyctl/" PACKAGE_VERSION);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CTL_CONNECT_TIMEOUT_S < c->total_timeout_s
	                                            ? CTL_CONNECT_TIMEOUT_S : c->total_timeout_s);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, c->total_timeout_s);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CTL_MAX_RESPONSE);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	set_method(h, method, payload);

	CURLcode rc = curl_easy_perform(h);
	bool ok = false;
	if (rc != CURLE_OK) {
		fail_transport(c, r, rc, errbuf, s.too_big);
	} else {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
		json_error_t jerr;
		if (s.body.len == 0) {
			ok = true;   /* e.g. 204 */
		} else if ((r->json = json_loadb(s.body.data, s.body.len, 0, &jerr)) != NULL) {
			ok = true;
		} else {
			snprintf(r->error, sizeof(r->error), "%s answered HTTP %ld with a body that is not JSON",
			         c->base, r->status);
		}
	}
	/* The header list holds a copy of the token. */
	for (struct curl_slist *l = headers; l; l = l->next)
		wipe(l->data);
	curl_slist_free_all(headers);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	free(payload);
	ctl_buf_free(&url);
	ctl_buf_free(&s.body);
	return ok;
}
