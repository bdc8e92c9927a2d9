/* email.c - the "email" notifier: each notice is one plain-text mail, sent
 * through the core's SMTP client (host->smtp_send, libcurl).
 *
 * The message itself is built by the pure email_message.c. Its Message-ID
 * is derived from the delivery's idempotency key, so a retry of the same
 * notice (after a timeout whose mail did arrive) carries the same
 * Message-ID and mail clients and archives show it once.
 *
 * SMTP reply codes: 2xx OK; 4xx and transport failures RETRY (greylisting,
 * a full queue, a server that is down); 5xx FAIL with the server's text
 * (a refused recipient or sender, failed authentication), since sending
 * the same mail again would be refused again.
 *
 * Transport security: smtps:// is TLS from the start; smtp:// requires
 * STARTTLS unless starttls is false, and a password is never configured for
 * a connection that could be plain text. The password is never logged and
 * never part of a reason. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

#include "parley/parley.h"
#include "../../common/plugin_util.h"
#include "../../common/instance.h"
#include "../../common/utf8.h"
#include "email_message.h"

#define EMAIL_VERSION "0.1.0"
#define EMAIL_MAX_TIMEOUT_MS 600000
#define EMAIL_MAX_RECIPIENTS 100
#define EMAIL_REASON_BYTES 300      /* the server's text in a reason */
/* The HMAC key that turns an idempotency key into a Message-ID: a fixed
 * label, not a secret; it only keeps Message-IDs opaque and short. */
#define EMAIL_MESSAGE_ID_LABEL "parley email Message-ID"
#define EMAIL_MESSAGE_ID_BYTES 16   /* 128 bits of the digest, 32 hex digits */

/* One instance's settings, filled by the core from the table below (ABI
 * 1.3); check() adds what the table cannot say. Every field is owned by the
 * core; a reload replaces the struct as a whole. */
typedef struct email_settings {
	const char *smtp_url;       /* smtp:// or smtps://, no user info (check) */
	const char *username;       /* NULL: no AUTH */
	const char *password;       /* a secret; the core wipes it when freed */
	const char *from;
	const char *to;             /* JSON text: an address or an array of them */
	int64_t timeout_ms;
	int tls_verify;
	int starttls;               /* smtp:// only: STARTTLS required */
} email_settings;

/* The recipients of one settings struct, parsed from its `to`. */
typedef struct email_recipients {
	char **to;                  /* owned, NULL-terminated, each owned */
	size_t n_to;
} email_recipients;

typedef struct email_notifier {
	const parley_host *host;    /* owned by the core; valid until destroy */
	parley_instance *inst;      /* owned by the core; valid until destroy */
	email_settings cfg;         /* the core's struct, copied by the skeleton; its
	                             * strings stay the core's until the next reload */
	email_recipients rcpt;      /* cfg's `to`, parsed */
	email_recipients next_rcpt; /* a reload's, until it is swapped in */
	int stopped;                /* stop() ran: send nothing new */
} email_notifier;

/* One mail waiting for the server's answer. */
typedef struct email_send {
	email_notifier *en;         /* borrowed: the core runs no callback after destroy */
	parley_delivery *d;         /* owned by the core until delivery_complete */
} email_send;

#define ES(field) offsetof(email_settings, field)
#define EMAIL_RELOAD PARLEY_SETTING_FLAG_RELOADABLE

/* Every setting is reloadable: a reload swaps the struct (and the parsed
 * recipients) at once. */
