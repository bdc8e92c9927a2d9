/* test_x_channel.c - the x channel's wire formats: CRC and webhook signature
 * vectors, Account Activity and recent-search payloads into events, OAuth
 * 1.0a signing against X's worked example, outbound bodies and the
 * classification of the X API's answers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "../../plugins/common/plugin_util.h"
#include "../../plugins/common/rfc3339.h"
#include "../../plugins/channels/x/x_parse.h"
#include "../../plugins/channels/x/x_oauth.h"

#define BRAND "2975699229"
#define CUSTOMER "1205290247124217856"

/* ------------------------------------------------------------------------ */
/* Capturing events                                                         */
/* ------------------------------------------------------------------------ */

typedef struct seen_event {
	parley_event_type type;
	char *dedupe_key, *external_id, *text, *thread_id, *in_reply_to, *raw_json;
	char *author_id, *author_name, *author_handle, *profile_json;
	int from_brand;
	parley_visibility visibility;
	int64_t time_ms;
	uint32_t size;
} seen_event;

typedef struct capture {
	seen_event *ev;
	size_t n;
	size_t refuse_at;   /* refuse the event with this index; SIZE_MAX: none */
} capture;

static int collect(void *arg, const parley_event *ev)
{
	capture *c = arg;
	seen_event *s;

	if (c->n == c->refuse_at)
		return -1;
	c->ev = realloc(c->ev, (c->n + 1) * sizeof(*c->ev));
	s = &c->ev[c->n++];
	memset(s, 0, sizeof(*s));
	s->size = ev->size;
	s->type = ev->type;
	s->dedupe_key = xstrdup(ev->dedupe_key);
	s->external_id = xstrdup(ev->external_id);
	s->text = xstrdup(ev->text);
	s->thread_id = xstrdup(ev->thread_id);
	s->in_reply_to = xstrdup(ev->in_reply_to);
	s->raw_json = xstrdup(ev->raw_json);
	s->author_id = xstrdup(ev->author.external_id);
	s->author_name = xstrdup(ev->author.display_name);
	s->author_handle = xstrdup(ev->author.handle);
	s->profile_json = xstrdup(ev->author.profile_json);
	s->from_brand = ev->from_brand;
	s->visibility = ev->visibility;
	s->time_ms = ev->platform_time_ms;
	if (ev->raw_json != NULL)
		assert_int_equal(ev->raw_json_len, strlen(ev->raw_json));
	return 0;
}

static void capture_free(capture *c)
{
	for (size_t i = 0; i < c->n; i++) {
		seen_event *s = &c->ev[i];
		free(s->dedupe_key); free(s->external_id); free(s->text); free(s->thread_id);
		free(s->in_reply_to); free(s->raw_json); free(s->author_id); free(s->author_name);
		free(s->author_handle); free(s->profile_json);
	}
	free(c->ev);
	memset(c, 0, sizeof(*c));
}

static bool activity(const char *body, capture *c, x_parse_stats *st, x_parse_error *err)
{
	memset(c, 0, sizeof(*c));
	c->refuse_at = SIZE_MAX;
	memset(err, 0, sizeof(*err));
	return x_parse_activity(body, strlen(body), BRAND, collect, c, st, err);
}

/* Parse a body that must be accepted with n events. */
static void accept(const char *body, capture *c, size_t n)
{
	x_parse_stats st;
	x_parse_error err;

	if (!activity(body, c, &st, &err))
		fail_msg("refused (%s: %s): %s", err.code, err.detail, body);
	assert_int_equal(c->n, n);
	assert_int_equal(st.emitted, n);
}

static void assert_refused(const char *body, const char *code, const char *detail)
{
	capture c;
	x_parse_stats st;
	x_parse_error err;

	if (activity(body, &c, &st, &err))
		fail_msg("accepted: %s", body);
	assert_int_equal(err.http_status, 400);
	assert_string_equal(err.code, code);
	if (detail != NULL)
		assert_string_equal(err.detail, detail);
	capture_free(&c);
}

static void hmac_cb(const void *key, size_t key_len, const void *data, size_t len,
                    unsigned char out[32])
{
	util_hmac_sha256(key, key_len, data, len, out);
}

/* ------------------------------------------------------------------------ */
/* CRC and signatures (shared reference vectors V4 and V5)                  */
/* ------------------------------------------------------------------------ */

static const char consumer_secret[] = "test_consumer_secret";

static void test_crc_vectors(void **state)
{
	char out[X_CRC_RESPONSE_LEN + 1];
	(void)state;

	x_crc_response(consumer_secret, strlen(consumer_secret), "token", hmac_cb, out);
	assert_string_equal(out, "{\"response_token\":\"sha256="
	                         "cQB9Gn3y9GPSpW3hYmWu8XsaxJVI6brdGVlxu9MhWFc=\"}");
	x_crc_response(consumer_secret, strlen(consumer_secret), "abc123", hmac_cb, out);
	assert_string_equal(out, "{\"response_token\":\"sha256="
	                         "NRSmW12qpe3CEF8MYyBrEyg562XPUUrrQ1iu+H6dKZs=\"}");
}

static const char v5_body[] =
	"{\"for_user_id\":\"930524282358325248\",\"tweet_delete_events\":[{\"status\":"
	"{\"id\":\"1045405559317569537\",\"user_id\":\"930524282358325248\"},"
	"\"timestamp_ms\":\"1432228155593\"}]}";
static const char v5_sig[] = "sha256=21eUCbwiWnl45N/tJghW4DD9yIiUvrDZdyVxrp/41ZY=";

static x_sig_result verify(const char *header, const char *body)
{
	return x_verify_signature(header, consumer_secret, strlen(consumer_secret), body,
	                          strlen(body), hmac_cb, util_secure_equals);
}

static void test_signature_vector(void **state)
{
	(void)state;
	assert_int_equal(strlen(v5_body), 162);
	assert_int_equal(verify(v5_sig, v5_body), X_SIG_OK);
}

