/* main.c - parleyctl, the command-line client of Parley's agent API.
 *
 *   parleyctl [--url URL] [--token-file PATH | --token TOKEN] [--json] COMMAND ...
 *
 * Reads the command line against the command table (commands.c): options
 * may come anywhere before "--", each is checked against its kind, and a
 * command refuses options it does not take. The URL comes from --url or
 * PARLEY_URL, the token from --token, --token-file, PARLEY_TOKEN or
 * PARLEY_TOKEN_FILE, in that order; the token is never printed.
 *
 * Exit codes: 0 done, 1 the API refused or could not be reached, 2 usage,
 * 3 a reply, note or move to private did nothing: the conversation has new messages. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif

#define DEFAULT_URL "http://127.0.0.1:8080"
#define MAX_STDIN_TEXT (1024 * 1024)
#define MAX_TOKEN 1024
#define MAX_POSITIONALS 8

typedef struct globals {
	const char *url, *token, *token_file, *timeout;
	bool json, help, version;
} globals;

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("parleyctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs(" (see parleyctl --help)\n", stderr);
	va_end(ap);
	return CTL_EXIT_USAGE;
}

static void command_usage(FILE *out, const ctl_command *c)
{
	int col = fprintf(out, "  %s%s%s", c->words, c->args[0] ? " " : "", c->args);
	for (int o = 0; o < N_CTL_OPTS; o++) {
		if (!(c->opts & O(o)))
			continue;
		const ctl_option *opt = &ctl_options[o];
		bool needed = c->needs & O(o);
		char word[96];
		int n = snprintf(word, sizeof(word), "%s%s%s%s%s", needed ? "" : "[", opt->name,
		                 opt->meta ? " " : "", opt->meta ? opt->meta : "", needed ? "" : "]");
		if (col + 1 + n > 79)
			col = fprintf(out, "\n       ") - 1;
		col += fprintf(out, " %s", word);
	}
	if (c->help)
		fprintf(out, "\n      %s", c->help);
	fputc('\n', out);
}

static void usage(FILE *out, const char *group)
{
	fputs("Usage: parleyctl [--url URL] [--token-file PATH | --token TOKEN] [--json]\n"
	      "                 [--timeout SECONDS] COMMAND [ARGS]\n\nCommands:\n", out);
	for (const ctl_command *c = ctl_commands; c->words; c++)
		if (!group || (strncmp(c->words, group, strlen(group)) == 0 && c->words[strlen(group)] == ' '))
			command_usage(out, c);
	if (group)
		return;
	fputs("\nTEXT \"-\" reads the text from standard input.\n"
	      "Environment: PARLEY_URL (default " DEFAULT_URL "), PARLEY_TOKEN, PARLEY_TOKEN_FILE.\n"
	      "A token in the environment or a file is safer than --token, which other users\n"
	      "may see in the process list and which stays in the shell's history.\n"
	      "Exit codes: 0 done, 1 API or connection error, 2 usage, 3 nothing done: new messages.\n",
	      out);
}

/* ---------------------------------------------------------- checking */

static bool valid_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 18 || strspn(s, "0123456789") != n)
		return false;
	return strtoll(s, NULL, 10) > 0;
}

static bool in_choices(const char *s, const char *choices)
{
	size_t n = strlen(s);
	for (const char *p = choices; *p;) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if (len == n && strncmp(p, s, n) == 0)
			return true;
		p += len + (bar ? 1 : 0);
	}
	return false;
}

static bool valid_utf8(const char *s)
{
	json_t *j = json_string(s);   /* NULL when s is not UTF-8 */
	json_decref(j);
	return j != NULL;
}

