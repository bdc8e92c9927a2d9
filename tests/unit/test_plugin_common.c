/* test_plugin_common.c - the small shared helpers of plugins/common: UTF-8
 * checks and cuts (utf8proc), RFC 3339 times, header safety, hex,
 * the create/reload/destroy skeleton of an instance.
 * Table-driven: each helper's cases are rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../plugins/common/instance.h"
#include "../../plugins/common/plugin_util.h"
#include "../../plugins/common/rfc3339.h"
#include "../../plugins/common/utf8.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- UTF-8 ---- */

static const struct {
	const char *bytes;
	size_t len;
	bool valid;
	const char *why;
} utf8_cases[] = {
	{ "", 0, true, "empty" },
	{ "plain ascii", 11, true, "ASCII" },
	{ "caf\xc3\xa9", 5, true, "two bytes" },
	{ "\xe2\x82\xac", 3, true, "three bytes (euro)" },
	{ "\xf0\x9f\x98\x80", 4, true, "four bytes (emoji)" },
	{ "\xf4\x8f\xbf\xbf", 4, true, "U+10FFFF, the last code point" },
	{ "a\0b", 3, true, "a NUL is a character when the length is given" },
	{ "\xc3", 1, false, "cut sequence" },
	{ "\xe2\x82", 2, false, "cut three-byte sequence" },
	{ "\x80", 1, false, "stray continuation byte" },
	{ "\xc0\x80", 2, false, "overlong NUL" },
	{ "\xc1\xbf", 2, false, "overlong two bytes" },
	{ "\xe0\x80\xaf", 3, false, "overlong three bytes" },
	{ "\xf0\x80\x80\xaf", 4, false, "overlong four bytes" },
	{ "\xed\xa0\x80", 3, false, "a surrogate (U+D800)" },
	{ "\xed\xbf\xbf", 3, false, "a surrogate (U+DFFF)" },
	{ "\xf4\x90\x80\x80", 4, false, "beyond U+10FFFF" },
	{ "\xf5\x80\x80\x80", 4, false, "F5 lead byte" },
	{ "\xff", 1, false, "FF" },
	{ "ok\xc3(", 4, false, "a bad continuation inside a string" },
};

static void test_utf8_validity(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(utf8_cases); i++) {
		if (pu_utf8_valid_n(utf8_cases[i].bytes, utf8_cases[i].len) != utf8_cases[i].valid)
			fail_msg("%s: want %s", utf8_cases[i].why, utf8_cases[i].valid ? "valid" : "invalid");
	}
	assert_true(pu_utf8_valid(NULL));
	assert_true(pu_utf8_valid("caf\xc3\xa9"));
	assert_false(pu_utf8_valid("caf\xc3"));
}

static void test_utf8_seq(void **state)
{
	(void)state;
	assert_int_equal(pu_utf8_seq("a", 1), 1);
	assert_int_equal(pu_utf8_seq("\xc3\xa9", 2), 2);
	assert_int_equal(pu_utf8_seq("\xe2\x82\xac" "x", 4), 3);
	assert_int_equal(pu_utf8_seq("\xf0\x9f\x98\x80", 4), 4);
	assert_int_equal(pu_utf8_seq("\xf0\x9f\x98\x80", 3), 0);   /* avail cuts it */
	assert_int_equal(pu_utf8_seq("\xc3\xa9", 0), 0);
	assert_int_equal(pu_utf8_seq("\xed\xa0\x80", 3), 0);
}

static const struct {
	const char *s;
	size_t max, want;
} cut_cases[] = {
	{ "abcdef", 10, 6 },                     /* fits */
	{ "abcdef", 3, 3 },
	{ "ab\xc3\xa9z", 3, 2 },                 /* not inside the é */
	{ "ab\xc3\xa9z", 4, 4 },
	{ "\xe2\x82\xac\xe2\x82\xac", 5, 3 },    /* one euro of two */
	{ "\xf0\x9f\x98\x80", 3, 0 },            /* nothing fits */
	{ "abc", 0, 0 },
};

static void test_utf8_cut(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(cut_cases); i++) {
		size_t got = pu_utf8_cut(cut_cases[i].s, strlen(cut_cases[i].s), cut_cases[i].max);
		if (got != cut_cases[i].want)
			fail_msg("cut \"%s\" at %zu: %zu, want %zu", cut_cases[i].s, cut_cases[i].max, got,
			         cut_cases[i].want);
	}
}

