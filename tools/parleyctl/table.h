/* table.h - lists as aligned columns, and JSON values as short text.
 *
 * A list command names its columns in one array: a header, where the value
 * is in each item (a dotted path, "customer.display_name"; "a|b" takes b
 * when a is null or missing) and how to show it. Every cell goes through
 * ctl_text_escape, so an item cannot put control characters on the screen. */
#ifndef PARLEYCTL_TABLE_H
#define PARLEYCTL_TABLE_H

#include <stdio.h>
#include <time.h>
#include <jansson.h>

#include "ctl.h"

typedef enum ctl_col_kind {
	COL_TEXT,    /* strings as they are, numbers and booleans written out */
	COL_TIME,    /* RFC 3339 -> ctl_time_short */
	COL_LIST,    /* an array of scalars joined with "," */
} ctl_col_kind;

typedef struct ctl_column {
	const char *header;   /* NULL ends the array */
	const char *path;
	ctl_col_kind kind;
	int max_width;        /* longer cells are cut with "…"; 0: no limit */
} ctl_column;

/* The value at a dotted path ("a.b", alternatives "a.b|c"); NULL when missing. */
json_t *ctl_json_path(json_t *v, const char *path);

/* One value as one line of safe text (a new string): "-" for null or
 * missing, times shortened for COL_TIME. */
char *ctl_cell(json_t *v, ctl_col_kind kind, time_t now);

/* Prints items (an array of objects) under cols, columns two spaces
 * apart, the last one unpadded; "(none)" when there are no items. */
void ctl_table_print(FILE *out, const ctl_column *cols, json_t *items, time_t now);

#endif