static void test_signature_refusals(void **state)
{
	char body[sizeof(v5_body) + 1];
	char sig[sizeof(v5_sig)];
	(void)state;

	assert_int_equal(verify(NULL, v5_body), X_SIG_MISSING);
	assert_int_equal(verify("", v5_body), X_SIG_BAD);
	assert_int_equal(verify(v5_sig + 7, v5_body), X_SIG_BAD);            /* no prefix */
	assert_int_equal(verify("sha1=21eUCbwiWnl45N/tJghW4DD9yIiUvrDZdyVxrp/41ZY=", v5_body),
	                 X_SIG_BAD);
	/* One character of the MAC changed. */
	memcpy(sig, v5_sig, sizeof(sig));
	sig[10] = sig[10] == 'A' ? 'B' : 'A';
	assert_int_equal(verify(sig, v5_body), X_SIG_BAD);
	/* The same JSON with one more space: the signature covers raw bytes. */
	snprintf(body, sizeof(body), "{ %s", v5_body + 1);
	assert_int_equal(verify(v5_sig, body), X_SIG_BAD);
	/* Another secret. */
	assert_int_equal(x_verify_signature(v5_sig, "other", 5, v5_body, strlen(v5_body), hmac_cb,
	                                    util_secure_equals),
	                 X_SIG_BAD);
}

/* ------------------------------------------------------------------------ */
/* Account Activity                                                         */
/* ------------------------------------------------------------------------ */

/* The zammad capture of a mention (shared reference section 6.4), trimmed. */
static const char mention[] =
	"{\"for_user_id\":\"2975699229\",\"user_has_blocked\":false,\"tweet_create_events\":[{"
	"\"created_at\":\"Fri Dec 13 04:48:09 +0000 2019\",\"id\":1205348660982083584,"
	"\"id_str\":\"1205348660982083584\","
	"\"text\":\"@ScruffyMcG This is a test of Twitter API webhooks.\",\"truncated\":false,"
	"\"in_reply_to_status_id\":null,\"in_reply_to_status_id_str\":null,"
	"\"in_reply_to_user_id\":2975699229,\"in_reply_to_user_id_str\":\"2975699229\","
	"\"in_reply_to_screen_name\":\"ScruffyMcG\",\"user\":{\"id\":1205290247124217856,"
	"\"id_str\":\"1205290247124217856\",\"name\":\"pennbrooke\",\"screen_name\":\"pennbrooke1\","
	"\"followers_count\":1,\"verified\":false},\"timestamp_ms\":\"1576212489730\"}]}";

static void test_mention(void **state)
{
	capture c;
	(void)state;

	accept(mention, &c, 1);
	seen_event *e = &c.ev[0];
	assert_int_equal(e->size, sizeof(parley_event));
	assert_int_equal(e->type, PARLEY_EVENT_MESSAGE_CREATED);
	assert_string_equal(e->dedupe_key, "tweet:1205348660982083584");
	assert_string_equal(e->external_id, "1205348660982083584");
	assert_string_equal(e->author_id, CUSTOMER);
	assert_string_equal(e->author_handle, "pennbrooke1");
	assert_string_equal(e->author_name, "pennbrooke");
	assert_string_equal(e->profile_json, "{\"followers_count\":1,\"verified\":false}");
	assert_string_equal(e->text, "@ScruffyMcG This is a test of Twitter API webhooks.");
	assert_int_equal(e->visibility, PARLEY_VISIBILITY_PUBLIC);
	/* A tweet that answers nothing starts its own thread. */
	assert_string_equal(e->thread_id, "1205348660982083584");
	assert_null(e->in_reply_to);
	assert_int_equal(e->time_ms, 1576212489730LL);
	assert_int_equal(e->from_brand, 0);
	assert_non_null(strstr(e->raw_json, "\"id_str\":\"1205348660982083584\""));
	capture_free(&c);
}

static void test_ids_never_go_through_a_double(void **state)
{
	capture c;
	(void)state;

	/* Only numeric ids, above 2^53: a double would round them. */
	accept("{\"tweet_create_events\":[{\"id\":1205348660982083585,\"text\":\"x\","
	       "\"in_reply_to_status_id\":1205348660982083583,"
	       "\"user\":{\"id\":9007199254740993}}]}", &c, 1);
	assert_string_equal(c.ev[0].external_id, "1205348660982083585");
	assert_string_equal(c.ev[0].in_reply_to, "1205348660982083583");
	assert_string_equal(c.ev[0].thread_id, "1205348660982083583");
	assert_string_equal(c.ev[0].author_id, "9007199254740993");
	capture_free(&c);
}

static void test_reply_threads_on_its_parent_and_times_from_created_at(void **state)
{
	capture c;
	(void)state;

	accept("{\"for_user_id\":\"2975699229\",\"tweet_create_events\":[{"
	       "\"id_str\":\"1205348660982083590\",\"text\":\"still broken\","
	       "\"created_at\":\"Fri Dec 13 04:48:09 +0000 2019\","
	       "\"in_reply_to_status_id_str\":\"1205348660982083584\","
	       "\"user\":{\"id_str\":\"1205290247124217856\"}}]}", &c, 1);
	assert_string_equal(c.ev[0].thread_id, "1205348660982083584");
	assert_string_equal(c.ev[0].in_reply_to, "1205348660982083584");
	assert_int_equal(c.ev[0].time_ms, 1576212489000LL);
	assert_null(c.ev[0].profile_json);
	capture_free(&c);
}

static void test_long_tweet_uses_extended_full_text(void **state)
{
	capture c;
	(void)state;

	accept("{\"tweet_create_events\":[{\"id_str\":\"11\",\"truncated\":true,"
	       "\"text\":\"My parcel has been stuck for a week and nobody\\u2026 https://t.co/x\","
	       "\"extended_tweet\":{\"full_text\":\"My parcel has been stuck for a week and "
	       "nobody answers the phone. Order 12345.\"},\"user\":{\"id_str\":\"22\"}}]}", &c, 1);
	assert_string_equal(c.ev[0].text, "My parcel has been stuck for a week and nobody answers "
	                                  "the phone. Order 12345.");
	capture_free(&c);
}

