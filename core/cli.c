/* cli.c - parleyd's command line: one table row per subcommand.
 *
 * Every subcommand is a row of `commands`: the option that selects it, the
 * options it takes besides -c, whether it needs the configuration, and the
 * function that runs it. Parsing fills one cli_args; the row chosen checks
 * that no option of another command was given, so a new subcommand is one
 * row and one function, not another branch in main().
 *
 * Exit codes: 0 done, 1 runtime failure, 2 configuration or usage error. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "accounts.h"
#include "admin.h"
#include "metrics.h"
#include "migrate.h"
#include "password.h"
#include "plugin_loader.h"
#include "policy_store.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif
#ifndef PARLEY_PLUGIN_DIR
#define PARLEY_PLUGIN_DIR "/usr/local/lib/parley/plugins"
#endif

/* Options with a value besides -c; each has a bit, so a row can say which it takes. */
enum arg_bit {
	ARG_INTO = 1 << 0,
	ARG_ACTOR = 1 << 1,
	ARG_TEXT = 1 << 2,
	ARG_PUBLIC_TEXT = 1 << 3,
	ARG_VISIBILITY = 1 << 4,
	ARG_PLUGIN_DIR = 1 << 5,
	ARG_FORMAT = 1 << 6,
	ARG_EXPECT_VERSION = 1 << 7,
	ARG_ROLE = 1 << 8,
	ARG_AGENT = 1 << 9,
	ARG_TEAMS = 1 << 10,
	ARG_NAME = 1 << 11,
	ARG_VERBOSE = 1 << 15,    /* -v: no value */
};
#define N_VALUE_ARGS 12

typedef struct cli_args {
	const char *config_file;
	const char *value;        /* the selecting option's own argument, if it has one */
	const char *into, *actor, *text, *public_text, *visibility, *plugin_dir, *format;
	const char *expect_version, *role, *agent, *teams, *name;
	unsigned given;           /* enum arg_bit of the options given */
} cli_args;

typedef int (*command_fn)(const cli_args *a, cfg *c, cli_daemon_fn daemon);

typedef struct command {
	const char *option;       /* "--migrate"; NULL for the daemon itself */
	bool has_value;           /* --reply CONVERSATION */
	bool needs_config;
	unsigned takes;           /* enum arg_bit it accepts */
	unsigned needs;           /* enum arg_bit it requires */
	command_fn run;
} command;

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: parleyd -c FILE [--check-config | --migrate]\n"
	        "       parleyd -c FILE --merge-customer SOURCE --into TARGET [--actor NAME]\n"
	        "       parleyd -c FILE --unmerge AUDIT_ID [--actor NAME]\n"
	        "       parleyd -c FILE --reply CONVERSATION --text TEXT [--visibility V] [--agent EMAIL]\n"
	        "               [--actor NAME]\n"
	        "       parleyd -c FILE --move-to-private CONVERSATION --text TEXT [--public-text TEXT]\n"
	        "               [--agent EMAIL] [--actor NAME]\n"
	        "       parleyd -c FILE --apply-policy POLICYFILE [--expect-version N] [--actor NAME]\n"
	        "       parleyd -c FILE --show-policy\n"
	        "       parleyd -c FILE --create-token NAME --role ROLE [--agent EMAIL] [--teams IDS]\n"
	        "       parleyd -c FILE --create-admin EMAIL [--name NAME] < PASSWORD\n"
	        "       parleyd --list-plugins [--plugin-dir DIR | -c FILE] [-v]\n"
	        "       parleyd --version\n"
	        "       parleyd --help-config [--format=text|markdown]\n"
	        "\n"
	        "  -c, --config FILE    the JSON configuration (see docs/CONFIG.md)\n"
	        "      --check-config   validate the configuration and the plugins' configs, then exit\n"
	        "      --migrate        apply database migrations, then exit\n"
	        "      --merge-customer SOURCE --into TARGET\n"
	        "                       merge customer SOURCE into TARGET (identities, conversations,\n"
	        "                       cases, contacts); prints the audit id that undoes it\n"
	        "      --unmerge AUDIT_ID\n"
	        "                       undo that merge: everything moves back\n"
	        "      --reply CONVERSATION --text TEXT\n"
	        "                       reply on the conversation's channel (queued; the job runner of\n"
	        "                       a running parleyd sends it); --visibility public|private must be\n"
	        "                       the conversation's own\n"
	        "      --move-to-private CONVERSATION --text TEXT\n"
	        "                       send TEXT privately to the author of a public conversation, in a\n"
	        "                       new private conversation of the same case; once it is sent, a\n"
	        "                       public note (--public-text, default the channel's\n"
	        "                       move_to_private_text) says so; with --reply and\n"
	        "                       --move-to-private, --agent EMAIL: that agent is the author\n"
	        "      --apply-policy POLICYFILE\n"
	        "                       validate the cluster policy file and store it as the next\n"
	        "                       version, which every node applies; with --expect-version N,\n"
	        "                       refused unless N is the version in force\n"
	        "      --show-policy    print the cluster policy version in force and its body\n"
	        "      --create-token NAME --role agent|supervisor|admin\n"
	        "                       create an API token and print its secret (shown once); --agent\n"
	        "                       EMAIL: it acts for that agent; --teams 1,2: only those teams\n"
	        "      --create-admin EMAIL [--name NAME]\n"
	        "                       create an admin agent who logs in with EMAIL and the password\n"
	        "                       read from the first line of standard input (not echoed on a\n"
	        "                       terminal; 12 bytes at least); refused when EMAIL exists\n"
	        "      --actor NAME     who is recorded in the audit log (default: cli:$USER)\n"
	        "      --list-plugins   list the plugins in the plugin directory\n"
	        "      --help-config    print every core setting: type, default, range, SIGHUP, meaning\n"
	        "      --plugin-dir DIR the plugin directory for --list-plugins\n"
	        "  -v, --verbose        with --list-plugins: descriptions and config keys\n"
	        "      --version        print the version and the plugin ABI version\n"
	        "  -h, --help           this text\n");
}