static const struct {
	uint32_t cp;
	const char *want;
} encode_cases[] = {
	{ 'A', "A" },
	{ 0xE9, "\xc3\xa9" },
	{ 0x20AC, "\xe2\x82\xac" },
	{ 0x1F600, "\xf0\x9f\x98\x80" },
	{ 0, "\xef\xbf\xbd" },          /* NUL, surrogates, too large: U+FFFD */
	{ 0xD800, "\xef\xbf\xbd" },
	{ 0xDFFF, "\xef\xbf\xbd" },
	{ 0x110000, "\xef\xbf\xbd" },
	{ 0xFFFFFFFF, "\xef\xbf\xbd" },
};

static void test_utf8_encode(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(encode_cases); i++) {
		char out[4];
		size_t n = pu_utf8_encode(encode_cases[i].cp, out);
		assert_int_equal(n, strlen(encode_cases[i].want));
		assert_memory_equal(out, encode_cases[i].want, n);
	}
}

static const struct {
	const char *s;
	size_t outlen;
	const char *want;
} line_cases[] = {
	{ "bad\r\nrequest\t!", 64, "bad  request !" },
	{ "del\x7f", 64, "del " },
	{ "caf\xc3\xa9 au lait", 5, "caf" },     /* 4 bytes room: not half an é */
	{ "caf\xc3\xa9", 6, "caf\xc3\xa9" },
	{ "anything", 1, "" },
};

static void test_utf8_line(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(line_cases); i++) {
		char out[64];
		memset(out, 'X', sizeof(out));
		pu_utf8_line(line_cases[i].s, out, line_cases[i].outlen);
		assert_string_equal(out, line_cases[i].want);
	}
}

/* ---- RFC 3339 ---- */

static const struct {
	const char *s;
	int64_t ms;
} rfc3339_good[] = {
	{ "1970-01-01T00:00:00Z", 0 },
	{ "2026-11-23T10:00:00Z", INT64_C(1795428000000) },
	{ "2026-11-23t10:00:00z", INT64_C(1795428000000) },
	{ "2000-02-29T23:59:59Z", INT64_C(951868799000) },
	{ "1969-12-31T23:59:59Z", -1000 },
	/* Offsets: 12:00 at +02:00 is 10:00 UTC, also across a day. */
	{ "2026-11-23T12:00:00+02:00", INT64_C(1795428000000) },
	{ "2026-11-23T05:30:00-04:30", INT64_C(1795428000000) },
	{ "2026-11-23T10:00:00+00:00", INT64_C(1795428000000) },
	{ "2026-11-23T10:00:00-00:00", INT64_C(1795428000000) },
	{ "2026-11-24T01:00:00+15:00", INT64_C(1795428000000) },
	/* Fractions: milliseconds kept, the rest dropped (not rounded). */
	{ "2026-11-23T10:00:00.5Z", INT64_C(1795428000500) },
	{ "2026-11-23T10:00:00.25Z", INT64_C(1795428000250) },
	{ "2026-11-23T10:00:00.123Z", INT64_C(1795428000123) },
	{ "2026-11-23T10:00:00.123999999Z", INT64_C(1795428000123) },
	{ "2026-11-23T12:00:00.750+02:00", INT64_C(1795428000750) },
	{ "2019-12-13T04:48:09.000Z", INT64_C(1576212489000) },
	{ "2016-12-31T23:59:60Z", INT64_C(1483228800000) },   /* a leap second */
};

static const char *const rfc3339_bad[] = {
	"", "2026-11-23", "2026-11-23T10:00:00", "2026-11-23 10:00:00Z",
	"2026-11-23T10:00Z", "2026-11-23T10:00:00.Z", "2026-11-23T10:00:00+0200",
	"2026-11-23T10:00:00+02", "2026-11-23T10:00:00Zjunk", "2026-13-01T00:00:00Z",
	"2026-00-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
	"2026-11-00T00:00:00Z", "2026-11-23T24:00:00Z", "2026-11-23T10:60:00Z",
	"2026-11-23T10:00:61Z", "2026-11-23T10:00:00+24:00", "2026-11-23T10:00:00+02:60",
	"26-11-23T10:00:00Z", "2026-1-23T10:00:00Z", "+2026-11-23T10:00:00Z",
	"2026-11-23T10:00:00 Z", "2026-11-23T1a:00:00Z", "2026-11-2",
};

