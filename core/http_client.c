/* http_client.c - outbound HTTP through libcurl's multi-socket API on the
 * libevent loop.
 *
 * libcurl tells us which sockets to watch (socket callback) and when it next
 * needs a kick (timer callback); libevent tells us when a socket is ready or
 * the timer fires, and we hand that back to curl_multi_socket_action(). After
 * every such call, finished transfers are collected from
 * curl_multi_info_read() and their callbacks run. A callback therefore never
 * runs inside http_client_request(): a transfer can only finish after the
 * loop has turned at least once.
 *
 * One share handle holds the DNS cache, the connection cache and TLS
 * sessions, so calls to the same host reuse connections. */
#include "http_client.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>
#include <event2/event.h>

#include "log.h"
#include "util.h"

#define HTTP_COMPONENT "http-client"

/* Connections kept open per host: enough for parallel deliveries, few enough
 * not to look like an attack to the platform's API. */
#define HTTP_MAX_HOST_CONNECTIONS 8L
/* The connect phase never needs more than this, whatever the whole-call
 * timeout is. */
#define HTTP_MAX_CONNECT_TIMEOUT_MS 10000L
/* Response headers are small; a peer sending more is misbehaving. */
#define HTTP_MAX_HEADERS 200
#define HTTP_MAX_HEADER_BYTES (64 * 1024)

#define HTTP_ERR_TOO_LARGE "response too large"
#define HTTP_ERR_ABORTED "aborted"

/* One socket curl asked us to watch; attached to it with curl_multi_assign. */
struct http_sock {
	curl_socket_t fd;
	struct event *ev;
	struct http_sock *prev, *next;
};

/* One transfer in flight. */
struct http_xfer {
	CURL *easy;
	struct curl_slist *req_headers;  /* owned; curl only borrows it */
	parley_http_done_fn done;
	void *done_arg;
	char *method;                    /* owned copy, for the log line */
	char *log_url;                   /* owned; the URL without query or userinfo */
	uint64_t started_us;

	unsigned char *body;             /* owned; grows up to the size cap */
	size_t body_len, body_cap;
	char **headers;                  /* owned "name: value" lines of the final response */
	size_t n_headers, headers_cap;
	size_t header_bytes;
	bool too_large;                  /* the body or the headers went over a cap */

	char errbuf[CURL_ERROR_SIZE];
	/* SMTP: the message being uploaded and the envelope recipients. */
	bool smtp;
	unsigned char *upload;           /* owned */
	size_t upload_len, upload_pos;
	struct curl_slist *rcpt;         /* owned */
	struct http_xfer *prev, *next;
};

static struct {
	struct event_base *base;         /* borrowed from the caller of init */
	CURLM *multi;
	CURLSH *share;
	struct event *timer;
	long default_timeout_ms;
	size_t max_response_bytes;
	struct http_xfer *xfers;         /* in flight */
	int active;
	struct http_sock *socks;         /* watched sockets */
	bool shutting_down;
	bool curl_global;                /* curl_global_init succeeded */
} hc;

/* ------------------------------------------------------- small pieces */

/* The URL as it may appear in a log: scheme and host only. Userinfo, query
 * and fragment may carry a token, and so may the path (a Slack incoming
 * webhook's path is its secret, a Telegram bot's path holds its token).
 * A path is shown as "/...". Returns an owned string. */
static char *redact_url(const char *url)
{
	const char *authority = strstr(url, "://");
	authority = authority ? authority + 3 : url;
	size_t prefix_len = (size_t)(authority - url);
	size_t auth_len = strcspn(authority, "/?#");
	const char *at = memchr(authority, '@', auth_len);
	const char *host = at ? at + 1 : authority;
	size_t host_len = (size_t)(authority + auth_len - host);
	bool has_path = host[host_len] == '/' && host[host_len + 1] != '\0';

	char *out = xmalloc(prefix_len + host_len + sizeof("/..."));
	memcpy(out, url, prefix_len);
	memcpy(out + prefix_len, host, host_len);
	strcpy(out + prefix_len + host_len, has_path ? "/..." : "");
	return out;
}

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

static void xfer_clear_headers(struct http_xfer *x)
{
	for (size_t i = 0; i < x->n_headers; i++)
		free(x->headers[i]);
	x->n_headers = 0;
	x->header_bytes = 0;
}