static bool valid_value(const char *s, ctl_value kind, const char *choices)
{
	switch (kind) {
	case V_FLAG:
		return true;
	case V_ID:
		return valid_id(s);
	case V_TEXT:
		return valid_utf8(s);
	case V_CHOICE:
		return in_choices(s, choices);
	case V_CHOICES: {
		char *copy = ctl_xstrdup(s), *save = NULL;
		bool ok = s[0] && s[strlen(s) - 1] != ',' && !strstr(s, ",,");
		for (char *t = strtok_r(copy, ",", &save); ok && t; t = strtok_r(NULL, ",", &save))
			ok = in_choices(t, choices);
		free(copy);
		return ok;
	}
	case V_ASSIGNEE:
		return strcmp(s, "me") == 0 || strcmp(s, "none") == 0 || valid_id(s);
	case V_LIMIT:
		return valid_id(s) && strtoll(s, NULL, 10) <= 200;
	case V_IDLIST: {
		char *copy = ctl_xstrdup(s), *save = NULL;
		bool ok = s[0] && s[strlen(s) - 1] != ',' && !strstr(s, ",,");
		for (char *t = strtok_r(copy, ",", &save); ok && t; t = strtok_r(NULL, ",", &save))
			ok = valid_id(t);
		free(copy);
		return ok;
	}
	}
	return false;
}

static const char *what_is_valid(ctl_value kind, const char *choices)
{
	switch (kind) {
	case V_ID: return "a positive whole number";
	case V_TEXT: return "UTF-8 text";
	case V_CHOICE: return choices;
	case V_CHOICES: return "one or more of these, comma-separated:";
	case V_ASSIGNEE: return "me, none or an agent id";
	case V_LIMIT: return "a whole number from 1 to 200";
	case V_IDLIST: return "ids separated by commas";
	default: return "";
	}
}

/* ---------------------------------------------------------- the token */

static bool token_chars_ok(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > MAX_TOKEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7F)
			return false;
	return true;
}

/* The first line of the file, surrounding white space removed. */
static char *read_token_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "parleyctl: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
		fprintf(stderr, "parleyctl: warning: %s can be read by other users (chmod 600 it)\n", path);
	char buf[MAX_TOKEN + 2];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	char *start = buf;
	while (*start == ' ' || *start == '\t')
		start++;
	size_t len = strlen(start);
	while (len > 0 && (start[len - 1] == ' ' || start[len - 1] == '\t'))
		start[--len] = '\0';
	char *token = ctl_xstrdup(start);
	explicit_bzero(buf, sizeof(buf));
	return token;
}

/* The token the command runs with (a new string), NULL with *rc set. */
static char *find_token(const globals *g, int *rc)
{
	const char *file = g->token_file;
	char *token = NULL;
	if (g->token)
		token = ctl_xstrdup(g->token);
	else if (!file && getenv("PARLEY_TOKEN") && *getenv("PARLEY_TOKEN"))
		token = ctl_xstrdup(getenv("PARLEY_TOKEN"));
	else if (!file)
		file = getenv("PARLEY_TOKEN_FILE");
	if (!token && file && *file) {
		if (!(token = read_token_file(file))) {
			*rc = CTL_EXIT_USAGE;
			return NULL;
		}
	}
	if (!token) {
		fputs("parleyctl: no token: set PARLEY_TOKEN or PARLEY_TOKEN_FILE, or give --token-file PATH\n",
		      stderr);
		*rc = CTL_EXIT_USAGE;
		return NULL;
	}
	if (!token_chars_ok(token)) {
		/* Never echoed: it may be a real secret with a stray character. */
		fputs("parleyctl: the token is empty, too long or has characters a token cannot have\n", stderr);
		explicit_bzero(token, strlen(token));
		free(token);
		*rc = CTL_EXIT_USAGE;
		return NULL;
	}
	return token;
}

static char *read_stdin_text(void)
{
	ctl_buf b = { 0 };
	char chunk[8192];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
		if (b.len + n > MAX_STDIN_TEXT) {
			ctl_buf_free(&b);
			return NULL;
		}
		ctl_buf_add(&b, chunk, n);
	}
	if (b.len != strlen(ctl_buf_str(&b))) {   /* a NUL byte */
		ctl_buf_free(&b);
		return NULL;
	}
	return ctl_buf_take(&b);
}

/* --------------------------------------------------------- the words */

