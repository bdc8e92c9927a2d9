/* print.c - answers shown to people: JSON made terminal-safe, one-line
 * messages from templates, and objects as indented "key: value" lines.
 * Every string from the API is escaped (text.h) before it is printed. */
#include "cmd.h"

#include <stdlib.h>
#include <string.h>

#include "text.h"

void ctl_print_json(ctl_ctx *ctx, json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
	if (!s)
		ctl_out_of_memory();
	ctl_buf safe = { 0 };
	ctl_json_safe(&safe, s);
	fputs(ctl_buf_str(&safe), ctx->out);
	fputc('\n', ctx->out);
	ctl_buf_free(&safe);
	free(s);
}

void ctl_print_done(ctl_ctx *ctx, const char *tmpl, json_t *answer)
{
	ctl_buf line = { 0 };
	for (const char *p = tmpl; *p; p++) {
		const char *close = p[0] == '{' ? strchr(p, '}') : NULL;
		if (close && p[1] >= '1' && p[1] < '1' + CTL_MAX_ARGS && close == p + 2) {
			const char *arg = ctl_arg(ctx, p[1] - '1');
			ctl_text_escape(&line, arg, strlen(arg), NULL);
			p = close;
		} else if (close && p[1] == '.' && close - p < 64) {
			char path[64];
			memcpy(path, p + 2, (size_t)(close - p - 2));
			path[close - p - 2] = '\0';
			char *cell = ctl_cell(ctl_json_path(answer, path), COL_TEXT, ctx->now);
			ctl_buf_adds(&line, cell);
			free(cell);
			p = close;
		} else {
			ctl_buf_addc(&line, *p);
		}
	}
	fprintf(ctx->out, "%s\n", ctl_buf_str(&line));
	ctl_buf_free(&line);
}

static bool is_scalar(json_t *v)
{
	return !json_is_object(v) && !json_is_array(v);
}

static bool all_scalars(json_t *a)
{
	size_t i;
	json_t *e;
	json_array_foreach(a, i, e)
		if (!is_scalar(e))
			return false;
	return true;
}

static bool is_time_key(const char *key)
{
	size_t n = strlen(key);
	return n > 3 && strcmp(key + n - 3, "_at") == 0;
}

static void print_fields(ctl_ctx *ctx, json_t *obj, int indent, bool dash);

/* One "key: value" (or "key:" and what is inside, indented). */
static void print_field(ctl_ctx *ctx, const char *key, json_t *v, int indent, const char *lead)
{
	char *k = ctl_text_line(key);
	fprintf(ctx->out, "%*s%s%s:", indent, "", lead, k);
	int value_col = indent + (int)strlen(lead) + ctl_text_width(k) + 2;
	free(k);
	if (json_is_object(v) && json_object_size(v) > 0) {
		fputc('\n', ctx->out);
		print_fields(ctx, v, indent + 2, false);
	} else if (json_is_array(v) && json_array_size(v) > 0 && !all_scalars(v)) {
		fputc('\n', ctx->out);
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e) {
			if (json_is_object(e)) {
				print_fields(ctx, e, indent + 4, true);
			} else {
				char *cell = ctl_cell(e, COL_TEXT, ctx->now);
				fprintf(ctx->out, "%*s- %s\n", indent + 2, "", cell);
				free(cell);
			}
		}
	} else if (json_is_string(v) && !is_time_key(key)) {
		/* Text keeps its lines, each indented under the first. */
		ctl_buf text = { 0 }, indent_text = { 0 };
		ctl_buf_addf(&indent_text, "%*s", value_col, "");
		ctl_text_escape(&text, json_string_value(v), json_string_length(v), ctl_buf_str(&indent_text));
		fprintf(ctx->out, " %s\n", ctl_buf_str(&text));
		ctl_buf_free(&text);
		ctl_buf_free(&indent_text);
	} else {
		char *cell = ctl_cell(v, json_is_array(v) ? COL_LIST : is_time_key(key) ? COL_TIME : COL_TEXT,
		                      ctx->now);
		fprintf(ctx->out, " %s\n", cell);
		free(cell);
	}
}

/* dash: the object is an array element; its first line starts with "- ". */
static void print_fields(ctl_ctx *ctx, json_t *obj, int indent, bool dash)
{
	const char *key;
	json_t *v;
	bool first = true;
	json_object_foreach(obj, key, v) {
		if (dash)
			print_field(ctx, key, v, indent - 2, first ? "- " : "  ");
		else
			print_field(ctx, key, v, indent, "");
		first = false;
	}
	if (first && dash)
		fprintf(ctx->out, "%*s- {}\n", indent - 2, "");
}

