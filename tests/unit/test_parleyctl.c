/* test_parleyctl.c - parleyctl's pure parts: text made safe for a terminal,
 * widths and cuts, RFC 3339 times and their short form, terminal-safe JSON,
 * JSON paths and aligned tables. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>

#include "table.h"
#include "text.h"

static char *escaped(const char *s, size_t n, const char *indent)
{
	ctl_buf b = { 0 };
	ctl_text_escape(&b, s, n, indent);
	return ctl_buf_take(&b);
}

/* A string literal and its length, NUL bytes included. */
#define LIT(s) s, sizeof(s) - 1

static void expect_escape(const char *in, size_t n, const char *indent, const char *want)
{
	char *got = escaped(in, n, indent);
	assert_string_equal(got, want);
	free(got);
}

static void test_escape_sequences_cannot_reach_the_terminal(void **state)
{
	(void)state;
	/* ESC and every other C0 control become visible pictures. */
	expect_escape(LIT("\x1b[31mred\x1b[0m"), NULL, "\u241b[31mred\u241b[0m");
	expect_escape(LIT("\x1b]0;owned\x07"), NULL, "\u241b]0;owned\u2407");
	expect_escape(LIT("a\0b"), NULL, "a\u2400b");
	expect_escape(LIT("del\x7f"), NULL, "del\u2421");
	expect_escape(LIT("bs\b"), NULL, "bs\u2408");
	/* C1 controls (CSI is U+009B), bidi overrides, line separators. */
	expect_escape(LIT("\xc2\x9b" "31m"), NULL, "<U+009B>31m");
	expect_escape(LIT("abc\xe2\x80\xae" "fed"), NULL, "abc<U+202E>fed");
	expect_escape(LIT("x\xe2\x81\xa6y"), NULL, "x<U+2066>y");
	expect_escape(LIT("a\xe2\x80\xa8" "b"), NULL, "a<U+2028>b");
	/* Bytes that are not UTF-8. */
	expect_escape(LIT("\xff\xfe ok \xc3"), NULL, "\ufffd\ufffd ok \ufffd");
	expect_escape(LIT("\xed\xa0\x80"), NULL, "\ufffd\ufffd\ufffd");   /* a surrogate */
}

static void test_ordinary_text_is_kept(void **state)
{
	(void)state;
	const char *s = "Grüße, 日本語, emoji \xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb, "
	                "e\xcc\x81, \"quotes\" \\ back";
	expect_escape(s, strlen(s), NULL, s);
	expect_escape(LIT(""), NULL, "");
}

static void test_line_breaks_one_line_and_multi_line(void **state)
{
	(void)state;
	/* One line: runs of breaks and tabs become one space; CR cannot overwrite. */
	expect_escape(LIT("a\r\n\r\nb\tc\rd"), NULL, "a b c d");
	/* Several lines: LF and CRLF break and indent, a lone CR is shown. */
	expect_escape(LIT("one\ntwo\r\nthree\rx\tt"), "    ", "one\n    two\n    three\u240dx\tt");
	char *line = ctl_text_line("x\ny\x1b");
	assert_string_equal(line, "x y\u241b");
	free(line);
}

