/* commands.c - the command table and the runs most rows share (cmd.h). */
#include "cmd.h"

#include <stdlib.h>
#include <string.h>

#include "text.h"

#define STATUSES "open|pending|resolved|closed"

const ctl_option ctl_options[N_CTL_OPTS] = {
	[OPT_STATUS] = { "--status", "STATUS[,STATUS]", V_CHOICES, STATUSES, "status" },
	[OPT_ASSIGNEE] = { "--assignee", "me|none|ID", V_ASSIGNEE, NULL, "assignee" },
	[OPT_TEAM] = { "--team", "ID", V_ID, NULL, "team" },
	[OPT_CHANNEL] = { "--channel", "INSTANCE", V_TEXT, NULL, "channel_instance" },
	[OPT_SORT] = { "--sort", "due|oldest|newest", V_CHOICE, "due|oldest|newest", "sort" },
	[OPT_LIMIT] = { "--limit", "N", V_LIMIT, NULL, "limit" },
	[OPT_CURSOR] = { "--cursor", "CURSOR", V_TEXT, NULL, NULL },   /* ctl_run_list adds it */
	[OPT_ALL] = { "--all", NULL, V_FLAG, NULL, NULL },
	[OPT_FORCE] = { "--force", NULL, V_FLAG, NULL, NULL },
	[OPT_SEEN] = { "--seen", "MESSAGE_ID", V_ID, NULL, NULL },
	[OPT_PUBLIC_TEXT] = { "--public-text", "TEXT", V_TEXT, NULL, NULL },
	[OPT_ROLE] = { "--role", "agent|supervisor|admin", V_CHOICE, "agent|supervisor|admin", NULL },
	[OPT_TEAMS] = { "--teams", "ID,ID", V_IDLIST, NULL, NULL },
	[OPT_AGENT] = { "--agent", "AGENT_ID", V_ID, NULL, NULL },
};

ctl_value ctl_arg_kind(const char *name, const char **choices)
{
	*choices = NULL;
	if (strcmp(name, "TEXT") == 0 || strcmp(name, "QUERY") == 0 || strcmp(name, "NAME") == 0)
		return V_TEXT;
	if (strcmp(name, "STATUS") == 0) {
		*choices = STATUSES;
		return V_CHOICE;
	}
	return V_ID;   /* ID, AGENT_ID, SOURCE, INTO, AUDIT_ID */
}

/* ------------------------------------------------------------ bodies */

static json_t *num(const char *s)
{
	return json_integer(strtoll(s, NULL, 10));
}

static json_t *body_move(const ctl_ctx *ctx)
{
	json_t *b = json_object();
	if (ctx->opt[OPT_PUBLIC_TEXT])
		json_object_set_new(b, "public_text", json_string(ctx->opt[OPT_PUBLIC_TEXT]));
	return b;
}

static json_t *body_assign(const ctl_ctx *ctx)
{
	return json_pack("{s:o}", "agent_id", num(ctx->args[1]));
}

static json_t *body_status(const ctl_ctx *ctx)
{
	return json_pack("{s:s}", "status", ctx->args[1]);
}

static json_t *body_transfer(const ctl_ctx *ctx)
{
	return json_pack("{s:o}", "team_id", num(ctx->args[1]));
}

static json_t *body_merge(const ctl_ctx *ctx)
{
	return json_pack("{s:o}", "into", num(ctx->args[1]));
}

static json_t *body_unmerge(const ctl_ctx *ctx)
{
	return json_pack("{s:o}", "audit_id", num(ctx->args[0]));
}

static json_t *body_token(const ctl_ctx *ctx)
{
	json_t *b = json_pack("{s:s, s:s}", "name", ctl_arg(ctx, 0), "role", ctx->opt[OPT_ROLE]);
	if (ctx->opt[OPT_TEAMS]) {
		json_t *ids = json_array();
		char *list = ctl_xstrdup(ctx->opt[OPT_TEAMS]), *save = NULL;
		for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
			json_array_append_new(ids, num(t));
		free(list);
		json_object_set_new(b, "team_ids", ids);
	}
	if (ctx->opt[OPT_AGENT])
		json_object_set_new(b, "agent_id", num(ctx->opt[OPT_AGENT]));
	return b;
}

/* ----------------------------------------------------------- columns */

