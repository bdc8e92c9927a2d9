/* example_sink.c - a minimal but complete Parley ticket sink.
 *
 * Copy this folder to start your own sink. It talks to a made-up ticket
 * system with a small JSON API:
 *
 *   POST {url}                       open a ticket
 *        {"subject", "requester": {"name", "email"}, "text", "external_id"}
 *        -> 2xx {"id": "<ticket id>"}
 *   POST {url}/{ticket id}/comments  add a message to a ticket
 *        {"text", "author", "public", "external_id"}
 *
 * Both carry "Authorization: Bearer {token}" and "Idempotency-Key", so a
 * retry after a timeout does not open a second ticket.
 *
 * The ticket system tells Parley what its agents did by POSTing, with the
 * same "Authorization: Bearer {token}", to /sinks/{instance}/events:
 *   {"id": "<event id>", "ticket": "<ticket id>", "type": "comment",
 *    "comment_id": "...", "public": true, "author": "...", "text": "..."}
 *   {"id": "<event id>", "ticket": "<ticket id>", "type": "status",
 *    "status": "open" | "pending" | "solved" | "closed"}
 *
 * What it shows:
 *   - the one exported symbol (PARLEY_PLUGIN_ENTRY) and the descriptor;
 *   - a settings table (ABI 1.3): the core checks and fills the settings,
 *     the token is a SECRET, the plugin keeps only the checks the table
 *     cannot express;
 *   - create / reload / destroy and who owns what;
 *   - asynchronous HTTP through the host (never block the loop);
 *   - turning an HTTP answer into OK / RETRY / FAIL;
 *   - the ticket system's webhook: checking it in constant time and
 *     emitting ticket events (ABI 1.2);
 *   - PARLEY_HAS_FIELD against an older daemon.
 *
 * It includes only parley/parley.h, jansson and libc, and calls the core
 * only through the parley_host table it is given. Build: see Makefile and
 * README.md in this folder. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include <parley/parley.h>

#define EXAMPLE_VERSION "1.1.0"
#define EXAMPLE_TIMEOUT_MS 15000
#define EXAMPLE_MAX_RETRY_AFTER_S 3600   /* cap what a server may ask for */

/* ------------------------------------------------------------------------ */
/* Instance state                                                           */
/* ------------------------------------------------------------------------ */

/* One configured instance. The core may run several instances of one plugin
 * (two ticket systems, say), so nothing here is global. */
typedef struct example_sink {
	const parley_host *host;   /* owned by the core; valid until destroy */
	parley_instance *inst;     /* owned by the core; valid until destroy */
	char *url;                 /* owned: base URL of the ticket API */
	char *auth_header;         /* owned: "Authorization: Bearer <token>" (a secret) */
} example_sink;

/* What the HTTP callback needs to finish one delivery. */
typedef struct example_call {
	example_sink *sink;        /* borrowed: no callback runs after destroy */
	parley_delivery *d;        /* owned by the core until delivery_complete */
	int wants_ticket_id;       /* open_ticket: the answer must carry the id */
} example_call;

/* The instance's "config" object, as the core hands it over: filled from
 * the table below, every field owned by the core (valid until destroy or
 * the next accepted reload). */
typedef struct example_settings {
	const char *url;           /* an http(s) URL */
	const char *token;         /* a secret, 1 to 4096 printable bytes */
} example_settings;

/* The settings table. Before create() runs, the core refuses unknown keys,
 * missing required ones, wrong types, lengths, control characters and
 * non-http(s) URLs (with the file and JSON path), resolves "$env:NAME" /
 * "$file:PATH" values, and never prints a SECRET. A check that involves two
 * settings would be ours, reported with config_error; this sink has none. */
static const parley_setting example_settings_table[] = {
	{ .name = "url", .type = PARLEY_SETTING_URL,
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | PARLEY_SETTING_FLAG_RELOADABLE,
	  .offset = offsetof(example_settings, url),
	  .description = "base URL of the ticket API, e.g. https://tickets.example.com/api/tickets" },
	{ .name = "token", .type = PARLEY_SETTING_SECRET,   /* PRINTABLE: it goes into a header */
	  .flags = PARLEY_SETTING_FLAG_REQUIRED | PARLEY_SETTING_FLAG_PRINTABLE |
	           PARLEY_SETTING_FLAG_RELOADABLE,
	  .min = 1, .max = 4096, .offset = offsetof(example_settings, token),
	  .description = "API token, sent as Authorization: Bearer" },
};

