/* smtp_client.c - one mail over SMTP (smtp:// with STARTTLS, or smtps://)
 * on the transfer core (transfer.c). The server's first refusal is kept
 * with its own words, so a plugin can tell "retry later" (4xx) from "give
 * up" (5xx) and say why. */
#include "smtp_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>

#include "log.h"
#include "transfer.h"
#include "util.h"

#define HTTP_COMPONENT "http-client"

/* Set an option or give up on the mail. */
#define XFER_SETOPT(x, opt, val) \
	do { \
		if (curl_easy_setopt((x)->easy, (opt), (val)) != CURLE_OK) \
			goto fail; \
	} while (0)

/* SMTP: every reply line of the server comes here. The first refusal
 * (4xx/5xx) is kept as the response body, else the last line, so a
 * refusal's reason has the server's own words ("550 5.1.1 No such user
 * here"), not only its code, and not the "221 Bye" that follows it. */
static size_t on_smtp_reply(char *data, size_t size, size_t nmemb, void *userp)
{
	transfer *x = userp;
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
	transfer *x = userp;
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

int smtp_client_send(const parley_smtp_call *call, parley_http_done_fn done, void *arg)
{
	if (!transfer_ready() || call == NULL || done == NULL ||
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

	transfer *x = transfer_new("MAIL", call->url, done, arg);
	if (x == NULL)
		return -1;
	x->refusal_is_status = true;
	x->upload = xmalloc(call->message_len > 0 ? call->message_len : 1);
	memcpy(x->upload, call->message, call->message_len);
	x->upload_len = call->message_len;
	for (size_t i = 0; call->rcpt_to[i] != NULL; i++) {
		if (!address_is_valid(call->rcpt_to[i])) {
			log_warn(HTTP_COMPONENT, "refusing mail: recipient %zu is not a valid address", i);
			goto fail_logged;
		}
		char angle[340];
		snprintf(angle, sizeof(angle), "<%s>", call->rcpt_to[i]);
		struct curl_slist *l = curl_slist_append(x->slist_a, angle);
		if (l == NULL)
			goto fail;
		x->slist_a = l;
	}
	char from[340];
	snprintf(from, sizeof(from), "<%s>", call->mail_from);

	if (!transfer_common_options(x, call->url, "smtp,smtps", call->timeout_ms,
	                             call->insecure_skip_verify != 0))
		goto fail;
	if (!smtps)
		XFER_SETOPT(x, CURLOPT_USE_SSL, call->require_tls ? (long)CURLUSESSL_ALL
		                                                  : (long)CURLUSESSL_TRY);
	if (call->username != NULL)
		XFER_SETOPT(x, CURLOPT_USERNAME, call->username);
	if (call->password != NULL)
		XFER_SETOPT(x, CURLOPT_PASSWORD, call->password);
	XFER_SETOPT(x, CURLOPT_MAIL_FROM, from);
	XFER_SETOPT(x, CURLOPT_MAIL_RCPT, x->slist_a);
	XFER_SETOPT(x, CURLOPT_UPLOAD, 1L);
	XFER_SETOPT(x, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->upload_len);
	XFER_SETOPT(x, CURLOPT_READFUNCTION, on_upload);
	XFER_SETOPT(x, CURLOPT_READDATA, x);
	XFER_SETOPT(x, CURLOPT_HEADERFUNCTION, on_smtp_reply);
	XFER_SETOPT(x, CURLOPT_HEADERDATA, x);
	if (!transfer_start(x))
		goto fail;
	return 0;

fail:
	log_warn(HTTP_COMPONENT, "cannot start mail to %s", x->log_url);
fail_logged:
	transfer_discard(x);
	return -1;
}