const ctl_column ctl_conversation_columns[] = {
	{ "ID", "id", COL_TEXT, 0 },
	{ "STATUS", "status", COL_TEXT, 0 },
	{ "PRIO", "priority", COL_TEXT, 0 },
	{ "DUE", "due_at", COL_TIME, 0 },
	{ "CHANNEL", "channel_instance", COL_TEXT, 16 },
	{ "CUSTOMER", "customer.display_name|customer.id", COL_TEXT, 24 },
	{ "CASE", "case.number", COL_TEXT, 0 },
	{ "ASSIGNEE", "assignee_id", COL_TEXT, 0 },
	{ "TEAM", "team_id", COL_TEXT, 0 },
	{ "UPDATED", "updated_at", COL_TIME, 0 },
	{ NULL, NULL, 0, 0 }
};

static const ctl_column customer_columns[] = {
	{ "ID", "id", COL_TEXT, 0 },
	{ "NAME", "display_name", COL_TEXT, 32 },
	{ "MATCHED", "match.field", COL_TEXT, 0 },
	{ "VALUE", "match.value", COL_TEXT, 32 },
	{ "TAGS", "tags", COL_LIST, 24 },
	{ "CREATED", "created_at", COL_TIME, 0 },
	{ NULL, NULL, 0, 0 }
};

static const ctl_column agent_columns[] = {
	{ "ID", "id", COL_TEXT, 0 },
	{ "NAME", "name", COL_TEXT, 24 },
	{ "EMAIL", "email", COL_TEXT, 32 },
	{ "ROLE", "role", COL_TEXT, 0 },
	{ "TEAMS", "team_ids", COL_LIST, 0 },
	{ "AVAILABILITY", "availability", COL_TEXT, 0 },
	{ "CAPACITY", "capacity", COL_TEXT, 0 },
	{ "DISABLED", "disabled", COL_TEXT, 0 },
	{ NULL, NULL, 0, 0 }
};

static const ctl_column team_columns[] = {
	{ "ID", "id", COL_TEXT, 0 },
	{ "NAME", "name", COL_TEXT, 32 },
	{ "CHANNELS", "channel_instances", COL_LIST, 40 },
	{ "AGENTS", "agent_ids", COL_LIST, 40 },
	{ NULL, NULL, 0, 0 }
};

static const ctl_column token_columns[] = {
	{ "ID", "id", COL_TEXT, 0 },
	{ "NAME", "name", COL_TEXT, 24 },
	{ "PREFIX", "prefix", COL_TEXT, 0 },
	{ "ROLE", "role", COL_TEXT, 0 },
	{ "TEAMS", "team_ids", COL_LIST, 0 },
	{ "AGENT", "agent_id", COL_TEXT, 0 },
	{ "LAST USED", "last_used_at", COL_TIME, 0 },
	{ "REVOKED", "revoked_at|revoked", COL_TIME, 0 },
	{ NULL, NULL, 0, 0 }
};

static const ctl_column job_columns[] = {
	{ "ID", "id", COL_TEXT, 0 },
	{ "TARGET", "target_instance|target", COL_TEXT, 16 },
	{ "OPERATION", "operation", COL_TEXT, 0 },
	{ "ATTEMPTS", "attempts", COL_TEXT, 0 },
	{ "FAILED", "finished_at|updated_at", COL_TIME, 0 },
	{ "ERROR", "last_error", COL_TEXT, 60 },
	{ NULL, NULL, 0, 0 }
};

/* ------------------------------------------------------------- table */

#define LIST_OPTS (O(OPT_LIMIT) | O(OPT_CURSOR) | O(OPT_ALL))
#define CONV_FILTERS (O(OPT_STATUS) | O(OPT_ASSIGNEE) | O(OPT_TEAM) | O(OPT_CHANNEL) | O(OPT_SORT))