/* ------------------------------------------------------------ commands */

static int cmd_version(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)a, (void)c, (void)daemon;
	printf("parleyd %s (plugin ABI %d.%d, schema version %d)\n", PACKAGE_VERSION, PARLEY_ABI_MAJOR,
	       PARLEY_ABI_MINOR, migrate_latest_version());
	return 0;
}

static int cmd_help(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)a, (void)c, (void)daemon;
	usage(stdout);
	return 0;
}

static int cmd_list_plugins(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)daemon;
	/* -c only names the directory here; --plugin-dir wins. */
	const char *dir = a->plugin_dir ? a->plugin_dir : c ? c->plugin_dir : PARLEY_PLUGIN_DIR;
	return loader_list_dir(dir, stdout, (a->given & ARG_VERBOSE) != 0) ? 0 : 1;
}

static int cmd_help_config(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)c, (void)daemon;
	bool md = a->format != NULL && strcmp(a->format, "markdown") == 0;
	if (a->format != NULL && !md && strcmp(a->format, "text") != 0) {
		fprintf(stderr, "parleyd: --format text|markdown goes with --help-config\n");
		return CLI_EXIT_CONFIG;
	}
	cfg_print_reference(stdout, md);
	return 0;
}

static int cmd_check_config(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)daemon;
	/* Load every plugin and create every instance: that validates the
	 * plugins' own configs too. Nothing is started. */
	char err[2048];
	plugin_set *ps = NULL;
	if (!plugins_load(c, &ps, err, sizeof(err))) {
		fprintf(stderr, "parleyd: %s\n", err);
		return CLI_EXIT_CONFIG;
	}
	plugins_free(ps);
	metrics_reset();
	printf("%s: configuration OK\n", a->config_file);
	return 0;
}

static int cmd_migrate(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)a, (void)daemon;
	char err[2048];
	int applied = 0;
	if (!migrate_apply(c->database.dsn, &applied, err, sizeof(err))) {
		fprintf(stderr, "parleyd: migrations: %s\n", err);
		return 1;
	}
	printf("applied %d migration(s); schema version %d\n", applied, migrate_latest_version());
	return 0;
}

static int cmd_merge(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)daemon;
	char err[2048];
	long long audit_id = 0;
	if (!admin_merge_customers(c->database.dsn, a->value, a->into, a->actor, &audit_id, err,
	                           sizeof(err))) {
		fprintf(stderr, "parleyd: merge: %s\n", err);
		return 1;
	}
	printf("merged customer %s into %s (audit %lld; undo with --unmerge %lld)\n", a->value, a->into,
	       audit_id, audit_id);
	return 0;
}

static int cmd_unmerge(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)daemon;
	char err[2048];
	if (!admin_unmerge(c->database.dsn, a->value, a->actor, err, sizeof(err))) {
		fprintf(stderr, "parleyd: unmerge: %s\n", err);
		return 1;
	}
	printf("unmerged (audit %s)\n", a->value);
	return 0;
}

