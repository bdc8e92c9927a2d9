/* conversations.c - the commands that need more than one call: a
 * conversation with its timeline, and a reply that says what its author
 * last saw (cmd.h). */
#include "cmd.h"

#include <stdlib.h>
#include <string.h>

#include "text.h"

/* Besides the paths in the command table. */
#define CONVERSATION_PATH "/api/v1/conversations/{1}"
#define TIMELINE_PATH "/api/v1/conversations/{1}/timeline?limit=200"   /* read whole: big pages */

static char *field(ctl_ctx *ctx, json_t *obj, const char *path, ctl_col_kind kind)
{
	return ctl_cell(ctl_json_path(obj, path), kind, ctx->now);
}

static void print_row(ctl_ctx *ctx, const char *label, json_t *obj, const char *path, ctl_col_kind kind,
                      bool skip_empty)
{
	json_t *v = ctl_json_path(obj, path);
	if (skip_empty && (!v || json_is_null(v) || (json_is_array(v) && json_array_size(v) == 0)))
		return;
	char *text = ctl_cell(v, kind, ctx->now);
	fprintf(ctx->out, "%-13s%s\n", label, text);
	free(text);
}

void ctl_print_joined(ctl_ctx *ctx, const char *label, json_t *arr, const char *const *paths)
{
	if (!json_is_array(arr) || json_array_size(arr) == 0)
		return;
	ctl_buf line = { 0 };
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e) {
		if (i)
			ctl_buf_adds(&line, ", ");
		bool first = true;
		for (const char *const *p = paths; *p; p++) {
			json_t *v = ctl_json_path(e, *p);
			if (!v || json_is_null(v) || json_is_false(v))
				continue;
			char *cell = json_is_true(v) ? ctl_text_line("(verified)") : ctl_cell(v, COL_TEXT, ctx->now);
			if (!first)
				ctl_buf_addc(&line, ' ');
			ctl_buf_adds(&line, cell);
			free(cell);
			first = false;
		}
	}
	fprintf(ctx->out, "%-13s%s\n", label, ctl_buf_str(&line));
	ctl_buf_free(&line);
}

/* answer: the conversation, or {"conversation", "customer", "case",
 * "linked_conversations", "unread", ...} around it. */
static void print_conversation(ctl_ctx *ctx, json_t *answer)
{
	json_t *c = json_object_get(answer, "conversation");
	if (!json_is_object(c))
		c = answer;
	json_t *more = c == answer ? NULL : answer;
	char *id = field(ctx, c, "id", COL_TEXT), *status = field(ctx, c, "status", COL_TEXT);
	char *prio = field(ctx, c, "priority", COL_TEXT), *inst = field(ctx, c, "channel_instance", COL_TEXT);
	char *kind = field(ctx, c, "channel_kind", COL_TEXT), *vis = field(ctx, c, "visibility", COL_TEXT);
	char *name = field(ctx, c, "customer.display_name", COL_TEXT);
	char *cust = field(ctx, c, "customer.id", COL_TEXT);
	fprintf(ctx->out, "conversation %s: %s, %s priority, %s (%s, %s)\n", id, status, prio, inst, kind, vis);
	fprintf(ctx->out, "%-13s%s (customer %s)\n", "customer", name, cust);
	static const char *const identity[] = { "channel_instance", "handle|external_id", "display_name", NULL };
	static const char *const contact[] = { "kind", "value", "verified", NULL };
	static const char *const reference[] = { "kind", "value", NULL };
	static const char *const linked[] = { "id", "channel_instance", "status", NULL };
	ctl_print_joined(ctx, "identities", ctl_json_path(more, "customer.identities"), identity);
	ctl_print_joined(ctx, "contacts", ctl_json_path(more, "customer.contacts"), contact);
	print_row(ctx, "case", c, "case.number", COL_TEXT, true);
	ctl_print_joined(ctx, "references", ctl_json_path(more, "case.references"), reference);
	ctl_print_joined(ctx, "linked", json_object_get(more, "linked_conversations"), linked);
	print_row(ctx, "assignee", c, "assignee_id", COL_TEXT, false);
	print_row(ctx, "team", c, "team_id", COL_TEXT, false);
	print_row(ctx, "due", c, "due_at", COL_TIME, false);
	print_row(ctx, "category", c, "category", COL_TEXT, true);
	print_row(ctx, "tags", c, "tags", COL_LIST, true);
	print_row(ctx, "language", c, "language", COL_TEXT, true);
	print_row(ctx, "created", c, "created_at", COL_TIME, false);
	print_row(ctx, "delivery", c, "delivery_error", COL_TEXT, true);
	print_row(ctx, "unread", more, "unread", COL_TEXT, true);
	print_row(ctx, "last message", c, "last_message_id", COL_TEXT, false);
	free(id);
	free(status);
	free(prio);
	free(inst);
	free(kind);
	free(vis);
	free(name);
	free(cust);
}