const ctl_command ctl_commands[] = {
	{ "conversations list", "", CONV_FILTERS | LIST_OPTS, 0, "GET", "/api/v1/conversations",
	  NULL, ctl_conversation_columns, NULL, NULL, ctl_run_list, "the queue (filters, --all pages)" },
	{ "conversations show", "ID", 0, 0, "GET", "/api/v1/conversations/{1}",
	  NULL, NULL, NULL, NULL, ctl_run_show_conversation, "a conversation and its timeline" },
	{ "conversations reply", "ID TEXT", O(OPT_FORCE) | O(OPT_SEEN), 0, "POST",
	  "/api/v1/conversations/{1}/replies", NULL, NULL, NULL,
	  "reply {.message.id} queued on conversation {1}", ctl_run_reply,
	  "answer the customer (exit 3, nothing sent, when new messages came in)" },
	{ "conversations note", "ID TEXT", O(OPT_FORCE) | O(OPT_SEEN), 0, "POST",
	  "/api/v1/conversations/{1}/notes", NULL, NULL, NULL,
	  "note {.message.id} added to conversation {1}", ctl_run_reply, "an internal note" },
	{ "conversations move-to-private", "ID TEXT", O(OPT_PUBLIC_TEXT) | O(OPT_FORCE) | O(OPT_SEEN), 0,
	  "POST", "/api/v1/conversations/{1}/move-to-private", body_move, NULL, NULL,
	  "private message {.message.id} queued on conversation {.conversation.id}", ctl_run_reply,
	  "answer a public post in a private chat" },
	{ "conversations assign", "ID AGENT_ID", 0, 0, "POST", "/api/v1/conversations/{1}/assign",
	  body_assign, NULL, NULL, "conversation {1} assigned to agent {2}", NULL, NULL },
	{ "conversations transfer", "ID TEAM_ID", 0, 0, "POST", "/api/v1/conversations/{1}/transfer",
	  body_transfer, NULL, NULL, "conversation {1} moved to team {2}'s queue", NULL, NULL },
	{ "conversations unassign", "ID", 0, 0, "POST", "/api/v1/conversations/{1}/unassign",
	  NULL, NULL, NULL, "conversation {1} unassigned", NULL, NULL },
	{ "conversations status", "ID STATUS", 0, 0, "PATCH", "/api/v1/conversations/{1}",
	  body_status, NULL, NULL, "conversation {1} is {2}", NULL, NULL },
	{ "customers search", "QUERY", LIST_OPTS, 0, "GET", "/api/v1/customers?q={1}",
	  NULL, customer_columns, NULL, NULL, ctl_run_list, NULL },
	{ "customers show", "ID", 0, 0, "GET", "/api/v1/customers/{1}",
	  NULL, NULL, ctl_print_customer, NULL, NULL, "contacts, accounts, conversations and cases" },
	{ "customers merge", "SOURCE INTO", 0, 0, "POST", "/api/v1/customers/{1}/merge",
	  body_merge, NULL, NULL,
	  "customer {1} merged into {2}; undo with: parleyctl customers unmerge {.audit_id}", NULL,
	  "one record for one person" },
	{ "customers unmerge", "AUDIT_ID", 0, 0, "POST", "/api/v1/customers/unmerge",
	  body_unmerge, NULL, NULL, "merge {1} undone", NULL, NULL },
	{ "agents", "", LIST_OPTS, 0, "GET", "/api/v1/agents", NULL, agent_columns, NULL, NULL, ctl_run_list,
	  NULL },
	{ "teams", "", LIST_OPTS, 0, "GET", "/api/v1/teams", NULL, team_columns, NULL, NULL, ctl_run_list,
	  NULL },
	{ "tokens list", "", LIST_OPTS, 0, "GET", "/api/v1/tokens", NULL, token_columns, NULL, NULL,
	  ctl_run_list, "never their secrets" },
	{ "tokens create", "NAME", O(OPT_ROLE) | O(OPT_TEAMS) | O(OPT_AGENT), O(OPT_ROLE), "POST",
	  "/api/v1/tokens", body_token, NULL, ctl_print_new_token, NULL, NULL,
	  "prints the new token's secret, once" },
	{ "tokens revoke", "ID", 0, 0, "DELETE", "/api/v1/tokens/{1}",
	  NULL, NULL, NULL, "token {1} revoked", NULL, NULL },
	{ "jobs dead", "", LIST_OPTS, 0, "GET", "/api/v1/jobs/dead", NULL, job_columns, NULL, NULL, ctl_run_list,
	  "jobs that gave up" },
	{ "jobs retry", "ID", 0, 0, "POST", "/api/v1/jobs/{1}/retry",
	  NULL, NULL, NULL, "job {1} queued again", NULL, NULL },
	{ "jobs discard", "ID", 0, 0, "POST", "/api/v1/jobs/{1}/discard",
	  NULL, NULL, NULL, "job {1} discarded", NULL, NULL },
	{ "me", "", 0, 0, "GET", "/api/v1/me", NULL, NULL, ctl_print_me, NULL, NULL,
	  "who the token is" },
	{ "health", "", 0, 0, "GET", "/healthz", NULL, NULL, NULL, NULL, ctl_run_health,
	  "is the daemon alive and ready (no token needed)" },
	{ NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL }
};

/* --------------------------------------------------------- the calls */