static const parley_setting email_settings_table[] = {
	{ .name = "smtp_url", .type = PARLEY_SETTING_STRING,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | EMAIL_RELOAD, .offset = ES(smtp_url),
	  .description = "smtp://host[:port] (STARTTLS) or smtps://host[:port] (TLS from the start)" },
	{ .name = "username", .type = PARLEY_SETTING_STRING, .flags = EMAIL_RELOAD,
	  .min = 1, .max = INT64_MAX, .offset = ES(username),
	  .description = "SMTP AUTH user (with password)" },
	{ .name = "password", .type = PARLEY_SETTING_SECRET, .flags = EMAIL_RELOAD,
	  .min = 1, .max = INT64_MAX, .offset = ES(password),
	  .description = "SMTP AUTH password (with username)" },
	{ .name = "from", .type = PARLEY_SETTING_STRING,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | EMAIL_RELOAD, .offset = ES(from),
	  .description = "sender address, e.g. parley@example.com (envelope and From header)" },
	{ .name = "to", .type = PARLEY_SETTING_JSON,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | EMAIL_RELOAD, .offset = ES(to),
	  .description = "recipient address, or an array of up to 100 addresses" },
	{ .name = "timeout_ms", .type = PARLEY_SETTING_INTEGER, .flags = EMAIL_RELOAD,
	  .default_value = "30000", .min = 1, .max = EMAIL_MAX_TIMEOUT_MS,
	  .offset = ES(timeout_ms), .description = "whole-transfer limit for one mail" },
	{ .name = "tls_verify", .type = PARLEY_SETTING_BOOLEAN, .flags = EMAIL_RELOAD,
	  .default_value = "true", .offset = ES(tls_verify),
	  .description = "verify the server's TLS certificate (false for tests only)" },
	{ .name = "starttls", .type = PARLEY_SETTING_BOOLEAN, .flags = EMAIL_RELOAD,
	  .default_value = "true", .offset = ES(starttls),
	  .description = "smtp:// only: require STARTTLS" },
};

/* ------------------------------------------------------------------------ */
/* Settings                                                                 */
/* ------------------------------------------------------------------------ */

static void recipients_free(email_recipients *r)
{
	for (size_t i = 0; r->to != NULL && i < r->n_to; i++)
		free(r->to[i]);
	free(r->to);
	memset(r, 0, sizeof(*r));
}

/* 1 for smtps://, 0 for smtp://, -1 for anything else. A usable URL has a
 * host, no user info (credentials go into username and password, where they
 * are kept secret) and no white space or control characters. url: borrowed. */
static int url_scheme(const char *url)
{
	size_t skip;
	int tls;

	if (strncasecmp(url, "smtps://", 8) == 0) {
		skip = 8;
		tls = 1;
	} else if (strncasecmp(url, "smtp://", 7) == 0) {
		skip = 7;
		tls = 0;
	} else {
		return -1;
	}
	if (url[skip] == '\0' || url[skip] == '/' || url[skip] == ':')
		return -1;
	for (const unsigned char *p = (const unsigned char *)url; *p != '\0'; p++) {
		if (*p <= 0x20 || *p == 0x7F)
			return -1;
	}
	for (const char *p = url + skip; *p != '\0' && *p != '/'; p++) {
		if (*p == '@')
			return -1;
	}
	return tls;
}

/* Parse "to" (JSON text of a string or an array of strings; borrowed).
 * With out NULL only checks it. 1, or 0 after config_error named "to"
 * (host and inst may be NULL when the text was checked before: only memory
 * can fail then). On 1, *out is owned by the caller (recipients_free). */
static int recipients_parse(const parley_host *host, parley_instance *inst, const char *text,
                            email_recipients *out)
{
	json_t *root = text != NULL ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
	json_t *list;
	email_recipients r = { 0 };
	size_t n;
	int ok = 0;

	if (root == NULL) {
		if (host != NULL)
			host->config_error(inst, "to", "must be an address or an array of addresses");
		return 0;
	}
	if (json_is_string(root)) {
		list = json_array();
		if (list != NULL)
			json_array_append(list, root);
	} else {
		list = json_incref(root);
	}
	n = json_is_array(list) ? json_array_size(list) : 0;
	if (!json_is_array(list) || n == 0 || n > EMAIL_MAX_RECIPIENTS) {
		if (host != NULL)
			host->config_error(inst, "to",
			                   "must be an address or an array of 1 to 100 addresses");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		if (!email_address_valid(json_string_value(json_array_get(list, i)))) {
			if (host != NULL)
				host->config_error(inst, "to", "every recipient must be a plain address "
				                               "like ops@example.com");
			goto done;
		}
	}
	ok = 1;
	if (out == NULL)
		goto done;
	r.to = calloc(n + 1, sizeof(*r.to));
	for (size_t i = 0; r.to != NULL && i < n; i++) {
		r.to[i] = pu_strdup(json_string_value(json_array_get(list, i)));
		if (r.to[i] == NULL)
			break;
		r.n_to = i + 1;
	}
	if (r.n_to < n) {
		recipients_free(&r);
		ok = 0;
	} else {
		*out = r;
	}
done:
	json_decref(list);
	json_decref(root);
	return ok;
}