/* The row whose words are the most leading positionals; *used how many. */
static const ctl_command *find_command(char **pos, int npos, int *used)
{
	const ctl_command *best = NULL;
	*used = 0;
	for (const ctl_command *c = ctl_commands; c->words; c++) {
		int n = 0;
		const char *w = c->words;
		bool match = true;
		while (*w && match) {
			size_t len = strcspn(w, " ");
			match = n < npos && strlen(pos[n]) == len && strncmp(pos[n], w, len) == 0;
			n++;
			w += len + (w[len] == ' ');
		}
		if (match && n > *used) {
			best = c;
			*used = n;
		}
	}
	return best;
}

/* Sets *value for an option that takes one: "--x=v" or the next word. */
static bool take_value(int argc, char **argv, int *i, const char *inline_value, const char **value)
{
	if (inline_value) {
		*value = inline_value;
		return true;
	}
	if (*i + 1 >= argc)
		return false;
	*value = argv[++*i];
	return true;
}

static int parse(int argc, char **argv, globals *g, ctl_ctx *ctx, char **pos, int *npos)
{
	bool rest = false;
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (rest || a[0] != '-' || a[1] == '\0') {
			if (*npos == MAX_POSITIONALS)
				return usage_error("too many arguments");
			pos[(*npos)++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			rest = true;
			continue;
		}
		char name[64];
		const char *eq = strchr(a, '='), *inline_value = eq ? eq + 1 : NULL;
		size_t len = eq ? (size_t)(eq - a) : strlen(a);
		if (len >= sizeof(name))
			return usage_error("unknown option %s", a);
		memcpy(name, a, len);
		name[len] = '\0';

		struct { const char *name; const char **value; bool *flag; } global[] = {
			{ "--url", &g->url, NULL }, { "--token", &g->token, NULL },
			{ "--token-file", &g->token_file, NULL }, { "--timeout", &g->timeout, NULL },
			{ "--json", NULL, &g->json }, { "--help", NULL, &g->help }, { "-h", NULL, &g->help },
			{ "--version", NULL, &g->version },
		};
		bool known = false;
		for (size_t k = 0; k < sizeof(global) / sizeof(global[0]) && !known; k++) {
			if (strcmp(name, global[k].name) != 0)
				continue;
			known = true;
			if (global[k].flag && inline_value)
				return usage_error("%s takes no value", name);
			if (global[k].flag)
				*global[k].flag = true;
			else if (!take_value(argc, argv, &i, inline_value, global[k].value))
				return usage_error("%s needs a value", name);
		}
		for (int o = 0; o < N_CTL_OPTS && !known; o++) {
			if (strcmp(name, ctl_options[o].name) != 0)
				continue;
			known = true;
			if (ctl_options[o].kind == V_FLAG && inline_value)
				return usage_error("%s takes no value", name);
			if (ctl_options[o].kind == V_FLAG)
				ctx->opt[o] = "1";
			else if (!take_value(argc, argv, &i, inline_value, &ctx->opt[o]))
				return usage_error("%s needs a value", name);
		}
		if (!known)
			return usage_error("unknown option %s", name);
	}
	return CTL_EXIT_OK;
}

