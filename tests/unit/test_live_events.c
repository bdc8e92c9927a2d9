/* test_live_events.c - the live event stream's pure parts: the SSE frame an
 * event becomes (and that nothing in it can end a field early), who sees an
 * event (instances, an agent's own events, admins only, one's own
 * presence), scopes shared per credential, and when a page may be
 * followed by more. The stream itself runs against the real daemon in
 * tests/e2e/test_api_events.py. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "live_internal.h"

static void test_a_frame_is_id_event_and_data_on_one_line_each(void **state)
{
	(void)state;
	char *buf = NULL;
	size_t cap = 0;
	live_event ev = { 42, "message.created", "site", 0, "{\"a\":1}", 7 };
	size_t len = live_frame(&buf, &cap, &ev);
	const char want[] = "id: 42\nevent: message.created\ndata: {\"a\":1}\n\n";
	assert_int_equal(len, sizeof(want) - 1);
	assert_memory_equal(buf, want, len);

	/* Line breaks would end a field (and start a forged one): they become
	 * spaces, in the kind and in the data. The buffer grows as needed. */
	char big[5000];
	memset(big, 'x', sizeof(big));
	memcpy(big, "{\"t\":\n\"a\"}\r\nid: 1", 17);
	live_event bad = { 7, "x\nevent: y", NULL, 0, big, sizeof(big) };
	len = live_frame(&buf, &cap, &bad);
	assert_true(cap >= len);
	assert_memory_equal(buf, "id: 7\nevent: x event: y\ndata: {\"t\": \"a\"}  id: 1", 47);
	size_t breaks = 0;
	for (size_t i = 0; i < len; i++)
		breaks += buf[i] == '\n' || buf[i] == '\r';
	assert_int_equal(breaks, 4);   /* after id, after event, and the blank line */
	assert_memory_equal(buf + len - 2, "\n\n", 2);
	free(buf);
}

static live_client client_with(live_scope *s, long long agent_id)
{
	live_client c;
	memset(&c, 0, sizeof(c));
	c.scope = s;
	c.agent_id = agent_id;
	return c;
}

static void test_who_sees_an_event(void **state)
{
	(void)state;
	live_scope *north = live_scope_get("token", "aaaa");
	live_scope *admin = live_scope_get("session", "bbbb");
	live_scope *gone = live_scope_get("token", "cccc");
	live_client kim = client_with(north, 5), ops = client_with(admin, 0), old = client_with(gone, 9);

	/* Nothing before the scope is known. */
	live_event msg = { 1, "message.created", "site", 0, "{}", 2 };
	assert_false(live_client_sees(&kim, &msg));

	live_scope_apply(north, true, "[\"site\", \"app\", \"mail\"]");
	live_scope_apply(admin, true, NULL);
	live_scope_apply(gone, false, "[\"site\"]");
	assert_true(live_client_sees(&kim, &msg));
	assert_true(live_client_sees(&ops, &msg));
	assert_false(live_client_sees(&old, &msg));   /* a revoked credential sees nothing */
	live_event shop = { 2, "message.created", "shop", 0, "{}", 2 };
	assert_false(live_client_sees(&kim, &shop));
	assert_true(live_client_sees(&ops, &shop));

	/* An agent's own event without an instance: that agent and admins. */
	live_event mine = { 3, "agent.updated", NULL, 5, "{}", 2 };
	live_client lee = client_with(north, 6);
	assert_true(live_client_sees(&kim, &mine));
	assert_false(live_client_sees(&lee, &mine));
	assert_true(live_client_sees(&ops, &mine));
	/* Neither: admins only. */
	live_event system = { 4, "notice", NULL, 0, "{}", 2 };
	assert_false(live_client_sees(&kim, &system));
	assert_true(live_client_sees(&ops, &system));
	/* Presence goes to the others who see the conversation, not back. */
	live_event presence = { 5, "presence", "site", 5, "{}", 2 };
	assert_false(live_client_sees(&kim, &presence));
	assert_true(live_client_sees(&lee, &presence));
	assert_true(live_client_sees(&ops, &presence));

	/* A team change: the same scope now sees the shop and not the site. */
	live_scope_apply(north, true, "[\"shop\"]");
	assert_true(live_client_sees(&kim, &shop));
	assert_false(live_client_sees(&kim, &msg));
	live_scope_apply(north, true, "[]");
	assert_false(live_client_sees(&kim, &shop));

	live_scope_put(north);
	live_scope_put(admin);
	live_scope_put(gone);
}

static void test_streams_of_one_credential_share_its_scope(void **state)
{
	(void)state;
	live_scope *a = live_scope_get("token", "dddd");
	live_scope *b = live_scope_get("token", "dddd");
	live_scope *c = live_scope_get("session", "dddd");
	assert_ptr_equal(a, b);
	assert_ptr_not_equal(a, c);
	assert_string_equal(live_scope_kind(c), "session");
	assert_string_equal(live_scope_hash(a), "dddd");
	live_scope_apply(a, true, "[\"x\"]");
	assert_true(live_scope_sees(b, "x"));
	live_scope_put(a);
	assert_true(live_scope_sees(b, "x"));   /* b still holds it */
	live_scope_put(b);
	live_scope_put(c);
	/* Gone with its last reference: a new one knows nothing yet. */
	live_scope *again = live_scope_get("token", "dddd");
	assert_false(live_scope_valid(again));
	live_scope_put(again);
}

static void test_a_page_may_be_followed_by_more_when_full_by_count_or_size(void **state)
{
	(void)state;
	assert_false(live_page_full(0, 0));
	assert_false(live_page_full(LIVE_PAGE - 1, LIVE_PAGE_BYTES - 1));
	assert_true(live_page_full(LIVE_PAGE, 10));
	assert_true(live_page_full(3, LIVE_PAGE_BYTES));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_frame_is_id_event_and_data_on_one_line_each),
		cmocka_unit_test(test_who_sees_an_event),
		cmocka_unit_test(test_streams_of_one_credential_share_its_scope),
		cmocka_unit_test(test_a_page_may_be_followed_by_more_when_full_by_count_or_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
