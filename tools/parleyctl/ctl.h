/* ctl.h - what every part of parleyctl shares: exit codes, a growable
 * string buffer and allocation that ends the program when memory runs out
 * (a command-line client has nothing sensible to do instead). */
#ifndef PARLEYCTL_CTL_H
#define PARLEYCTL_CTL_H

#include <stdbool.h>
#include <stddef.h>

#define CTL_MUSTCHECK __attribute__((warn_unused_result))

enum ctl_exit {
	CTL_EXIT_OK = 0,
	CTL_EXIT_API = 1,        /* the API said no, or it could not be reached */
	CTL_EXIT_USAGE = 2,
	CTL_EXIT_COLLISION = 3,  /* a reply was not sent: the conversation moved on */
};

__attribute__((noreturn)) void ctl_out_of_memory(void);
void *ctl_xmalloc(size_t n);
void *ctl_xrealloc(void *p, size_t n);
char *ctl_xstrdup(const char *s);

typedef struct ctl_buf {
	char *data;   /* always NUL-terminated once anything was added */
	size_t len, cap;
} ctl_buf;

void ctl_buf_add(ctl_buf *b, const char *s, size_t n);
void ctl_buf_adds(ctl_buf *b, const char *s);
void ctl_buf_addc(ctl_buf *b, char c);
void ctl_buf_addf(ctl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The text so far ("" when empty); the buffer keeps owning it. */
const char *ctl_buf_str(ctl_buf *b);
/* The text, now the caller's (never NULL); the buffer is empty again. */
char *ctl_buf_take(ctl_buf *b);
void ctl_buf_free(ctl_buf *b);

#endif