/* What the table cannot say: the URL's scheme, the addresses, and the
 * settings that only make sense together. settings: borrowed. Reports
 * every problem, never echoing the password. */
static int settings_check(const parley_host *host, parley_instance *inst, const void *settings)
{
	const email_settings *s = settings;
	int scheme = url_scheme(s->smtp_url);
	int ok = 1;

	if (scheme < 0) {
		host->config_error(inst, "smtp_url",
		                   "must be smtp://host[:port] or smtps://host[:port], without user info");
		ok = 0;
	}
	if (!email_address_valid(s->from)) {
		host->config_error(inst, "from", "must be a plain address like parley@example.com");
		ok = 0;
	}
	if ((s->username == NULL) != (s->password == NULL)) {
		host->config_error(inst, s->username == NULL ? "password" : "username",
		                   "username and password go together, both non-empty");
		ok = 0;
	}
	if (scheme == 0 && !s->starttls && s->password != NULL) {
		host->config_error(inst, "starttls",
		                   "a password is never sent over plain text: use smtps:// or "
		                   "starttls true");
		ok = 0;
	}
	if (!recipients_parse(host, inst, s->to, NULL))
		ok = 0;
	return ok ? 0 : -1;
}

/* smtp:// with STARTTLS required. */
static int require_tls(const email_settings *s)
{
	return url_scheme(s->smtp_url) == 0 && s->starttls;
}

static void settings_announce(void *self)
{
	const email_notifier *en = self;
	const email_settings *s = &en->cfg;

	/* The URL holds no credentials (url_scheme refuses user info). */
	en->host->log(en->inst, PARLEY_LOG_INFO, "mailing %zu recipient%s through %s%s%s",
	              en->rcpt.n_to, en->rcpt.n_to == 1 ? "" : "s", s->smtp_url,
	              require_tls(s) ? " (STARTTLS required)" : "",
	              s->username != NULL ? " with AUTH" : "");
	if (!s->tls_verify)
		en->host->log(en->inst, PARLEY_LOG_WARN,
		              "tls_verify is false: the SMTP server's certificate is not checked");
	if (url_scheme(s->smtp_url) == 0 && !s->starttls)
		en->host->log(en->inst, PARLEY_LOG_WARN,
		              "starttls is false: mail may travel in plain text");
}

/* ------------------------------------------------------------------------ */
/* Sending                                                                  */
/* ------------------------------------------------------------------------ */

static void count(const email_notifier *en, parley_outcome outcome)
{
	static const char *const counters[] = {
		[PARLEY_OK] = "email_sent_total",
		[PARLEY_RETRY] = "email_retried_total",
		[PARLEY_FAIL] = "email_failed_total",
	};
	en->host->counter_add(en->inst, counters[outcome], 1);
}

static void complete(email_notifier *en, parley_delivery *d, parley_outcome outcome,
                     const char *reason)
{
	count(en, outcome);
	en->host->delivery_complete(d, outcome, 0, reason);
}