static void test_own_tweet_is_from_brand(void **state)
{
	capture c;
	(void)state;

	accept("{\"for_user_id\":\"2975699229\",\"tweet_create_events\":[{"
	       "\"id_str\":\"1205348660982083600\",\"text\":\"@pennbrooke1 sorry, DM us\","
	       "\"in_reply_to_status_id_str\":\"1205348660982083584\","
	       "\"user\":{\"id_str\":\"2975699229\",\"screen_name\":\"ScruffyMcG\"}}]}", &c, 1);
	assert_int_equal(c.ev[0].from_brand, 1);
	assert_string_equal(c.ev[0].in_reply_to, "1205348660982083584");
	capture_free(&c);

	/* for_user_id alone also identifies the brand's account. */
	memset(&c, 0, sizeof(c));
	c.refuse_at = SIZE_MAX;
	x_parse_stats st;
	x_parse_error err;
	const char *body = "{\"for_user_id\":\"77\",\"tweet_create_events\":[{\"id_str\":\"5\","
	                   "\"text\":\"t\",\"user\":{\"id_str\":\"77\"}}]}";
	assert_true(x_parse_activity(body, strlen(body), NULL, collect, &c, &st, &err));
	assert_int_equal(c.n, 1);
	assert_int_equal(c.ev[0].from_brand, 1);
	capture_free(&c);
}

static void test_retweet_is_skipped(void **state)
{
	capture c;
	x_parse_stats st;
	x_parse_error err;
	(void)state;

	assert_true(activity("{\"tweet_create_events\":[{\"id_str\":\"12\",\"text\":\"RT @b: hi\","
	                     "\"retweeted_status\":{\"id_str\":\"10\"},\"user\":{\"id_str\":\"22\"}}]}",
	                     &c, &st, &err));
	assert_int_equal(c.n, 0);
	assert_int_equal(st.skipped, 1);
	assert_string_equal(st.first_skip, "retweet");
	capture_free(&c);
}

static void test_user_has_blocked_string_or_boolean(void **state)
{
	static const char *const blocked[] = { "true", "\"true\"" };
	static const char *const not_blocked[] = { "false", "\"false\"", "null", "1" };
	char body[512];
	capture c;
	(void)state;

	for (size_t i = 0; i < 2; i++) {
		snprintf(body, sizeof(body), "{\"user_has_blocked\":%s,\"tweet_create_events\":[{"
		         "\"id_str\":\"5\",\"text\":\"t\",\"user\":{\"id_str\":\"6\"}}]}", blocked[i]);
		accept(body, &c, 1);
		assert_string_equal(c.ev[0].profile_json, "{\"user_has_blocked\":true}");
		capture_free(&c);
	}
	for (size_t i = 0; i < 4; i++) {
		snprintf(body, sizeof(body), "{\"user_has_blocked\":%s,\"tweet_create_events\":[{"
		         "\"id_str\":\"5\",\"text\":\"t\",\"user\":{\"id_str\":\"6\"}}]}",
		         not_blocked[i]);
		accept(body, &c, 1);
		assert_null(c.ev[0].profile_json);
		capture_free(&c);
	}
}

/* The zammad capture of an incoming DM (shared reference section 6.5). */
static const char dm_in[] =
	"{\"for_user_id\":\"2975699229\",\"direct_message_events\":[{\"type\":\"message_create\","
	"\"id\":\"1206724334791753732\",\"created_timestamp\":\"1576540475925\","
	"\"message_create\":{\"target\":{\"recipient_id\":\"2975699229\"},"
	"\"sender_id\":\"1205290247124217856\",\"message_data\":{\"text\":\"Yes, you are!\","
	"\"entities\":{\"hashtags\":[],\"symbols\":[],\"user_mentions\":[],\"urls\":[]}}}}],"
	"\"users\":{\"1205290247124217856\":{\"id\":\"1205290247124217856\",\"name\":\"pennbrooke\","
	"\"screen_name\":\"pennbrooke1\",\"followers_count\":1},"
	"\"2975699229\":{\"id\":\"2975699229\",\"name\":\"Ryan Lue\",\"screen_name\":\"ScruffyMcG\"}}}";

static void test_dm_incoming(void **state)
{
	capture c;
	(void)state;

	accept(dm_in, &c, 1);
	seen_event *e = &c.ev[0];
	assert_int_equal(e->type, PARLEY_EVENT_MESSAGE_CREATED);
	assert_string_equal(e->dedupe_key, "dm:1206724334791753732");
	assert_string_equal(e->external_id, "1206724334791753732");
	assert_string_equal(e->author_id, CUSTOMER);
	assert_string_equal(e->author_handle, "pennbrooke1");
	assert_string_equal(e->author_name, "pennbrooke");
	assert_string_equal(e->profile_json, "{\"followers_count\":1}");
	assert_string_equal(e->text, "Yes, you are!");
	assert_int_equal(e->visibility, PARLEY_VISIBILITY_PRIVATE);
	/* The smaller id first, compared as numbers (10 digits < 19 digits). */
	assert_string_equal(e->thread_id, BRAND "-" CUSTOMER);
	assert_null(e->in_reply_to);
	assert_int_equal(e->time_ms, 1576540475925LL);
	assert_int_equal(e->from_brand, 0);
	capture_free(&c);
}

static void test_dm_outgoing_is_from_brand_in_the_same_thread(void **state)
{
	capture c;
	(void)state;

	accept("{\"for_user_id\":\"2975699229\",\"direct_message_events\":[{"
	       "\"type\":\"message_create\",\"id\":\"1206724334791753740\","
	       "\"created_timestamp\":\"1576540476000\",\"message_create\":{"
	       "\"target\":{\"recipient_id\":\"1205290247124217856\"},"
	       "\"sender_id\":\"2975699229\",\"message_data\":{\"text\":\"How can we help?\"}}}],"
	       "\"users\":{}}", &c, 1);
	assert_int_equal(c.ev[0].from_brand, 1);
	assert_string_equal(c.ev[0].author_id, BRAND);
	assert_string_equal(c.ev[0].thread_id, BRAND "-" CUSTOMER);
	capture_free(&c);
}