static int cmd_reply(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)daemon;
	char err[2048];
	long long message_id = 0;
	if (!admin_reply(c->database.dsn, a->value, a->text, a->visibility, a->actor, a->agent,
	                 &message_id, err, sizeof(err))) {
		fprintf(stderr, "parleyd: reply: %s\n", err);
		return 1;
	}
	printf("reply queued as message %lld\n", message_id);
	return 0;
}

/* {"instance": move_to_private_text, ...} for every channel. Owned by the caller. */
static char *move_texts_json(const cfg *c)
{
	json_t *o = json_object();
	for (size_t i = 0; i < c->n_channels; i++)
		json_object_set_new(o, c->channels[i].name, json_string(c->channels[i].move_to_private_text));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s == NULL)
		abort();
	return s;
}

static int cmd_move_to_private(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)daemon;
	char err[2048];
	long long private_id = 0;
	char *texts = move_texts_json(c);
	bool ok = admin_move_to_private(c->database.dsn, a->value, a->text, a->public_text, texts,
	                                a->actor, a->agent, &private_id, err, sizeof(err));
	free(texts);
	if (!ok) {
		fprintf(stderr, "parleyd: move to private: %s\n", err);
		return 1;
	}
	printf("moved to private conversation %lld\n", private_id);
	return 0;
}

/* "N" of --expect-version: a whole number >= 0 (0: no version stored yet). */
static bool parse_version(const char *s, long long *out)
{
	if (s == NULL || *s == '\0' || strlen(s) > 18)
		return false;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	*out = strtoll(s, NULL, 10);
	return true;
}

static int cmd_apply_policy(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)daemon;
	char err[2048];
	long long expect = -1;
	if (a->expect_version != NULL && !parse_version(a->expect_version, &expect)) {
		fprintf(stderr, "parleyd: --expect-version takes a version number (0 or more)\n");
		return CLI_EXIT_CONFIG;
	}
	cfg *policy = NULL;
	if (!cfg_policy_load(a->value, &policy, err, sizeof(err))) {
		fprintf(stderr, "parleyd: %s\n", err);
		return CLI_EXIT_CONFIG;
	}
	json_t *body = cfg_cluster_json(policy);
	cfg_free(policy);
	policy_applied r = { 0 };
	policy_status st = policy_store_apply(c->database.dsn, body, expect, false, a->actor, &r, err,
	                                      sizeof(err));
	json_decref(body);
	if (st == POLICY_STALE) {
		fprintf(stderr, "parleyd: apply policy: %s; nothing applied (--show-policy prints "
		        "the version in force)\n", err);
		return 1;
	}
	if (st != POLICY_DONE) {
		fprintf(stderr, "parleyd: apply policy: %s\n", err);
		return 1;
	}
	if (r.changed)
		printf("policy version %lld applied (was %lld)\n", r.version, r.previous);
	else
		printf("policy unchanged (version %lld)\n", r.version);
	return 0;
}

static int cmd_show_policy(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)a, (void)daemon;
	char err[2048], applied[256];
	long long version = 0;
	json_t *body = NULL;
	if (!policy_store_current(c->database.dsn, &version, &body, applied, sizeof(applied), err,
	                          sizeof(err))) {
		fprintf(stderr, "parleyd: show policy: %s\n", err);
		return 1;
	}
	if (body == NULL) {
		printf("no cluster policy stored yet (a node's first start stores version 1)\n");
		return 0;
	}
	char *text = json_dumps(body, JSON_INDENT(2) | JSON_SORT_KEYS);
	printf("policy version %lld (applied %s)\n%s\n", version, applied, text ? text : "");
	free(text);
	json_decref(body);
	return 0;
}

static int cmd_create_token(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)daemon;
	char err[2048], secret[ACCOUNTS_SECRET_MAX];
	long long id = 0;
	if (!accounts_create_token(c->database.dsn, a->value, a->role, a->agent, a->teams, a->actor, &id,
	                           secret, sizeof(secret), err, sizeof(err))) {
		fprintf(stderr, "parleyd: create token: %s\n", err);
		return 1;
	}
	/* The secret is shown this once; only its digest is stored. */
	printf("%s\n", secret);
	fprintf(stderr, "token %lld created; keep the secret above, it is not shown again\n", id);
	return 0;
}

static int cmd_create_admin(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)daemon;
	char err[2048], password[PASSWORD_MAX_BYTES + 2];
	long long id = 0;
	if (!accounts_read_password(stdin, password, sizeof(password), err, sizeof(err))) {
		fprintf(stderr, "parleyd: create admin: %s\n", err);
		return CLI_EXIT_CONFIG;
	}
	bool ok = accounts_create_admin(c->database.dsn, a->value, a->name, password, a->actor, &id, err,
	                                sizeof(err));
	OPENSSL_cleanse(password, sizeof(password));
	if (!ok) {
		fprintf(stderr, "parleyd: create admin: %s\n", err);
		return 1;
	}
	printf("admin %s created (agent %lld)\n", a->value, id);
	return 0;
}