void ctl_print_object(ctl_ctx *ctx, json_t *answer)
{
	if (json_is_object(answer))
		print_fields(ctx, answer, 0, false);
	else
		ctl_print_json(ctx, answer ? answer : json_null());
}

void ctl_print_me(ctl_ctx *ctx, json_t *me)
{
	char *kind = ctl_cell(json_object_get(me, "kind"), COL_TEXT, ctx->now);
	char *role = ctl_cell(json_object_get(me, "role"), COL_TEXT, ctx->now);
	json_t *teams = json_object_get(me, "team_ids"), *agent = json_object_get(me, "agent");
	char *team_list = json_is_array(teams) ? ctl_cell(teams, COL_LIST, ctx->now) : ctl_xstrdup("all");
	fprintf(ctx->out, "%s", kind);
	if (json_is_integer(json_object_get(me, "token_id")))
		fprintf(ctx->out, " %" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(me, "token_id")));
	fprintf(ctx->out, ", role %s, teams %s\n", role, team_list);
	if (json_is_object(agent)) {
		char *name = ctl_cell(json_object_get(agent, "name"), COL_TEXT, ctx->now);
		char *email = ctl_cell(json_object_get(agent, "email"), COL_TEXT, ctx->now);
		char *id = ctl_cell(json_object_get(agent, "id"), COL_TEXT, ctx->now);
		fprintf(ctx->out, "agent %s: %s <%s>\n", id, name, email);
		free(name);
		free(email);
		free(id);
	} else {
		fprintf(ctx->out, "agent: none\n");
	}
	free(kind);
	free(role);
	free(team_list);
}

/* A customer's detail: the record, then their conversations as a table. */
void ctl_print_customer(ctl_ctx *ctx, json_t *c)
{
	if (!json_is_array(json_object_get(c, "identities"))) {
		ctl_print_object(ctx, c);   /* not the detail this printer knows */
		return;
	}
	char *id = ctl_cell(json_object_get(c, "id"), COL_TEXT, ctx->now);
	char *name = ctl_cell(json_object_get(c, "display_name"), COL_TEXT, ctx->now);
	fprintf(ctx->out, "customer %s: %s\n", id, name);
	json_t *into = json_object_get(c, "merged_into");
	if (json_is_integer(into))
		fprintf(ctx->out, "%-13s%" JSON_INTEGER_FORMAT " (this record lives on there)\n", "merged into",
		        json_integer_value(into));
	static const char *const contact[] = { "kind", "value", "verified", NULL };
	static const char *const identity[] = { "channel_instance", "handle|external_id", "display_name", NULL };
	static const char *const kase[] = { "number", NULL };
	struct { const char *label, *key; ctl_col_kind kind; } rows[] = {
		{ "tags", "tags", COL_LIST }, { "created", "created_at", COL_TIME },
		{ "attributes", "attributes", COL_TEXT },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		json_t *v = json_object_get(c, rows[i].key);
		if (!v || (json_is_array(v) && !json_array_size(v)) || (json_is_object(v) && !json_object_size(v)))
			continue;
		char *cell = ctl_cell(v, rows[i].kind, ctx->now);
		fprintf(ctx->out, "%-13s%s\n", rows[i].label, cell);
		free(cell);
	}
	ctl_print_joined(ctx, "contacts", json_object_get(c, "contacts"), contact);
	ctl_print_joined(ctx, "accounts", json_object_get(c, "identities"), identity);
	ctl_print_joined(ctx, "cases", json_object_get(c, "cases"), kase);
	json_t *convs = json_object_get(c, "conversations");
	if (json_is_array(convs) && json_array_size(convs) > 0) {
		fputc('\n', ctx->out);
		ctl_table_print(ctx->out, ctl_conversation_columns, convs, ctx->now);
		if (json_is_true(json_object_get(c, "conversations_truncated")))
			fprintf(ctx->out, "(only the newest %zu conversations)\n", json_array_size(convs));
	}
	free(id);
	free(name);
}

/* The new token: its fields and secret flat, or {"token": {...}, "secret"}. */
void ctl_print_new_token(ctl_ctx *ctx, json_t *answer)
{
	char *id = ctl_cell(ctl_json_path(answer, "token.id|id"), COL_TEXT, ctx->now);
	char *role = ctl_cell(ctl_json_path(answer, "token.role|role"), COL_TEXT, ctx->now);
	char *secret = ctl_cell(json_object_get(answer, "secret"), COL_TEXT, ctx->now);
	fprintf(ctx->out, "token %s created, role %s. Its secret, shown only this once:\n%s\n", id, role,
	        secret);
	free(id);
	free(role);
	free(secret);
}