static void xfer_free(struct http_xfer *x)
{
	if (x->easy != NULL)
		curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->req_headers);
	curl_slist_free_all(x->rcpt);
	free(x->upload);
	xfer_clear_headers(x);
	free(x->headers);
	free(x->body);
	free(x->method);
	free(x->log_url);
	free(x);
}

static void xfer_link(struct http_xfer *x)
{
	x->prev = NULL;
	x->next = hc.xfers;
	if (hc.xfers != NULL)
		hc.xfers->prev = x;
	hc.xfers = x;
	hc.active++;
}

static void xfer_unlink(struct http_xfer *x)
{
	if (x->prev != NULL)
		x->prev->next = x->next;
	else
		hc.xfers = x->next;
	if (x->next != NULL)
		x->next->prev = x->prev;
	x->prev = x->next = NULL;
	hc.active--;
}

/* ------------------------------------------------ response collection */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct http_xfer *x = userp;
	size_t n = size * nmemb;
	if (n > hc.max_response_bytes - x->body_len) {
		/* Returning less than n makes curl fail the transfer. */
		x->too_large = true;
		return 0;
	}
	if (x->body_len + n + 1 > x->body_cap) {
		size_t cap = x->body_cap ? x->body_cap : 4096;
		while (cap < x->body_len + n + 1)
			cap *= 2;
		if (cap > hc.max_response_bytes + 1)
			cap = hc.max_response_bytes + 1;
		x->body = xrealloc(x->body, cap);
		x->body_cap = cap;
	}
	memcpy(x->body + x->body_len, data, n);
	x->body_len += n;
	return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
	struct http_xfer *x = userp;
	size_t n = size * nmemb;
	size_t len = n;
	while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n'))
		len--;

	/* A status line starts a new response (after 1xx, or a proxy's answer
	 * to CONNECT): only the final response's headers count. */
	if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		xfer_clear_headers(x);
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

/* Run the callback for a finished (or aborted) transfer and free it. The
 * transfer must already be out of the multi handle and the list. */
static void xfer_finish(struct http_xfer *x, CURLcode rc, const char *forced_error)
{
	struct parley_http_response r;
	memset(&r, 0, sizeof(r));

	if (forced_error != NULL) {
		r.error = forced_error;
	} else if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
		r.error = HTTP_ERR_TOO_LARGE;
	} else if (rc != CURLE_OK) {
		r.error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
		if (x->smtp) {
			/* A refusal is an answer: its reply code tells a plugin whether
			 * to retry (4xx) or give up (5xx). */
			long code = 0;
			curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
			if (code >= 400)
				r.status = code;
		}
	} else {
		long status = 0;
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
		r.status = status;
		if (status == 0)
			r.error = "no HTTP response";
	}

	if (r.status != 0) {
		if (x->body == NULL) {
			x->body = xmalloc(1);
			x->body_cap = 1;
		}
		x->body[x->body_len] = '\0';
		r.body = x->body;
		r.body_len = x->body_len;
	} else {
		/* A failed transfer has no response: never hand out half a body. */
		r.body = (unsigned char *)"";
		r.body_len = 0;
		xfer_clear_headers(x);
	}
	if (x->headers == NULL) {
		x->headers_cap = 1;
		x->headers = xmalloc(sizeof(*x->headers));
	}
	x->headers[x->n_headers] = NULL;
	r.headers = x->headers;
	r.n_headers = x->n_headers;

	uint64_t ms = (util_mono_us() - x->started_us) / 1000u;
	if (r.status != 0)
		log_debug(HTTP_COMPONENT, "%s %s -> %ld in %" PRIu64 " ms", x->method, x->log_url,
		          r.status, ms);
	else
		log_debug(HTTP_COMPONENT, "%s %s -> failed in %" PRIu64 " ms: %s", x->method,
		          x->log_url, ms, r.error);

	/* Let go of curl before the callback: it may shut the client down, and
	 * the share handle can only be freed once no easy handle holds it. */
	if (x->easy != NULL) {
		curl_easy_cleanup(x->easy);
		x->easy = NULL;
	}
	x->done(x->done_arg, &r);
	xfer_free(x);
}

