/* table.c - aligned columns of JSON lists (table.h). */
#include "table.h"

#include <stdlib.h>
#include <string.h>

#include "text.h"

/* One alternative of a path: the segments between start and end. */
static json_t *path_one(json_t *v, const char *start, const char *end)
{
	const char *seg = start;
	while (v && seg < end) {
		const char *dot = memchr(seg, '.', (size_t)(end - seg));
		const char *stop = dot ? dot : end;
		char key[64];
		size_t len = (size_t)(stop - seg);
		if (len >= sizeof(key) || !json_is_object(v))
			return NULL;
		memcpy(key, seg, len);
		key[len] = '\0';
		v = json_object_get(v, key);
		seg = stop + 1;
	}
	return v;
}

json_t *ctl_json_path(json_t *v, const char *path)
{
	const char *start = path;
	for (;;) {
		const char *bar = strchr(start, '|');
		const char *end = bar ? bar : start + strlen(start);
		json_t *found = path_one(v, start, end);
		if ((found && !json_is_null(found)) || !bar)
			return found;
		start = bar + 1;
	}
}

static void add_scalar(ctl_buf *b, json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		ctl_text_escape(b, json_string_value(v), json_string_length(v), NULL);
		break;
	case JSON_INTEGER:
		ctl_buf_addf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL:
		ctl_buf_addf(b, "%g", json_real_value(v));
		break;
	case JSON_TRUE:
		ctl_buf_adds(b, "yes");
		break;
	case JSON_FALSE:
		ctl_buf_adds(b, "no");
		break;
	case JSON_NULL:
		ctl_buf_adds(b, "-");
		break;
	default: {   /* objects and arrays: their JSON, one line */
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		if (s)
			ctl_text_escape(b, s, strlen(s), NULL);
		free(s);
	}
	}
}

char *ctl_cell(json_t *v, ctl_col_kind kind, time_t now)
{
	ctl_buf b = { 0 };
	time_t t;
	if (!v || json_is_null(v)) {
		ctl_buf_adds(&b, "-");
	} else if (kind == COL_TIME && json_is_string(v) && ctl_time_parse(json_string_value(v), &t)) {
		char when[CTL_TIME_SHORT];
		ctl_time_short(when, t, now);
		ctl_buf_adds(&b, when);
	} else if (kind == COL_LIST && json_is_array(v)) {
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e) {
			if (i)
				ctl_buf_addc(&b, ',');
			add_scalar(&b, e);
		}
		if (json_array_size(v) == 0)
			ctl_buf_adds(&b, "-");
	} else {
		add_scalar(&b, v);
	}
	return ctl_buf_take(&b);
}

static void pad(FILE *out, int n)
{
	for (; n > 0; n--)
		fputc(' ', out);
}

void ctl_table_print(FILE *out, const ctl_column *cols, json_t *items, time_t now)
{
	size_t ncols = 0, nrows = json_array_size(items);
	while (cols[ncols].header)
		ncols++;
	if (nrows == 0) {
		fputs("(none)\n", out);
		return;
	}
	/* Row 0 is the header. */
	char **cells = ctl_xmalloc(sizeof(char *) * ncols * (nrows + 1));
	int *width = ctl_xmalloc(sizeof(int) * ncols);
	for (size_t c = 0; c < ncols; c++) {
		cells[c] = ctl_xstrdup(cols[c].header);
		width[c] = ctl_text_width(cells[c]);
	}
	for (size_t r = 0; r < nrows; r++) {
		json_t *item = json_array_get(items, r);
		for (size_t c = 0; c < ncols; c++) {
			char *text = ctl_cell(ctl_json_path(item, cols[c].path), cols[c].kind, now);
			if (cols[c].max_width > 0) {
				ctl_buf cut = { 0 };
				ctl_text_cut(&cut, text, cols[c].max_width);
				free(text);
				text = ctl_buf_take(&cut);
			}
			int w = ctl_text_width(text);
			if (w > width[c])
				width[c] = w;
			cells[(r + 1) * ncols + c] = text;
		}
	}
	for (size_t r = 0; r <= nrows; r++) {
		for (size_t c = 0; c < ncols; c++) {
			const char *text = cells[r * ncols + c];
			fputs(text, out);
			if (c + 1 < ncols)
				pad(out, width[c] - ctl_text_width(text) + 2);
			free(cells[r * ncols + c]);
		}
		fputc('\n', out);
	}
	free(cells);
	free(width);
}