const char *ctl_arg(const ctl_ctx *ctx, int i)
{
	if (ctx->stdin_text && strcmp(ctx->args[i], "-") == 0)
		return ctx->stdin_text;
	return ctx->args[i];
}

char *ctl_target(const ctl_ctx *ctx, const ctl_command *cmd, const char *path)
{
	ctl_buf t = { 0 };
	for (const char *p = path; *p; p++) {
		if (p[0] == '{' && p[1] >= '1' && p[1] < '1' + CTL_MAX_ARGS && p[2] == '}') {
			char *enc = ctl_url_escape(ctl_arg(ctx, p[1] - '1'));
			ctl_buf_adds(&t, enc);
			free(enc);
			p += 2;
		} else {
			ctl_buf_addc(&t, *p);
		}
	}
	if (strcmp(cmd->method, "GET") == 0)
		for (int o = 0; o < N_CTL_OPTS; o++)
			if ((cmd->opts & O(o)) && ctx->opt[o] && ctl_options[o].query)
				ctl_query_add(&t, ctl_options[o].query, ctx->opt[o]);
	return ctl_buf_take(&t);
}

bool ctl_ok(const ctl_response *r)
{
	return r->status >= 200 && r->status < 300;
}

int ctl_fail(ctl_ctx *ctx, const ctl_response *r)
{
	if (r->error[0]) {
		char *msg = ctl_text_line(r->error);
		fprintf(stderr, "parleyctl: %s\n", msg);
		free(msg);
		return CTL_EXIT_API;
	}
	if (ctx->json && r->json)
		ctl_print_json(ctx, r->json);
	json_t *code = json_object_get(r->json, "error"), *detail = json_object_get(r->json, "detail");
	char *c = ctl_text_line(json_is_string(code) ? json_string_value(code) : "error");
	char *d = json_is_string(detail) ? ctl_text_line(json_string_value(detail)) : NULL;
	fprintf(stderr, "parleyctl: HTTP %ld %s%s%s\n", r->status, c, d ? ": " : "", d ? d : "");
	free(c);
	free(d);
	return CTL_EXIT_API;
}

int ctl_run_simple(ctl_ctx *ctx, const ctl_command *cmd)
{
	char *target = ctl_target(ctx, cmd, cmd->path);
	json_t *body = cmd->body ? cmd->body(ctx) : NULL;
	ctl_response r;
	bool called = ctl_call(&ctx->client, cmd->method, target, body, true, &r);
	json_decref(body);
	free(target);
	int rc = CTL_EXIT_OK;
	if (!called || !ctl_ok(&r))
		rc = ctl_fail(ctx, &r);
	else if (ctx->json)
		ctl_print_json(ctx, r.json ? r.json : json_null());
	else if (cmd->print)
		cmd->print(ctx, r.json);
	else if (cmd->done)
		ctl_print_done(ctx, cmd->done, r.json);
	ctl_response_free(&r);
	return rc;
}

static char *page_target(const char *target, const char *cursor)
{
	ctl_buf t = { 0 };
	ctl_buf_adds(&t, target);
	if (cursor)
		ctl_query_add(&t, "cursor", cursor);
	return ctl_buf_take(&t);
}

bool ctl_fetch_list(ctl_ctx *ctx, const char *target, const char *cursor, bool all, json_t **items,
                    char **next, ctl_response *r)
{
	*items = json_array();
	*next = NULL;
	char *page = page_target(target, cursor);
	for (;;) {
		bool called = ctl_call(&ctx->client, "GET", page, NULL, true, r);
		free(page);
		if (!called || !ctl_ok(r)) {
			json_decref(*items);
			*items = NULL;
			return false;
		}
		if (json_is_array(r->json)) {   /* a plain list: no pages */
			json_array_extend(*items, r->json);
			ctl_response_free(r);
			return true;
		}
		json_t *got = json_object_get(r->json, "items");
		json_t *more = json_object_get(r->json, "next_cursor");
		if (!json_is_array(got)) {
			snprintf(r->error, sizeof(r->error), "the answer has no list of items");
			r->status = 0;
			json_decref(*items);
			*items = NULL;
			return false;
		}
		json_array_extend(*items, got);
		if (!json_is_string(more)) {
			ctl_response_free(r);
			return true;
		}
		if (!all || json_array_size(*items) >= CTL_MAX_ITEMS) {
			*next = ctl_xstrdup(json_string_value(more));
			ctl_response_free(r);
			return true;
		}
		page = page_target(target, json_string_value(more));
		ctl_response_free(r);
	}
}

