/* log.h - one line per event on stderr, as text or JSON.
 *
 * Never pass a secret to these functions: nothing here can tell it apart. */
#ifndef PARLEY_CORE_LOG_H
#define PARLEY_CORE_LOG_H

#include "parley/parley.h"  /* PARLEY_MUSTCHECK */

#include <stdarg.h>
#include <stdbool.h>

typedef enum log_level {
	LOGL_ERROR = 0,
	LOGL_WARN = 1,
	LOGL_INFO = 2,
	LOGL_DEBUG = 3
} log_level;

void log_set_level(log_level level);
log_level log_get_level(void);
void log_set_json(bool json);
/* Parses "error", "warn", "info", "debug". Returns false on anything else. */
PARLEY_MUSTCHECK
bool log_parse_level(const char *name, log_level *out);
const char *log_level_name(log_level level);

/* `component` (borrowed, may be NULL) names the subsystem or plugin instance,
 * e.g. "db" or "channel/demo". Writes one line to stderr. */
void log_msg(log_level level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(log_level level, const char *component, const char *fmt, va_list ap);

#define log_error(comp, ...) log_msg(LOGL_ERROR, (comp), __VA_ARGS__)
#define log_warn(comp, ...) log_msg(LOGL_WARN, (comp), __VA_ARGS__)
#define log_info(comp, ...) log_msg(LOGL_INFO, (comp), __VA_ARGS__)
#define log_debug(comp, ...) log_msg(LOGL_DEBUG, (comp), __VA_ARGS__)

#endif
