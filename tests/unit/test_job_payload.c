/* test_job_payload.c - job payloads into the ABI structures: every builder
 * with good payloads (strings, integer ids, defaults) and a table of bad
 * ones, each refused with a reason that names the field. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "job_ops.h"
#include "job_payload.h"

/* Build `json` with fn; the payload stays alive in *payload (decref it). */
static bool build(job_payload_build_fn fn, const char *json, json_t **payload, job_call *call,
                  char *why, size_t whylen)
{
	json_error_t e;
	*payload = json_loads(json, 0, &e);
	if (*payload == NULL)
		fail_msg("bad test JSON %s: %s", json, e.text);
	why[0] = '\0';
	return fn(*payload, "idem-1", call, why, whylen);
}

static void test_send_with_every_field(void **state)
{
	json_t *p;
	job_call call;
	char why[256];
	assert_true(build(job_payload_send,
	                  "{\"conversation_id\": 812, \"visibility\": \"private\", \"recipient_id\": \"u-1\","
	                  " \"thread_id\": \"t-1\", \"in_reply_to\": \"m-0\", \"text\": \"hi\","
	                  " \"message_id\": 99, \"kind\": \"private_reply\", \"last_inbound_ms\": 1700000000000}",
	                  &p, &call, why, sizeof(why)));
	const parley_outbound_message *m = &call.u.send;
	assert_int_equal(m->size, sizeof(*m));
	assert_string_equal(m->idempotency_key, "idem-1");
	assert_string_equal(m->conversation_id, "812");        /* an integer id, as text */
	assert_int_equal(m->visibility, PARLEY_VISIBILITY_PRIVATE);
	assert_string_equal(m->recipient_id, "u-1");
	assert_string_equal(m->thread_id, "t-1");
	assert_string_equal(m->in_reply_to, "m-0");
	assert_string_equal(m->text, "hi");
	assert_string_equal(m->message_id, "99");
	assert_int_equal(m->kind, PARLEY_SEND_PRIVATE_REPLY);
	assert_int_equal(m->last_inbound_ms, 1700000000000LL);
	assert_ptr_equal(call.payload, p);
	job_call_clear(&call);
	json_decref(p);
}

static void test_send_defaults(void **state)
{
	json_t *p;
	job_call call;
	char why[256];
	assert_true(build(job_payload_send, "{\"conversation_id\": \"c\", \"visibility\": \"public\","
	                  " \"text\": \"x\", \"recipient_id\": null}", &p, &call, why, sizeof(why)));
	assert_null(call.u.send.recipient_id);
	assert_null(call.u.send.thread_id);
	assert_int_equal(call.u.send.kind, PARLEY_SEND_MESSAGE);
	assert_int_equal(call.u.send.last_inbound_ms, 0);
	job_call_clear(&call);
	json_decref(p);
}

static void test_open_ticket_links_conversation_customer_and_message(void **state)
{
	json_t *p;
	job_call call;
	char why[256];
	assert_true(build(job_payload_open_ticket,
	                  "{\"conversation\": {\"conversation_id\": \"c-1\", \"visibility\": \"private\","
	                  "  \"case_number\": \"PC-1\", \"channel_instance\": \"fb\", \"channel_kind\": \"meta\","
	                  "  \"category\": \"billing\", \"status\": \"open\","
	                  "  \"customer\": {\"customer_id\": 7, \"display_name\": \"Ann\", \"email\": \"a@b\"}},"
	                  " \"message\": {\"message_id\": \"m-1\", \"text\": \"help\", \"inbound\": 1,"
	                  "  \"created_ms\": 5},"
	                  " \"follow_up_of\": \"T-9\"}", &p, &call, why, sizeof(why)));
	const parley_ticket_request *t = &call.u.ticket;
	assert_ptr_equal(t->conversation, &call.conversation);
	assert_ptr_equal(t->first_message, &call.message);
	assert_string_equal(t->idempotency_key, "idem-1");
	assert_string_equal(t->follow_up_of, "T-9");
	assert_string_equal(t->conversation->case_number, "PC-1");
	assert_string_equal(t->conversation->channel_kind, "meta");
	assert_string_equal(t->conversation->customer->customer_id, "7");
	assert_string_equal(t->conversation->customer->email, "a@b");
	assert_null(t->conversation->customer->phone);
	/* The message's visibility defaults to the conversation's. */
	assert_int_equal(t->first_message->visibility, PARLEY_VISIBILITY_PRIVATE);
	assert_true(t->first_message->inbound);
	assert_int_equal(t->first_message->created_ms, 5);
	assert_string_equal(t->first_message->text, "help");
	job_call_clear(&call);
	json_decref(p);
}

