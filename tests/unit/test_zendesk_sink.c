/* test_zendesk_sink.c - the zendesk sink's pure half: every request byte for
 * byte, what each answer means, the webhook signature and its events. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../../plugins/sinks/zendesk/zendesk_api.h"

#define B(s) (const unsigned char *)(s), strlen(s)

/* ------------------------------------------------------------------ requests */

static void test_auth_header(void **state)
{
	char *h;
	(void)state;

	h = zd_auth_header("agent@example.com", "abc123", NULL);
	assert_string_equal(h, "Authorization: Basic YWdlbnRAZXhhbXBsZS5jb20vdG9rZW46YWJjMTIz");
	free(h);
	h = zd_auth_header(NULL, NULL, "oauth-tok");
	assert_string_equal(h, "Authorization: Bearer oauth-tok");
	free(h);
	assert_null(zd_auth_header("agent@example.com", NULL, NULL));
}

static void test_urls(void **state)
{
	char *u;
	(void)state;

	u = zd_url_lookup("https://acme.zendesk.com/", "PC-10012");
	assert_string_equal(u, "https://acme.zendesk.com/api/v2/tickets.json?external_id=PC-10012");
	free(u);
	u = zd_url_lookup("http://127.0.0.1:9", "a b&c/é");
	assert_string_equal(u, "http://127.0.0.1:9/api/v2/tickets.json?external_id=a%20b%26c%2F%C3%A9");
	free(u);
	u = zd_url_create("https://acme.zendesk.com");
	assert_string_equal(u, "https://acme.zendesk.com/api/v2/tickets.json");
	free(u);
	u = zd_url_ticket("https://acme.zendesk.com", "35436");
	assert_string_equal(u, "https://acme.zendesk.com/api/v2/tickets/35436.json");
	free(u);
	assert_null(zd_url_ticket("https://acme.zendesk.com", "../users"));
	assert_null(zd_url_ticket("https://acme.zendesk.com", ""));
	u = zd_url_comments("https://acme.zendesk.com", "35436");
	assert_string_equal(u, "https://acme.zendesk.com/api/v2/tickets/35436/comments.json?sort_order=desc");
	free(u);
	assert_null(zd_url_comments("https://acme.zendesk.com", "1/../2"));
	u = zd_url_me("https://acme.zendesk.com");
	assert_string_equal(u, "https://acme.zendesk.com/api/v2/users/me.json");
	free(u);
	u = zd_url_user_upsert("https://acme.zendesk.com/");
	assert_string_equal(u, "https://acme.zendesk.com/api/v2/users/create_or_update.json");
	free(u);
	assert_true(zd_is_id("1234567890123456789"));
	assert_false(zd_is_id("12345678901234567890"));
	assert_false(zd_is_id("12a"));
}

static void test_subject_and_tags(void **state)
{
	char s[256];
	(void)state;

	zd_subject("facebook-main", "  Where is\n\nmy   order?  ", s, sizeof(s));
	assert_string_equal(s, "facebook-main: Where is my order?");
	zd_subject(NULL, "", s, sizeof(s));
	assert_string_equal(s, "Parley: new conversation");
	zd_subject("x", "one two three four five six seven eight nine ten eleven twelve thirteen "
	                "fourteen fifteen sixteen", s, sizeof(s));
	assert_string_equal(s, "x: one two three four five six seven eight nine ten eleven twelve "
	                       "thirteen...");
	zd_subject("x", "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"
	                "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"
	                "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"
	                "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"
	                "\xC3\xA9\xC3\xA9\xC3\xA9", s, sizeof(s));
	assert_int_equal(strlen(s), 3 + 78 + 3);   /* whole characters, then "..." */
	{
		/* One long word of euro signs (3 bytes): 26 fit in 79 bytes,
		 * never part of the 27th. */
		char euros[3 * 40 + 1];
		for (int i = 0; i < 40; i++)
			memcpy(euros + 3 * i, "\xE2\x82\xAC", 3);
		euros[3 * 40] = '\0';
		zd_subject("x", euros, s, sizeof(s));
		assert_int_equal(strlen(s), 3 + 78 + 3);
		assert_memory_equal(s + 3 + 75, "\xE2\x82\xAC...", 6);
	}
	zd_tag("channel_", "Facebook Main!", s, sizeof(s));
	assert_string_equal(s, "channel_facebook_main_");
}