static void test_dm_indicators_are_skipped(void **state)
{
	capture c;
	x_parse_stats st;
	x_parse_error err;
	(void)state;

	assert_true(activity("{\"direct_message_events\":[{\"type\":\"message_create\",\"id\":\"1\"}],"
	                     "\"direct_message_indicate_typing_events\":[{\"created_timestamp\":\"1\","
	                     "\"sender_id\":\"2\",\"target\":{\"recipient_id\":\"3\"}}]}",
	                     &c, &st, &err));
	assert_int_equal(c.n, 0);
	assert_int_equal(st.skipped, 1);   /* the DM without sender and recipient */
	assert_int_equal(st.unknown, 1);
	assert_string_equal(st.first_unknown, "direct_message_indicate_typing_events");
	capture_free(&c);
}

static void test_dm_conversation_ids(void **state)
{
	char out[X_MAX_DM_CONVERSATION_LEN + 1];
	(void)state;

	assert_true(x_dm_conversation_id(CUSTOMER, BRAND, out));
	assert_string_equal(out, BRAND "-" CUSTOMER);
	assert_true(x_dm_conversation_id(BRAND, CUSTOMER, out));
	assert_string_equal(out, BRAND "-" CUSTOMER);
	assert_true(x_dm_conversation_id("9", "10", out));
	assert_string_equal(out, "9-10");
	assert_true(x_dm_conversation_id("18446744073709551615", "18446744073709551614", out));
	assert_string_equal(out, "18446744073709551614-18446744073709551615");
	assert_false(x_dm_conversation_id("12a", "10", out));
	assert_false(x_dm_conversation_id("", "10", out));
	assert_false(x_dm_conversation_id("123456789012345678901", "10", out));
}

static void test_tweet_delete_keeps_the_id(void **state)
{
	capture c;
	(void)state;

	accept(v5_body, &c, 1);
	seen_event *e = &c.ev[0];
	assert_int_equal(e->type, PARLEY_EVENT_MESSAGE_DELETED);
	assert_string_equal(e->dedupe_key, "tweet_delete:1045405559317569537");
	assert_string_equal(e->external_id, "1045405559317569537");
	assert_string_equal(e->author_id, "930524282358325248");
	assert_int_equal(e->time_ms, 1432228155593LL);
	assert_int_equal(e->from_brand, 1);   /* for_user_id deleted its own tweet */
	assert_null(e->text);
	capture_free(&c);
}

static void test_batch_and_replay(void **state)
{
	static const char batch[] =
		"{\"for_user_id\":\"2975699229\",\"tweet_create_events\":["
		"{\"id_str\":\"101\",\"text\":\"a\",\"user\":{\"id_str\":\"7\"}},"
		"{\"id_str\":\"102\",\"text\":\"b\",\"in_reply_to_status_id_str\":\"101\","
		"\"user\":{\"id_str\":\"8\"}}],"
		"\"direct_message_events\":[{\"type\":\"message_create\",\"id\":\"103\","
		"\"message_create\":{\"sender_id\":\"7\",\"target\":{\"recipient_id\":\"2975699229\"},"
		"\"message_data\":{\"text\":\"c\"}}}],"
		"\"tweet_delete_events\":[{\"status\":{\"id\":\"104\",\"user_id\":\"2975699229\"}}]}";
	capture a, b;
	(void)state;

	accept(batch, &a, 4);
	assert_string_equal(a.ev[0].dedupe_key, "tweet:101");
	assert_string_equal(a.ev[1].dedupe_key, "tweet:102");
	assert_string_equal(a.ev[1].thread_id, "101");
	assert_string_equal(a.ev[2].dedupe_key, "dm:103");
	assert_string_equal(a.ev[2].thread_id, "7-2975699229");
	assert_string_equal(a.ev[3].dedupe_key, "tweet_delete:104");
	/* A replay yields the same keys: the core stores nothing twice. */
	accept(batch, &b, 4);
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(a.ev[i].dedupe_key, b.ev[i].dedupe_key);
	capture_free(&a);
	capture_free(&b);
}

static void test_unicode_escapes_and_surrogate_pairs(void **state)
{
	capture c;
	(void)state;

	accept("{\"tweet_create_events\":[{\"id_str\":\"5\",\"user\":{\"id_str\":\"6\","
	       "\"name\":\"J\\u00fcrgen\"},\"text\":\"\\u00e4\\u00f6\\u00e5 \\ud83d\\ude00\"}]}", &c, 1);
	assert_string_equal(c.ev[0].text, "\xc3\xa4\xc3\xb6\xc3\xa5 \xf0\x9f\x98\x80");
	assert_string_equal(c.ev[0].author_name, "J\xc3\xbcrgen");
	capture_free(&c);
}

static void test_unknown_event_types_are_accepted(void **state)
{
	capture c;
	x_parse_stats st;
	x_parse_error err;
	(void)state;

	assert_true(activity("{\"for_user_id\":\"2975699229\",\"favorite_events\":[{\"id\":\"x\"}],"
	                     "\"follow_events\":[]}", &c, &st, &err));
	assert_int_equal(c.n, 0);
	assert_int_equal(st.unknown, 2);
	assert_string_equal(st.first_unknown, "favorite_events");
	capture_free(&c);
	/* An empty object is a valid (if useless) delivery. */
	assert_true(activity("{}", &c, &st, &err));
	assert_int_equal(c.n, 0);
	capture_free(&c);
}