static void test_rfc3339(void **state)
{
	int64_t ms;

	(void)state;
	for (size_t i = 0; i < N(rfc3339_good); i++) {
		ms = 42;
		if (!pu_rfc3339_ms(rfc3339_good[i].s, &ms))
			fail_msg("refused: %s", rfc3339_good[i].s);
		if (ms != rfc3339_good[i].ms)
			fail_msg("%s: %lld, want %lld", rfc3339_good[i].s, (long long)ms,
			         (long long)rfc3339_good[i].ms);
	}
	for (size_t i = 0; i < N(rfc3339_bad); i++) {
		ms = 42;
		if (pu_rfc3339_ms(rfc3339_bad[i], &ms))
			fail_msg("accepted: \"%s\"", rfc3339_bad[i]);
		assert_int_equal(ms, 42);   /* untouched */
	}
	assert_false(pu_rfc3339_ms(NULL, &ms));
}

static void test_civil_to_ms_ranges(void **state)
{
	int64_t ms = 42;

	(void)state;
	assert_true(pu_civil_to_ms(2019, 12, 13, 6, 48, 9, 120, 0, &ms));
	assert_int_equal(ms, INT64_C(1576212489000));
	assert_false(pu_civil_to_ms(2019, 2, 29, 0, 0, 0, 0, 0, &ms));
	assert_true(pu_civil_to_ms(2020, 2, 29, 0, 0, 0, 0, 0, &ms));
	assert_false(pu_civil_to_ms(2020, 1, 1, 0, 0, 0, 0, 1000, &ms));
	assert_false(pu_civil_to_ms(2020, 1, 1, -1, 0, 0, 0, 0, &ms));
}

/* ---- header values ---- */

static const struct {
	const char *s;
	bool safe;
} header_cases[] = {
	{ "", true },
	{ "Bearer abc.def-123", true },
	{ "caf\xc3\xa9 key", true },           /* bytes above 0x7f are not controls */
	{ "a\r\nX-Injected: 1", false },
	{ "a\nb", false },
	{ "a\rb", false },
	{ "tab\there", false },
	{ "del\x7f", false },
	{ "\x1b[0m", false },
};

static void test_header_safe(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(header_cases); i++) {
		if (pu_header_safe(header_cases[i].s) != header_cases[i].safe)
			fail_msg("case %zu: want %s", i, header_cases[i].safe ? "safe" : "unsafe");
	}
}

/* ---- hex ---- */

static void test_hex_decode(void **state)
{
	static const struct {
		const char *hex;
		size_t n;
		bool ok;
		unsigned char want[4];
	} cases[] = {
		{ "00ff7A", 3, true, { 0x00, 0xff, 0x7a } },
		{ "DEADbeef", 4, true, { 0xde, 0xad, 0xbe, 0xef } },
		{ "", 0, true, { 0 } },
		{ "0g", 1, false, { 0 } },
		{ "g0", 1, false, { 0 } },
		{ "abc", 2, false, { 0 } },            /* too short: the NUL stops it */
		{ " 1", 1, false, { 0 } },
		{ "0x12", 2, false, { 0 } },
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		unsigned char out[4] = { 0 };
		bool ok = pu_hex_decode(cases[i].hex, out, cases[i].n);
		if (ok != cases[i].ok)
			fail_msg("\"%s\": want %s", cases[i].hex, cases[i].ok ? "ok" : "refused");
		if (ok)
			assert_memory_equal(out, cases[i].want, cases[i].n);
	}
}

static void test_hex_encode_round_trip(void **state)
{
	static const struct {
		const char *bytes;
		size_t n;
		const char *hex;
	} cases[] = {
		{ "", 0, "" },
		{ "\x00\xff\x7a", 3, "00ff7a" },
		{ "\xde\xad\xbe\xef", 4, "deadbeef" },
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		char out[16];
		unsigned char back[8];
		memset(out, 'X', sizeof(out));
		pu_hex_encode(cases[i].bytes, cases[i].n, out);
		assert_string_equal(out, cases[i].hex);
		assert_true(pu_hex_decode(out, back, cases[i].n));
		assert_memory_equal(back, cases[i].bytes, cases[i].n);
	}
}