/* The server's answer. response: borrowed for the call. */
static void send_done(void *arg, const parley_http_response *response)
{
	email_send *send = arg;
	email_notifier *en = send->en;
	const parley_host *host = en->host;
	long code = host->http_response_status(response);
	const char *error = host->http_response_error(response);
	const unsigned char *body;
	size_t len = 0;
	char text[EMAIL_REASON_BYTES + 1] = "";
	char reason[EMAIL_REASON_BYTES + 128];
	parley_outcome outcome = email_reply_outcome(code);

	/* The server's reply text, or the transport's error when it has none. */
	body = host->http_response_body(response, &len);
	while (body != NULL && len > 0 && body[len - 1] <= 0x20)
		len--;   /* the reply line's CRLF */
	if (body != NULL && len > 0)
		pu_excerpt(body, len, EMAIL_REASON_BYTES, text, sizeof(text));
	else if (error != NULL)
		pu_excerpt(error, strlen(error), EMAIL_REASON_BYTES, text, sizeof(text));

	/* "550 5.1.1 No such user" after "answered 550": the code once. */
	if (code > 0) {
		char prefix[16];
		size_t n = (size_t)snprintf(prefix, sizeof(prefix), "%ld", code);
		if (strncmp(text, prefix, n) == 0 && (text[n] == ' ' || text[n] == '-'))
			memmove(text, text + n + 1, strlen(text + n + 1) + 1);
	}

	if (outcome == PARLEY_OK) {
		complete(en, send->d, PARLEY_OK, NULL);
	} else if (code == 0) {
		snprintf(reason, sizeof(reason), "SMTP failed: %s",
		         text[0] != '\0' ? text : "transport error");
		complete(en, send->d, outcome, reason);
	} else {
		snprintf(reason, sizeof(reason), "SMTP server answered %ld%s%s", code,
		         text[0] != '\0' ? ": " : "", text);
		if (code == 535 || code == 530)
			host->log(en->inst, PARLEY_LOG_WARN, "%s: check username and password", reason);
		complete(en, send->d, outcome, reason);
	}
	free(send);
}

/* The Message-ID's left part for an idempotency key (borrowed): "parley."
 * and 32 hex digits of HMAC-SHA256(label, key), into out (at least 40). */
static void message_id_left(const email_notifier *en, const char *key, char out[48])
{
	unsigned char digest[32];
	size_t o = strlen("parley.");

	en->host->hmac_sha256(EMAIL_MESSAGE_ID_LABEL, strlen(EMAIL_MESSAGE_ID_LABEL), key,
	                      strlen(key), digest);
	memcpy(out, "parley.", o);
	pu_hex_encode(digest, EMAIL_MESSAGE_ID_BYTES, out + o);
}

/* Build the mail for n (borrowed) into *msg (owned by the caller).
 * Returns the outcome to complete with when it cannot be built, else -1. */
static int build(const email_notifier *en, const parley_notice *n, char **msg, size_t *len)
{
	char id_left[48];
	email_message_input in = {
		.from = en->cfg.from,
		.to = (const char *const *)en->rcpt.to,
		.message_id_left = id_left,
		.date_ms = en->host->now_ms(),
		.kind = n->kind,
		.title = n->title,
		.text = n->text,
		.url = n->url,
	};

	if (!pu_utf8_valid(n->kind) || !pu_utf8_valid(n->title) || !pu_utf8_valid(n->text) || !pu_utf8_valid(n->url))
		return PARLEY_FAIL;
	message_id_left(en, n->idempotency_key != NULL ? n->idempotency_key : "", id_left);
	if (!email_message_build(&in, msg, len))
		return PARLEY_RETRY;
	return -1;
}

/* n: borrowed for the call. d: owned by the core until delivery_complete,
 * which runs exactly once: here or from send_done. */