static void test_append_and_message_visibility_of_its_own(void **state)
{
	json_t *p;
	job_call call;
	char why[256];
	assert_true(build(job_payload_append,
	                  "{\"external_ticket_id\": 4711, \"conversation\": {\"conversation_id\": \"c\","
	                  " \"visibility\": \"private\"}, \"message\": {\"message_id\": \"m\","
	                  " \"visibility\": \"public\", \"inbound\": false}}", &p, &call, why, sizeof(why)));
	assert_string_equal(call.u.append.external_ticket_id, "4711");
	assert_null(call.u.append.conversation->customer);
	assert_int_equal(call.u.append.message->visibility, PARLEY_VISIBILITY_PUBLIC);
	assert_false(call.u.append.message->inbound);
	job_call_clear(&call);
	json_decref(p);
}

static void test_notice_payload_json_is_its_payload_or_the_whole(void **state)
{
	json_t *p;
	job_call call;
	char why[256];
	assert_true(build(job_payload_notice,
	                  "{\"kind\": \"sink.failed\", \"title\": \"T\", \"text\": \"x\", \"url\": \"u\","
	                  " \"payload\": {\"job_id\": 5}}", &p, &call, why, sizeof(why)));
	assert_string_equal(call.u.notice.payload_json, "{\"job_id\":5}");
	assert_null(call.u.notice.conversation);
	assert_string_equal(call.u.notice.url, "u");
	job_call_clear(&call);
	json_decref(p);

	assert_true(build(job_payload_notice,
	                  "{\"kind\": \"k\", \"title\": \"T\", \"text\": \"x\","
	                  " \"conversation\": {\"conversation_id\": 3, \"visibility\": \"public\"}}",
	                  &p, &call, why, sizeof(why)));
	assert_non_null(call.u.notice.conversation);
	assert_string_equal(call.u.notice.conversation->conversation_id, "3");
	json_t *whole = json_loads(call.u.notice.payload_json, 0, NULL);
	assert_true(json_equal(whole, p));
	json_decref(whole);
	job_call_clear(&call);
	json_decref(p);
}

/* Refused payloads: the builder, the payload, the reason. */
static const struct bad_case {
	job_payload_build_fn fn;
	const char *json;
	const char *why;
} bad[] = {
	{ job_payload_send, "[1]", "invalid payload: (top level): expected an object, got array" },
	{ job_payload_send, "{\"visibility\": \"public\", \"text\": \"x\"}",
	  "invalid payload: conversation_id: required key missing" },
	{ job_payload_send, "{\"conversation_id\": null, \"visibility\": \"public\", \"text\": \"x\"}",
	  "invalid payload: conversation_id: required key missing" },
	{ job_payload_send, "{\"conversation_id\": 1.5, \"visibility\": \"public\", \"text\": \"x\"}",
	  "invalid payload: conversation_id: expected a string, got real" },
	{ job_payload_send, "{\"conversation_id\": 7, \"visibility\": \"private\"}",
	  "invalid payload: text: required key missing" },
	{ job_payload_send, "{\"conversation_id\": 7, \"visibility\": \"loud\", \"text\": \"x\"}",
	  "invalid payload: visibility: must be \"public\" or \"private\"" },
	{ job_payload_send, "{\"conversation_id\": 7, \"visibility\": \"public\", \"text\": \"x\", \"kind\": \"dm\"}",
	  "invalid payload: kind: must be \"message\" or \"private_reply\"" },
	{ job_payload_send, "{\"conversation_id\": 7, \"visibility\": \"public\", \"text\": \"x\","
	  " \"last_inbound_ms\": \"soon\"}", "invalid payload: last_inbound_ms: expected an integer, got string" },
	{ job_payload_open_ticket, "{\"conversation\": {\"conversation_id\": \"c\", \"visibility\": \"private\"}}",
	  "invalid payload: message: required key missing" },
	{ job_payload_open_ticket, "{\"message\": {\"message_id\": \"m\"}}",
	  "invalid payload: conversation: required key missing" },
	{ job_payload_open_ticket, "{\"conversation\": \"c\", \"message\": {\"message_id\": \"m\"}}",
	  "invalid payload: conversation: expected an object, got string" },
	{ job_payload_open_ticket, "{\"conversation\": {\"conversation_id\": \"c\", \"visibility\": \"loud\"},"
	  " \"message\": {\"message_id\": \"m\"}}",
	  "invalid payload: conversation.visibility: must be \"public\" or \"private\"" },
	{ job_payload_open_ticket, "{\"conversation\": {\"conversation_id\": \"c\", \"visibility\": \"public\","
	  " \"customer\": {\"email\": \"a@b\"}}, \"message\": {\"message_id\": \"m\"}}",
	  "invalid payload: conversation.customer.customer_id: required key missing" },
	{ job_payload_open_ticket, "{\"conversation\": {\"conversation_id\": \"c\", \"visibility\": \"public\","
	  " \"customer\": [1]}, \"message\": {\"message_id\": \"m\"}}",
	  "invalid payload: conversation.customer: expected an object, got array" },
	{ job_payload_open_ticket, "{\"conversation\": {\"conversation_id\": \"c\", \"visibility\": \"public\"},"
	  " \"message\": {\"text\": \"x\"}}", "invalid payload: message.message_id: required key missing" },
	{ job_payload_open_ticket, "{\"conversation\": {\"conversation_id\": \"c\", \"visibility\": \"public\"},"
	  " \"message\": {\"message_id\": \"m\", \"inbound\": \"yes\"}}",
	  "invalid payload: message.inbound: expected a boolean, got string" },
	{ job_payload_open_ticket, "{\"conversation\": {\"conversation_id\": \"c\", \"visibility\": \"public\"},"
	  " \"message\": {\"message_id\": \"m\", \"created_ms\": \"now\"}}",
	  "invalid payload: message.created_ms: expected an integer, got string" },
	{ job_payload_open_ticket, "{\"conversation\": {\"conversation_id\": \"c\", \"visibility\": \"public\"},"
	  " \"message\": {\"message_id\": \"m\", \"visibility\": \"shouting\"}}",
	  "invalid payload: message.visibility: must be \"public\" or \"private\"" },
	{ job_payload_append, "{\"message\": {\"message_id\": \"m\"}, \"conversation\": {"
	  " \"conversation_id\": \"c\", \"visibility\": \"public\"}}",
	  "invalid payload: external_ticket_id: required key missing" },
	{ job_payload_notice, "{\"kind\": \"x\", \"text\": \"t\"}", "invalid payload: title: required key missing" },
	{ job_payload_notice, "{\"kind\": \"x\", \"title\": \"t\", \"text\": \"t\", \"payload\": 3}",
	  "invalid payload: payload: expected an object, got integer" },
	{ job_payload_notice, "{\"kind\": \"x\", \"title\": \"t\", \"text\": \"t\","
	  " \"conversation\": {\"visibility\": \"public\"}}",
	  "invalid payload: conversation.conversation_id: required key missing" },
	{ job_payload_object, "\"text\"", "invalid payload: (top level): expected an object, got string" },
};