/* ------------------------------------------------------------------------ */
/* Small utilities                                                          */
/* ------------------------------------------------------------------------ */

/* a followed by b in a new string, owned by the caller; NULL when out of
 * memory. */
static char *join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 1);

	if (s != NULL) {
		memcpy(s, a, la);
		memcpy(s + la, b, lb + 1);
	}
	return s;
}

/* Free a string that held a secret, overwriting it first. */
static void free_secret(char *s)
{
	if (s == NULL)
		return;
	for (volatile char *p = s; *p != '\0'; p++)
		*p = 0;
	free(s);
}

/* A value that cannot end a header line (a newline in a token or key would
 * let it inject headers). s: borrowed. */
static int is_header_safe(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return 0;
	}
	return 1;
}

/* s percent-encoded for one URL path segment, owned by the caller; NULL when
 * out of memory. Ticket ids come from another system: never paste them into
 * a URL raw. */
static char *path_segment(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(3 * strlen(s) + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 0xf];
		}
	}
	*o = '\0';
	return out;
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

/* Derive what the sink uses from its settings into *sink. cfg is
 * borrowed; the settings it carries were checked by the core against the
 * table, so nothing is left to check here. */
static int read_config(example_sink *sink, const parley_config *cfg)
{
	const parley_host *host = sink->host;
	const example_settings *s = host->config_settings(cfg);

	sink->url = join(s->url, "");
	sink->auth_header = join("Authorization: Bearer ", s->token);
	if (sink->url == NULL || sink->auth_header == NULL) {
		host->log(sink->inst, PARLEY_LOG_ERROR, "out of memory");
		return -1;
	}
	/* "https://x/api/" and "https://x/api" mean the same base: comment URLs
	 * are built by appending "/<id>/comments". */
	for (size_t n = strlen(sink->url); n > 0 && sink->url[n - 1] == '/'; n--)
		sink->url[n - 1] = '\0';
	return 0;
}

/* create: one call per configured instance, before the loop starts serving.
 * host, inst: owned by the core, valid until destroy. cfg: borrowed.
 * *self: our instance, handed back to every other operation. */
static int example_create(const parley_host *host, parley_instance *inst,
                          const parley_config *cfg, void **self)
{
	example_sink *sink;

	/* A plugin built against a newer minor may run in an older daemon: check
	 * that every host function we need exists. config_settings (1.3) is the
	 * last one. (A daemon before 1.3 does not read the settings table at
	 * all and refuses every key; a plugin that must run there also declares
	 * config_keys and reads them with config_string.) */
	if (!PARLEY_HAS_FIELD(host, parley_host, config_settings)) {
		host->log(inst, PARLEY_LOG_ERROR, "this daemon is too old for example_sink");
		return -1;
	}
	sink = calloc(1, sizeof(*sink));
	if (sink == NULL)
		return -1;
	sink->host = host;
	sink->inst = inst;
	if (read_config(sink, cfg) != 0) {
		free(sink->url);
		free_secret(sink->auth_header);
		free(sink);
		return -1;
	}
	/* Log what helps an operator, never the token. */
	host->log(inst, PARLEY_LOG_INFO, "example_sink %s ready", EXAMPLE_VERSION);
	*self = sink;
	return 0;
}

/* reload (SIGHUP): build the new settings aside and swap only if they are
 * good; returning -1 keeps the old ones. Requests in flight are unaffected:
 * the core copied each call when it started. */
static int example_reload(void *self, const parley_config *cfg)
{
	example_sink *sink = self;
	example_sink next = { .host = sink->host, .inst = sink->inst };

	if (read_config(&next, cfg) != 0) {
		free(next.url);
		free_secret(next.auth_header);
		return -1;
	}
	free(sink->url);
	free_secret(sink->auth_header);
	sink->url = next.url;
	sink->auth_header = next.auth_header;
	return 0;
}

/* destroy: free everything. The core has stopped us and no callback of ours
 * will run after this. */
static void example_destroy(void *self)
{
	example_sink *sink = self;

	free(sink->url);
	free_secret(sink->auth_header);
	free(sink);
}