static parley_customer_info customer = {
	.size = sizeof(parley_customer_info), .customer_id = "77", .display_name = "Ann \"A\" Lee",
	.email = "ann@example.com", .external_id = "9001", .handle = "ann",
};
static parley_conversation_info conversation = {
	.size = sizeof(parley_conversation_info), .conversation_id = "812",
	.case_number = "PC-10012", .channel_instance = "facebook-main", .channel_kind = "meta",
	.visibility = PARLEY_VISIBILITY_PUBLIC, .category = "Billing", .status = "open",
	.customer = &customer,
};
static parley_message_info message = {
	.size = sizeof(parley_message_info), .message_id = "5531", .text = "My order never arrived",
	.visibility = PARLEY_VISIBILITY_PUBLIC, .inbound = 1,
};

static void test_ticket_body(void **state)
{
	parley_ticket_request t = { .size = sizeof(t), .idempotency_key = "ticket-conv-812",
	                            .conversation = &conversation, .first_message = &message };
	char err[200];
	char *body;
	(void)state;

	body = zd_ticket_body(&t, err, sizeof(err));
	assert_string_equal(body,
		"{\"ticket\":{\"subject\":\"facebook-main: My order never arrived\","
		"\"comment\":{\"body\":\"My order never arrived\"},"
		"\"requester\":{\"name\":\"Ann \\\"A\\\" Lee\",\"email\":\"ann@example.com\"},"
		"\"external_id\":\"PC-10012\","
		"\"tags\":[\"parley\",\"channel_facebook-main\",\"visibility_public\",\"category_billing\"]}}");
	free(body);

	/* A follow-up of a closed ticket; a customer known only by handle. */
	parley_customer_info c2 = { .size = sizeof(c2), .customer_id = "78", .handle = "bob" };
	parley_conversation_info conv2 = conversation;
	conv2.customer = &c2;
	conv2.category = NULL;
	conv2.visibility = PARLEY_VISIBILITY_PRIVATE;
	t.conversation = &conv2;
	t.follow_up_of = "35436";
	body = zd_ticket_body(&t, err, sizeof(err));
	assert_string_equal(body,
		"{\"ticket\":{\"subject\":\"facebook-main: My order never arrived\","
		"\"comment\":{\"body\":\"My order never arrived\"},"
		"\"requester\":{\"name\":\"bob\"},\"external_id\":\"PC-10012\","
		"\"tags\":[\"parley\",\"channel_facebook-main\",\"visibility_private\"],"
		"\"via_followup_source_id\":35436}}");
	free(body);

	t.follow_up_of = "not-an-id";
	assert_null(zd_ticket_body(&t, err, sizeof(err)));
	assert_string_equal(err, "follow_up_of is not a Zendesk ticket id");

	parley_message_info bad = message;
	bad.text = "\xff\xfe";
	t.follow_up_of = NULL;
	t.first_message = &bad;
	assert_null(zd_ticket_body(&t, err, sizeof(err)));
	assert_string_equal(err, "the message is not valid UTF-8");
}

/* The requester as a Zendesk user with Parley's external id, and the
 * create body that names it by id instead of inline. */
