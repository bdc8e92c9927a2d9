/* transfer.c - the libcurl transfer core: libcurl's multi-socket API on the
 * libevent loop, shared by the HTTP and SMTP clients (and IMAP next).
 *
 * libcurl tells us which sockets to watch (socket callback) and when it next
 * needs a kick (timer callback); libevent tells us when a socket is ready or
 * the timer fires, and we hand that back to curl_multi_socket_action(). After
 * every such call, finished transfers are collected from
 * curl_multi_info_read() and their callbacks run. A callback therefore never
 * runs inside the call that started the transfer.
 *
 * One share handle holds the DNS cache, the connection cache and TLS
 * sessions, so calls to the same host reuse connections. */
#include "transfer.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define HTTP_COMPONENT "http-client"

#define HTTP_ERR_TOO_LARGE "response too large"
#define HTTP_ERR_ABORTED "aborted"

/* One socket curl asked us to watch; attached to it with curl_multi_assign. */
struct http_sock {
	curl_socket_t fd;
	struct event *ev;
	struct http_sock *prev, *next;
};

static struct {
	struct event_base *base;         /* borrowed from the caller of init */
	CURLM *multi;
	CURLSH *share;
	struct event *timer;
	long default_timeout_ms;
	size_t max_response_bytes;
	transfer *xfers;                 /* in flight */
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

void transfer_clear_headers(transfer *x)
{
	for (size_t i = 0; i < x->n_headers; i++)
		free(x->headers[i]);
	x->n_headers = 0;
	x->header_bytes = 0;
}

void transfer_discard(transfer *x)
{
	if (x->easy != NULL)
		curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->slist_a);
	curl_slist_free_all(x->slist_b);
	free(x->upload);
	transfer_clear_headers(x);
	free(x->headers);
	free(x->body);
	free(x->label);
	free(x->log_url);
	free(x);
}

static void xfer_link(transfer *x)
{
	x->prev = NULL;
	x->next = hc.xfers;
	if (hc.xfers != NULL)
		hc.xfers->prev = x;
	hc.xfers = x;
	hc.active++;
}

static void xfer_unlink(transfer *x)
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

size_t transfer_on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	transfer *x = userp;
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

/* Run the callback for a finished (or aborted) transfer and free it. The
 * transfer must already be out of the multi handle and the list. */
static void xfer_finish(transfer *x, CURLcode rc, const char *forced_error)
{
	struct parley_http_response r;
	memset(&r, 0, sizeof(r));

	if (forced_error != NULL) {
		r.error = forced_error;
	} else if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
		r.error = HTTP_ERR_TOO_LARGE;
	} else if (rc != CURLE_OK) {
		r.error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
		if (x->refusal_is_status) {
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
		transfer_clear_headers(x);
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
		log_debug(HTTP_COMPONENT, "%s %s -> %ld in %" PRIu64 " ms", x->label, x->log_url,
		          r.status, ms);
	else
		log_debug(HTTP_COMPONENT, "%s %s -> failed in %" PRIu64 " ms: %s", x->label,
		          x->log_url, ms, r.error);

	/* Let go of curl before the callback: it may shut the client down, and
	 * the share handle can only be freed once no easy handle holds it. */
	if (x->easy != NULL) {
		curl_easy_cleanup(x->easy);
		x->easy = NULL;
	}
	x->done(x->done_arg, &r);
	transfer_discard(x);
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
		transfer *x = (transfer *)priv;
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

bool transfer_init(struct event_base *base, long default_timeout_ms,
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
	                      TRANSFER_MAX_HOST_CONNECTIONS) != CURLM_OK)
		goto fail;
	return true;

fail:
	log_error(HTTP_COMPONENT, "cannot set up libcurl");
	transfer_shutdown();
	return false;
}

void transfer_shutdown(void)
{
	if (hc.shutting_down)
		return;  /* called again from an "aborted" callback */
	hc.shutting_down = true;

	/* Abort what is in flight; the callbacks run now, each exactly once. */
	while (hc.xfers != NULL) {
		transfer *x = hc.xfers;
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

int transfer_active(void)
{
	return hc.active;
}

bool transfer_ready(void) { return hc.multi != NULL && !hc.shutting_down; }
size_t transfer_max_response_bytes(void) { return hc.max_response_bytes; }

transfer *transfer_new(const char *label, const char *url, parley_http_done_fn done, void *arg)
{
	transfer *x = xcalloc(1, sizeof(*x));
	x->done = done;
	x->done_arg = arg;
	x->label = xstrdup(label);
	x->log_url = redact_url(url);
	x->easy = curl_easy_init();
	if (x->easy == NULL) {
		log_warn(HTTP_COMPONENT, "cannot start %s %s: no curl handle", x->label, x->log_url);
		transfer_discard(x);
		return NULL;
	}
	return x;
}

#define SETOPT(opt, val) \
	do { \
		if (curl_easy_setopt(x->easy, (opt), (val)) != CURLE_OK) \
			return false; \
	} while (0)

bool transfer_common_options(transfer *x, const char *url, const char *protocols, long timeout_ms,
                             bool insecure)
{
	if (timeout_ms <= 0)
		timeout_ms = hc.default_timeout_ms;
	SETOPT(CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500  /* 7.85.0 */
	SETOPT(CURLOPT_PROTOCOLS_STR, protocols);
#else
	long mask = 0;
	if (strstr(protocols, "http"))
		mask |= CURLPROTO_HTTP;
	if (strstr(protocols, "https"))
		mask |= CURLPROTO_HTTPS;
	if (strstr(protocols, "smtp"))
		mask |= CURLPROTO_SMTP;
	if (strstr(protocols, "smtps"))
		mask |= CURLPROTO_SMTPS;
	SETOPT(CURLOPT_PROTOCOLS, mask);
#endif
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_SHARE, hc.share);
	SETOPT(CURLOPT_PRIVATE, (char *)x);
	SETOPT(CURLOPT_ERRORBUFFER, x->errbuf);
	SETOPT(CURLOPT_TIMEOUT_MS, timeout_ms);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < TRANSFER_MAX_CONNECT_TIMEOUT_MS
	                                  ? timeout_ms : TRANSFER_MAX_CONNECT_TIMEOUT_MS);
	SETOPT(CURLOPT_SSL_VERIFYPEER, insecure ? 0L : 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, insecure ? 0L : 2L);
	SETOPT(CURLOPT_WRITEFUNCTION, transfer_on_body);
	SETOPT(CURLOPT_WRITEDATA, x);
	return true;
}

bool transfer_start(transfer *x)
{
	x->started_us = util_mono_us();
	/* Only arms the timer: the transfer starts once the loop runs. */
	if (curl_multi_add_handle(hc.multi, x->easy) != CURLM_OK)
		return false;
	xfer_link(x);
	return true;
}
