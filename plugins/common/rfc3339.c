/* rfc3339.c - RFC 3339 timestamps to Unix milliseconds (see rfc3339.h). */
#include "rfc3339.h"

#include <stddef.h>

bool pu_read_digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

static int days_in_month(int y, int m)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (the era-based civil
 * calendar computation): exact for every year, and independent of the
 * process's time zone, unlike mktime. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const int64_t yoe = y - era * 400;                                  /* [0, 399] */
	const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1; /* [0, 365] */
	const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;          /* [0, 146096] */
	return era * 146097 + doe - 719468;
}

bool pu_civil_to_ms(int year, int month, int day, int hour, int minute, int second,
                    int offset_min, int ms, int64_t *out_ms)
{
	if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
	    hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 60 ||
	    ms < 0 || ms > 999)
		return false;
	int64_t secs = days_from_civil(year, month, day) * 86400 + (int64_t)hour * 3600 +
	               (int64_t)minute * 60 + second - (int64_t)offset_min * 60;
	*out_ms = secs * 1000 + ms;
	return true;
}

bool pu_rfc3339_ms(const char *s, int64_t *out_ms)
{
	int year, month, day, hour, minute, second, ms = 0, offset_min = 0;
	const char *p;

	/* date-time = full-date "T" partial-time time-offset. read_digits stops
	 * at a NUL, and each separator is checked before the next field is
	 * read, so a short string is never read past its end. */
	if (s == NULL || !pu_read_digits(s, 4, &year) || s[4] != '-' ||
	    !pu_read_digits(s + 5, 2, &month) || s[7] != '-' || !pu_read_digits(s + 8, 2, &day) ||
	    (s[10] != 'T' && s[10] != 't') || !pu_read_digits(s + 11, 2, &hour) || s[13] != ':' ||
	    !pu_read_digits(s + 14, 2, &minute) || s[16] != ':' || !pu_read_digits(s + 17, 2, &second))
		return false;
	p = s + 19;
	if (*p == '.') {
		/* time-secfrac: at least one digit; keep milliseconds, drop the rest. */
		int n = 0;
		p++;
		if (*p < '0' || *p > '9')
			return false;
		for (; *p >= '0' && *p <= '9'; p++, n++) {
			if (n < 3)
				ms = ms * 10 + (*p - '0');
		}
		for (; n < 3; n++)
			ms *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		if (!pu_read_digits(p + 1, 2, &oh) || p[3] != ':' || !pu_read_digits(p + 4, 2, &om) ||
		    oh > 23 || om > 59)
			return false;
		offset_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return false;   /* the offset is mandatory in RFC 3339 */
	}
	if (*p != '\0')
		return false;
	return pu_civil_to_ms(year, month, day, hour, minute, second, offset_min, ms, out_ms);
}