static void test_user_body_and_requester_id(void **state)
{
	parley_ticket_request t = { .size = sizeof(t), .idempotency_key = "ticket-conv-812",
	                            .conversation = &conversation, .first_message = &message };
	char err[200];
	char *user, *ticket, *body;
	(void)state;

	user = zd_user_body(&customer, err, sizeof(err));
	assert_string_equal(user,
		"{\"user\":{\"name\":\"Ann \\\"A\\\" Lee\",\"email\":\"ann@example.com\","
		"\"external_id\":\"parley-77\"}}");
	free(user);

	ticket = zd_ticket_body(&t, err, sizeof(err));
	body = zd_ticket_body_requester_id(ticket, "20978392");
	assert_string_equal(body,
		"{\"ticket\":{\"subject\":\"facebook-main: My order never arrived\","
		"\"comment\":{\"body\":\"My order never arrived\"},"
		"\"requester_id\":20978392,"
		"\"external_id\":\"PC-10012\","
		"\"tags\":[\"parley\",\"channel_facebook-main\",\"visibility_public\",\"category_billing\"]}}");
	/* Again on its own output: one requester_id, same place. */
	free(ticket);
	ticket = zd_ticket_body_requester_id(body, "5");
	assert_non_null(strstr(ticket, "},\"requester_id\":5,\"external_id\""));
	assert_null(strstr(ticket, "20978392"));
	free(ticket);
	free(body);

	/* Without an e-mail address (known by handle only), a follow-up. */
	parley_customer_info c2 = { .size = sizeof(c2), .customer_id = "78", .handle = "bob",
	                            .email = "" };
	parley_conversation_info conv2 = conversation;
	conv2.customer = &c2;
	conv2.category = NULL;
	t.conversation = &conv2;
	t.follow_up_of = "35436";
	user = zd_user_body(&c2, err, sizeof(err));
	assert_string_equal(user, "{\"user\":{\"name\":\"bob\",\"external_id\":\"parley-78\"}}");
	free(user);
	ticket = zd_ticket_body(&t, err, sizeof(err));
	body = zd_ticket_body_requester_id(ticket, "31");
	assert_string_equal(body,
		"{\"ticket\":{\"subject\":\"facebook-main: My order never arrived\","
		"\"comment\":{\"body\":\"My order never arrived\"},"
		"\"requester_id\":31,\"external_id\":\"PC-10012\","
		"\"tags\":[\"parley\",\"channel_facebook-main\",\"visibility_public\"],"
		"\"via_followup_source_id\":35436}}");
	free(body);

	/* A name that is not UTF-8 gives way to the next one. */
	parley_customer_info c3 = { .size = sizeof(c3), .customer_id = "79",
	                            .display_name = "\xff\xfe", .external_id = "9002" };
	user = zd_user_body(&c3, err, sizeof(err));
	assert_string_equal(user, "{\"user\":{\"name\":\"9002\",\"external_id\":\"parley-79\"}}");
	free(user);

	assert_null(zd_ticket_body_requester_id(ticket, "not-an-id"));
	assert_null(zd_ticket_body_requester_id("{\"user\":{}}", "31"));
	assert_null(zd_ticket_body_requester_id("garbage", "31"));
	free(ticket);

	c2.customer_id = "";
	assert_null(zd_user_body(&c2, err, sizeof(err)));
	assert_string_equal(err, "the customer has no id");
	c2.customer_id = "\xff";
	assert_null(zd_user_body(&c2, err, sizeof(err)));
	assert_string_equal(err, "the customer's id cannot be a Zendesk external_id");
	assert_null(zd_user_body(NULL, err, sizeof(err)));
}

static void test_comment_body(void **state)
{
	char *b;
	(void)state;

	b = zd_comment_body("Any news?", "20978392");
	assert_string_equal(b, "{\"ticket\":{\"comment\":{\"body\":\"Any news?\",\"public\":true,"
	                       "\"author_id\":20978392}}}");
	free(b);
	b = zd_comment_body(NULL, NULL);
	assert_string_equal(b, "{\"ticket\":{\"comment\":{\"body\":\"(no text)\",\"public\":true}}}");
	free(b);
}

/* ------------------------------------------------------------------- answers */