/* Checks the arguments and options the command got. */
static int check(const ctl_command *cmd, ctl_ctx *ctx, char **args, int nargs)
{
	char names[64];
	snprintf(names, sizeof(names), "%s", cmd->args);
	int want = 0;
	char *save = NULL;
	for (char *n = strtok_r(names, " ", &save); n; n = strtok_r(NULL, " ", &save), want++) {
		if (want >= nargs)
			return usage_error("%s: missing %s", cmd->words, n);
		const char *choices;
		ctl_value kind = ctl_arg_kind(n, &choices);
		bool from_stdin = kind == V_TEXT && strcmp(args[want], "-") == 0;
		if (!from_stdin && !valid_value(args[want], kind, choices)) {
			fprintf(stderr, "parleyctl: %s: %s must be %s\n", cmd->words, n, what_is_valid(kind, choices));
			return CTL_EXIT_USAGE;
		}
		if (from_stdin && !ctx->stdin_text) {
			ctx->stdin_text = read_stdin_text();
			if (!ctx->stdin_text || !valid_utf8(ctx->stdin_text)) {
				fprintf(stderr, "parleyctl: %s: standard input must be UTF-8 text of at most 1 MiB\n",
				        cmd->words);
				return CTL_EXIT_USAGE;
			}
		}
		ctx->args[want] = args[want];
	}
	if (nargs > want)
		return usage_error("%s: unexpected argument \"%s\"", cmd->words, args[want]);
	for (int o = 0; o < N_CTL_OPTS; o++) {
		const ctl_option *opt = &ctl_options[o];
		if (ctx->opt[o] && !(cmd->opts & O(o)))
			return usage_error("%s does not take %s", cmd->words, opt->name);
		if (!ctx->opt[o] && (cmd->needs & O(o)))
			return usage_error("%s needs %s", cmd->words, opt->name);
		if (ctx->opt[o] && !valid_value(ctx->opt[o], opt->kind, opt->choices)) {
			bool several = opt->kind == V_CHOICES;
			fprintf(stderr, "parleyctl: %s must be %s%s%s\n", opt->name, what_is_valid(opt->kind, opt->choices),
			        several ? " " : "", several ? opt->choices : "");
			return CTL_EXIT_USAGE;
		}
	}
	return CTL_EXIT_OK;
}

static const char *group_of(const char *word)
{
	size_t n = strlen(word);
	for (const ctl_command *c = ctl_commands; c->words; c++)
		if (strncmp(c->words, word, n) == 0 && c->words[n] == ' ')
			return word;
	return NULL;
}

int main(int argc, char **argv)
{
	globals g = { 0 };
	ctl_ctx ctx = { .out = stdout, .now = time(NULL) };
	char *pos[MAX_POSITIONALS];
	int npos = 0, used, rc;

	if ((rc = parse(argc, argv, &g, &ctx, pos, &npos)) != CTL_EXIT_OK)
		return rc;
	if (g.help) {
		usage(stdout, npos > 0 ? group_of(pos[0]) : NULL);
		return CTL_EXIT_OK;
	}
	if (g.version) {
		printf("parleyctl %s\n", PACKAGE_VERSION);
		return CTL_EXIT_OK;
	}
	if (npos == 0) {
		usage(stderr, NULL);
		return CTL_EXIT_USAGE;
	}
	const ctl_command *cmd = find_command(pos, npos, &used);
	if (!cmd) {
		const char *group = group_of(pos[0]);
		if (group && npos == 1) {
			fprintf(stderr, "parleyctl: %s what?\n", group);
			usage(stderr, group);
			return CTL_EXIT_USAGE;
		}
		return usage_error("unknown command \"%s%s\"", pos[0], group && npos > 1 ? " ..." : "");
	}
	if ((rc = check(cmd, &ctx, pos + used, npos - used)) != CTL_EXIT_OK)
		goto out;

	ctx.json = g.json;
	const char *url = g.url ? g.url : getenv("PARLEY_URL");
	if (!url || !*url)
		url = DEFAULT_URL;
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
		rc = usage_error("the URL must start with http:// or https://");
		goto out;
	}
	long timeout = CTL_TOTAL_TIMEOUT_S;
	if (g.timeout) {
		if (!valid_id(g.timeout) || strtoll(g.timeout, NULL, 10) > 3600) {
			rc = usage_error("--timeout must be 1 to 3600 seconds");
			goto out;
		}
		timeout = strtol(g.timeout, NULL, 10);
	}
	char *token = NULL;
	if (cmd->run != ctl_run_health && !(token = find_token(&g, &rc)))
		goto out;
	bool ready = ctl_client_init(&ctx.client, url, token, timeout);
	if (token) {
		explicit_bzero(token, strlen(token));
		free(token);
	}
	if (!ready) {
		fputs("parleyctl: cannot start libcurl\n", stderr);
		rc = CTL_EXIT_API;
	} else {
		rc = (cmd->run ? cmd->run : ctl_run_simple)(&ctx, cmd);
	}
	ctl_client_free(&ctx.client);
out:
	free(ctx.stdin_text);
	if (fflush(stdout) != 0 && rc == CTL_EXIT_OK)
		rc = CTL_EXIT_API;
	return rc;
}