/* ---- the growing buffer ---- */

static void test_buf_take(void **state)
{
	pu_buf b = { 0 };
	char *s;

	(void)state;
	s = pu_buf_take(&b);                 /* nothing added: an empty string */
	assert_string_equal(s, "");
	free(s);
	pu_buf_str(&b, "Authorization: ");
	pu_buf_add(&b, "Bearer xyz", 6);
	s = pu_buf_take(&b);
	assert_string_equal(s, "Authorization: Bearer");
	assert_null(b.data);                 /* the buffer let go of it */
	free(s);
	pu_buf_str(&b, "partial");
	b.failed = true;                     /* as after a failed allocation */
	assert_null(pu_buf_take(&b));
	assert_null(b.data);
	assert_false(b.failed);              /* reset for reuse */
}

/* ---- the instance skeleton ---- */

typedef struct demo_settings {
	char *name;                 /* owned */
	int64_t level;
} demo_settings;

typedef struct demo {
	const parley_host *host;
	parley_instance *inst;
	int extra;                  /* set by init, checked by finish */
	demo_settings cfg;
} demo;

static struct {
	int reads, frees, announces, inits, reloadeds, finishes, logs;
	bool read_fails, init_fails, refuse_reload;
	char old_name[32];          /* what reloaded saw as the old settings */
	char last_log[128];
} calls;
static const char *next_name;   /* what the next read produces */

static void demo_log(parley_instance *inst, parley_log_level level, const char *fmt, ...)
{
	va_list ap;

	(void)inst;
	(void)level;
	va_start(ap, fmt);
	vsnprintf(calls.last_log, sizeof(calls.last_log), fmt, ap);
	va_end(ap);
	calls.logs++;
}

static int demo_read(const parley_host *host, parley_instance *inst, const parley_config *cfg,
                     void *settings)
{
	demo_settings *out = settings;

	(void)host;
	(void)inst;
	(void)cfg;
	calls.reads++;
	if (calls.read_fails)
		return -1;
	out->name = strdup(next_name);
	out->level = (int64_t)strlen(next_name);
	return 0;
}

static void demo_free(void *settings)
{
	demo_settings *s = settings;

	calls.frees++;
	free(s->name);
	s->name = NULL;
}

static void demo_announce(void *self)
{
	(void)self;
	calls.announces++;
}

static int demo_init(void *self)
{
	demo *d = self;

	calls.inits++;
	d->extra = 7;
	return calls.init_fails ? -1 : 0;
}

static int demo_check(void *self, const void *next)
{
	(void)self;
	(void)next;
	return calls.refuse_reload ? -1 : 0;
}

static void demo_reloaded(void *self, const void *old)
{
	(void)self;
	calls.reloadeds++;
	snprintf(calls.old_name, sizeof(calls.old_name), "%s", ((const demo_settings *)old)->name);
}

static void demo_finish(void *self)
{
	demo *d = self;

	assert_int_equal(d->extra, 7);
	assert_non_null(d->cfg.name);   /* the settings are still there */
	calls.finishes++;
}

static const pu_instance_class demo_class = {
	PU_INSTANCE_LAYOUT(demo, cfg),
	.host_needs = PU_HOST_NEEDS(now_ms),
	.too_old = "too old for demo",
	.read = demo_read,
	.free = demo_free,
	.announce = demo_announce,
	.init = demo_init,
	.check_reload = demo_check,
	.reloaded = demo_reloaded,
	.finish = demo_finish,
};

static int64_t demo_now(void)
{
	return 1000000;
}

static const parley_host demo_host = {
	.size = sizeof(parley_host),
	.log = demo_log,
	.now_ms = demo_now,
};

/* A paced instance: its rate is the settings' level per minute. */
typedef struct paced {
	const parley_host *host;
	parley_instance *inst;
	pu_pacer pacer;
	demo_settings cfg;
} paced;

static pu_pacer_rate paced_rate(const void *settings)
{
	const demo_settings *s = settings;

	return (pu_pacer_rate){ .tokens = s->level, .period_ms = 60000, .burst = 1,
	                        .max_wait_ms = 1000 };
}

static bool paced_start(void *owner, pu_pacer_item *item)
{
	(void)owner;
	(void)item;
	return false;
}