static void test_classify(void **state)
{
	zd_result r;
	(void)state;

	zd_classify(201, NULL, NULL, B("{}"), 1000, "creating the ticket", &r);
	assert_int_equal(r.outcome, PARLEY_OK);

	zd_classify(0, "Timeout was reached", NULL, NULL, 0, 1000, "creating the ticket", &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_string_equal(r.reason, "Zendesk request failed creating the ticket: Timeout was reached");

	zd_classify(401, NULL, NULL, B("{\"error\":\"Couldn't authenticate you\"}"), 1000,
	            "creating the ticket", &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_true(r.unauthorized);
	assert_string_equal(r.reason, "Zendesk answered 401 creating the ticket: unauthorized: "
	                              "check the API token (and email)");

	zd_classify(422, NULL, NULL,
	            B("{\"error\":\"RecordInvalid\",\"description\":\"Record validation errors\","
	              "\"details\":{\"base\":[{\"description\":\"Application URL: is invalid\","
	              "\"error\":\"InvalidValue\",\"field_key\":4417940288916}]}}"),
	            1000, "creating the ticket", &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_false(r.closed);
	assert_string_equal(r.reason, "Zendesk answered 422 creating the ticket: Record validation "
	                              "errors; base: Application URL: is invalid");

	zd_classify(422, NULL, NULL,
	            B("{\"error\":\"RecordInvalid\",\"description\":\"Record validation errors\","
	              "\"details\":{\"status\":[{\"description\":\"Status: closed prevents ticket update\"}]}}"),
	            1000, "adding the comment", &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_true(r.closed);
	assert_string_equal(r.reason, "Zendesk answered 422 adding the comment: the ticket is closed "
	                              "and takes no more comments (Record validation errors; status: "
	                              "Status: closed prevents ticket update)");

	/* 429 with a plain-text body, with and without Retry-After. */
	zd_classify(429, NULL, "7", B("Number of allowed API requests per minute exceeded"),
	            1000, "creating the ticket", &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_int_equal(r.retry_at_ms, 8000);
	assert_int_equal(r.pause_until_ms, 8000);
	assert_string_equal(r.reason, "Zendesk answered 429 creating the ticket (rate limited, "
	                              "honouring Retry-After): Number of allowed API requests per "
	                              "minute exceeded");
	zd_classify(429, NULL, NULL, B("slow down"), 1000, "x", &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_int_equal(r.retry_at_ms, 0);
	assert_int_equal(r.pause_until_ms, 1000 + ZD_DEFAULT_PAUSE_MS);

	zd_classify(503, NULL, NULL, B("<html>\nmaintenance\n</html>\n"), 1000, "x", &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_string_equal(r.reason, "Zendesk answered 503 x: <html>?maintenance?</html>");
	zd_classify(409, NULL, NULL, NULL, 0, 1000, "x", &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	zd_classify(404, NULL, NULL, B("{\"error\":\"RecordNotFound\",\"description\":\"Not found\"}"),
	            1000, "reading the ticket", &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_string_equal(r.reason, "Zendesk answered 404 reading the ticket: Not found");
}

static void test_parse_answers(void **state)
{
	char id[ZD_ID_BYTES], req[ZD_ID_BYTES], status[16];
	(void)state;

	assert_true(zd_parse_ticket(B("{\"ticket\":{\"id\":35436,\"requester_id\":20978392,"
	                              "\"status\":\"open\"},\"audit\":{}}"), id, req, status));
	assert_string_equal(id, "35436");
	assert_string_equal(req, "20978392");
	assert_string_equal(status, "open");
	assert_false(zd_parse_ticket(B("{\"ticket\":{}}"), id, req, NULL));
	assert_false(zd_parse_ticket(B("not json"), id, req, NULL));

	const char *list =
		"{\"tickets\":["
		"{\"id\":10,\"external_id\":\"PC-1\",\"status\":\"closed\",\"requester_id\":5},"
		"{\"id\":30,\"external_id\":\"PC-1\",\"status\":\"open\",\"requester_id\":6},"
		"{\"id\":20,\"external_id\":\"PC-1\",\"status\":\"solved\",\"requester_id\":7},"
		"{\"id\":40,\"external_id\":\"PC-2\",\"status\":\"open\",\"requester_id\":8}],"
		"\"count\":4}";
	assert_int_equal(zd_parse_lookup(B(list), "PC-1", NULL, id, req), 1);
	assert_string_equal(id, "20");
	assert_string_equal(req, "7");
	/* A follow-up of 20: only a ticket created after it. */
	assert_int_equal(zd_parse_lookup(B(list), "PC-1", "20", id, req), 1);
	assert_string_equal(id, "30");
	assert_int_equal(zd_parse_lookup(B(list), "PC-1", "30", id, req), 0);
	assert_int_equal(zd_parse_lookup(B(list), "PC-9", NULL, id, req), 0);
	assert_int_equal(zd_parse_lookup(B("{\"tickets\":[]}"), "PC-9", NULL, id, req), 0);
	assert_int_equal(zd_parse_lookup(B("Too many"), "PC-9", NULL, id, req), -1);

	assert_true(zd_parse_comment_id(B("{\"ticket\":{\"id\":1},\"audit\":{\"id\":99,\"events\":["
	                                  "{\"id\":100,\"type\":\"Change\"},"
	                                  "{\"id\":101,\"type\":\"Comment\",\"public\":true}]}}"), id));
	assert_string_equal(id, "101");
	assert_false(zd_parse_comment_id(B("{\"ticket\":{\"id\":1}}"), id));
	const char *comments =
		"{\"comments\":["
		"{\"id\":1,\"author_id\":7,\"body\":\"Any news?\",\"created_at\":\"2024-05-01T12:00:00Z\"},"
		"{\"id\":2,\"author_id\":8,\"body\":\"Any news?\",\"created_at\":\"2024-05-01T12:10:00Z\"},"
		"{\"id\":3,\"author_id\":7,\"body\":\"Any news?\\n\",\"created_at\":\"2024-05-01T12:10:00Z\"},"
		"{\"id\":4,\"author_id\":7,\"body\":\"Other\",\"created_at\":\"2024-05-01T12:11:00Z\"}],"
		"\"count\":4}";
	/* 2024-05-01T12:05:00Z = 1714565100000 */
	assert_int_equal(zd_parse_comments_find(B(comments), "7", "Any news?", 1714565100000LL, id), 1);
	assert_string_equal(id, "3");
	assert_int_equal(zd_parse_comments_find(B(comments), "7", "Any news?", 0, id), 1);
	assert_string_equal(id, "3");
	assert_int_equal(zd_parse_comments_find(B(comments), "7", "Any news?", 1714565500000LL, id), 0);
	assert_int_equal(zd_parse_comments_find(B(comments), "9", "Any news?", 0, id), 0);
	assert_int_equal(zd_parse_comments_find(B("{\"error\":1}"), "7", "x", 0, id), -1);

	assert_true(zd_parse_user_id(B("{\"user\":{\"id\":424242,\"email\":\"a@b.c\"}}"), id));
	assert_string_equal(id, "424242");
	/* users/create_or_update answers the same shape, 200 or 201. */
	assert_true(zd_parse_user_id(B("{\"user\":{\"id\":8929981612030,\"external_id\":\"parley-77\","
	                               "\"role\":\"end-user\"}}"), id));
	assert_string_equal(id, "8929981612030");
	assert_false(zd_parse_user_id(B("{\"user\":{\"external_id\":\"parley-77\"}}"), id));
}

/* ------------------------------------------------------------------ webhooks */

static void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                        unsigned char out[32])
{
	unsigned int n = 32;
	HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n);
}

static int equals(const void *a, size_t a_len, const void *b, size_t b_len)
{
	return a_len == b_len && memcmp(a, b, a_len) == 0;
}

static void test_signature(void **state)
{
	const char *body = "{\"type\":\"x\"}";
	const char *ts = "2026-11-23T10:00:00Z";
	const char *good = "ERh0VtaXuoiBTcyzZLNAI+h0rRK7As0v99/K/bxrme4=";
	(void)state;

	assert_true(zd_verify_signature(good, ts, "whsec", 5, body, strlen(body), hmac_sha256, equals));
	assert_false(zd_verify_signature(good, "2026-11-23T10:00:01Z", "whsec", 5, body, strlen(body),
	                                 hmac_sha256, equals));
	assert_false(zd_verify_signature(good, ts, "whsec2", 6, body, strlen(body), hmac_sha256, equals));
	assert_false(zd_verify_signature(good, ts, "whsec", 5, "{\"type\":\"y\"}", strlen(body),
	                                 hmac_sha256, equals));
	assert_false(zd_verify_signature(NULL, ts, "whsec", 5, body, strlen(body), hmac_sha256, equals));
	assert_false(zd_verify_signature(good, NULL, "whsec", 5, body, strlen(body), hmac_sha256, equals));
	assert_false(zd_verify_signature("", ts, "whsec", 5, body, strlen(body), hmac_sha256, equals));
}

typedef struct seen {
	int n;
	int refuse;
	parley_ticket_event ev;
	char key[128], ticket[32], comment[32], author[64], text[256];
} seen;

static int take(void *ctx, const parley_ticket_event *ev)
{
	seen *s = ctx;

	s->n++;
	s->ev = *ev;
	strcpy(s->key, ev->dedupe_key);
	strcpy(s->ticket, ev->external_ticket_id);
	strcpy(s->comment, ev->comment_id != NULL ? ev->comment_id : "");
	strcpy(s->author, ev->author_name != NULL ? ev->author_name : "");
	strcpy(s->text, ev->text != NULL ? ev->text : "");
	return s->refuse ? -1 : 0;
}

static const char *comment_hook(const char *author_id, int is_public)
{
	static char buf[1024];

	snprintf(buf, sizeof(buf),
		"{\"account_id\":22129848,\"detail\":{\"id\":\"35436\",\"requester_id\":\"20978392\","
		"\"status\":\"OPEN\",\"external_id\":\"PC-10012\"},"
		"\"event\":{\"comment\":{\"id\":\"9001\",\"body\":\"We shipped it \\\"today\\\"\","
		"\"is_public\":%s,\"author\":{\"id\":\"%s\",\"is_staff\":true,\"name\":\"Agent Smith\"}}},"
		"\"id\":\"cbe4028c-7239-495d-b020-f22348516046\",\"subject\":\"zen:ticket:35436\","
		"\"time\":\"2024-05-01T12:34:56.25Z\",\"type\":\"zen:event-type:ticket.comment_added\","
		"\"zendesk_event_version\":\"2022-11-06\"}", is_public ? "true" : "false", author_id);
	return buf;
}

static void test_webhook_comments(void **state)
{
	char what[ZD_REASON_BYTES];
	seen s;
	const char *b;
	(void)state;

	memset(&s, 0, sizeof(s));
	b = comment_hook("555", 1);
	assert_int_equal(zd_parse_webhook(B(b), "424242", take, &s, what, sizeof(what)),
	                 ZD_WEBHOOK_EVENT);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.ev.type, PARLEY_TICKET_COMMENT);
	assert_string_equal(s.key, "comment:9001");
	assert_string_equal(s.ticket, "35436");
	assert_string_equal(s.comment, "9001");
	assert_string_equal(s.author, "Agent Smith");
	assert_string_equal(s.text, "We shipped it \"today\"");
	assert_int_equal(s.ev.is_public, 1);
	assert_int_equal(s.ev.from_parley, 0);
	assert_int_equal(s.ev.time_ms, 1714566896250LL);
	assert_int_equal(s.ev.raw_json_len, strlen(b));

	/* An internal note. */
	b = comment_hook("555", 0);
	assert_int_equal(zd_parse_webhook(B(b), NULL, take, &s, what, sizeof(what)), ZD_WEBHOOK_EVENT);
	assert_int_equal(s.ev.is_public, 0);
	assert_int_equal(s.ev.from_parley, 0);

	/* By the requester (what Parley appended) and by the API user. */
	b = comment_hook("20978392", 1);
	assert_int_equal(zd_parse_webhook(B(b), NULL, take, &s, what, sizeof(what)), ZD_WEBHOOK_EVENT);
	assert_int_equal(s.ev.from_parley, 1);
	b = comment_hook("424242", 1);
	assert_int_equal(zd_parse_webhook(B(b), "424242", take, &s, what, sizeof(what)),
	                 ZD_WEBHOOK_EVENT);
	assert_int_equal(s.ev.from_parley, 1);
	assert_int_equal(zd_parse_webhook(B(b), NULL, take, &s, what, sizeof(what)), ZD_WEBHOOK_EVENT);
	assert_int_equal(s.ev.from_parley, 0);

	/* Refused by the core: the caller answers 400. */
	s.refuse = 1;
	assert_int_equal(zd_parse_webhook(B(b), NULL, take, &s, what, sizeof(what)),
	                 ZD_WEBHOOK_REFUSED);
}

static void test_webhook_status_and_garbage(void **state)
{
	char what[ZD_REASON_BYTES];
	char body[1024];
	seen s;
	static const struct { const char *zd; parley_ticket_status want; } map[] = {
		{ "NEW", PARLEY_TICKET_OPEN }, { "OPEN", PARLEY_TICKET_OPEN },
		{ "HOLD", PARLEY_TICKET_OPEN }, { "pending", PARLEY_TICKET_PENDING },
		{ "SOLVED", PARLEY_TICKET_SOLVED }, { "CLOSED", PARLEY_TICKET_CLOSED },
	};
	(void)state;

	memset(&s, 0, sizeof(s));
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		snprintf(body, sizeof(body),
		         "{\"type\":\"zen:event-type:ticket.status_changed\",\"id\":\"ev-%zu\","
		         "\"time\":\"2024-05-01T12:34:56Z\",\"detail\":{\"id\":35436},"
		         "\"event\":{\"current\":\"%s\",\"previous\":\"OPEN\"}}", i, map[i].zd);
		assert_int_equal(zd_parse_webhook(B(body), NULL, take, &s, what, sizeof(what)),
		                 ZD_WEBHOOK_EVENT);
		assert_int_equal(s.ev.type, PARLEY_TICKET_STATUS);
		assert_int_equal(s.ev.status, map[i].want);
		assert_string_equal(s.ticket, "35436");
		assert_int_equal(s.ev.time_ms, 1714566896000LL);
	}
	assert_string_equal(s.key, "status:ev-5");

	s.n = 0;
	assert_int_equal(zd_parse_webhook(B("{\"type\":\"zen:event-type:ticket.priority_changed\","
	                                    "\"detail\":{\"id\":\"1\"}}"),
	                                  NULL, take, &s, what, sizeof(what)), ZD_WEBHOOK_IGNORED);
	assert_string_equal(what, "event type zen:event-type:ticket.priority_changed is not used");
	assert_int_equal(zd_parse_webhook(B("{\"type\":\"zen:event-type:ticket.status_changed\","
	                                    "\"detail\":{\"id\":\"1\"},\"event\":{\"current\":\"DELETED\"}}"),
	                                  NULL, take, &s, what, sizeof(what)), ZD_WEBHOOK_IGNORED);
	assert_int_equal(zd_parse_webhook(B("[1,2]"), NULL, take, &s, what, sizeof(what)),
	                 ZD_WEBHOOK_BAD);
	assert_int_equal(zd_parse_webhook(B("{\"ticket\":1}"), NULL, take, &s, what, sizeof(what)),
	                 ZD_WEBHOOK_BAD);
	assert_int_equal(zd_parse_webhook(B("{\"type\":\"zen:event-type:ticket.comment_added\","
	                                    "\"detail\":{\"id\":\"x1\"}}"),
	                                  NULL, take, &s, what, sizeof(what)), ZD_WEBHOOK_BAD);
	assert_int_equal(zd_parse_webhook(B("{\"type\":\"zen:event-type:ticket.comment_added\","
	                                    "\"detail\":{\"id\":\"1\"},\"event\":{\"comment\":"
	                                    "{\"body\":\"hi\",\"is_public\":true}}}"),
	                                  NULL, take, &s, what, sizeof(what)), ZD_WEBHOOK_BAD);
	assert_int_equal(zd_parse_webhook(B("{\"type\":\"zen:event-type:ticket.status_changed\","
	                                    "\"detail\":{\"id\":\"1\"},\"event\":{}}"),
	                                  NULL, take, &s, what, sizeof(what)), ZD_WEBHOOK_BAD);
	assert_int_equal(s.n, 0);
}

/* The body is the event's evidence as it came: a NUL byte in it (which
 * jansson skips after a number) is no JSON, and nothing is emitted. */
static void test_webhook_nul_byte(void **state)
{
	static const char body[] = "{\"type\":\"zen:event-type:ticket.status_changed\","
	                           "\"detail\":{\"id\":3548\0},\"event\":{\"current\":\"SOLVED\"}}";
	char what[ZD_REASON_BYTES];
	seen s;
	(void)state;

	memset(&s, 0, sizeof(s));
	assert_int_equal(zd_parse_webhook((const unsigned char *)body, sizeof(body) - 1, NULL, take,
	                                  &s, what, sizeof(what)), ZD_WEBHOOK_BAD);
	assert_string_equal(what, "the body holds a NUL byte: not JSON");
	assert_int_equal(s.n, 0);
	/* Without the NUL it is an ordinary status change. */
	assert_int_equal(zd_parse_webhook(B("{\"type\":\"zen:event-type:ticket.status_changed\","
	                                    "\"detail\":{\"id\":3548},\"event\":{\"current\":\"SOLVED\"}}"),
	                                  NULL, take, &s, what, sizeof(what)), ZD_WEBHOOK_EVENT);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.ev.status, PARLEY_TICKET_SOLVED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auth_header),
		cmocka_unit_test(test_urls),
		cmocka_unit_test(test_subject_and_tags),
		cmocka_unit_test(test_ticket_body),
		cmocka_unit_test(test_user_body_and_requester_id),
		cmocka_unit_test(test_comment_body),
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_parse_answers),
		cmocka_unit_test(test_signature),
		cmocka_unit_test(test_webhook_comments),
		cmocka_unit_test(test_webhook_status_and_garbage),
		cmocka_unit_test(test_webhook_nul_byte),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