static void email_deliver(void *self, const parley_notice *n, parley_delivery *d)
{
	email_notifier *en = self;
	email_send *send;
	char *msg = NULL;
	size_t len = 0;
	int bad;

	if (en->stopped) {
		complete(en, d, PARLEY_RETRY, "shutting down");
		return;
	}
	bad = build(en, n, &msg, &len);
	if (bad >= 0) {
		complete(en, d, (parley_outcome)bad,
		         bad == PARLEY_FAIL ? "the notice is not valid UTF-8"
		                            : "out of memory building the mail");
		return;
	}
	send = calloc(1, sizeof(*send));
	if (send == NULL) {
		free(msg);
		complete(en, d, PARLEY_RETRY, "out of memory");
		return;
	}
	send->en = en;
	send->d = d;

	parley_smtp_call call = {
		.size = sizeof(call),
		.url = en->cfg.smtp_url,
		.username = en->cfg.username,
		.password = en->cfg.password,
		.mail_from = en->cfg.from,
		.rcpt_to = (const char *const *)en->rcpt.to,
		.message = msg,
		.message_len = len,
		.require_tls = require_tls(&en->cfg),
		.timeout_ms = en->cfg.timeout_ms,
		.insecure_skip_verify = !en->cfg.tls_verify,
	};
	/* The core copies the call: msg is ours again once smtp_send returns. */
	if (en->host->smtp_send(en->inst, &call, send_done, send) != 0) {
		free(send);
		complete(en, d, PARLEY_RETRY, "could not start the SMTP transfer");
	}
	free(msg);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

/* A host that has the field but no SMTP client cannot send mail either.
 * The first settings' recipients: check() has accepted them already. */
static int email_init(void *self)
{
	email_notifier *en = self;

	if (en->host->smtp_send == NULL) {
		en->host->log(en->inst, PARLEY_LOG_ERROR, "this parleyd cannot send mail (ABI 1.2 smtp_send)");
		return -1;
	}
	if (!recipients_parse(NULL, NULL, en->cfg.to, &en->rcpt)) {
		en->host->log(en->inst, PARLEY_LOG_ERROR, "out of memory reading the recipients");
		return -1;
	}
	return 0;
}

/* A reload's recipients (checked already), parsed before the swap so that
 * the swap cannot fail. next: borrowed. */
static int email_check_reload(void *self, const void *next)
{
	email_notifier *en = self;
	const email_settings *s = next;

	if (!recipients_parse(NULL, NULL, s->to, &en->next_rcpt)) {
		en->host->log(en->inst, PARLEY_LOG_ERROR, "out of memory reading the recipients");
		return -1;
	}
	return 0;
}

/* The new settings are in: the recipients parsed for them replace the old. */
static void email_reloaded(void *self, const void *old)
{
	email_notifier *en = self;

	(void)old;
	recipients_free(&en->rcpt);
	en->rcpt = en->next_rcpt;
	memset(&en->next_rcpt, 0, sizeof(en->next_rcpt));
}

static void email_finish(void *self)
{
	email_notifier *en = self;

	recipients_free(&en->rcpt);
	recipients_free(&en->next_rcpt);
}

/* The core fills and checks the settings from the table above; check adds
 * the rest. A reload swaps them at once: a mail in flight holds no pointer
 * into them (the core copied the call). */
static const pu_instance_class email_class = {
	PU_INSTANCE_LAYOUT(email_notifier, cfg),
	.host_needs = PU_HOST_NEEDS(config_settings),
	.too_old = "this parleyd is too old for the email notifier",
	.check = settings_check,
	.init = email_init,
	.check_reload = email_check_reload,
	.reloaded = email_reloaded,
	.finish = email_finish,
	.announce = settings_announce,
};

PU_INSTANCE_FUNCTIONS(email, email_class)

/* Send nothing new; a mail in flight still completes from send_done. */
static void email_stop(void *self)
{
	email_notifier *en = self;

	en->stopped = 1;
}

static const parley_notifier_ops email_ops = {
	.size = sizeof(parley_notifier_ops),
	.deliver = email_deliver,
};

static const parley_plugin_descriptor email_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_NOTIFIER,
	.name = "email",
	.version = EMAIL_VERSION,
	.description = "notices as plain-text mail over SMTP (STARTTLS or TLS, AUTH)",
	.create = email_create,
	.reload = email_reload,
	.stop = email_stop,
	.destroy = email_destroy,
	.notifier = &email_ops,
	PARLEY_SETTINGS(email_settings_table, email_settings),
};

PARLEY_PLUGIN_ENTRY(&email_descriptor)