static void paced_back(void *owner, pu_pacer_item *item, int64_t retry_at_ms, const char *reason)
{
	(void)owner;
	(void)item;
	(void)retry_at_ms;
	(void)reason;
}

static int items_freed;

static void paced_free(pu_pacer_item *item)
{
	(void)item;
	items_freed++;
}

static const pu_instance_class paced_class = {
	PU_INSTANCE_LAYOUT(paced, cfg),
	.read = demo_read,
	.free = demo_free,
	.pace = paced_rate,
	PU_INSTANCE_PACER(paced, pacer),
	.pace_start = paced_start,
	.pace_back = paced_back,
	.pace_free = paced_free,
	.pace_pause_reason = "paused",
};

static int instance_setup(void **state)
{
	(void)state;
	memset(&calls, 0, sizeof(calls));
	next_name = "first";
	return 0;
}

static void test_instance_lifecycle(void **state)
{
	void *self = NULL;
	demo *d;

	(void)state;
	assert_int_equal(pu_instance_create(&demo_class, &demo_host, (parley_instance *)0x1,
	                                    NULL, &self), 0);
	d = self;
	assert_ptr_equal(d->host, &demo_host);
	assert_ptr_equal(d->inst, (parley_instance *)0x1);
	assert_string_equal(d->cfg.name, "first");
	assert_int_equal(calls.inits, 1);
	assert_int_equal(calls.announces, 1);

	next_name = "second!";
	assert_int_equal(pu_instance_reload(&demo_class, self, NULL), 0);
	assert_string_equal(d->cfg.name, "second!");
	assert_int_equal(d->cfg.level, 7);
	assert_string_equal(calls.old_name, "first");   /* reloaded saw the old ones */
	assert_int_equal(calls.frees, 1);               /* and then they were freed */
	assert_int_equal(calls.announces, 2);

	pu_instance_destroy(&demo_class, self);
	assert_int_equal(calls.finishes, 1);
	assert_int_equal(calls.frees, 2);
}

static void test_instance_refusals_keep_the_old_settings(void **state)
{
	void *self = NULL;
	demo *d;

	(void)state;
	assert_int_equal(pu_instance_create(&demo_class, &demo_host, NULL, NULL, &self), 0);
	d = self;
	calls.read_fails = true;
	assert_int_equal(pu_instance_reload(&demo_class, self, NULL), -1);
	calls.read_fails = false;
	calls.refuse_reload = true;
	next_name = "refused";
	assert_int_equal(pu_instance_reload(&demo_class, self, NULL), -1);
	assert_string_equal(d->cfg.name, "first");
	assert_int_equal(calls.frees, 1);       /* the refused settings, not the old */
	assert_int_equal(calls.reloadeds, 0);
	assert_int_equal(calls.announces, 1);
	pu_instance_destroy(&demo_class, self);
}

/* ABI 1.3: no read function; the skeleton copies the struct the core filled
 * and runs the plugin's cross-field check on it. */
static demo_settings filled_by_core;
static bool check_refuses;
static int checks;

static const void *core_settings(const parley_config *cfg)
{
	(void)cfg;
	return &filled_by_core;
}

static int core_check(const parley_host *host, parley_instance *inst, const void *settings)
{
	(void)host;
	(void)inst;
	checks++;
	return check_refuses || ((const demo_settings *)settings)->level < 0 ? -1 : 0;
}

static const pu_instance_class core_filled_class = {
	PU_INSTANCE_LAYOUT(demo, cfg),
	.check = core_check,
};

