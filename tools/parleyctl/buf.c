/* buf.c - allocation and the growable string buffer of ctl.h. */
#include "ctl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ctl_out_of_memory(void)
{
	fputs("parleyctl: out of memory\n", stderr);
	exit(CTL_EXIT_API);
}

void *ctl_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		ctl_out_of_memory();
	return p;
}

void *ctl_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		ctl_out_of_memory();
	return q;
}

char *ctl_xstrdup(const char *s)
{
	size_t n = strlen(s);
	char *d = ctl_xmalloc(n + 1);
	memcpy(d, s, n + 1);
	return d;
}

static void reserve(ctl_buf *b, size_t more)
{
	if (more >= (size_t)-1 / 2 - b->len)
		ctl_out_of_memory();
	if (b->len + more + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + more + 1)
		cap *= 2;
	b->data = ctl_xrealloc(b->data, cap);
	b->cap = cap;
}

void ctl_buf_add(ctl_buf *b, const char *s, size_t n)
{
	reserve(b, n);
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void ctl_buf_adds(ctl_buf *b, const char *s)
{
	ctl_buf_add(b, s, strlen(s));
}

void ctl_buf_addc(ctl_buf *b, char c)
{
	ctl_buf_add(b, &c, 1);
}

void ctl_buf_addf(ctl_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

const char *ctl_buf_str(ctl_buf *b)
{
	return b->data ? b->data : "";
}

char *ctl_buf_take(ctl_buf *b)
{
	char *s = b->data ? b->data : ctl_xstrdup("");
	*b = (ctl_buf){ 0 };
	return s;
}

void ctl_buf_free(ctl_buf *b)
{
	free(b->data);
	*b = (ctl_buf){ 0 };
}
