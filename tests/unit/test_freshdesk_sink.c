/* test_freshdesk_sink.c - the freshdesk sink's pure half: the requests it
 * makes (byte for byte), how it reads Freshdesk's answers, HTML both ways,
 * the webhook's credentials and its parser, and the record of Parley's own
 * notes with the search a retry makes for a note that landed. */
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "../../plugins/sinks/freshdesk/freshdesk_api.h"
#include "../../plugins/sinks/freshdesk/freshdesk_notes.h"
#include "../../plugins/common/rfc3339.h"

static int plain_equals(const void *a, size_t a_len, const void *b, size_t b_len)
{
	return a_len == b_len && memcmp(a, b, a_len) == 0;
}

static fd_ticket_in sample_ticket(void)
{
	fd_ticket_in t;

	memset(&t, 0, sizeof(t));
	t.idempotency_key = "ticket-conv-812";
	t.case_number = "PC-10012";
	t.channel_instance = "facebook-main";
	t.channel_kind = "meta";
	t.customer_id = "77";
	t.customer_name = "Ann Example";
	t.customer_email = "ann+x@example.com";
	t.author_name = "Ann Example";
	t.text = "Where is my order?\nIt's late & <b>lost</b>";
	t.priority = 1;
	t.source = 2;
	return t;
}

/* ------------------------------------------------------------------ basics */

static void test_auth_header(void **state)
{
	char *h = fd_auth_header("abc");

	(void)state;
	assert_string_equal(h, "Authorization: Basic YWJjOlg=");
	free(h);
	assert_null(fd_auth_header(""));
	assert_null(fd_auth_header("ab\r\nX-Evil: 1"));
}

static void test_html_escape(void **state)
{
	char *s = fd_html_escape("a<b & 'c'\r\n\"d\"\ne");

	(void)state;
	assert_string_equal(s, "a&lt;b &amp; &#39;c&#39;<br>&quot;d&quot;<br>e");
	free(s);
}