static void test_instance_with_core_filled_settings(void **state)
{
	static const parley_host host13 = {
		.size = sizeof(parley_host),
		.log = demo_log,
		.now_ms = demo_now,
		.config_settings = core_settings,
	};
	static const parley_host host12 = {
		.size = offsetof(parley_host, config_settings),   /* a parleyd before 1.3 */
		.log = demo_log,
	};
	char first[] = "from the core", second[] = "reloaded";
	void *self = NULL;
	demo *d;

	(void)state;
	checks = 0;
	check_refuses = false;
	filled_by_core = (demo_settings){ .name = first, .level = 3 };
	assert_int_equal(pu_instance_create(&core_filled_class, &host13, NULL, NULL, &self), 0);
	d = self;
	assert_ptr_equal(d->cfg.name, first);     /* the core's string, not a copy */
	assert_int_equal(d->cfg.level, 3);
	assert_int_equal(checks, 1);

	filled_by_core = (demo_settings){ .name = second, .level = -1 };
	assert_int_equal(pu_instance_reload(&core_filled_class, self, NULL), -1);
	assert_ptr_equal(d->cfg.name, first);     /* refused by the check: old ones stay */
	filled_by_core.level = 9;
	assert_int_equal(pu_instance_reload(&core_filled_class, self, NULL), 0);
	assert_ptr_equal(d->cfg.name, second);
	assert_int_equal(d->cfg.level, 9);
	pu_instance_destroy(&core_filled_class, self);   /* frees nothing of the core's */

	self = NULL;
	check_refuses = true;
	assert_int_equal(pu_instance_create(&core_filled_class, &host13, NULL, NULL, &self), -1);
	assert_null(self);
	calls.logs = 0;
	assert_int_equal(pu_instance_create(&core_filled_class, &host12, NULL, NULL, &self), -1);
	assert_int_equal(calls.logs, 1);
	assert_string_equal(calls.last_log, "the core did not fill this plugin's settings");
}

static void test_instance_create_failures(void **state)
{
	static const parley_host small_host = {
		.size = offsetof(parley_host, now_ms),   /* a parleyd without now_ms */
		.log = demo_log,
	};
	void *self = NULL;

	(void)state;
	assert_int_equal(pu_instance_create(&demo_class, &small_host, NULL, NULL, &self), -1);
	assert_string_equal(calls.last_log, "too old for demo");
	assert_int_equal(calls.reads, 0);

	calls.read_fails = true;
	assert_int_equal(pu_instance_create(&demo_class, &demo_host, NULL, NULL, &self), -1);
	assert_int_equal(calls.inits, 0);
	calls.read_fails = false;

	calls.init_fails = true;
	assert_int_equal(pu_instance_create(&demo_class, &demo_host, NULL, NULL, &self), -1);
	assert_int_equal(calls.frees, 1);        /* the settings init could not use */
	assert_int_equal(calls.announces, 0);
	assert_null(self);
}

static void test_instance_with_a_pacer(void **state)
{
	pu_pacer_item waiting[2];
	void *self = NULL;
	paced *p;

	(void)state;
	next_name = "";   /* level 0: no rate */
	assert_int_equal(pu_instance_create(&paced_class, &demo_host, NULL, NULL, &self), -1);
	assert_string_equal(calls.last_log, "the request rate is out of range");
	assert_int_equal(calls.frees, 1);

	next_name = "abc";   /* 3 a minute */
	assert_int_equal(pu_instance_create(&paced_class, &demo_host, NULL, NULL, &self), 0);
	p = self;
	assert_ptr_equal(p->pacer.owner, p);
	assert_ptr_equal(p->pacer.host, &demo_host);
	assert_int_equal(p->pacer.rate.tokens, 3);
	assert_int_equal(p->pacer.tokens_milli, 1000);   /* a full bucket */

	next_name = "abcdefghij";
	assert_int_equal(pu_instance_reload(&paced_class, self, NULL), 0);
	assert_int_equal(p->pacer.rate.tokens, 10);

	items_freed = 0;
	pu_pacer_push(&p->pacer, &waiting[0], false);
	pu_pacer_push(&p->pacer, &waiting[1], false);
	pu_instance_destroy(&paced_class, self);
	assert_int_equal(items_freed, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_validity),
		cmocka_unit_test(test_utf8_seq),
		cmocka_unit_test(test_utf8_cut),
		cmocka_unit_test(test_utf8_encode),
		cmocka_unit_test(test_utf8_line),
		cmocka_unit_test(test_rfc3339),
		cmocka_unit_test(test_civil_to_ms_ranges),
		cmocka_unit_test(test_header_safe),
		cmocka_unit_test(test_hex_decode),
		cmocka_unit_test(test_hex_encode_round_trip),
		cmocka_unit_test(test_buf_take),
		cmocka_unit_test_setup(test_instance_lifecycle, instance_setup),
		cmocka_unit_test_setup(test_instance_refusals_keep_the_old_settings, instance_setup),
		cmocka_unit_test_setup(test_instance_create_failures, instance_setup),
		cmocka_unit_test_setup(test_instance_with_core_filled_settings, instance_setup),
		cmocka_unit_test_setup(test_instance_with_a_pacer, instance_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