static int cmd_daemon(const cli_args *a, cfg *c, cli_daemon_fn daemon)
{
	(void)a;
	return daemon(c);
}

/* The selecting options, in getopt's numbering from 1000 (index + 1000). */
static const command commands[] = {
	{ "--version", false, false, 0, 0, cmd_version },
	{ "--help", false, false, 0, 0, cmd_help },
	{ "--list-plugins", false, false, ARG_PLUGIN_DIR | ARG_VERBOSE, 0, cmd_list_plugins },
	{ "--help-config", false, false, ARG_FORMAT, 0, cmd_help_config },
	{ "--check-config", false, true, 0, 0, cmd_check_config },
	{ "--migrate", false, true, 0, 0, cmd_migrate },
	{ "--merge-customer", true, true, ARG_INTO | ARG_ACTOR, ARG_INTO, cmd_merge },
	{ "--unmerge", true, true, ARG_ACTOR, 0, cmd_unmerge },
	{ "--reply", true, true, ARG_TEXT | ARG_VISIBILITY | ARG_ACTOR | ARG_AGENT, ARG_TEXT, cmd_reply },
	{ "--move-to-private", true, true, ARG_TEXT | ARG_PUBLIC_TEXT | ARG_ACTOR | ARG_AGENT, ARG_TEXT,
	  cmd_move_to_private },
	{ "--apply-policy", true, true, ARG_EXPECT_VERSION | ARG_ACTOR, 0, cmd_apply_policy },
	{ "--show-policy", false, true, 0, 0, cmd_show_policy },
	{ "--create-token", true, true, ARG_ROLE | ARG_AGENT | ARG_TEAMS | ARG_ACTOR, ARG_ROLE, cmd_create_token },
	{ "--create-admin", true, true, ARG_NAME | ARG_ACTOR, 0, cmd_create_admin },
	{ NULL, false, true, 0, 0, cmd_daemon },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))
#define DAEMON (&commands[N_COMMANDS - 1])

/* The options that go with a command, and what a misplaced one says. */
static const struct {
	unsigned bit;
	const char *option;
	const char *goes_with;
} arg_names[] = {
	{ ARG_INTO, "--into", "--merge-customer" },
	{ ARG_ACTOR, "--actor", "--merge-customer, --unmerge, --reply, --move-to-private, --apply-policy, --create-token or --create-admin" },
	{ ARG_TEXT, "--text", "--reply or --move-to-private" },
	{ ARG_PUBLIC_TEXT, "--public-text", "--move-to-private" },
	{ ARG_VISIBILITY, "--visibility", "--reply" },
	{ ARG_PLUGIN_DIR, "--plugin-dir", "--list-plugins" },
	{ ARG_VERBOSE, "--verbose", "--list-plugins" },
	{ ARG_FORMAT, "--format text|markdown", "--help-config" },
	{ ARG_EXPECT_VERSION, "--expect-version", "--apply-policy" },
	{ ARG_ROLE, "--role", "--create-token" },
	{ ARG_AGENT, "--agent", "--reply, --move-to-private or --create-token" },
	{ ARG_TEAMS, "--teams", "--create-token" },
	{ ARG_NAME, "--name", "--create-admin" },
};

enum { OPT_ARG = 2000 };

/* Is every option given one the command takes, and every one it needs there? */
static bool args_fit(const command *cmd, const cli_args *a)
{
	for (size_t i = 0; i < sizeof(arg_names) / sizeof(arg_names[0]); i++) {
		unsigned bit = arg_names[i].bit;
		if ((a->given & bit) && !(cmd->takes & bit)) {
			fprintf(stderr, "parleyd: %s goes with %s\n", arg_names[i].option, arg_names[i].goes_with);
			return false;
		}
		if ((cmd->needs & bit) && !(a->given & bit)) {
			fprintf(stderr, "parleyd: %s goes with %s\n", arg_names[i].option, cmd->option);
			return false;
		}
	}
	return true;
}