static void test_widths_and_cuts(void **state)
{
	(void)state;
	assert_int_equal(ctl_text_width("abc"), 3);
	assert_int_equal(ctl_text_width("日本"), 4);
	assert_int_equal(ctl_text_width("e\xcc\x81"), 1);   /* combining accent */
	assert_int_equal(ctl_text_width(""), 0);
	struct { const char *in; int max; const char *want; } cases[] = {
		{ "abcdef", 4, "abc\u2026" },
		{ "abcd", 4, "abcd" },
		{ "日本語", 5, "日本\u2026" },
		{ "日本語", 4, "日\u2026" },
		{ "ab", 0, "" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ctl_buf b = { 0 };
		ctl_text_cut(&b, cases[i].in, cases[i].max);
		assert_string_equal(ctl_buf_str(&b), cases[i].want);
		assert_true(ctl_text_width(ctl_buf_str(&b)) <= (cases[i].max ? cases[i].max : 0));
		ctl_buf_free(&b);
	}
}

static void test_times_parse(void **state)
{
	(void)state;
	time_t t;
	assert_true(ctl_time_parse("2024-05-01T12:34:56Z", &t));
	assert_int_equal(t, 1714566896);
	assert_true(ctl_time_parse("2024-05-01T14:34:56.123456+02:00", &t));
	assert_int_equal(t, 1714566896);
	assert_true(ctl_time_parse("2024-05-01T07:04:56-0530", &t));
	assert_int_equal(t, 1714566896);
	assert_true(ctl_time_parse("2024-05-01 12:34:56+00", &t));
	assert_int_equal(t, 1714566896);
	const char *bad[] = { "", "yesterday", "2024-05-01", "2024-05-01T12:34:56",
	                      "2024-13-01T12:34:56Z", "2024-05-01T25:00:00Z", "2024-05-01T12:34:56+02:0",
	                      "2024-05-01T12:34:56Zjunk", "2024-05-01T12:34:56+02:00junk" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(ctl_time_parse(bad[i], &t));
}

static void test_times_are_shortened(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	time_t now = 1714586400;   /* 2024-05-01 18:00 UTC */
	char out[CTL_TIME_SHORT];
	ctl_time_short(out, 1714566896, now);
	assert_string_equal(out, "12:34");
	ctl_time_short(out, 1714566896 - 86400 * 88, now);
	assert_string_equal(out, "Feb 03 12:34");
	ctl_time_short(out, 1714566896 + 86400 * 30, now);
	assert_string_equal(out, "May 31 12:34");
	ctl_time_short(out, 1700000000, now);
	assert_string_equal(out, "2023-11-14");
}

static void test_json_output_is_terminal_safe(void **state)
{
	(void)state;
	const char *text = "csi \xc2\x9b" "2J rtl \xe2\x80\xae ok \xc3\xa9 \x1b[31m";
	json_t *v = json_pack("{s:s, s:i}", "text", text, "n", 5);
	char *dumped = json_dumps(v, JSON_COMPACT);
	ctl_buf b = { 0 };
	ctl_json_safe(&b, dumped);
	const char *safe = ctl_buf_str(&b);
	assert_non_null(strstr(safe, "\\u009b"));
	assert_non_null(strstr(safe, "\\u202e"));
	assert_non_null(strcasestr(safe, "\\u001b"));
	assert_non_null(strstr(safe, "\xc3\xa9"));   /* ordinary UTF-8 stays readable */
	assert_null(strstr(safe, "\xc2\x9b"));
	assert_null(strchr(safe, 0x1b));
	/* The same JSON value. */
	json_t *back = json_loads(safe, 0, NULL);
	assert_non_null(back);
	assert_true(json_equal(back, v));
	json_decref(back);
	json_decref(v);
	free(dumped);
	ctl_buf_free(&b);
}

static void test_json_paths(void **state)
{
	(void)state;
	json_t *v = json_loads("{\"a\":{\"b\":null,\"c\":7},\"d\":\"x\"}", 0, NULL);
	assert_int_equal(json_integer_value(ctl_json_path(v, "a.c")), 7);
	assert_true(json_is_null(ctl_json_path(v, "a.b")));
	assert_int_equal(json_integer_value(ctl_json_path(v, "a.b|a.c")), 7);
	assert_string_equal(json_string_value(ctl_json_path(v, "zz|d")), "x");
	assert_null(ctl_json_path(v, "a.c.e"));
	assert_null(ctl_json_path(v, "nope"));
	char *cell = ctl_cell(ctl_json_path(v, "a.b"), COL_TEXT, 0);
	assert_string_equal(cell, "-");
	free(cell);
	json_decref(v);
}

static char *table_text(const ctl_column *cols, const char *items_json)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	json_t *items = json_loads(items_json, 0, NULL);
	assert_non_null(items);
	ctl_table_print(f, cols, items, 1714586400);
	fclose(f);
	json_decref(items);
	return buf;
}

static void test_tables_align_and_escape(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	static const ctl_column cols[] = {
		{ "ID", "id", COL_TEXT, 0 },
		{ "NAME", "customer.name|customer.id", COL_TEXT, 8 },
		{ "TEAMS", "teams", COL_LIST, 0 },
		{ "DUE", "due", COL_TIME, 0 },
		{ NULL, NULL, 0, 0 }
	};
	char *out = table_text(cols,
	        "[{\"id\": 1, \"customer\": {\"name\": \"\\u001b[2JAnn\\nEvil\"}, \"teams\": [1, 2],"
	        "  \"due\": \"2024-05-01T12:34:56Z\"},"
	        " {\"id\": 22, \"customer\": {\"name\": null, \"id\": 9}, \"teams\": [], \"due\": null},"
	        " {\"id\": 333, \"customer\": {\"name\": \"日本語のなまえ\"}, \"teams\": [\"x\"], \"due\": \"soon\"}]");
	assert_string_equal(out,
	        "ID   NAME      TEAMS  DUE\n"
	        "1    \u241b[2JAnn\u2026  1,2    12:34\n"
	        "22   9         -      -\n"
	        "333  日本語\u2026   x      soon\n");
	free(out);
	out = table_text(cols, "[]");
	assert_string_equal(out, "(none)\n");
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_sequences_cannot_reach_the_terminal),
		cmocka_unit_test(test_ordinary_text_is_kept),
		cmocka_unit_test(test_line_breaks_one_line_and_multi_line),
		cmocka_unit_test(test_widths_and_cuts),
		cmocka_unit_test(test_times_parse),
		cmocka_unit_test(test_times_are_shortened),
		cmocka_unit_test(test_json_output_is_terminal_safe),
		cmocka_unit_test(test_json_paths),
		cmocka_unit_test(test_tables_align_and_escape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
