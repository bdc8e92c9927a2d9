/* http_client.c - outbound HTTP requests on the transfer core (transfer.c):
 * the request line and headers a plugin asks for, checked so nothing can
 * split a request, and the final response's headers collected for lookup. */
#include "http_client.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>

#include "log.h"
#include "transfer.h"
#include "util.h"

#define HTTP_COMPONENT "http-client"

/* Response headers are small; a peer sending more is misbehaving. */
#define HTTP_MAX_HEADERS 200
#define HTTP_MAX_HEADER_BYTES (64 * 1024)

bool http_client_init(struct event_base *base, long default_timeout_ms,
                      size_t max_response_bytes)
{
	return transfer_init(base, default_timeout_ms, max_response_bytes);
}

void http_client_shutdown(void) { transfer_shutdown(); }
int http_client_active(void) { return transfer_active(); }

/* An HTTP method is a token: refuse anything that could split the request
 * line. */
static bool method_is_valid(const char *m)
{
	if (m == NULL || *m == '\0' || strlen(m) > 32)
		return false;
	for (const char *p = m; *p; p++) {
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '-' || *p == '_'))
			return false;
	}
	return true;
}

/* A header line must not smuggle a second header or a body. */
static bool header_is_valid(const char *h)
{
	return h != NULL && strpbrk(h, "\r\n") == NULL && strchr(h, ':') != NULL;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
	transfer *x = userp;
	size_t n = size * nmemb;
	size_t len = n;
	while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n'))
		len--;

	/* A status line starts a new response (after 1xx, or a proxy's answer
	 * to CONNECT): only the final response's headers count. */
	if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		transfer_clear_headers(x);
		return n;
	}
	if (len == 0)
		return n;  /* the blank line that ends the header block */

	x->header_bytes += len;
	if (x->header_bytes > HTTP_MAX_HEADER_BYTES || x->n_headers >= HTTP_MAX_HEADERS) {
		x->too_large = true;
		return 0;
	}

	const char *colon = memchr(data, ':', len);
	if (colon == NULL)
		return n;  /* not a header; tolerate it, as curl does */
	size_t name_len = (size_t)(colon - data);
	while (name_len > 0 && (data[name_len - 1] == ' ' || data[name_len - 1] == '\t'))
		name_len--;
	const char *value = colon + 1;
	const char *end = data + len;
	while (value < end && (*value == ' ' || *value == '\t'))
		value++;
	while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	size_t value_len = (size_t)(end - value);

	/* Stored normalized as "name: value" so the lookup can skip ": ". */
	char *line = xmalloc(name_len + 2 + value_len + 1);
	memcpy(line, data, name_len);
	memcpy(line + name_len, ": ", 2);
	memcpy(line + name_len + 2, value, value_len);
	line[name_len + 2 + value_len] = '\0';

	if (x->n_headers + 1 >= x->headers_cap) {
		x->headers_cap = x->headers_cap ? x->headers_cap * 2 : 16;
		x->headers = xrealloc(x->headers, x->headers_cap * sizeof(*x->headers));
	}
	x->headers[x->n_headers++] = line;
	return n;
}

/* Set an option or give up on the request. */
#define XFER_SETOPT(x, opt, val) \
	do { \
		if (curl_easy_setopt((x)->easy, (opt), (val)) != CURLE_OK) \
			goto fail; \
	} while (0)

int http_client_request(const parley_http_call *call, parley_http_done_fn done, void *arg)
{
	if (!transfer_ready() || call == NULL || done == NULL)
		return -1;
	/* The ABI's rule: read a field only if the caller's struct has it. */
	if (!PARLEY_HAS_FIELD(call, parley_http_call, url) || call->url == NULL) {
		log_warn(HTTP_COMPONENT, "request without a URL (call.size %u)", (unsigned)call->size);
		return -1;
	}
	const char *method = call->method ? call->method : "GET";
	const void *body = PARLEY_HAS_FIELD(call, parley_http_call, body_len) ? call->body : NULL;
	size_t body_len = body ? call->body_len : 0;
	long timeout_ms = PARLEY_HAS_FIELD(call, parley_http_call, timeout_ms) ? call->timeout_ms : 0;
	int insecure = PARLEY_HAS_FIELD(call, parley_http_call, insecure_skip_verify)
	               ? call->insecure_skip_verify : 0;
	const char *const *headers = PARLEY_HAS_FIELD(call, parley_http_call, headers)
	                             ? call->headers : NULL;

	if (!method_is_valid(method)) {
		log_warn(HTTP_COMPONENT, "refusing a request with an invalid method");
		return -1;
	}

	transfer *x = transfer_new(method, call->url, done, arg);
	if (x == NULL)
		return -1;
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
		if (!header_is_valid(headers[i])) {
			log_warn(HTTP_COMPONENT, "refusing %s %s: a header line is malformed",
			         x->label, x->log_url);
			goto fail_logged;
		}
		struct curl_slist *l = curl_slist_append(x->slist_a, headers[i]);
		if (l == NULL)
			goto fail;
		x->slist_a = l;
	}
	/* No "Expect: 100-continue" round trip before a body. */
	struct curl_slist *l = curl_slist_append(x->slist_a, "Expect:");
	if (l == NULL)
		goto fail;
	x->slist_a = l;

	if (!transfer_common_options(x, call->url, "http,https", timeout_ms, insecure != 0))
		goto fail;
	XFER_SETOPT(x, CURLOPT_FOLLOWLOCATION, 0L);
	XFER_SETOPT(x, CURLOPT_USERAGENT, "parley");
	XFER_SETOPT(x, CURLOPT_HTTPHEADER, x->slist_a);
	/* Refuse early when the peer announces a body over the cap;
	 * transfer_on_body enforces it for bodies of unannounced length. */
	XFER_SETOPT(x, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)transfer_max_response_bytes());
	XFER_SETOPT(x, CURLOPT_HEADERFUNCTION, on_header);
	XFER_SETOPT(x, CURLOPT_HEADERDATA, x);

	bool is_get = strcmp(method, "GET") == 0;
	bool is_post = strcmp(method, "POST") == 0;
	if (strcmp(method, "HEAD") == 0) {
		XFER_SETOPT(x, CURLOPT_NOBODY, 1L);
	} else if (is_post || body != NULL) {
		/* Size first, so a body with NUL bytes is copied whole. */
		XFER_SETOPT(x, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
		XFER_SETOPT(x, CURLOPT_COPYPOSTFIELDS, body ? (const char *)body : "");
		if (!is_post)
			XFER_SETOPT(x, CURLOPT_CUSTOMREQUEST, method);
	} else if (!is_get) {
		XFER_SETOPT(x, CURLOPT_CUSTOMREQUEST, method);
	}
	if (!transfer_start(x))
		goto fail;
	return 0;

fail:
	log_warn(HTTP_COMPONENT, "cannot start %s %s", x->label, x->log_url);
fail_logged:
	transfer_discard(x);
	return -1;
}

const char *http_client_response_header(const struct parley_http_response *r,
                                        const char *name)
{
	if (r == NULL || name == NULL)
		return NULL;
	size_t name_len = strlen(name);
	for (size_t i = 0; i < r->n_headers; i++) {
		const char *h = r->headers[i];
		/* Lines are stored as "name: value" with the value trimmed. */
		if (strncasecmp(h, name, name_len) == 0 && h[name_len] == ':')
			return h + name_len + 2;
	}
	return NULL;
}