int cli_main(int argc, char **argv, cli_daemon_fn daemon)
{
	struct option opts[N_COMMANDS + N_VALUE_ARGS + 2];
	size_t n = 0;
	for (size_t i = 0; i + 1 < N_COMMANDS; i++)
		opts[n++] = (struct option){ commands[i].option + 2,
			                     commands[i].has_value ? required_argument : no_argument, NULL,
			                     1000 + (int)i };
	opts[n++] = (struct option){ "config", required_argument, NULL, 'c' };
	opts[n++] = (struct option){ "into", required_argument, NULL, OPT_ARG + 0 };
	opts[n++] = (struct option){ "actor", required_argument, NULL, OPT_ARG + 1 };
	opts[n++] = (struct option){ "text", required_argument, NULL, OPT_ARG + 2 };
	opts[n++] = (struct option){ "public-text", required_argument, NULL, OPT_ARG + 3 };
	opts[n++] = (struct option){ "visibility", required_argument, NULL, OPT_ARG + 4 };
	opts[n++] = (struct option){ "plugin-dir", required_argument, NULL, OPT_ARG + 5 };
	opts[n++] = (struct option){ "format", required_argument, NULL, OPT_ARG + 6 };
	opts[n++] = (struct option){ "expect-version", required_argument, NULL, OPT_ARG + 7 };
	opts[n++] = (struct option){ "role", required_argument, NULL, OPT_ARG + 8 };
	opts[n++] = (struct option){ "agent", required_argument, NULL, OPT_ARG + 9 };
	opts[n++] = (struct option){ "teams", required_argument, NULL, OPT_ARG + 10 };
	opts[n++] = (struct option){ "name", required_argument, NULL, OPT_ARG + 11 };
	opts[n] = (struct option){ NULL, 0, NULL, 0 };

	cli_args a = { 0 };
	const command *cmd = NULL;
	/* In the order of enum arg_bit and of the OPT_ARG options above. */
	const char **values[N_VALUE_ARGS] = { &a.into, &a.actor, &a.text, &a.public_text,
		                              &a.visibility, &a.plugin_dir, &a.format,
		                              &a.expect_version, &a.role, &a.agent, &a.teams,
		                              &a.name };
	int c;
	while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		if (c == 'c') {
			a.config_file = optarg;
		} else if (c == 'v') {
			a.given |= ARG_VERBOSE;
		} else if (c == 'h') {
			return cmd_help(&a, NULL, daemon);
		} else if (c >= 1000 && c < 1000 + (int)N_COMMANDS - 1) {
			const command *picked = &commands[c - 1000];
			/* --version and --help answer at once, whatever follows. */
			if (!picked->needs_config && picked->takes == 0)
				return picked->run(&a, NULL, daemon);
			if (cmd != NULL && cmd != picked) {
				fprintf(stderr, "parleyd: %s and %s are two commands; give one\n", cmd->option,
				        picked->option);
				return CLI_EXIT_CONFIG;
			}
			cmd = picked;
			a.value = optarg;
		} else if (c >= OPT_ARG && c < OPT_ARG + N_VALUE_ARGS) {
			*values[c - OPT_ARG] = optarg;
			a.given |= 1u << (c - OPT_ARG);
		} else {
			usage(stderr);
			return CLI_EXIT_CONFIG;
		}
	}
	if (cmd == NULL)
		cmd = DAEMON;
	if (!args_fit(cmd, &a))
		return CLI_EXIT_CONFIG;
	if (optind < argc) {
		fprintf(stderr, "parleyd: unexpected argument: %s\n", argv[optind]);
		usage(stderr);
		return CLI_EXIT_CONFIG;
	}

	char err[2048];
	cfg *config = NULL;
	if (cmd->needs_config && a.config_file == NULL) {
		fprintf(stderr, "parleyd: no configuration given (-c FILE)\n");
		usage(stderr);
		return CLI_EXIT_CONFIG;
	}
	/* --list-plugins reads -c only for plugin_dir, and only when it has no --plugin-dir. */
	bool load = a.config_file != NULL &&
	            (cmd->needs_config || (cmd->run == cmd_list_plugins && a.plugin_dir == NULL));
	if (load) {
		if (!cfg_load(a.config_file, &config, err, sizeof(err))) {
			fprintf(stderr, "parleyd: %s\n", err);
			return CLI_EXIT_CONFIG;
		}
		log_set_level(config->log.level);
		log_set_json(config->log.json);
	}
	char actor_buf[128];
	if (a.actor == NULL) {
		const char *user = getenv("USER");
		snprintf(actor_buf, sizeof(actor_buf), "cli:%s", user != NULL ? user : "unknown");
		a.actor = actor_buf;
	}
	int rc = cmd->run(&a, config, daemon);
	if (cmd != DAEMON)  /* the daemon took the configuration */
		cfg_free(config);
	return rc;
}