static const char *direction_word(json_t *m)
{
	const char *d = json_string_value(json_object_get(m, "direction"));
	if (d && strcmp(d, "inbound") == 0)
		return "in";
	if (d && strcmp(d, "outbound") == 0)
		return "out";
	if (d && strcmp(d, "note") == 0)
		return "note";
	return "?";
}

void ctl_print_message(ctl_ctx *ctx, json_t *m, json_t *conv)
{
	char *when = field(ctx, m, "created_at", COL_TIME), *id = field(ctx, m, "id", COL_TEXT);
	const char *kind = json_string_value(ctl_json_path(m, "author.kind"));
	char *who;
	if (kind && strcmp(kind, "customer") == 0)
		who = field(ctx, m, "author.display_name|author.handle|author.customer_id", COL_TEXT);
	else if (kind && strcmp(kind, "agent") == 0)
		who = field(ctx, m, "author.name", COL_TEXT);
	else
		who = ctl_text_line(kind ? kind : "?");

	ctl_buf head = { 0 }, indent = { 0 }, text = { 0 };
	ctl_buf_addf(&head, "%-12s  #%s %-4s ", when, id, direction_word(m));
	/* Later lines of the text start under its first. */
	ctl_buf_addf(&indent, "%*s", ctl_text_width(ctl_buf_str(&head)) + ctl_text_width(who) + 2, "");
	json_t *t = json_object_get(m, "text");
	if (json_is_string(t))
		ctl_text_escape(&text, json_string_value(t), json_string_length(t), ctl_buf_str(&indent));
	fprintf(ctx->out, "%s%s: %s", ctl_buf_str(&head), who, ctl_buf_str(&text));
	if (json_is_string(json_object_get(m, "edited_at")))
		fputs(" [edited]", ctx->out);
	if (json_is_string(json_object_get(m, "deleted_at")))
		fputs(" [deleted]", ctx->out);
	if (json_is_string(json_object_get(m, "delivery_status"))) {
		char *st = field(ctx, m, "delivery_status", COL_TEXT);
		fprintf(ctx->out, " [%s]", st);
		free(st);
	}
	const char *vis = json_string_value(json_object_get(m, "visibility"));
	const char *conv_vis = json_string_value(json_object_get(conv, "visibility"));
	if (vis && conv_vis && strcmp(vis, conv_vis) != 0) {
		char *v = ctl_text_line(vis);
		fprintf(ctx->out, " (%s)", v);
		free(v);
	}
	json_t *in = json_object_get(m, "conversation_id"), *here = json_object_get(conv, "id");
	if (json_is_integer(in) && json_is_integer(here) && !json_equal(in, here))
		fprintf(ctx->out, " [conversation %" JSON_INTEGER_FORMAT "]", json_integer_value(in));
	fputc('\n', ctx->out);
	ctl_buf_free(&head);
	ctl_buf_free(&indent);
	ctl_buf_free(&text);
	free(when);
	free(id);
	free(who);
}

static void print_event(ctl_ctx *ctx, json_t *e)
{
	char *when = field(ctx, e, "at|created_at", COL_TIME);
	char *kind = field(ctx, e, "kind|type", COL_TEXT), *actor = field(ctx, e, "actor", COL_TEXT);
	json_t *details = json_object_get(e, "details");
	char *more = details && json_object_size(details) ? ctl_cell(details, COL_TEXT, ctx->now) : NULL;
	fprintf(ctx->out, "%-12s  * %s by %s%s%s\n", when, kind, actor, more ? " " : "", more ? more : "");
	free(when);
	free(kind);
	free(actor);
	free(more);
}

static void print_timeline(ctl_ctx *ctx, json_t *items, json_t *conv)
{
	size_t i;
	json_t *item;
	json_array_foreach(items, i, item) {
		const char *type = json_string_value(json_object_get(item, "type"));
		if (type && strcmp(type, "message") == 0) {
			ctl_print_message(ctx, json_object_get(item, "message"), conv);
		} else if (type && strcmp(type, "event") == 0) {
			print_event(ctx, json_object_get(item, "event"));
		} else {
			char *raw = ctl_cell(item, COL_TEXT, ctx->now);
			fprintf(ctx->out, "%s\n", raw);
			free(raw);
		}
	}
}