static void test_items_without_ids_are_skipped(void **state)
{
	capture c;
	x_parse_stats st;
	x_parse_error err;
	(void)state;

	assert_true(activity("{\"tweet_create_events\":[7,{\"text\":\"no id\"},"
	                     "{\"id_str\":\"1.5\",\"user\":{\"id_str\":\"2\"}},"
	                     "{\"id_str\":\"9\",\"user\":{\"id_str\":\"-2\"}},"
	                     "{\"id_str\":\"10\",\"text\":\"ok\",\"user\":{\"id_str\":\"2\"}}],"
	                     "\"tweet_delete_events\":[{\"status\":{}}]}", &c, &st, &err));
	assert_int_equal(c.n, 1);
	assert_string_equal(c.ev[0].external_id, "10");
	assert_int_equal(st.skipped, 5);
	capture_free(&c);
}

static void test_malformed_bodies_are_refused(void **state)
{
	char truncated[sizeof(mention)];
	(void)state;

	memcpy(truncated, mention, sizeof(mention));
	truncated[sizeof(mention) / 2] = '\0';
	assert_refused(truncated, "invalid_json", "the body must be a JSON object");
	assert_refused("", "invalid_json", NULL);
	assert_refused("[]", "invalid_json", NULL);
	assert_refused("\"tweet\"", "invalid_json", NULL);
	assert_refused("{\"tweet_create_events\":{}}", "invalid_field",
	               "tweet_create_events: must be an array");
	assert_refused("{\"direct_message_events\":\"x\"}", "invalid_field",
	               "direct_message_events: must be an array");
	assert_refused("{\"tweet_delete_events\":1}", "invalid_field",
	               "tweet_delete_events: must be an array");
}

static void test_refused_event_fails_the_parse(void **state)
{
	capture c;
	x_parse_stats st;
	x_parse_error err;
	const char *body = "{\"tweet_create_events\":[{\"id_str\":\"1\",\"user\":{\"id_str\":\"2\"}},"
	                   "{\"id_str\":\"3\",\"user\":{\"id_str\":\"2\"}}]}";
	(void)state;

	memset(&c, 0, sizeof(c));
	c.refuse_at = 1;
	assert_false(x_parse_activity(body, strlen(body), BRAND, collect, &c, &st, &err));
	assert_string_equal(err.code, "event_rejected");
	assert_int_equal(c.n, 1);
	capture_free(&c);
}

static void test_times(void **state)
{
	int64_t ms = 0;
	(void)state;

	assert_true(x_parse_v1_time("Fri Dec 13 04:48:09 +0000 2019", &ms));
	assert_int_equal(ms, 1576212489000LL);
	assert_true(x_parse_v1_time("Fri Dec 13 06:48:09 +0200 2019", &ms));
	assert_int_equal(ms, 1576212489000LL);
	assert_false(x_parse_v1_time("Fri Foo 13 04:48:09 +0000 2019", &ms));
	assert_false(x_parse_v1_time("Fri Dec 13 04:48:09 +0000 19", &ms));
	assert_false(x_parse_v1_time("Fri Feb 30 04:48:09 +0000 2019", &ms));
	assert_true(pu_rfc3339_ms("2019-12-13T04:48:09.000Z", &ms));
	assert_int_equal(ms, 1576212489000LL);
	assert_true(pu_rfc3339_ms("2019-12-13T04:48:09.25Z", &ms));
	assert_int_equal(ms, 1576212489250LL);
	assert_false(pu_rfc3339_ms("2019-12-13T04:48:09", &ms));
	assert_false(pu_rfc3339_ms("2019-12-13", &ms));
}

/* ------------------------------------------------------------------------ */
/* Recent search                                                            */
/* ------------------------------------------------------------------------ */

static const char search_page[] =
	"{\"data\":["
	"{\"id\":\"1860000000000000003\",\"text\":\"@someone acme lost my parcel again\","
	"\"author_id\":\"1205290247124217856\",\"created_at\":\"2026-11-23T10:00:00.000Z\","
	"\"conversation_id\":\"1860000000000000001\",\"in_reply_to_user_id\":\"42\","
	"\"referenced_tweets\":[{\"type\":\"replied_to\",\"id\":\"1860000000000000002\"}],"
	"\"edit_history_tweet_ids\":[\"1860000000000000003\"]},"
	"{\"id\":\"1860000000000000004\",\"text\":\"RT @x: acme is slow\","
	"\"author_id\":\"5\",\"conversation_id\":\"1860000000000000004\","
	"\"referenced_tweets\":[{\"type\":\"retweeted\",\"id\":\"1860000000000000000\"}]},"
	"{\"id\":\"1860000000000000005\",\"text\":\"acme news\",\"author_id\":\"2975699229\","
	"\"conversation_id\":\"1860000000000000005\","
	"\"note_tweet\":{\"text\":\"acme news, the whole long post\"}}],"
	"\"includes\":{\"users\":[{\"id\":\"1205290247124217856\",\"username\":\"pennbrooke1\","
	"\"name\":\"pennbrooke\"},{\"id\":\"2975699229\",\"username\":\"ScruffyMcG\","
	"\"name\":\"Ryan Lue\"}]},"
	"\"meta\":{\"newest_id\":\"1860000000000000005\",\"oldest_id\":\"1860000000000000003\","
	"\"result_count\":3,\"next_token\":\"b26v89c19zqg8o3fo7\"}}";

