/* log.c - one line per event on stderr, as text or JSON.
 *
 * JSON lines are built with jansson so messages with quotes or control
 * characters stay valid JSON. */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>
#include <jansson.h>

static log_level current_level = LOGL_INFO;
static bool json_format = false;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void log_set_level(log_level level) { current_level = level; }
log_level log_get_level(void) { return current_level; }
void log_set_json(bool json) { json_format = json; }

const char *log_level_name(log_level level)
{
	if ((int)level < 0 || level > LOGL_DEBUG)
		return "?";
	return level_names[level];
}

bool log_parse_level(const char *name, log_level *out)
{
	if (name == NULL)
		return false;
	for (int i = 0; i <= LOGL_DEBUG; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (log_level)i;
			return true;
		}
	}
	return false;
}

static void format_time(char *buf, size_t len)
{
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

void log_vmsg(log_level level, const char *component, const char *fmt, va_list ap)
{
	if (level > current_level)
		return;
	char msg[2048];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* One event is one line: fold embedded newlines. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	char ts[40];
	format_time(ts, sizeof(ts));

	if (json_format) {
		json_t *o = json_pack("{s:s, s:s, s:s}", "ts", ts, "level", log_level_name(level),
		                      "msg", msg);
		if (o != NULL && component != NULL)
			json_object_set_new(o, "component", json_string(component));
		char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
		if (line != NULL) {
			fprintf(stderr, "%s\n", line);
			free(line);
		} else {
			/* Invalid UTF-8 in msg makes jansson refuse; say so rather than drop it. */
			fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"(unprintable log message)\"}\n",
			        ts, log_level_name(level));
		}
		json_decref(o);
	} else {
		fprintf(stderr, "%s %-5s %s%s%s\n", ts, log_level_name(level),
		        component ? component : "", component ? ": " : "", msg);
	}
}

void log_msg(log_level level, const char *component, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, component, fmt, ap);
	va_end(ap);
}