/* Collect every finished transfer. Callbacks may start new requests (that
 * is fine between info_read calls) or shut the client down (then stop). */
static void check_finished(void)
{
	CURLMsg *msg;
	int left;
	while (hc.multi != NULL && (msg = curl_multi_info_read(hc.multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURL *easy = msg->easy_handle;
		CURLcode rc = msg->data.result;  /* msg is invalid after remove_handle */
		char *priv = NULL;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
		struct http_xfer *x = (struct http_xfer *)priv;
		curl_multi_remove_handle(hc.multi, easy);
		xfer_unlink(x);
		xfer_finish(x, rc, NULL);
	}
}

/* --------------------------------------------- libevent <-> libcurl glue */

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
	int action = 0;
	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	int running;
	curl_multi_socket_action(hc.multi, fd, action, &running);
	check_finished();
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	int running;
	curl_multi_socket_action(hc.multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_finished();
}

static void sock_free(struct http_sock *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		hc.socks = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	event_free(s->ev);
	free(s);
}

/* curl says which events it wants on a socket, or that it is done with it. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct http_sock *s = socketp;

	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			curl_multi_assign(hc.multi, fd, NULL);
			sock_free(s);
		}
		return 0;
	}

	short kind = EV_PERSIST;
	if (what & CURL_POLL_IN)
		kind |= EV_READ;
	if (what & CURL_POLL_OUT)
		kind |= EV_WRITE;

	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->fd = fd;
		s->ev = event_new(hc.base, fd, kind, on_socket_event, NULL);
		if (s->ev == NULL) {
			free(s);
			log_error(HTTP_COMPONENT, "cannot create a socket event");
			return -1;  /* curl fails the transfers on this socket */
		}
		s->next = hc.socks;
		if (hc.socks != NULL)
			hc.socks->prev = s;
		hc.socks = s;
		curl_multi_assign(hc.multi, fd, s);
	} else {
		/* event_assign needs the event not pending: delete first. */
		event_del(s->ev);
		event_assign(s->ev, hc.base, fd, kind, on_socket_event, NULL);
	}
	if (event_add(s->ev, NULL) != 0) {
		log_error(HTTP_COMPONENT, "cannot watch a socket");
		return -1;
	}
	return 0;
}

/* curl wants to be called back after timeout_ms (-1: never). Must not call
 * curl_multi_socket_action from here: the timer does it on the loop. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	if (timeout_ms < 0) {
		evtimer_del(hc.timer);
		return 0;
	}
	struct timeval tv = {
		.tv_sec = timeout_ms / 1000,
		.tv_usec = (timeout_ms % 1000) * 1000,
	};
	return evtimer_add(hc.timer, &tv) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------- public */