static void test_search_results(void **state)
{
	capture c;
	x_search_meta meta;
	x_parse_stats st;
	x_parse_error err;
	(void)state;

	memset(&c, 0, sizeof(c));
	c.refuse_at = SIZE_MAX;
	assert_true(x_parse_search(search_page, strlen(search_page), BRAND, collect, &c, &meta,
	                           &st, &err));
	assert_string_equal(meta.newest_id, "1860000000000000005");
	assert_string_equal(meta.next_token, "b26v89c19zqg8o3fo7");
	assert_int_equal(meta.result_count, 3);
	assert_int_equal(c.n, 2);
	assert_int_equal(st.skipped, 1);   /* the retweet */

	seen_event *e = &c.ev[0];
	assert_int_equal(e->type, PARLEY_EVENT_MESSAGE_CREATED);
	/* The same key as the webhook's: a tagged mention found by both is
	 * stored once. */
	assert_string_equal(e->dedupe_key, "tweet:1860000000000000003");
	assert_string_equal(e->external_id, "1860000000000000003");
	assert_string_equal(e->author_id, CUSTOMER);
	assert_string_equal(e->author_handle, "pennbrooke1");
	assert_string_equal(e->author_name, "pennbrooke");
	assert_string_equal(e->text, "@someone acme lost my parcel again");
	assert_int_equal(e->visibility, PARLEY_VISIBILITY_PUBLIC);
	assert_string_equal(e->thread_id, "1860000000000000001");
	assert_string_equal(e->in_reply_to, "1860000000000000002");
	assert_int_equal(e->time_ms, 1795428000000LL);
	assert_int_equal(e->from_brand, 0);

	e = &c.ev[1];
	assert_int_equal(e->from_brand, 1);
	assert_string_equal(e->text, "acme news, the whole long post");
	assert_string_equal(e->thread_id, "1860000000000000005");
	assert_null(e->in_reply_to);
	assert_int_equal(e->time_ms, 0);
	capture_free(&c);
}

static void test_search_empty_and_malformed(void **state)
{
	capture c;
	x_search_meta meta;
	x_parse_stats st;
	x_parse_error err;
	const char *empty = "{\"meta\":{\"result_count\":0}}";
	(void)state;

	memset(&c, 0, sizeof(c));
	c.refuse_at = SIZE_MAX;
	assert_true(x_parse_search(empty, strlen(empty), BRAND, collect, &c, &meta, &st, &err));
	assert_int_equal(c.n, 0);
	assert_string_equal(meta.newest_id, "");
	assert_string_equal(meta.next_token, "");
	assert_false(x_parse_search("{\"data\":", 8, BRAND, collect, &c, &meta, &st, &err));
	assert_string_equal(err.code, "invalid_json");
	assert_false(x_parse_search("{\"data\":{}}", 11, BRAND, collect, &c, &meta, &st, &err));
	assert_string_equal(err.code, "invalid_field");
	assert_int_equal(c.n, 0);
}

static void test_search_url(void **state)
{
	char *url;
	(void)state;

	url = x_search_url("http://127.0.0.1:8080/", "acme (late OR lost) -is:retweet", "1860000000000000005",
	                   NULL);
	assert_string_equal(url,
		"http://127.0.0.1:8080/2/tweets/search/recent"
		"?query=acme%20%28late%20OR%20lost%29%20-is%3Aretweet&max_results=100"
		"&since_id=1860000000000000005"
		"&tweet.fields=author_id%2Ccreated_at%2Cconversation_id%2Cin_reply_to_user_id"
		"%2Creferenced_tweets%2Cnote_tweet&expansions=author_id&user.fields=username%2Cname");
	free(url);
	url = x_search_url("https://api.x.com", "#acme", NULL, "tok en");
	assert_string_equal(url,
		"https://api.x.com/2/tweets/search/recent?query=%23acme&max_results=100"
		"&pagination_token=tok%20en"
		"&tweet.fields=author_id%2Ccreated_at%2Cconversation_id%2Cin_reply_to_user_id"
		"%2Creferenced_tweets%2Cnote_tweet&expansions=author_id&user.fields=username%2Cname");
	free(url);
}

/* ------------------------------------------------------------------------ */
/* OAuth 1.0a: X's "Creating a signature" worked example                    */
/* ------------------------------------------------------------------------ */

static const x_oauth_param doc_params[] = {
	{ "status", "Hello Ladies + Gentlemen, a signed OAuth request!" },
	{ "include_entities", "true" },
};

static x_oauth_request doc_request(void)
{
	x_oauth_request r = {
		.method = "POST",
		.base_url = "https://api.twitter.com/1.1/statuses/update.json",
		.params = doc_params,
		.n_params = 2,
		.consumer_key = "xvz1evFS4wEEPTGEFPHBog",
		.consumer_secret = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
		.token = "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
		.token_secret = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
		.nonce = "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
		.timestamp = "1318622958",
	};
	return r;
}

static void test_oauth_base_string(void **state)
{
	x_oauth_request r = doc_request();
	char *base = x_oauth_base_string(&r);
	(void)state;

	assert_string_equal(base,
		"POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&"
		"include_entities%3Dtrue%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26"
		"oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26"
		"oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26"
		"oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26"
		"oauth_version%3D1.0%26status%3DHello%2520Ladies%2520%252B%2520Gentlemen%252C%2520a"
		"%2520signed%2520OAuth%2520request%2521");
	free(base);
}

static void test_oauth_signature(void **state)
{
	x_oauth_request r = doc_request();
	char sig[X_OAUTH_SIGNATURE_LEN + 1];
	(void)state;

	assert_true(x_oauth_signature(&r, sig));
	assert_string_equal(sig, "hCtSmYh+iHYCEqBWrE7C7hYmtUk=");
}

static void test_oauth_header(void **state)
{
	x_oauth_request r = doc_request();
	char *h = x_oauth_header(&r);
	(void)state;

	assert_string_equal(h,
		"Authorization: OAuth oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\", "
		"oauth_nonce=\"kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg\", "
		"oauth_signature=\"hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D\", "
		"oauth_signature_method=\"HMAC-SHA1\", oauth_timestamp=\"1318622958\", "
		"oauth_token=\"370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb\", "
		"oauth_version=\"1.0\"");
	free(h);
}

/* How the channel signs a v2 JSON POST: no parameters besides oauth_*. The
 * expected value was computed independently (Python hmac, base64). */
static void test_oauth_json_post_signs_no_body(void **state)
{
	x_oauth_request r = doc_request();
	char sig[X_OAUTH_SIGNATURE_LEN + 1];
	char *base;
	(void)state;

	r.base_url = "https://api.x.com/2/tweets";
	r.params = NULL;
	r.n_params = 0;
	base = x_oauth_base_string(&r);
	assert_string_equal(base,
		"POST&https%3A%2F%2Fapi.x.com%2F2%2Ftweets&oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26"
		"oauth_nonce%3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26"
		"oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1318622958%26"
		"oauth_token%3D370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0");
	free(base);
	assert_true(x_oauth_signature(&r, sig));
	assert_string_equal(sig, "lr+tV/DKclEvXKVjG6tgaSSLV0k=");
}