/* ------------------------------------------------------------------------ */
/* HTTP answers -> outcomes                                                 */
/* ------------------------------------------------------------------------ */

/* Retry-After in seconds (the HTTP-date form is left to the core's backoff).
 * value: borrowed, may be NULL. */
static long retry_after_seconds(const char *value)
{
	long s = 0;

	if (value == NULL)
		return 0;
	for (; *value >= '0' && *value <= '9'; value++) {
		s = s * 10 + (*value - '0');
		if (s > EXAMPLE_MAX_RETRY_AFTER_S)
			return EXAMPLE_MAX_RETRY_AFTER_S;
	}
	return s;
}

/* The ticket id in a {"id": ...} answer, string or integer, into out.
 * Returns 0 when there is none. body: borrowed. */
static int ticket_id_from(const unsigned char *body, size_t len, char *out, size_t outlen)
{
	json_t *root = json_loadb((const char *)body, len, 0, NULL);
	json_t *id = json_object_get(root, "id");   /* NULL-safe */
	int found = 1;

	if (json_is_string(id) && json_string_length(id) > 0 &&
	    json_string_length(id) < outlen)
		snprintf(out, outlen, "%s", json_string_value(id));
	else if (json_is_integer(id))
		snprintf(out, outlen, "%" JSON_INTEGER_FORMAT, json_integer_value(id));
	else
		found = 0;
	json_decref(root);
	return found;
}

/* Called exactly once per started request, on the loop. arg: our
 * example_call (freed here). response: borrowed for this call only. */
static void example_http_done(void *arg, const parley_http_response *response)
{
	example_call *call = arg;
	const parley_host *host = call->sink->host;
	long status = host->http_response_status(response);
	char reason[256], ticket_id[256];

	if (status == 0) {
		/* DNS, connect, TLS or timeout: transient. The core backs off. */
		const char *error = host->http_response_error(response);
		snprintf(reason, sizeof(reason), "ticket API unreachable: %s",
		         error != NULL ? error : "transport error");
		host->delivery_complete(call->d, PARLEY_RETRY, 0, reason);
	} else if (status >= 200 && status <= 299) {
		size_t len = 0;
		const unsigned char *body = host->http_response_body(response, &len);
		if (ticket_id_from(body, len, ticket_id, sizeof(ticket_id))) {
			/* Attach before completing: the core stores it with the
			 * conversation and hands it back to append_message. */
			host->delivery_set_external_id(call->d, ticket_id);
			host->delivery_complete(call->d, PARLEY_OK, 0, NULL);
		} else if (call->wants_ticket_id) {
			/* Retrying could open a second ticket; an operator must look. */
			host->delivery_complete(call->d, PARLEY_FAIL, 0,
			                        "ticket API answered 2xx without an \"id\"");
		} else {
			host->delivery_complete(call->d, PARLEY_OK, 0, NULL);
		}
	} else if (status == 429) {
		/* Rate limited: honour Retry-After when given. */
		long wait = retry_after_seconds(host->http_response_header(response, "Retry-After"));
		host->delivery_complete(call->d, PARLEY_RETRY,
		                        wait > 0 ? host->now_ms() + wait * 1000 : 0,
		                        "ticket API rate limit (429)");
	} else if (status >= 500 || status == 408) {
		snprintf(reason, sizeof(reason), "ticket API answered %ld", status);
		host->delivery_complete(call->d, PARLEY_RETRY, 0, reason);
	} else {
		/* Any other 4xx: the request itself is wrong; repeating it will not
		 * help. The core dead-letters it and shows the reason. */
		snprintf(reason, sizeof(reason), "ticket API refused the request (%ld)", status);
		host->delivery_complete(call->d, PARLEY_FAIL, 0, reason);
	}
	free(call);
}

/* POST body (a JSON object, consumed) to url. Completes d on every path:
 * now if the request cannot start, else from example_http_done.
 * url, idempotency_key: borrowed. */
