/* test_json_field.c - the typed JSON field readers: what each accepts, what
 * an absent key leaves alone, and the exact one-line error otherwise. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <string.h>

#include "json_field.h"

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, 0, &e);
	assert_non_null(v);
	return v;
}

typedef struct case_int {
	const char *doc;
	json_int_t min, max;
	bool ok;
	json_int_t want;       /* the value after the read (the default 7 if absent) */
	const char *err;       /* the whole error line when !ok */
} case_int;

static void test_get_int_cases(void **state)
{
	(void)state;
	static const case_int cases[] = {
		{ "{}", 1, 10, true, 7, NULL },
		{ "{\"n\": 3}", 1, 10, true, 3, NULL },
		{ "{\"n\": 1}", 1, 10, true, 1, NULL },
		{ "{\"n\": 10}", 1, 10, true, 10, NULL },
		{ "{\"n\": 0}", 1, 10, false, 7, "f.json: sec.n: must be between 1 and 10" },
		{ "{\"n\": 11}", 1, 10, false, 7, "f.json: sec.n: must be between 1 and 10" },
		{ "{\"n\": 99}", 100, INT_MAX, false, 7, "f.json: sec.n: must be at least 100" },
		{ "{\"n\": \"5\"}", 1, 10, false, 7, "f.json: sec.n: expected an integer, got string" },
		{ "{\"n\": 5.0}", 1, 10, false, 7, "f.json: sec.n: expected an integer, got real" },
		{ "{\"n\": null}", 1, 10, false, 7, "f.json: sec.n: expected an integer, got null" },
		{ "{\"n\": true}", 1, 10, false, 7, "f.json: sec.n: expected an integer, got boolean" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256] = "";
		jf_ctx ctx = { .prefix = "f.json", .err = err, .errlen = sizeof(err) };
		json_t *o = parse(cases[i].doc);
		json_int_t n = 7;
		bool ok = jf_get_int(&ctx, o, "sec", "n", cases[i].min, cases[i].max, &n);
		if (ok != cases[i].ok)
			fail_msg("case %zu (%s): expected %s, got %s", i, cases[i].doc,
			         cases[i].ok ? "success" : "failure", err);
		assert_int_equal(n, cases[i].want);
		if (!ok)
			assert_string_equal(err, cases[i].err);
		json_decref(o);
	}
}

static void test_get_string_bool_object_array(void **state)
{
	(void)state;
	char err[256];
	jf_ctx ctx = { .prefix = NULL, .err = err, .errlen = sizeof(err) };
	json_t *o = parse("{\"s\": \"x\", \"b\": false, \"o\": {}, \"a\": [], \"wrong\": 1}");

	const char *s = "default";
	assert_true(jf_get_string(&ctx, o, "", "s", &s));
	assert_string_equal(s, "x");
	s = "default";
	assert_true(jf_get_string(&ctx, o, "", "absent", &s));
	assert_string_equal(s, "default");
	assert_false(jf_get_string(&ctx, o, "", "wrong", &s));
	assert_string_equal(err, "wrong: expected a string, got integer");  /* no prefix, top level */

	bool b = true;
	assert_true(jf_get_bool(&ctx, o, "", "b", &b));
	assert_false(b);
	assert_false(jf_get_bool(&ctx, o, "x.y", "s", &b));
	assert_string_equal(err, "x.y.s: expected a boolean, got string");

	json_t *v = NULL;
	assert_true(jf_get_object(&ctx, o, "", "o", &v));
	assert_true(json_is_object(v));
	assert_false(jf_get_object(&ctx, o, "", "a", &v));
	assert_string_equal(err, "a: expected an object, got array");
	v = NULL;
	assert_true(jf_get_array(&ctx, o, "", "a", &v));
	assert_true(json_is_array(v));
	assert_false(jf_get_array(&ctx, o, "", "o", &v));
	assert_string_equal(err, "o: expected an array, got object");
	json_decref(o);
}

static void test_string_array_names_the_element(void **state)
{
	(void)state;
	char err[256];
	jf_ctx ctx = { .prefix = "f", .err = err, .errlen = sizeof(err) };
	json_t *o = parse("{\"l\": [\"ab\", 3], \"m\": [\"ab\", \"\"], \"k\": [\"ab\", \"cd\"]}");
	json_t *out = NULL;
	assert_false(jf_get_string_array(&ctx, o, "r[2]", "l", 1, 64, &out));
	assert_string_equal(err, "f: r[2].l[1]: expected a string, got integer");
	assert_false(jf_get_string_array(&ctx, o, "r[2]", "m", 1, 64, &out));
	assert_string_equal(err, "f: r[2].m[1]: must be 1 to 64 characters");
	assert_null(out);
	assert_true(jf_get_string_array(&ctx, o, "r[2]", "k", 1, 64, &out));
	assert_int_equal(json_array_size(out), 2);
	json_decref(o);
}

static void test_keys_and_required(void **state)
{
	(void)state;
	char err[256];
	jf_ctx ctx = { .prefix = "f", .err = err, .errlen = sizeof(err) };
	static const char *const allowed[] = { "a", "b", NULL };
	json_t *o = parse("{\"a\": 1, \"b\": 2}");
	assert_true(jf_check_keys(&ctx, o, "sec", allowed));
	assert_true(jf_require(&ctx, o, "sec", "a"));
	assert_false(jf_require(&ctx, o, "sec", "c"));
	assert_string_equal(err, "f: sec.c: required key missing");
	json_object_set_new(o, "lsiten", json_true());
	assert_false(jf_check_keys(&ctx, o, "sec", allowed));
	assert_string_equal(err, "f: sec.lsiten: unknown key");
	json_decref(o);
}

static void test_paths(void **state)
{
	(void)state;
	char p[JF_PATH_MAX];
	jf_path_key(p, "", "listen");
	assert_string_equal(p, "listen");
	jf_path_key(p, NULL, "listen");
	assert_string_equal(p, "listen");
	jf_path_key(p, "limits", "max_body_bytes");
	assert_string_equal(p, "limits.max_body_bytes");
	jf_path_index(p, "channels", 2);
	assert_string_equal(p, "channels[2]");

	/* A path too long for the buffer ends in "..." rather than mid-word. */
	char longkey[JF_PATH_MAX + 10];
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	jf_path_key(p, "sec", longkey);
	assert_int_equal(strlen(p), JF_PATH_MAX - 1);
	assert_string_equal(p + JF_PATH_MAX - 4, "...");
}

static void test_error_never_holds_the_value(void **state)
{
	(void)state;
	char err[256];
	jf_ctx ctx = { .prefix = "f", .err = err, .errlen = sizeof(err) };
	json_t *o = parse("{\"n\": \"TOPSECRET-4711\"}");
	json_int_t n = 0;
	bool b;
	assert_false(jf_get_int(&ctx, o, "", "n", 0, 1, &n));
	assert_null(strstr(err, "TOPSECRET"));
	assert_false(jf_get_bool(&ctx, o, "", "n", &b));
	assert_null(strstr(err, "TOPSECRET"));
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_int_cases),
		cmocka_unit_test(test_get_string_bool_object_array),
		cmocka_unit_test(test_string_array_names_the_element),
		cmocka_unit_test(test_keys_and_required),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_error_never_holds_the_value),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