static void test_bad_payloads_name_the_field(void **state)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *p;
		job_call call;
		char why[256];
		json_error_t e;
		p = json_loads(bad[i].json, JSON_DECODE_ANY, &e);
		if (p == NULL)
			fail_msg("bad test JSON %s: %s", bad[i].json, e.text);
		if (bad[i].fn(p, "k", &call, why, sizeof(why)))
			fail_msg("case %zu accepted: %s", i, bad[i].json);
		if (strcmp(why, bad[i].why) != 0)
			fail_msg("case %zu: %s\n  got:  %s\n  want: %s", i, bad[i].json, why, bad[i].why);
		job_call_clear(&call);
		json_decref(p);
	}
}

static void test_reason_is_cut_to_its_buffer(void **state)
{
	json_t *p;
	job_call call;
	char why[16];
	assert_false(build(job_payload_send, "{}", &p, &call, why, sizeof(why)));
	assert_int_equal(strlen(why), sizeof(why) - 1);
	job_call_clear(&call);
	json_decref(p);
}

/* The operation table: every plugin operation and the core ones, and no
 * operation on a kind that does not have it. */
static void test_operation_table(void **state)
{
	static const struct { const char *kind, *instance, *op; job_payload_build_fn fn; parley_kind pk; } rows[] = {
		{ "channel", "site", "send", job_payload_send, PARLEY_KIND_CHANNEL },
		{ "sink", "zd", "open_ticket", job_payload_open_ticket, PARLEY_KIND_SINK },
		{ "sink", "zd", "append_message", job_payload_append, PARLEY_KIND_SINK },
		{ "notifier", "ops", "deliver", job_payload_notice, PARLEY_KIND_NOTIFIER },
		{ "core", "jobs", "noop", job_payload_object, 0 },
		{ "core", "assignment", "sweep", job_payload_object, 0 },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const job_op *op = job_op_find(rows[i].kind, rows[i].instance, rows[i].op);
		assert_non_null(op);
		assert_ptr_equal(op->build, rows[i].fn);
		assert_int_equal(op->plugin_kind, rows[i].pk);
		assert_non_null(op->invoke);
	}
	assert_null(job_op_find("channel", "site", "deliver"));
	assert_null(job_op_find("sink", "zd", "send"));
	assert_null(job_op_find("core", "other", "noop"));
	assert_null(job_op_find("core", "jobs", "send"));
	assert_null(job_op_find("core", "jobs", "sweep"));
	assert_null(job_op_find("robot", "x", "send"));
	size_t n;
	const char *const *core = job_op_core_targets(&n);
	assert_int_equal(n, 2);
	assert_string_equal(core[0], "core/jobs");
	assert_string_equal(core[1], "core/assignment");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_send_with_every_field),
		cmocka_unit_test(test_send_defaults),
		cmocka_unit_test(test_open_ticket_links_conversation_customer_and_message),
		cmocka_unit_test(test_append_and_message_visibility_of_its_own),
		cmocka_unit_test(test_notice_payload_json_is_its_payload_or_the_whole),
		cmocka_unit_test(test_bad_payloads_name_the_field),
		cmocka_unit_test(test_reason_is_cut_to_its_buffer),
		cmocka_unit_test(test_operation_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