static void post_json(example_sink *sink, const char *url, const char *idempotency_key,
                      json_t *body, int wants_ticket_id, parley_delivery *d)
{
	const parley_host *host = sink->host;
	char *text = json_dumps(body, JSON_COMPACT);
	char *idem = NULL;
	example_call *call = malloc(sizeof(*call));

	json_decref(body);
	if (!is_header_safe(idempotency_key)) {
		host->delivery_complete(d, PARLEY_FAIL, 0, "idempotency key is not a header value");
		goto out;
	}
	idem = join("Idempotency-Key: ", idempotency_key);
	if (text == NULL || idem == NULL || call == NULL) {
		host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
		goto out;
	}
	call->sink = sink;
	call->d = d;
	call->wants_ticket_id = wants_ticket_id;
	{
		const char *headers[] = {
			"Content-Type: application/json",
			sink->auth_header,
			idem,
			"User-Agent: parley-example-sink/" EXAMPLE_VERSION,
			NULL
		};
		parley_http_call req = {
			.size = sizeof(req),
			.method = "POST",
			.url = url,
			.headers = headers,
			.body = text,
			.body_len = strlen(text),
			.timeout_ms = EXAMPLE_TIMEOUT_MS,
		};
		/* The core copies everything in req: our buffers may go at once.
		 * Never block here (no curl_easy_perform, no sleep): the whole
		 * daemon shares this one thread. */
		if (host->http_request(sink->inst, &req, example_http_done, call) == 0)
			call = NULL;   /* example_http_done owns it now */
		else
			host->delivery_complete(d, PARLEY_RETRY, 0, "could not start the request");
	}
out:
	free(call);
	free(idem);
	free(text);
}

/* ------------------------------------------------------------------------ */
/* Sink operations                                                          */
/* ------------------------------------------------------------------------ */

/* open_ticket: the first routed message of a conversation.
 * t and everything it points to: borrowed for this call only.
 * d: complete it exactly once, now or later. */
static void example_open_ticket(void *self, const parley_ticket_request *t, parley_delivery *d)
{
	example_sink *sink = self;
	const parley_conversation_info *conv = t->conversation;
	const parley_customer_info *cust = conv->customer;
	const char *name = cust != NULL && cust->display_name != NULL ? cust->display_name
	                 : cust != NULL && cust->handle != NULL ? cust->handle : "a customer";
	char subject[256];

	snprintf(subject, sizeof(subject), "%s: message from %s via %s",
	         conv->case_number != NULL ? conv->case_number : conv->conversation_id,
	         name, conv->channel_instance != NULL ? conv->channel_instance : "parley");
	/* "s?" encodes a NULL string as null. */
	json_t *body = json_pack("{s:s, s:{s:s, s:s?}, s:s?, s:s}",
	                         "subject", subject,
	                         "requester", "name", name,
	                         "email", cust != NULL ? cust->email : NULL,
	                         "text", t->first_message != NULL ? t->first_message->text : NULL,
	                         "external_id", conv->conversation_id);
	if (body == NULL) {
		sink->host->delivery_complete(d, PARLEY_FAIL, 0, "cannot encode the ticket as JSON");
		return;
	}
	post_json(sink, sink->url, t->idempotency_key, body, 1, d);
}

/* append_message: a later message of a conversation that has a ticket.
 * a: borrowed for this call only. d: complete it exactly once. */
static void example_append_message(void *self, const parley_ticket_append *a,
                                   parley_delivery *d)
{
	example_sink *sink = self;
	const parley_message_info *m = a->message;
	char *segment = path_segment(a->external_ticket_id);
	char *prefix = segment != NULL ? join(sink->url, "/") : NULL;
	char *ticket = prefix != NULL ? join(prefix, segment) : NULL;
	char *url = ticket != NULL ? join(ticket, "/comments") : NULL;
	json_t *body = json_pack("{s:s?, s:s?, s:b, s:s}",
	                         "text", m->text,
	                         "author", m->author_name,
	                         "public", m->visibility == PARLEY_VISIBILITY_PUBLIC,
	                         "external_id", m->message_id);

	if (url == NULL || body == NULL) {
		json_decref(body);
		sink->host->delivery_complete(d, PARLEY_RETRY, 0, "out of memory");
	} else {
		post_json(sink, url, a->idempotency_key, body, 0, d);
	}
	free(segment);
	free(prefix);
	free(ticket);
	free(url);
}

/* ------------------------------------------------------------------------ */
/* The ticket system's webhook                                              */
/* ------------------------------------------------------------------------ */