static void test_percent_encoding(void **state)
{
	pu_buf b = { 0 };
	char *s;
	(void)state;

	x_oauth_percent_encode(&b, "Ladies + Gentlemen*~-._!\xe2\x98\x83/");
	s = pu_buf_take(&b);
	assert_string_equal(s, "Ladies%20%2B%20Gentlemen%2A~-._%21%E2%98%83%2F");
	free(s);
}

static void test_nonce(void **state)
{
	char a[33], b[33];
	(void)state;

	assert_true(x_oauth_nonce(a));
	assert_true(x_oauth_nonce(b));
	assert_int_equal(strlen(a), 32);
	assert_int_equal(strspn(a, "0123456789abcdef"), 32);
	assert_string_not_equal(a, b);
}

/* ------------------------------------------------------------------------ */
/* Outbound bodies and answers                                              */
/* ------------------------------------------------------------------------ */

static void test_outbound_bodies(void **state)
{
	char *s;
	(void)state;

	s = x_reply_body("Sorry! \"Order\" \xf0\x9f\x98\x80\n", "1205348660982083584");
	assert_string_equal(s, "{\"text\":\"Sorry! \\\"Order\\\" \xf0\x9f\x98\x80\\n\","
	                       "\"reply\":{\"in_reply_to_tweet_id\":\"1205348660982083584\"}}");
	free(s);
	s = x_dm_body("Hi, what is your order number?");
	assert_string_equal(s, "{\"text\":\"Hi, what is your order number?\"}");
	free(s);
	assert_null(x_dm_body("bad \xff utf-8"));
	assert_null(x_reply_body("bad \xc3", "1"));
}

static void test_send_requests(void **state)
{
	x_send_request r;
	(void)state;

	assert_int_equal(x_build_send("https://api.x.com/", 0, CUSTOMER, "1205348660982083584",
	                              "We are on it \xc3\xa4", &r), X_BUILD_OK);
	assert_string_equal(r.url, "https://api.x.com/2/tweets");
	assert_string_equal(r.body, "{\"text\":\"We are on it \xc3\xa4\","
	                            "\"reply\":{\"in_reply_to_tweet_id\":\"1205348660982083584\"}}");
	free(r.url);
	free(r.body);

	assert_int_equal(x_build_send("http://127.0.0.1:8080", 1, CUSTOMER, NULL, "DM us", &r),
	                 X_BUILD_OK);
	assert_string_equal(r.url, "http://127.0.0.1:8080/2/dm_conversations/with/"
	                           CUSTOMER "/messages");
	assert_string_equal(r.body, "{\"text\":\"DM us\"}");
	free(r.url);
	free(r.body);

	/* Refused before any request: nothing to free. */
	assert_int_equal(x_build_send("https://api.x.com", 0, CUSTOMER, NULL, "hi", &r),
	                 X_BUILD_BAD_TARGET);
	assert_null(r.url);
	assert_int_equal(x_build_send("https://api.x.com", 1, "@someone", NULL, "hi", &r),
	                 X_BUILD_BAD_TARGET);
	assert_int_equal(x_build_send("https://api.x.com", 1, "1/../x", NULL, "hi", &r),
	                 X_BUILD_BAD_TARGET);
	assert_int_equal(x_build_send("https://api.x.com", 1, CUSTOMER, NULL, "", &r),
	                 X_BUILD_BAD_TEXT);
	assert_int_equal(x_build_send("https://api.x.com", 1, CUSTOMER, NULL, NULL, &r),
	                 X_BUILD_BAD_TEXT);
	assert_int_equal(x_build_send("https://api.x.com", 0, CUSTOMER, "1", "bad \xff", &r),
	                 X_BUILD_BAD_TEXT);
	assert_null(r.url);
	assert_null(r.body);
}

static void test_classify_success(void **state)
{
	x_send_result r;
	const char *tweet = "{\"data\":{\"id\":\"1445880548472328192\",\"text\":\"Hello\","
	                    "\"edit_history_tweet_ids\":[\"1445880548472328192\"]}}";
	const char *dm_wrapped = "{\"data\":{\"dm_conversation_id\":\"" BRAND "-" CUSTOMER "\","
	                         "\"dm_event_id\":\"1580705921830768647\"}}";
	const char *dm_bare = "{\"dm_conversation_id\":\"1346889436626259968\","
	                      "\"dm_event_id\":\"128341038123\"}";
	(void)state;

	x_classify_send(201, NULL, NULL, tweet, strlen(tweet), "reply", 0, &r);
	assert_int_equal(r.outcome, PARLEY_OK);
	assert_string_equal(r.external_id, "1445880548472328192");
	assert_string_equal(r.dm_conversation_id, "");
	assert_string_equal(r.reason, "");

	x_classify_send(201, NULL, NULL, dm_wrapped, strlen(dm_wrapped), "direct message", 0, &r);
	assert_int_equal(r.outcome, PARLEY_OK);
	assert_string_equal(r.external_id, "1580705921830768647");
	assert_string_equal(r.dm_conversation_id, BRAND "-" CUSTOMER);

	x_classify_send(201, NULL, NULL, dm_bare, strlen(dm_bare), "direct message", 0, &r);
	assert_int_equal(r.outcome, PARLEY_OK);
	assert_string_equal(r.external_id, "128341038123");
	assert_string_equal(r.dm_conversation_id, "1346889436626259968");

	/* A 2xx without a body still counts as sent. */
	x_classify_send(200, NULL, NULL, "", 0, "reply", 0, &r);
	assert_int_equal(r.outcome, PARLEY_OK);
	assert_string_equal(r.external_id, "");
}