static void test_html_to_text(void **state)
{
	const char *h = "<div>Hello &amp; <b>welcome</b></div>\n<div>Line&nbsp;2<br>x &#8364; "
	                "&#x1F600; &bogus; a&b</div><script>bad()</script><style>p{}</style>"
	                "<p>end</p>";
	char *s = fd_html_to_text(h, strlen(h));

	(void)state;
	assert_string_equal(s, "Hello & welcome\nLine 2\nx \xE2\x82\xAC \xF0\x9F\x98\x80 &bogus; a&b\nend");
	free(s);
	/* Invalid bytes and code points become U+FFFD; an unterminated tag ends the text. */
	{
		const char *bad = "a\xFF&#0;&#xD800;&#99999999;<b";
		s = fd_html_to_text(bad, strlen(bad));
	}
	assert_string_equal(s, "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
	free(s);
	s = fd_html_to_text("<p>one</p><p></p><p></p><p>two</p>", 34);   /* its length */
	assert_string_equal(s, "one\n\ntwo");
	free(s);
}

/* Freshdesk's editor writes &nbsp; for runs of spaces: a long comment full
 * of them is turned into text in one pass (this took seconds of the loop
 * when each U+00A0 moved the rest of the text). */
static void test_html_to_text_many_nbsp(void **state)
{
	enum { WORDS = 300000 };
	static const char word[] = "a&nbsp;";
	char *html = malloc(WORDS * (sizeof(word) - 1) + 1), *s;
	clock_t start;
	double cpu_s;

	(void)state;
	assert_non_null(html);
	for (size_t i = 0; i < WORDS; i++)
		memcpy(html + i * (sizeof(word) - 1), word, sizeof(word) - 1);
	html[WORDS * (sizeof(word) - 1)] = '\0';
	start = clock();
	s = fd_html_to_text(html, strlen(html));
	cpu_s = (double)(clock() - start) / CLOCKS_PER_SEC;
	assert_non_null(s);
	/* "a a ... a": every U+00A0 a space, the last one trimmed. */
	assert_int_equal(strlen(s), 2 * WORDS - 1);
	assert_int_equal(strspn(s, "a "), 2 * WORDS - 1);
	assert_int_equal(s[0], 'a');
	assert_int_equal(s[1], ' ');
	assert_true(cpu_s < 2.0);
	free(s);
	free(html);
}

static void test_fingerprint_survives_the_round_trip(void **state)
{
	const char *text = "Where is my order?\n\nIt's late & <b>lost</b>  ";
	char *html = fd_html_escape(text);
	char *wrapped = malloc(strlen(html) + 12);
	char *back;
	char a[17], b[17], c[FD_COMMENT_ID_BYTES];

	(void)state;
	strcpy(wrapped, "<div>");
	strcat(wrapped, html);
	strcat(wrapped, "</div>");
	back = fd_html_to_text(wrapped, strlen(wrapped));
	fd_fingerprint(text, a);
	fd_fingerprint(back, b);
	assert_string_equal(a, b);
	fd_fingerprint("Hello  world\n", a);
	assert_string_equal(a, "64ec88ca00b268e5");   /* SHA-256("Hello world") */
	assert_true(fd_comment_id("4711", 1, "Hello world", c));
	assert_string_equal(c, "4711:pub:64ec88ca00b268e5");
	assert_true(fd_comment_id("4711", 0, "Hello\u00a0world", c));
	assert_string_equal(c, "4711:priv:64ec88ca00b268e5");
	assert_false(fd_comment_id("47a", 1, "x", c));
	free(html);
	free(wrapped);
	free(back);
}

static void test_key_tag_and_ids(void **state)
{
	char tag[FD_TAG_BYTES];

	(void)state;
	fd_key_tag("ticket-conv-812", tag);
	assert_string_equal(tag, "parley-f5507994a814498d");
	assert_true(fd_id_is_valid("1"));
	assert_true(fd_id_is_valid("12345678901234567890"));
	assert_false(fd_id_is_valid("123456789012345678901"));
	assert_false(fd_id_is_valid(""));
	assert_false(fd_id_is_valid("12/../3"));
	assert_false(fd_id_is_valid(NULL));
}

/* ------------------------------------------------------------------ requests */

static void test_ticket_by_email(void **state)
{
	fd_ticket_in t = sample_ticket();
	char why[200], *body, *path;

	(void)state;
	assert_int_equal(fd_requester(&t), FD_REQUESTER_EMAIL);
	assert_true(fd_ticket_body(&t, &body, why, sizeof(why)));
	assert_string_equal(body,
		"{\"subject\":\"[PC-10012] Where is my order?\","
		"\"description\":\"<p>Where is my order?<br>It&#39;s late &amp; &lt;b&gt;lost&lt;/b&gt;</p>"
		"<p>From Ann Example, a private message on facebook-main (meta), Parley case PC-10012.</p>\","
		"\"status\":2,\"priority\":1,\"source\":2,\"email\":\"ann+x@example.com\","
		"\"name\":\"Ann Example\",\"tags\":[\"parley\",\"PC-10012\",\"parley-f5507994a814498d\"]}");
	free(body);
	assert_true(fd_lookup_path(&t, &path));
	assert_string_equal(path, "/api/v2/tickets?email=ann%2Bx%40example.com"
	                          "&order_by=created_at&order_type=desc&per_page=100");
	free(path);
}

static void test_follow_up_by_phone(void **state)
{
	fd_ticket_in t = sample_ticket();
	char why[200], *body, *path;

	(void)state;
	t.customer_email = NULL;
	t.customer_name = NULL;
	t.customer_phone = "+4915112345678";
	t.follow_up_of = "4711";
	t.is_public = 1;
	t.group_id = "99";
	t.text = "  \nLong first line that goes on and on and on, longer than the subject may be: "
	         "\xC3\xA4\xC3\xA4\xC3\xA4\nsecond line";
	assert_int_equal(fd_requester(&t), FD_REQUESTER_PHONE);
	assert_true(fd_ticket_body(&t, &body, why, sizeof(why)));
	assert_non_null(strstr(body, "\"subject\":\"[PC-10012] Follow-up: Long first line that goes on "
	                             "and on and on, longer than the subject may be: \xC3\xA4\xC3\xA4\xE2\x80\xA6\""));
	assert_non_null(strstr(body, "\"description\":\"<p>Follow-up to ticket #4711, which is closed.</p>"));
	assert_non_null(strstr(body, "a public message on facebook-main"));
	assert_non_null(strstr(body, "\"phone\":\"+4915112345678\",\"name\":\"+4915112345678\","
	                             "\"group_id\":99,\"tags\":[\"parley\",\"PC-10012\","
	                             "\"parley-f5507994a814498d\",\"follow-up-of-4711\"]}"));
	free(body);
	assert_true(fd_lookup_path(&t, &path));
	assert_string_equal(path, "/api/v2/search/tickets?query=%22tag%3A%27parley-f5507994a814498d%27%22");
	free(path);
}

static void test_ticket_by_external_id(void **state)
{
	fd_ticket_in t = sample_ticket();
	char why[200], *body, *path;

	(void)state;
	t.customer_email = NULL;
	t.customer_name = NULL;
	t.case_number = "has,comma";
	assert_int_equal(fd_requester(&t), FD_REQUESTER_EXTERNAL_ID);
	assert_true(fd_ticket_body(&t, &body, why, sizeof(why)));
	assert_non_null(strstr(body, "\"unique_external_id\":\"parley-77\",\"name\":\"parley-77\","
	                             "\"tags\":[\"parley\",\"parley-f5507994a814498d\"]}"));
	free(body);
	assert_true(fd_lookup_path(&t, &path));
	assert_string_equal(path, "/api/v2/tickets?unique_external_id=parley-77"
	                          "&order_by=created_at&order_type=desc&per_page=100");
	free(path);

	t.customer_id = NULL;
	assert_false(fd_ticket_body(&t, &body, why, sizeof(why)));
	assert_string_equal(why, "the conversation has no customer to be the ticket's requester");
	t.customer_id = "77";
	t.text = "bad \xFF";
	assert_false(fd_ticket_body(&t, &body, why, sizeof(why)));
	assert_string_equal(why, "the conversation holds text that is not valid UTF-8");
}

static void test_note(void **state)
{
	char *path = fd_note_path("4711"), *body = fd_note_body("Where <is> it?\nok");

	(void)state;
	assert_string_equal(path, "/api/v2/tickets/4711/notes");
	assert_string_equal(body, "{\"body\":\"Where &lt;is&gt; it?<br>ok\",\"incoming\":true,"
	                          "\"private\":false}");
	free(path);
	free(body);
	assert_null(fd_note_path("4711/../../agents"));
	assert_null(fd_note_body("\xC3"));
}

/* ------------------------------------------------------------------ answers */

static void test_classify_create(void **state)
{
	fd_result r;
	const char *validation = "{\"description\":\"Validation failed\",\"errors\":[{\"field\":"
	                         "\"email\",\"message\":\"It should be a valid email address\","
	                         "\"code\":\"invalid_value\"}]}";

	(void)state;
	fd_classify_create(201, NULL, "{\"id\":42,\"status\":2}", 20, NULL, "ticket", &r);
	assert_int_equal(r.outcome, PARLEY_OK);
	assert_string_equal(r.id, "42");

	fd_classify_create(201, NULL, "{\"status\":2}", 12, NULL, "ticket", &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_string_equal(r.reason, "Freshdesk answered 201 without the ticket's id; "
	                              "check whether it was created");

	fd_classify_create(429, NULL, "Too many requests", 17, "30", "ticket", &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_int_equal(r.rate_limited, 1);
	assert_int_equal(r.retry_after_s, 30);
	assert_string_equal(r.reason, "Freshdesk rate limit (429): honouring Retry-After");

	fd_classify_create(429, NULL, NULL, 0, NULL, "ticket", &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_int_equal(r.retry_after_s, 0);
	assert_string_equal(r.reason, "Freshdesk rate limit (429)");

	fd_classify_create(401, NULL, "{\"code\":\"invalid_credentials\"}", 30, NULL, "ticket", &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_string_equal(r.reason, "unauthorized: check the API token (Freshdesk answered 401)");

	fd_classify_create(400, NULL, validation, strlen(validation), NULL, "ticket", &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_string_equal(r.reason, "Freshdesk refused the ticket (400): Validation failed: email: "
	                              "It should be a valid email address (invalid_value)");

	fd_classify_create(503, NULL, "down\n", 5, NULL, "note", &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_string_equal(r.reason, "Freshdesk answered 503: down?");

	fd_classify_create(0, "Operation timed out", NULL, 0, NULL, "note", &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_string_equal(r.reason, "Freshdesk request failed: Operation timed out");

	fd_classify_create(404, NULL, "", 0, NULL, "note", &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_string_equal(r.reason, "Freshdesk answered 404 to the note");
}

static void test_classify_lookup(void **state)
{
	const char *list = "[{\"id\":7,\"tags\":[\"parley\",\"other\"]},"
	                   "{\"id\":8,\"tags\":[\"PC-1\",\"parley-f5507994a814498d\"]}]";
	const char *search = "{\"results\":[{\"id\":9,\"tags\":[\"parley-f5507994a814498d\"]}],\"total\":1}";
	const char *tag = "parley-f5507994a814498d";
	char id[FD_ID_BYTES];
	fd_result r;

	(void)state;
	assert_int_equal(fd_classify_lookup(200, NULL, list, strlen(list), NULL, tag, id, &r),
	                 FD_LOOKUP_FOUND);
	assert_string_equal(id, "8");
	assert_int_equal(fd_classify_lookup(200, NULL, search, strlen(search), NULL, tag, id, &r),
	                 FD_LOOKUP_FOUND);
	assert_string_equal(id, "9");
	assert_int_equal(fd_classify_lookup(200, NULL, "[]", 2, NULL, tag, id, &r), FD_LOOKUP_NONE);
	assert_int_equal(fd_classify_lookup(200, NULL, list, strlen(list), NULL, "parley-0", id, &r),
	                 FD_LOOKUP_NONE);
	assert_int_equal(fd_classify_lookup(400, NULL, "{}", 2, NULL, tag, id, &r), FD_LOOKUP_NONE);
	assert_int_equal(fd_classify_lookup(200, NULL, "<html>", 6, NULL, tag, id, &r),
	                 FD_LOOKUP_ERROR);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_int_equal(fd_classify_lookup(429, NULL, "slow down", 9, "7", tag, id, &r),
	                 FD_LOOKUP_ERROR);
	assert_int_equal(r.retry_after_s, 7);
	assert_int_equal(fd_classify_lookup(403, NULL, NULL, 0, NULL, tag, id, &r), FD_LOOKUP_ERROR);
	assert_int_equal(r.outcome, PARLEY_FAIL);
}

/* ------------------------------------------------------------------ inbound */

static void test_auth(void **state)
{
	(void)state;
	assert_int_equal(fd_check_auth("s3cret", NULL, NULL, "s3cret", plain_equals), FD_AUTH_OK);
	assert_int_equal(fd_check_auth("s3cre", NULL, NULL, "s3cret", plain_equals), FD_AUTH_BAD);
	assert_int_equal(fd_check_auth(NULL, NULL, NULL, "s3cret", plain_equals), FD_AUTH_MISSING);
	/* "parley:s3cret" */
	assert_int_equal(fd_check_auth(NULL, "Basic cGFybGV5OnMzY3JldA==", "parley", "s3cret",
	                               plain_equals), FD_AUTH_OK);
	assert_int_equal(fd_check_auth(NULL, "basic  cGFybGV5OnMzY3JldA==", "parley", "s3cret",
	                               plain_equals), FD_AUTH_OK);
	assert_int_equal(fd_check_auth(NULL, "Basic cGFybGV5OnMzY3JldA==", "other", "s3cret",
	                               plain_equals), FD_AUTH_BAD);
	assert_int_equal(fd_check_auth(NULL, "Basic cGFybGV5OnMzY3JldA==", NULL, "s3cret",
	                               plain_equals), FD_AUTH_MISSING);
	assert_int_equal(fd_check_auth(NULL, "Basic !!!!", "parley", "s3cret", plain_equals),
	                 FD_AUTH_BAD);
	assert_int_equal(fd_check_auth(NULL, "Bearer x", "parley", "s3cret", plain_equals),
	                 FD_AUTH_BAD);
	/* "parley" without a colon */
	assert_int_equal(fd_check_auth(NULL, "Basic cGFybGV5", "parley", "s3cret", plain_equals),
	                 FD_AUTH_BAD);
}

typedef struct captured {
	int n;
	int refuse;
	parley_ticket_event ev;
	char dedupe[128], ticket[32], comment[80], author[64], text[256], raw[1024];
} captured;

static void copy(char *dst, size_t n, const char *src)
{
	dst[0] = '\0';
	if (src != NULL) {
		strncpy(dst, src, n - 1);
		dst[n - 1] = '\0';
	}
}

static int capture(void *ctx, const parley_ticket_event *ev)
{
	captured *c = ctx;

	c->n++;
	c->ev = *ev;
	copy(c->dedupe, sizeof(c->dedupe), ev->dedupe_key);
	copy(c->ticket, sizeof(c->ticket), ev->external_ticket_id);
	copy(c->comment, sizeof(c->comment), ev->comment_id);
	copy(c->author, sizeof(c->author), ev->author_name);
	copy(c->text, sizeof(c->text), ev->text);
	copy(c->raw, sizeof(c->raw), ev->raw_json);
	assert_int_equal(strlen(ev->raw_json), ev->raw_json_len);
	return c->refuse ? -1 : 0;
}

static fd_parse_result parse(const char *body, captured *c, char *why, size_t whylen)
{
	memset(c, 0, sizeof(*c));
	return fd_parse_webhook(body, strlen(body), 1700000000000LL, capture, c, why, whylen);
}

static void test_webhook_comments(void **state)
{
	captured c;
	char why[256];
	const char *pub = "{\"ticket_id\":\"4711\",\"triggered_event\":\"{note_type:public}\","
	                  "\"status\":\"Open\",\"public_comment\":\"<div>Hi Ann,<br>it ships "
	                  "today &amp; tomorrow.</div>\",\"private_comment\":\"{{ticket.latest_private_comment}}\","
	                  "\"agent_name\":\"Bob Agent\"}";
	const char *priv = "{\"ticket_id\":4711,\"triggered_event\":\"{note_type:private}\","
	                   "\"private_comment\":\"<p>VIP</p>\",\"agent_name\":\"{{ticket.agent.name}}\"}";
	const char *reply = "{\"ticket_id\":\"4711\",\"triggered_event\":\"{reply_sent:sent}\","
	                    "\"public_comment\":\"Thanks!\"}";

	(void)state;
	assert_int_equal(parse(pub, &c, why, sizeof(why)), FD_PARSE_EMITTED);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.ev.size, sizeof(parley_ticket_event));
	assert_int_equal(c.ev.type, PARLEY_TICKET_COMMENT);
	assert_string_equal(c.ticket, "4711");
	assert_int_equal(c.ev.is_public, 1);
	assert_int_equal(c.ev.from_parley, 0);
	assert_string_equal(c.text, "Hi Ann,\nit ships today & tomorrow.");
	assert_string_equal(c.author, "Bob Agent");
	assert_memory_equal(c.comment, "4711:pub:", 9);
	assert_int_equal(strlen(c.comment), 9 + 16);
	assert_string_equal(c.dedupe + 8, c.comment);
	assert_memory_equal(c.dedupe, "comment:", 8);
	{
		char expect[FD_COMMENT_ID_BYTES];
		assert_true(fd_comment_id("4711", 1, "Hi Ann, it ships today & tomorrow.", expect));
		assert_string_equal(c.comment, expect);   /* what append_message records */
	}
	assert_non_null(strstr(c.raw, "\"ticket_id\":\"4711\""));

	assert_int_equal(parse(priv, &c, why, sizeof(why)), FD_PARSE_EMITTED);
	assert_int_equal(c.ev.is_public, 0);
	assert_string_equal(c.text, "VIP");
	assert_null(c.ev.author_name);   /* an unreplaced placeholder is no name */
	assert_memory_equal(c.comment, "4711:priv:", 10);

	assert_int_equal(parse(reply, &c, why, sizeof(why)), FD_PARSE_EMITTED);
	assert_int_equal(c.ev.is_public, 1);
	assert_string_equal(c.text, "Thanks!");
}

static void test_webhook_statuses(void **state)
{
	captured c;
	char why[256];

	(void)state;
	assert_int_equal(parse("{\"ticket_id\":\"9\",\"triggered_event\":\"{status:{from:2,to:4}}\","
	                       "\"status\":\"Resolved\"}", &c, why, sizeof(why)), FD_PARSE_EMITTED);
	assert_int_equal(c.ev.type, PARLEY_TICKET_STATUS);
	assert_int_equal(c.ev.status, PARLEY_TICKET_SOLVED);
	assert_string_equal(c.dedupe, "status:9:3:1700000000");
	assert_string_equal(c.ticket, "9");

	assert_int_equal(parse("{\"ticket_id\":\"9\",\"triggered_event\":\"{status:{from:Open,to:Closed}}\"}",
	                       &c, why, sizeof(why)), FD_PARSE_EMITTED);
	assert_int_equal(c.ev.status, PARLEY_TICKET_CLOSED);
	assert_int_equal(parse("{\"ticket_id\":\"9\",\"triggered_event\":\"status\",\"status\":\"Pending\"}",
	                       &c, why, sizeof(why)), FD_PARSE_EMITTED);
	assert_int_equal(c.ev.status, PARLEY_TICKET_PENDING);
	assert_int_equal(parse("{\"ticket_id\":\"9\",\"triggered_event\":\"status\",\"status\":2}",
	                       &c, why, sizeof(why)), FD_PARSE_EMITTED);
	assert_int_equal(c.ev.status, PARLEY_TICKET_OPEN);

	/* A custom status is not one Parley maps: 200, nothing stored. */
	assert_int_equal(parse("{\"ticket_id\":\"9\",\"triggered_event\":\"{status:{from:2,to:6}}\","
	                       "\"status\":\"Waiting on Customer\"}", &c, why, sizeof(why)),
	                 FD_PARSE_IGNORED);
	assert_int_equal(c.n, 0);
}

static void test_webhook_ignored_and_invalid(void **state)
{
	captured c;
	char why[256];

	(void)state;
	assert_int_equal(parse("{\"ticket_id\":\"9\",\"triggered_event\":\"{ticket_action:created}\"}",
	                       &c, why, sizeof(why)), FD_PARSE_IGNORED);
	assert_string_equal(why, "an event Parley does not act on");
	assert_int_equal(parse("{\"ticket_id\":\"9\",\"triggered_event\":\"{note_type:public}\","
	                       "\"public_comment\":\"<p> </p>\"}", &c, why, sizeof(why)),
	                 FD_PARSE_IGNORED);
	assert_int_equal(c.n, 0);

	assert_int_equal(parse("not json", &c, why, sizeof(why)), FD_PARSE_INVALID);
	assert_int_equal(parse("[1]", &c, why, sizeof(why)), FD_PARSE_INVALID);
	assert_int_equal(parse("{\"triggered_event\":\"status\"}", &c, why, sizeof(why)),
	                 FD_PARSE_INVALID);
	assert_string_equal(why, "ticket_id: required, a Freshdesk ticket id");
	assert_int_equal(parse("{\"ticket_id\":\"{{ticket.id}}\",\"triggered_event\":\"status\"}", &c,
	                       why, sizeof(why)), FD_PARSE_INVALID);
	assert_int_equal(parse("{\"ticket_id\":\"9\"}", &c, why, sizeof(why)), FD_PARSE_INVALID);
	assert_string_equal(why, "triggered_event: required");
	assert_int_equal(parse("{\"ticket_id\":\"9\",\"triggered_event\":\"{note_type:public}\"}", &c,
	                       why, sizeof(why)), FD_PARSE_INVALID);
	assert_string_equal(why, "public_comment: missing for a public comment");
	assert_int_equal(parse("{\"ticket_id\":\"9\",\"triggered_event\":5}", &c, why, sizeof(why)),
	                 FD_PARSE_INVALID);
	assert_string_equal(why, "triggered_event: expected a string");
	assert_int_equal(parse("{\"ticket_id\":\"9\",\"ticket_id\":\"8\",\"triggered_event\":\"x\"}", &c,
	                       why, sizeof(why)), FD_PARSE_INVALID);
	assert_int_equal(c.n, 0);

	memset(&c, 0, sizeof(c));
	c.refuse = 1;
	{
		const char *b = "{\"ticket_id\":\"9\",\"triggered_event\":\"status\",\"status\":5}";
		assert_int_equal(fd_parse_webhook(b, strlen(b), 0, capture, &c, why, sizeof(why)),
		                 FD_PARSE_REFUSED);
	}
}

/* ------------------------------------------------------------------ own notes */

#define FP_A "aaaaaaaaaaaaaaaa"
#define FP_B "bbbbbbbbbbbbbbbb"
#define TAG_1 "1111111111111111"
#define TAG_2 "2222222222222222"
#define TAG_3 "3333333333333333"

static void test_notes_record(void **state)
{
	char key[FD_NOTES_KEY_BYTES], tag[17], ktag[FD_TAG_BYTES], cid[FD_COMMENT_ID_BYTES];
	fd_notes n;
	char *s;

	(void)state;
	assert_true(fd_notes_key("4711", key));
	assert_string_equal(key, "notes:4711");
	assert_false(fd_notes_key("47/11", key));
	assert_false(fd_notes_key(NULL, key));
	/* A job's tag: the digits of the tag its ticket would carry. */
	fd_job_tag("append:5532:fd", tag);
	fd_key_tag("append:5532:fd", ktag);
	assert_string_equal(tag, ktag + 7);
	assert_int_equal(strlen(tag), 16);

	fd_notes_parse(NULL, &n);
	assert_int_equal(n.n, 0);
	s = fd_notes_format(&n);
	assert_string_equal(s, "");
	free(s);
	/* Malformed entries are skipped; the rest is read back as written. */
	fd_notes_parse(TAG_1 ":" FP_A ":1700000000000  junk " TAG_2 ":" FP_B ":x "
	               TAG_2 ":" FP_B ":1700000005000 " TAG_3 ":AAAAAAAAAAAAAAAA:1 "
	               TAG_3 ":" FP_A, &n);
	assert_int_equal(n.n, 2);
	assert_string_equal(n.e[0].tag, TAG_1);
	assert_string_equal(n.e[0].fp, FP_A);
	assert_true(n.e[0].at_ms == 1700000000000LL);
	assert_true(n.e[1].at_ms == 1700000005000LL);
	s = fd_notes_format(&n);
	assert_string_equal(s, TAG_1 ":" FP_A ":1700000000000 " TAG_2 ":" FP_B ":1700000005000");
	free(s);
	assert_ptr_equal(fd_notes_find(&n, TAG_2), &n.e[1]);
	assert_null(fd_notes_find(&n, TAG_3));

	/* The webhook's comment id of a recorded public note is Parley's own;
	 * a private one, or other words, are not. */
	assert_true(fd_notes_owns(&n, "4711:pub:" FP_B));
	assert_false(fd_notes_owns(&n, "4711:priv:" FP_B));
	assert_false(fd_notes_owns(&n, "4711:pub:cccccccccccccccc"));
	assert_false(fd_notes_owns(&n, NULL));
	fd_fingerprint("Still  dead", n.e[0].fp);
	assert_true(fd_comment_id("4711", 1, "Still dead", cid));
	assert_true(fd_notes_owns(&n, cid));

	/* Full: the oldest goes. */
	for (int i = 0; i < FD_NOTES_MAX; i++) {
		char t[17];
		snprintf(t, sizeof(t), "%016x", i + 100);
		fd_notes_add(&n, t, FP_A, 1700000010000LL + i);
	}
	assert_int_equal(n.n, FD_NOTES_MAX);
	assert_null(fd_notes_find(&n, TAG_1));
	assert_null(fd_notes_find(&n, TAG_2));
	assert_true(n.e[FD_NOTES_MAX - 1].at_ms == 1700000010000LL + FD_NOTES_MAX - 1);
	s = fd_notes_format(&n);
	{
		fd_notes back;
		fd_notes_parse(s, &back);
		assert_int_equal(back.n, FD_NOTES_MAX);
		assert_memory_equal(&back, &n, sizeof(n));
	}
	free(s);
}

/* A damaged record may hold any digits where the time goes: one past year
 * 9999 (or past what 64 bits hold) makes its entry malformed. */
static void test_notes_record_time_past_year_9999(void **state)
{
	fd_notes n;

	(void)state;
	fd_notes_parse(TAG_1 ":" FP_A ":253402300799999 " TAG_2 ":" FP_A ":253402300800000 "
	               TAG_3 ":" FP_A ":9999999999999999999 "
	               "4444444444444444:" FP_B ":1700000000000", &n);
	assert_int_equal(n.n, 2);
	assert_string_equal(n.e[0].tag, TAG_1);
	assert_true(n.e[0].at_ms == 253402300799999LL);
	assert_string_equal(n.e[1].tag, "4444444444444444");
	assert_true(n.e[1].at_ms == 1700000000000LL);
	assert_null(fd_notes_find(&n, TAG_2));
	assert_null(fd_notes_find(&n, TAG_3));
}

static void test_note_search_counts_earlier_same_words(void **state)
{
	fd_notes n;
	fd_note_search s;
	int64_t t0 = 1700000000000LL;

	(void)state;
	memset(&n, 0, sizeof(n));
	fd_notes_add(&n, TAG_1, FP_A, t0 - FD_NOTES_CLOCK_SLACK_MS - 1);  /* long before */
	fd_notes_add(&n, TAG_2, FP_A, t0 - 1000);                         /* just before */
	fd_notes_add(&n, TAG_3, FP_A, t0);                                /* this job */
	fd_notes_add(&n, "4444444444444444", FP_A, t0 + 10);              /* after it */
	fd_note_search_init(&s, &n, fd_notes_find(&n, TAG_3));
	assert_string_equal(s.fp, FP_A);
	assert_true(s.since_ms == t0 - FD_NOTES_CLOCK_SLACK_MS);
	assert_int_equal(s.needed, 2);
	assert_int_equal(s.page, 1);
	assert_int_equal(s.seen, 0);
	fd_note_search_init(&s, &n, fd_notes_find(&n, TAG_1));
	assert_int_equal(s.needed, 1);
}

static void test_time_and_path(void **state)
{
	int64_t ms = 0;
	char *p;

	(void)state;
	/* Freshdesk's created_at goes through the shared RFC 3339 parser. */
	assert_true(pu_rfc3339_ms("2023-11-14T22:13:20Z", &ms));
	assert_true(ms == 1700000000000LL);
	p = fd_conversations_path("4711", 2);
	assert_string_equal(p, "/api/v2/tickets/4711/conversations?per_page=100&page=2");
	free(p);
	assert_null(fd_conversations_path("47/11", 1));
	assert_null(fd_conversations_path("4711", 0));
}

/* A conversation as Freshdesk lists it. */
static void conv(char *out, size_t len, const char *html, int incoming, int private,
                 const char *created)
{
	snprintf(out, len, "{\"id\":9,\"body\":\"%s\",\"body_text\":\"\",\"incoming\":%s,"
	         "\"private\":%s,\"user_id\":42,\"created_at\":\"%s\"}",
	         html, incoming ? "true" : "false", private ? "true" : "false", created);
}

static fd_note_lookup classify_page(const char *json, fd_note_search *s, fd_result *r)
{
	return fd_classify_conversations(200, NULL, json, strlen(json), NULL, s, r);
}

static void test_classify_conversations(void **state)
{
	char a[256], b[256], c[256], d[256], e[256], page[1400];
	fd_note_search s;
	fd_result r;

	(void)state;
	memset(&s, 0, sizeof(s));
	fd_fingerprint("Still nothing <here>\nplease", s.fp);
	s.since_ms = 1700000000000LL;            /* 2023-11-14T22:13:20Z */
	s.needed = 1;
	s.page = 1;
	/* Not ours: an agent's reply, a private note, the same words long
	 * before, other words. */
	conv(a, sizeof(a), "<div>Still nothing &lt;here&gt;<br>please</div>", 0, 0,
	     "2023-11-14T22:14:00Z");
	conv(b, sizeof(b), "Still nothing &lt;here&gt;<br>please", 1, 1, "2023-11-14T22:14:00Z");
	conv(c, sizeof(c), "Still nothing &lt;here&gt;<br>please", 1, 0, "2023-11-14T22:13:19Z");
	conv(d, sizeof(d), "Something else", 1, 0, "2023-11-14T22:14:00Z");
	conv(e, sizeof(e), "<div>Still nothing &lt;here&gt;<br>please</div>", 1, 0,
	     "2023-11-14T22:14:00Z");
	snprintf(page, sizeof(page), "[%s,%s,%s,%s]", a, b, c, d);
	assert_int_equal(classify_page(page, &s, &r), FD_NOTE_ABSENT);
	assert_int_equal(s.seen, 0);
	snprintf(page, sizeof(page), "[%s,%s,%s,%s,%s]", a, b, c, d, e);
	assert_int_equal(classify_page(page, &s, &r), FD_NOTE_FOUND);
	assert_int_equal(s.seen, 1);

	/* Two needed (the customer said it before): one is not enough, two are. */
	s.seen = 0;
	s.needed = 2;
	snprintf(page, sizeof(page), "[%s]", e);
	assert_int_equal(classify_page(page, &s, &r), FD_NOTE_ABSENT);
	s.seen = 0;
	snprintf(page, sizeof(page), "[%s,%s]", e, e);
	assert_int_equal(classify_page(page, &s, &r), FD_NOTE_FOUND);

	/* body_text when the body is empty. */
	s.seen = 0;
	s.needed = 1;
	{
		const char *t = "[{\"body\":\"\",\"body_text\":\"Still nothing <here> please\","
		                "\"incoming\":true,\"private\":false,\"created_at\":\"2023-11-14T22:14:00Z\"}]";
		assert_int_equal(classify_page(t, &s, &r), FD_NOTE_FOUND);
	}

	/* A full page asks for the next, up to the last page read. */
	{
		char *full = malloc(FD_NOTES_PER_PAGE * (strlen(d) + 1) + 2);
		size_t at = 0;
		full[at++] = '[';
		for (int i = 0; i < FD_NOTES_PER_PAGE; i++) {
			if (i > 0)
				full[at++] = ',';
			memcpy(full + at, d, strlen(d));
			at += strlen(d);
		}
		full[at++] = ']';
		full[at] = '\0';
		s.seen = 0;
		s.page = 1;
		for (int p = 2; p <= FD_NOTES_MAX_PAGES; p++) {
			assert_int_equal(classify_page(full, &s, &r), FD_NOTE_MORE);
			assert_int_equal(s.page, p);
		}
		assert_int_equal(classify_page(full, &s, &r), FD_NOTE_ABSENT);
		free(full);
	}

	/* Answers that are not a list. */
	assert_int_equal(fd_classify_conversations(404, NULL, "{}", 2, NULL, &s, &r), FD_NOTE_ABSENT);
	assert_int_equal(fd_classify_conversations(429, NULL, "", 0, "7", &s, &r), FD_NOTE_ERROR);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_true(r.rate_limited && r.retry_after_s == 7);
	assert_int_equal(fd_classify_conversations(0, "timed out", NULL, 0, NULL, &s, &r),
	                 FD_NOTE_ERROR);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_string_equal(r.reason, "Freshdesk request failed: timed out");
	assert_int_equal(fd_classify_conversations(401, NULL, "", 0, NULL, &s, &r), FD_NOTE_ERROR);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_int_equal(classify_page("{\"results\":[]}", &s, &r), FD_NOTE_ERROR);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_string_equal(r.reason, "Freshdesk's conversation list answer is not a list");
}

static void test_webhook_public_ticket(void **state)
{
	char id[FD_ID_BYTES];
	const char *pub = "{\"ticket_id\":\"4711\",\"triggered_event\":\"{note_type:public}\","
	                  "\"public_comment\":\"x\"}";
	const char *reply = "{\"ticket_id\":4711,\"triggered_event\":\"{reply_sent:sent}\"}";
	const char *priv = "{\"ticket_id\":\"4711\",\"triggered_event\":\"{note_type:private}\"}";
	const char *status = "{\"ticket_id\":\"4711\",\"triggered_event\":\"{status:{from:2,to:4}}\"}";
	const char *bad_id = "{\"ticket_id\":\"47/11\",\"triggered_event\":\"{note_type:public}\"}";
	const char *placeholder = "{\"ticket_id\":\"4711\",\"triggered_event\":\"{{triggered_event}}\"}";

	(void)state;
	assert_true(fd_webhook_public_ticket(pub, strlen(pub), id));
	assert_string_equal(id, "4711");
	assert_true(fd_webhook_public_ticket(reply, strlen(reply), id));
	assert_string_equal(id, "4711");
	assert_false(fd_webhook_public_ticket(priv, strlen(priv), id));
	assert_false(fd_webhook_public_ticket(status, strlen(status), id));
	assert_false(fd_webhook_public_ticket(bad_id, strlen(bad_id), id));
	assert_false(fd_webhook_public_ticket(placeholder, strlen(placeholder), id));
	assert_false(fd_webhook_public_ticket("{nope", 5, id));
	assert_false(fd_webhook_public_ticket("[]", 2, id));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auth_header),
		cmocka_unit_test(test_html_escape),
		cmocka_unit_test(test_html_to_text),
		cmocka_unit_test(test_html_to_text_many_nbsp),
		cmocka_unit_test(test_fingerprint_survives_the_round_trip),
		cmocka_unit_test(test_key_tag_and_ids),
		cmocka_unit_test(test_ticket_by_email),
		cmocka_unit_test(test_follow_up_by_phone),
		cmocka_unit_test(test_ticket_by_external_id),
		cmocka_unit_test(test_note),
		cmocka_unit_test(test_classify_create),
		cmocka_unit_test(test_classify_lookup),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_webhook_comments),
		cmocka_unit_test(test_webhook_statuses),
		cmocka_unit_test(test_webhook_ignored_and_invalid),
		cmocka_unit_test(test_notes_record),
		cmocka_unit_test(test_notes_record_time_past_year_9999),
		cmocka_unit_test(test_note_search_counts_earlier_same_words),
		cmocka_unit_test(test_time_and_path),
		cmocka_unit_test(test_classify_conversations),
		cmocka_unit_test(test_webhook_public_ticket),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