int ctl_run_show_conversation(ctl_ctx *ctx, const ctl_command *cmd)
{
	char *target = ctl_target(ctx, cmd, cmd->path);
	ctl_response r;
	bool called = ctl_call(&ctx->client, "GET", target, NULL, true, &r);
	free(target);
	if (!called || !ctl_ok(&r)) {
		int rc = ctl_fail(ctx, &r);
		ctl_response_free(&r);
		return rc;
	}
	json_t *conversation = json_incref(r.json);
	ctl_response_free(&r);

	json_t *items;
	char *next;
	target = ctl_target(ctx, cmd, TIMELINE_PATH);
	bool ok = ctl_fetch_list(ctx, target, NULL, true, &items, &next, &r);
	free(target);
	if (!ok) {
		int rc = ctl_fail(ctx, &r);
		ctl_response_free(&r);
		json_decref(conversation);
		return rc;
	}
	if (ctx->json) {
		json_t *both = json_pack("{s:O, s:O}", "conversation", conversation, "timeline", items);
		ctl_print_json(ctx, both);
		json_decref(both);
	} else {
		json_t *inner = json_object_get(conversation, "conversation");
		print_conversation(ctx, conversation);
		fputc('\n', ctx->out);
		print_timeline(ctx, items, json_is_object(inner) ? inner : conversation);
		if (next)
			fprintf(ctx->out, "(only the first %d entries)\n", CTL_MAX_ITEMS);
	}
	free(next);
	json_decref(items);
	json_decref(conversation);
	return CTL_EXIT_OK;
}

/* The id of the newest message the author has seen: --seen, or the
 * conversation's newest message now. */
static bool last_seen(ctl_ctx *ctx, const ctl_command *cmd, json_t **seen, int *rc)
{
	if (ctx->opt[OPT_SEEN]) {
		*seen = json_integer(strtoll(ctx->opt[OPT_SEEN], NULL, 10));
		return true;
	}
	char *target = ctl_target(ctx, cmd, CONVERSATION_PATH);
	ctl_response r;
	bool called = ctl_call(&ctx->client, "GET", target, NULL, true, &r);
	free(target);
	if (!called || !ctl_ok(&r)) {
		*rc = ctl_fail(ctx, &r);
		ctl_response_free(&r);
		return false;
	}
	json_t *last = ctl_json_path(r.json, "conversation.last_message_id|last_message_id");
	*seen = json_is_integer(last) ? json_incref(last) : json_integer(0);   /* 0: none */
	ctl_response_free(&r);
	return true;
}

static int collision(ctl_ctx *ctx, json_t *answer)
{
	if (ctx->json) {
		ctl_print_json(ctx, answer);
		return CTL_EXIT_COLLISION;
	}
	json_t *news = json_object_get(answer, "new_messages");
	fprintf(stderr, "parleyctl: nothing done: %zu new message(s) in the conversation since you looked:\n",
	        json_array_size(news));
	size_t i;
	json_t *m;
	json_array_foreach(news, i, m)
		ctl_print_message(ctx, m, NULL);
	fflush(ctx->out);
	fprintf(stderr, "parleyctl: read them, then run it again (or add --force)\n");
	return CTL_EXIT_COLLISION;
}

int ctl_run_reply(ctl_ctx *ctx, const ctl_command *cmd)
{
	json_t *seen;
	int rc = CTL_EXIT_API;
	if (!last_seen(ctx, cmd, &seen, &rc))
		return rc;
	json_t *body = cmd->body ? cmd->body(ctx) : json_object();
	json_object_set_new(body, "text", json_string(ctl_arg(ctx, 1)));
	json_object_set_new(body, "last_seen_message_id", seen);
	if (ctx->opt[OPT_FORCE])
		json_object_set_new(body, "force", json_true());
	char *target = ctl_target(ctx, cmd, cmd->path);
	ctl_response r;
	bool called = ctl_call(&ctx->client, cmd->method, target, body, true, &r);
	free(target);
	json_decref(body);
	const char *code = json_string_value(json_object_get(r.json, "error"));
	if (called && r.status == 409 && code && strcmp(code, "collision") == 0)
		rc = collision(ctx, r.json);
	else if (!called || !ctl_ok(&r))
		rc = ctl_fail(ctx, &r);
	else {
		rc = CTL_EXIT_OK;
		if (ctx->json)
			ctl_print_json(ctx, r.json ? r.json : json_null());
		else
			ctl_print_done(ctx, cmd->done, r.json);
	}
	ctl_response_free(&r);
	return rc;
}