static void test_classify_rate_limit(void **state)
{
	x_send_result r;
	const char *body = "{\"title\":\"Too Many Requests\",\"detail\":\"Too Many Requests\","
	                   "\"type\":\"about:blank\",\"status\":429}";
	const int64_t now = 1795428000000LL;
	(void)state;

	x_classify_send(429, NULL, "1795428060", body, strlen(body), "reply", now, &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_int_equal(r.retry_at_ms, 1795428060000LL);
	assert_string_equal(r.reason, "X rate limit reached sending the reply: Too Many Requests");

	x_classify_send(429, NULL, NULL, "{\"errors\":[{\"code\":88,\"message\":\"Rate limit "
	                "exceeded\"}]}", 56, "direct message", now, &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_int_equal(r.retry_at_ms, 0);
	assert_string_equal(r.reason, "X rate limit reached sending the direct message: "
	                              "Rate limit exceeded");
	/* A reset already past, garbage, and one far away (capped at a day). */
	assert_int_equal(x_rate_limit_reset_ms("1795427000", now), 0);
	assert_int_equal(x_rate_limit_reset_ms("soon", now), 0);
	assert_int_equal(x_rate_limit_reset_ms("99999999999999999999999", now),
	                 now + 24LL * 3600 * 1000);
	/* Sixteen digits used to slip under the digit check and overflow * 1000. */
	assert_int_equal(x_rate_limit_reset_ms("9223372036854779", now),
	                 now + 24LL * 3600 * 1000);
}

static void test_classify_transient(void **state)
{
	x_send_result r;
	(void)state;

	x_classify_send(503, NULL, NULL, "<html>busy</html>", 17, "reply", 0, &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_int_equal(r.retry_at_ms, 0);
	assert_string_equal(r.reason, "X answered 503 to the reply");
	x_classify_send(0, "Timeout was reached", NULL, NULL, 0, "direct message", 0, &r);
	assert_int_equal(r.outcome, PARLEY_RETRY);
	assert_string_equal(r.reason, "X did not answer the direct message: Timeout was reached");
}

static void test_classify_permanent(void **state)
{
	x_send_result r;
	const char *dup = "{\"detail\":\"You are not allowed to create a Tweet with duplicate "
	                  "content.\",\"type\":\"about:blank\",\"title\":\"Forbidden\",\"status\":403}";
	const char *cant_dm = "{\"errors\":[{\"message\":\"You cannot send messages to users who "
	                      "are not following you.\",\"code\":150}]}";
	const char *title_only = "{\"title\":\"Unauthorized\",\"type\":\"about:blank\","
	                         "\"status\":401,\"detail\":\"\"}";
	(void)state;

	x_classify_send(403, NULL, NULL, dup, strlen(dup), "reply", 0, &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_string_equal(r.reason, "X refused the reply (HTTP 403): You are not allowed to "
	                              "create a Tweet with duplicate content.");
	x_classify_send(403, NULL, NULL, cant_dm, strlen(cant_dm), "direct message", 0, &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_string_equal(r.reason, "X refused the direct message (HTTP 403): You cannot send "
	                              "messages to users who are not following you.");
	x_classify_send(401, NULL, NULL, title_only, strlen(title_only), "reply", 0, &r);
	assert_string_equal(r.reason, "X refused the reply (HTTP 401): Unauthorized");
	x_classify_send(400, NULL, NULL, "not json\x01", 9, "reply", 0, &r);
	assert_int_equal(r.outcome, PARLEY_FAIL);
	assert_string_equal(r.reason, "X refused the reply (HTTP 400): no error detail given");
}

static void test_excerpt(void **state)
{
	char out[16];
	(void)state;

	pu_excerpt("a\nb\xff" "c\xc3\xa4", 7, 10, out, sizeof(out));
	assert_string_equal(out, "a?b?c\xc3\xa4");
	pu_excerpt("abc\xc3\xa4", 5, 4, out, sizeof(out));
	assert_string_equal(out, "abc");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc_vectors),
		cmocka_unit_test(test_signature_vector),
		cmocka_unit_test(test_signature_refusals),
		cmocka_unit_test(test_mention),
		cmocka_unit_test(test_ids_never_go_through_a_double),
		cmocka_unit_test(test_reply_threads_on_its_parent_and_times_from_created_at),
		cmocka_unit_test(test_long_tweet_uses_extended_full_text),
		cmocka_unit_test(test_own_tweet_is_from_brand),
		cmocka_unit_test(test_retweet_is_skipped),
		cmocka_unit_test(test_user_has_blocked_string_or_boolean),
		cmocka_unit_test(test_dm_incoming),
		cmocka_unit_test(test_dm_outgoing_is_from_brand_in_the_same_thread),
		cmocka_unit_test(test_dm_indicators_are_skipped),
		cmocka_unit_test(test_dm_conversation_ids),
		cmocka_unit_test(test_tweet_delete_keeps_the_id),
		cmocka_unit_test(test_batch_and_replay),
		cmocka_unit_test(test_unicode_escapes_and_surrogate_pairs),
		cmocka_unit_test(test_unknown_event_types_are_accepted),
		cmocka_unit_test(test_items_without_ids_are_skipped),
		cmocka_unit_test(test_malformed_bodies_are_refused),
		cmocka_unit_test(test_refused_event_fails_the_parse),
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_search_results),
		cmocka_unit_test(test_search_empty_and_malformed),
		cmocka_unit_test(test_search_url),
		cmocka_unit_test(test_oauth_base_string),
		cmocka_unit_test(test_oauth_signature),
		cmocka_unit_test(test_oauth_header),
		cmocka_unit_test(test_oauth_json_post_signs_no_body),
		cmocka_unit_test(test_percent_encoding),
		cmocka_unit_test(test_nonce),
		cmocka_unit_test(test_outbound_bodies),
		cmocka_unit_test(test_send_requests),
		cmocka_unit_test(test_classify_success),
		cmocka_unit_test(test_classify_rate_limit),
		cmocka_unit_test(test_classify_transient),
		cmocka_unit_test(test_classify_permanent),
		cmocka_unit_test(test_excerpt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