static parley_ticket_status status_of(const char *s)
{
	if (s == NULL)
		return 0;
	if (strcmp(s, "open") == 0)
		return PARLEY_TICKET_OPEN;
	if (strcmp(s, "pending") == 0)
		return PARLEY_TICKET_PENDING;
	if (strcmp(s, "solved") == 0)
		return PARLEY_TICKET_SOLVED;
	if (strcmp(s, "closed") == 0)
		return PARLEY_TICKET_CLOSED;
	return 0;
}

/* POST /sinks/{instance}/events. req: owned by the core; answer it once.
 * The core commits the emitted event before a 2xx goes out, and a replay
 * of the same "id" changes nothing. */
static void example_handle_request(void *self, parley_request *req)
{
	example_sink *sink = self;
	const parley_host *host = sink->host;
	const char *auth = host->request_header(req, "Authorization");
	const char *expected = sink->auth_header + strlen("Authorization: ");
	size_t len = 0;
	const unsigned char *body;
	json_t *root;

	/* A daemon older than ABI 1.2 cannot take ticket events. */
	if (!PARLEY_HAS_FIELD(host, parley_host, request_emit_ticket_event)) {
		host->respond_error(req, 501, "not_supported", "this parleyd takes no ticket events");
		return;
	}
	if (strcmp(host->request_method(req), "POST") != 0) {
		host->respond_error(req, 405, "method_not_allowed", "use POST");
		return;
	}
	/* Constant time: how much of a guess matches must not show in the timing. */
	if (auth == NULL || !host->secure_equals(auth, strlen(auth), expected, strlen(expected))) {
		host->respond_error(req, 401, "unauthorized", "a valid Authorization header is required");
		return;
	}
	body = host->request_body(req, &len);
	root = json_loadb((const char *)body, len, 0, NULL);
	const char *id = json_string_value(json_object_get(root, "id"));
	const char *type = json_string_value(json_object_get(root, "type"));
	char key[300];
	if (id == NULL || type == NULL || strlen(id) > 256) {
		json_decref(root);
		host->respond_error(req, 400, "invalid_event", "id and type are required");
		return;
	}
	snprintf(key, sizeof(key), "event:%s", id);
	parley_ticket_event ev = {
		.size = sizeof(ev),
		.type = strcmp(type, "status") == 0 ? PARLEY_TICKET_STATUS : PARLEY_TICKET_COMMENT,
		.dedupe_key = key,
		.external_ticket_id = json_string_value(json_object_get(root, "ticket")),
		.comment_id = json_string_value(json_object_get(root, "comment_id")),
		.is_public = json_is_true(json_object_get(root, "public")),
		.author_name = json_string_value(json_object_get(root, "author")),
		.text = json_string_value(json_object_get(root, "text")),
		.status = status_of(json_string_value(json_object_get(root, "status"))),
		.raw_json = (const char *)body,
		.raw_json_len = len,
	};
	/* The core checks the rest (a comment needs its id and text, a status a
	 * known value) and refuses an incomplete event. */
	if (host->request_emit_ticket_event(req, &ev) != 0) {
		json_decref(root);
		host->respond_error(req, 400, "invalid_event", "the event is incomplete");
		return;
	}
	json_decref(root);
	host->respond(req, 200, "application/json", "{}", 2);
}

/* ------------------------------------------------------------------------ */
/* Descriptor and the one exported symbol                                   */
/* ------------------------------------------------------------------------ */

static const parley_sink_ops example_sink_ops = {
	.size = sizeof(parley_sink_ops),
	.open_ticket = example_open_ticket,
	.append_message = example_append_message,
	.handle_request = example_handle_request,   /* optional: the ticket system's webhooks */
};

static const parley_plugin_descriptor example_descriptor = {
	.size = sizeof(parley_plugin_descriptor),
	.abi_major = PARLEY_ABI_MAJOR,
	.abi_minor = PARLEY_ABI_MINOR,
	.kind = PARLEY_KIND_SINK,
	.name = "example_sink",       /* what "plugin": names in the config */
	.version = EXAMPLE_VERSION,
	.description = "example ticket sink: POSTs tickets and comments as JSON",
	.create = example_create,
	.reload = example_reload,
	.destroy = example_destroy,
	.sink = &example_sink_ops,
	PARLEY_SETTINGS(example_settings_table, example_settings),
};

/* Expands to the exported function parley_plugin_entry(). Everything else in
 * this file is static, and the Makefile hides all other symbols. */
PARLEY_PLUGIN_ENTRY(&example_descriptor)
