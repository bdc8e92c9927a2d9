/* cmd.h - parleyctl's commands: one table row per command (commands.c).
 *
 * A row says which words select it, its positional arguments, the options
 * it takes, the API call (method and path template: "{1}" is the first
 * argument, URL-encoded), how the request body is built and how the answer
 * is shown (table columns for lists, a printer, or a one-line message
 * template). A moved endpoint is a one-line fix in that table. Commands
 * that need more than one call (show, reply, health) have a run function. */
#ifndef PARLEYCTL_CMD_H
#define PARLEYCTL_CMD_H

#include <stdbool.h>
#include <stdio.h>
#include <time.h>
#include <jansson.h>

#include "ctl.h"
#include "http.h"
#include "table.h"

/* Options a command may take (the global ones live in main.c). */
enum ctl_opt {
	OPT_STATUS, OPT_ASSIGNEE, OPT_TEAM, OPT_CHANNEL, OPT_SORT, OPT_LIMIT, OPT_CURSOR, OPT_ALL,
	OPT_FORCE, OPT_SEEN, OPT_PUBLIC_TEXT, OPT_ROLE, OPT_TEAMS, OPT_AGENT,
	N_CTL_OPTS
};
#define O(x) (1u << (x))

/* How an option's value or a positional argument is checked. */
typedef enum ctl_value {
	V_FLAG,       /* no value */
	V_ID,         /* a positive whole number */
	V_TEXT,       /* UTF-8 text; "-" as a TEXT argument reads standard input */
	V_CHOICE,     /* one of `choices` */
	V_CHOICES,    /* one or more of `choices`, comma-separated */
	V_ASSIGNEE,   /* me, none or an id */
	V_IDLIST,     /* "1,2,3" */
	V_LIMIT,      /* 1..200 */
} ctl_value;

typedef struct ctl_option {
	const char *name;      /* "--status" */
	const char *meta;      /* its value in the usage text: "STATUS" */
	ctl_value kind;
	const char *choices;   /* V_CHOICE: "open|pending|resolved|closed" */
	const char *query;     /* the query parameter it becomes on a GET, or NULL */
} ctl_option;

#define CTL_MAX_ARGS 3

typedef struct ctl_ctx {
	ctl_client client;
	bool json;
	time_t now;
	const char *args[CTL_MAX_ARGS];   /* the positional arguments after the command words */
	char *stdin_text;                 /* a TEXT argument given as "-" */
	const char *opt[N_CTL_OPTS];      /* option values; flags are "1" */
	FILE *out;
} ctl_ctx;

struct ctl_command;
typedef int (*ctl_run_fn)(ctl_ctx *ctx, const struct ctl_command *cmd);
typedef json_t *(*ctl_body_fn)(const ctl_ctx *ctx);
typedef void (*ctl_print_fn)(ctl_ctx *ctx, json_t *answer);

typedef struct ctl_command {
	const char *words;            /* "conversations list"; NULL ends the table */
	const char *args;             /* positional argument names: "ID TEXT" */
	unsigned opts;                /* O(OPT_...) it takes */
	unsigned needs;               /* ... and of those, must have */
	const char *method, *path;
	ctl_body_fn body;             /* NULL: no body */
	const ctl_column *columns;    /* a list: its columns */
	ctl_print_fn print;           /* an object: its printer */
	const char *done;             /* else this line: "{1}" an argument, "{.a.b}" a field */
	ctl_run_fn run;               /* NULL: ctl_run_simple */
	const char *help;
} ctl_command;

extern const ctl_command ctl_commands[];
extern const ctl_column ctl_conversation_columns[];
extern const ctl_option ctl_options[N_CTL_OPTS];

/* The kind of a positional argument, by its name in ctl_command.args. */
ctl_value ctl_arg_kind(const char *name, const char **choices);

/* The path template with {N} replaced by argument N, URL-encoded, and for
 * GETs the given options that have a query name added. A new string. */
char *ctl_target(const ctl_ctx *ctx, const ctl_command *cmd, const char *path);
/* Argument i (0-based), standard input's text when it was "-". */
const char *ctl_arg(const ctl_ctx *ctx, int i);

/* Reports a failed call (r->error when set, else the API's error code and
 * detail; with --json the API's error body goes to stdout too) and
 * returns CTL_EXIT_API. */
int ctl_fail(ctl_ctx *ctx, const ctl_response *r);
/* Was the answer a success with a JSON body (or an empty 204)? */
bool ctl_ok(const ctl_response *r);

/* The answer as JSON on stdout, safe for a terminal (text.h). */
void ctl_print_json(ctl_ctx *ctx, json_t *v);
/* A message template line (see ctl_command.done), every value escaped. */
void ctl_print_done(ctl_ctx *ctx, const char *tmpl, json_t *answer);

/* Every item of a list from the page at cursor (NULL: the first) on: an
 * array answer as it is, a page's items followed through next_cursor when
 * `all` (at most CTL_MAX_ITEMS); *next the last page's next_cursor (a new
 * string or NULL). On failure r holds the failed answer. */
#define CTL_MAX_ITEMS 100000
bool ctl_fetch_list(ctl_ctx *ctx, const char *target, const char *cursor, bool all, json_t **items,
                    char **next, ctl_response *r) CTL_MUSTCHECK;

int ctl_run_simple(ctl_ctx *ctx, const ctl_command *cmd);
int ctl_run_list(ctl_ctx *ctx, const ctl_command *cmd);
int ctl_run_health(ctl_ctx *ctx, const ctl_command *cmd);

/* conversations.c */
int ctl_run_show_conversation(ctl_ctx *ctx, const ctl_command *cmd);
/* label (13 columns) and the elements of an array of objects on one line:
 * each element the non-null values at `paths` (NULL-ended), ", " between. */
void ctl_print_joined(ctl_ctx *ctx, const char *label, json_t *arr, const char *const *paths);
/* A reply, note or move to private: the row's body (if any) plus text
 * (argument 2), last_seen_message_id and force; exit 3 on a collision. */
int ctl_run_reply(ctl_ctx *ctx, const ctl_command *cmd);
/* One message, its text indented under its first line; conversation (may
 * be NULL): the one being shown, so a message of another conversation of
 * the case, or of other visibility, says so. */
void ctl_print_message(ctl_ctx *ctx, json_t *message, json_t *conversation);

/* print.c */
void ctl_print_object(ctl_ctx *ctx, json_t *answer);
void ctl_print_me(ctl_ctx *ctx, json_t *answer);
void ctl_print_customer(ctl_ctx *ctx, json_t *answer);
void ctl_print_new_token(ctl_ctx *ctx, json_t *answer);

#endif