bool http_client_init(struct event_base *base, long default_timeout_ms,
                      size_t max_response_bytes)
{
	if (hc.multi != NULL) {
		log_error(HTTP_COMPONENT, "already initialized");
		return false;
	}
	memset(&hc, 0, sizeof(hc));
	hc.base = base;
	hc.default_timeout_ms = default_timeout_ms > 0 ? default_timeout_ms : 30000;
	hc.max_response_bytes = max_response_bytes > 0 ? max_response_bytes : 1024 * 1024;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error(HTTP_COMPONENT, "curl_global_init failed");
		return false;
	}
	hc.curl_global = true;

	hc.timer = evtimer_new(base, on_timer, NULL);
	hc.multi = curl_multi_init();
	hc.share = curl_share_init();
	if (hc.timer == NULL || hc.multi == NULL || hc.share == NULL)
		goto fail;

	/* Single-threaded: the share handle needs no lock callbacks. */
	if (curl_share_setopt(hc.share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
	    curl_share_setopt(hc.share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
	    curl_share_setopt(hc.share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)
		goto fail;

	if (curl_multi_setopt(hc.multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
	    curl_multi_setopt(hc.multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
	    curl_multi_setopt(hc.multi, CURLMOPT_MAX_HOST_CONNECTIONS,
	                      HTTP_MAX_HOST_CONNECTIONS) != CURLM_OK)
		goto fail;
	return true;

fail:
	log_error(HTTP_COMPONENT, "cannot set up libcurl");
	http_client_shutdown();
	return false;
}

void http_client_shutdown(void)
{
	if (hc.shutting_down)
		return;  /* called again from an "aborted" callback */
	hc.shutting_down = true;

	/* Abort what is in flight; the callbacks run now, each exactly once. */
	while (hc.xfers != NULL) {
		struct http_xfer *x = hc.xfers;
		xfer_unlink(x);
		if (hc.multi != NULL)
			curl_multi_remove_handle(hc.multi, x->easy);
		xfer_finish(x, CURLE_ABORTED_BY_CALLBACK, HTTP_ERR_ABORTED);
	}

	if (hc.multi != NULL)
		curl_multi_cleanup(hc.multi);
	hc.multi = NULL;
	/* Sockets curl did not say goodbye to (connections still cached). */
	while (hc.socks != NULL)
		sock_free(hc.socks);
	if (hc.share != NULL && curl_share_cleanup(hc.share) != CURLSHE_OK)
		log_error(HTTP_COMPONENT, "libcurl share handle still in use at shutdown");
	if (hc.timer != NULL)
		event_free(hc.timer);
	if (hc.curl_global)
		curl_global_cleanup();
	memset(&hc, 0, sizeof(hc));
}

int http_client_active(void)
{
	return hc.active;
}

/* Set an option or give up on the request. */
#define XFER_SETOPT(x, opt, val) \
	do { \
		if (curl_easy_setopt((x)->easy, (opt), (val)) != CURLE_OK) \
			goto fail; \
	} while (0)

int http_client_request(const parley_http_call *call, parley_http_done_fn done, void *arg)
{
	if (hc.multi == NULL || hc.shutting_down || call == NULL || done == NULL)
		return -1;
	/* The ABI's rule: read a field only if the caller's struct has it. */
	if (!PARLEY_HAS_FIELD(call, parley_http_call, url) || call->url == NULL) {
		log_warn(HTTP_COMPONENT, "request without a URL (call.size %u)", (unsigned)call->size);
		return -1;
	}
	const char *method = call->method ? call->method : "GET";
	const void *body = PARLEY_HAS_FIELD(call, parley_http_call, body_len) ? call->body : NULL;
	size_t body_len = body ? call->body_len : 0;
	long timeout_ms = PARLEY_HAS_FIELD(call, parley_http_call, timeout_ms) && call->timeout_ms > 0
	                  ? call->timeout_ms : hc.default_timeout_ms;
	int insecure = PARLEY_HAS_FIELD(call, parley_http_call, insecure_skip_verify)
	               ? call->insecure_skip_verify : 0;
	const char *const *headers = PARLEY_HAS_FIELD(call, parley_http_call, headers)
	                             ? call->headers : NULL;

	if (!method_is_valid(method)) {
		log_warn(HTTP_COMPONENT, "refusing a request with an invalid method");
		return -1;
	}

	struct http_xfer *x = xcalloc(1, sizeof(*x));
	x->done = done;
	x->done_arg = arg;
	x->method = xstrdup(method);
	x->log_url = redact_url(call->url);
	x->easy = curl_easy_init();
	if (x->easy == NULL)
		goto fail;

	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
		if (!header_is_valid(headers[i])) {
			log_warn(HTTP_COMPONENT, "refusing %s %s: a header line is malformed",
			         x->method, x->log_url);
			goto fail_logged;
		}
		struct curl_slist *l = curl_slist_append(x->req_headers, headers[i]);
		if (l == NULL)
			goto fail;
		x->req_headers = l;
	}
	/* No "Expect: 100-continue" round trip before a body. */
	struct curl_slist *l = curl_slist_append(x->req_headers, "Expect:");
	if (l == NULL)
		goto fail;
	x->req_headers = l;

	XFER_SETOPT(x, CURLOPT_URL, call->url);
#if LIBCURL_VERSION_NUM >= 0x075500  /* 7.85.0 */
	XFER_SETOPT(x, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	XFER_SETOPT(x, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	XFER_SETOPT(x, CURLOPT_FOLLOWLOCATION, 0L);
	XFER_SETOPT(x, CURLOPT_NOSIGNAL, 1L);
	XFER_SETOPT(x, CURLOPT_SHARE, hc.share);
	XFER_SETOPT(x, CURLOPT_PRIVATE, (char *)x);
	XFER_SETOPT(x, CURLOPT_ERRORBUFFER, x->errbuf);
	XFER_SETOPT(x, CURLOPT_TIMEOUT_MS, timeout_ms);
	XFER_SETOPT(x, CURLOPT_CONNECTTIMEOUT_MS,
	            timeout_ms < HTTP_MAX_CONNECT_TIMEOUT_MS ? timeout_ms : HTTP_MAX_CONNECT_TIMEOUT_MS);
	XFER_SETOPT(x, CURLOPT_SSL_VERIFYPEER, insecure ? 0L : 1L);
	XFER_SETOPT(x, CURLOPT_SSL_VERIFYHOST, insecure ? 0L : 2L);
	XFER_SETOPT(x, CURLOPT_USERAGENT, "parley");
	XFER_SETOPT(x, CURLOPT_HTTPHEADER, x->req_headers);
	/* Refuse early when the peer announces a body over the cap; on_body
	 * enforces it for bodies of unannounced length. */
	XFER_SETOPT(x, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)hc.max_response_bytes);
	XFER_SETOPT(x, CURLOPT_WRITEFUNCTION, on_body);
	XFER_SETOPT(x, CURLOPT_WRITEDATA, x);
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

	x->started_us = util_mono_us();
	/* Only arms the timer: the transfer starts once the loop runs. */
	if (curl_multi_add_handle(hc.multi, x->easy) != CURLM_OK)
		goto fail;
	xfer_link(x);
	return 0;

fail:
	log_warn(HTTP_COMPONENT, "cannot start %s %s", x->method, x->log_url);
fail_logged:
	xfer_free(x);
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

/* SMTP: every reply line of the server comes here. The first refusal
 * (4xx/5xx) is kept as the response body, else the last line, so a
 * refusal's reason has the server's own words ("550 5.1.1 No such user
 * here"), not only its code, and not the "221 Bye" that follows it. */
static size_t on_smtp_reply(char *data, size_t size, size_t nmemb, void *userp)
{
	struct http_xfer *x = userp;
	size_t n = size * nmemb, keep = n < 512 ? n : 512;
	if (x->body_len > 0 && (x->body[0] == '4' || x->body[0] == '5'))
		return n;
	if (x->body_cap < keep + 1) {
		x->body = xrealloc(x->body, keep + 1);
		x->body_cap = keep + 1;
	}
	memcpy(x->body, data, keep);
	x->body_len = keep;
	return n;
}

/* SMTP: hand curl the next piece of the message. */
static size_t on_upload(char *buf, size_t size, size_t nmemb, void *userp)
{
	struct http_xfer *x = userp;
	size_t room = size * nmemb, left = x->upload_len - x->upload_pos;
	size_t n = left < room ? left : room;
	memcpy(buf, x->upload + x->upload_pos, n);
	x->upload_pos += n;
	return n;
}

/* A mailbox for the envelope: no CR/LF, no angle brackets of its own. */
static bool address_is_valid(const char *a)
{
	if (a == NULL || *a == '\0' || strlen(a) > 320)
		return false;
	for (const unsigned char *p = (const unsigned char *)a; *p; p++)
		if (*p < 0x21 || *p == 0x7f || *p == '<' || *p == '>')
			return false;
	return strchr(a, '@') != NULL;
}

int http_client_smtp(const parley_smtp_call *call, parley_http_done_fn done, void *arg)
{
	if (hc.multi == NULL || hc.shutting_down || call == NULL || done == NULL ||
	    !PARLEY_HAS_FIELD(call, parley_smtp_call, insecure_skip_verify) || call->url == NULL ||
	    call->rcpt_to == NULL || call->rcpt_to[0] == NULL || call->message == NULL)
		return -1;
	bool smtps = strncasecmp(call->url, "smtps://", 8) == 0;
	if (!smtps && strncasecmp(call->url, "smtp://", 7) != 0) {
		log_warn(HTTP_COMPONENT, "refusing mail: the URL is not smtp:// or smtps://");
		return -1;
	}
	if (!address_is_valid(call->mail_from)) {
		log_warn(HTTP_COMPONENT, "refusing mail: the sender address is not valid");
		return -1;
	}
	long timeout_ms = call->timeout_ms > 0 ? call->timeout_ms : hc.default_timeout_ms;

	struct http_xfer *x = xcalloc(1, sizeof(*x));
	x->smtp = true;
	x->done = done;
	x->done_arg = arg;
	x->method = xstrdup("MAIL");
	x->log_url = redact_url(call->url);
	x->upload = xmalloc(call->message_len > 0 ? call->message_len : 1);
	memcpy(x->upload, call->message, call->message_len);
	x->upload_len = call->message_len;
	x->easy = curl_easy_init();
	if (x->easy == NULL)
		goto fail;
	for (size_t i = 0; call->rcpt_to[i] != NULL; i++) {
		if (!address_is_valid(call->rcpt_to[i])) {
			log_warn(HTTP_COMPONENT, "refusing mail: recipient %zu is not a valid address", i);
			goto fail_logged;
		}
		char angle[340];
		snprintf(angle, sizeof(angle), "<%s>", call->rcpt_to[i]);
		struct curl_slist *l = curl_slist_append(x->rcpt, angle);
		if (l == NULL)
			goto fail;
		x->rcpt = l;
	}
	char from[340];
	snprintf(from, sizeof(from), "<%s>", call->mail_from);

	XFER_SETOPT(x, CURLOPT_URL, call->url);
#if LIBCURL_VERSION_NUM >= 0x075500  /* 7.85.0 */
	XFER_SETOPT(x, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
#else
	XFER_SETOPT(x, CURLOPT_PROTOCOLS, (long)(CURLPROTO_SMTP | CURLPROTO_SMTPS));
#endif
	XFER_SETOPT(x, CURLOPT_NOSIGNAL, 1L);
	XFER_SETOPT(x, CURLOPT_PRIVATE, (char *)x);
	XFER_SETOPT(x, CURLOPT_ERRORBUFFER, x->errbuf);
	XFER_SETOPT(x, CURLOPT_TIMEOUT_MS, timeout_ms);
	XFER_SETOPT(x, CURLOPT_CONNECTTIMEOUT_MS,
	            timeout_ms < HTTP_MAX_CONNECT_TIMEOUT_MS ? timeout_ms : HTTP_MAX_CONNECT_TIMEOUT_MS);
	XFER_SETOPT(x, CURLOPT_SSL_VERIFYPEER, call->insecure_skip_verify ? 0L : 1L);
	XFER_SETOPT(x, CURLOPT_SSL_VERIFYHOST, call->insecure_skip_verify ? 0L : 2L);
	if (!smtps)
		XFER_SETOPT(x, CURLOPT_USE_SSL, call->require_tls ? (long)CURLUSESSL_ALL
		                                                  : (long)CURLUSESSL_TRY);
	if (call->username != NULL)
		XFER_SETOPT(x, CURLOPT_USERNAME, call->username);
	if (call->password != NULL)
		XFER_SETOPT(x, CURLOPT_PASSWORD, call->password);
	XFER_SETOPT(x, CURLOPT_MAIL_FROM, from);
	XFER_SETOPT(x, CURLOPT_MAIL_RCPT, x->rcpt);
	XFER_SETOPT(x, CURLOPT_UPLOAD, 1L);
	XFER_SETOPT(x, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->upload_len);
	XFER_SETOPT(x, CURLOPT_READFUNCTION, on_upload);
	XFER_SETOPT(x, CURLOPT_READDATA, x);
	XFER_SETOPT(x, CURLOPT_WRITEFUNCTION, on_body);
	XFER_SETOPT(x, CURLOPT_WRITEDATA, x);
	XFER_SETOPT(x, CURLOPT_HEADERFUNCTION, on_smtp_reply);
	XFER_SETOPT(x, CURLOPT_HEADERDATA, x);

	x->started_us = util_mono_us();
	if (curl_multi_add_handle(hc.multi, x->easy) != CURLM_OK)
		goto fail;
	xfer_link(x);
	return 0;

fail:
	log_warn(HTTP_COMPONENT, "cannot start mail to %s", x->log_url);
fail_logged:
	xfer_free(x);
	return -1;
}
