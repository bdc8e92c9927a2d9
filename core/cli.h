/* cli.h - parleyd's command line: parse argv, run the subcommand it names.
 *
 * The subcommands (--check-config, --migrate, --merge-customer, …) are rows
 * of a table in cli.c; with none of them, the daemon itself runs. */
#ifndef PARLEY_CORE_CLI_H
#define PARLEY_CORE_CLI_H

#include "config.h"

#define CLI_EXIT_CONFIG 2

/* Runs the daemon with the loaded configuration, which it takes (a SIGHUP
 * replaces it); returns the process exit code. */
typedef int (*cli_daemon_fn)(cfg *c);

/* Parse argv and run what it asks for. Returns the process exit code:
 * 0 done, 1 runtime failure, 2 configuration or usage error. */
int cli_main(int argc, char **argv, cli_daemon_fn daemon);

#endif