/* The items of a list answer: the answer itself or its "items". */
static json_t *items_of(json_t *answer)
{
	return json_is_array(answer) ? answer : json_object_get(answer, "items");
}

static void print_table(ctl_ctx *ctx, const ctl_command *cmd, json_t *items, const char *next)
{
	ctl_table_print(ctx->out, cmd->columns, items, ctx->now);
	if (next) {
		char *safe = ctl_text_line(next);
		fprintf(stderr, "parleyctl: more: add --cursor %s (or --all)\n", safe);
		free(safe);
	}
}

/* One page: with --json the API's answer exactly as it came. */
static int run_page(ctl_ctx *ctx, const ctl_command *cmd, const char *target)
{
	ctl_response r;
	bool called = ctl_call(&ctx->client, "GET", target, NULL, true, &r);
	int rc = CTL_EXIT_OK;
	json_t *items = called ? items_of(r.json) : NULL;
	if (called && ctl_ok(&r) && !json_is_array(items)) {
		snprintf(r.error, sizeof(r.error), "the answer has no list of items");
		called = false;
	}
	if (!called || !ctl_ok(&r)) {
		rc = ctl_fail(ctx, &r);
	} else if (ctx->json) {
		ctl_print_json(ctx, r.json);
	} else {
		json_t *next = json_object_get(r.json, "next_cursor");
		print_table(ctx, cmd, items, json_string_value(next));
	}
	ctl_response_free(&r);
	return rc;
}

int ctl_run_list(ctl_ctx *ctx, const ctl_command *cmd)
{
	char *target = ctl_target(ctx, cmd, cmd->path);
	if (!ctx->opt[OPT_ALL]) {
		char *page = page_target(target, ctx->opt[OPT_CURSOR]);
		int rc = run_page(ctx, cmd, page);
		free(page);
		free(target);
		return rc;
	}
	json_t *items;
	char *next;
	ctl_response r;
	bool ok = ctl_fetch_list(ctx, target, ctx->opt[OPT_CURSOR], true, &items, &next, &r);
	free(target);
	if (!ok) {
		int rc = ctl_fail(ctx, &r);
		ctl_response_free(&r);
		return rc;
	}
	if (next) {
		fprintf(stderr, "parleyctl: more than %d items; narrow the filters or page with --cursor\n",
		        CTL_MAX_ITEMS);
		json_decref(items);
		free(next);
		return CTL_EXIT_API;
	}
	if (ctx->json) {   /* every page as one */
		json_t *all = json_pack("{s:o, s:n}", "items", items, "next_cursor");
		ctl_print_json(ctx, all);
		json_decref(all);
	} else {
		print_table(ctx, cmd, items, NULL);
		json_decref(items);
	}
	return CTL_EXIT_OK;
}

/* health: /healthz says the process runs, /readyz that it can work. */
int ctl_run_health(ctl_ctx *ctx, const ctl_command *cmd)
{
	ctl_response live, ready;
	if (!ctl_call(&ctx->client, "GET", "/healthz", NULL, false, &live))
		return ctl_fail(ctx, &live);
	bool called = ctl_call(&ctx->client, "GET", "/readyz", NULL, false, &ready);
	if (!called) {
		ctl_response_free(&live);
		return ctl_fail(ctx, &ready);
	}
	bool ok = ctl_ok(&live) && ctl_ok(&ready);
	if (ctx->json) {
		json_t *both = json_pack("{s:O?, s:O?}", "health", live.json, "ready", ready.json);
		ctl_print_json(ctx, both);
		json_decref(both);
	} else if (ok) {
		json_t *policy = json_object_get(ready.json, "policy");
		fprintf(ctx->out, "ready: schema %" JSON_INTEGER_FORMAT ", policy version %" JSON_INTEGER_FORMAT "%s\n",
		        json_integer_value(json_object_get(ready.json, "schema_version")),
		        json_integer_value(json_object_get(policy, "version")),
		        json_is_true(json_object_get(policy, "file_differs"))
		                ? " (this node's file differs from it)" : "");
	} else {
		ctl_response *bad = ctl_ok(&live) ? &ready : &live;
		fprintf(ctx->out, "not ready\n");
		ctl_fail(ctx, bad);
	}
	ctl_response_free(&live);
	ctl_response_free(&ready);
	(void)cmd;
	return ok ? CTL_EXIT_OK : CTL_EXIT_API;
}
