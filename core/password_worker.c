/* password_worker.c - one thread for scrypt; results delivered on the loop.
 *
 * The loop thread submits jobs into `todo`; the worker takes them one at a
 * time, puts each finished one into `done` and writes a byte into the wake
 * pipe; the pipe's event on the loop drains `done` and runs the callbacks.
 * Both lists and the flags are under one mutex; everything else (the event,
 * the callbacks) belongs to the loop thread. */
#include "password_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "log.h"
#include "password.h"
#include "util.h"

typedef enum job_kind { JOB_VERIFY, JOB_HASH } job_kind;

typedef struct pw_job {
	struct pw_job *next;
	job_kind kind;
	char *password;           /* copy; wiped and freed once used */
	size_t password_len;
	char *stored;             /* JOB_VERIFY; NULL: the dummy */
	password_verify_done_fn verify_done;
	password_hash_done_fn hash_done;
	void *arg;
	bool ran;                 /* the worker did the job; ok/match/hash are its result */
	bool ok, match;
	char hash[PASSWORD_HASH_MAX];
} pw_job;

typedef struct job_list {
	pw_job *head, *tail;
} job_list;

/* The mutex and condition are static so they outlive every start/stop pair:
 * a callback that stops the worker returns into the delivery loop, which
 * takes the mutex once more. */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	/* Under mu. */
	job_list todo, done;
	bool quit;                /* the thread should exit after its job */
	/* Loop thread only. */
	bool running, stopping;
	unsigned outstanding;
	struct event *wake_ev;
	int wake_rd, wake_wr;
	pthread_t thread;
} W = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.wake_rd = -1,
	.wake_wr = -1,
};

static void list_push(job_list *l, pw_job *j)
{
	j->next = NULL;
	if (l->tail != NULL)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
}

static pw_job *list_pop(job_list *l)
{
	pw_job *j = l->head;
	if (j != NULL) {
		l->head = j->next;
		if (l->head == NULL)
			l->tail = NULL;
		j->next = NULL;
	}
	return j;
}

static void wipe_password(pw_job *j)
{
	if (j->password != NULL) {
		OPENSSL_cleanse(j->password, j->password_len);
		free(j->password);
		j->password = NULL;
	}
}

static void job_free(pw_job *j)
{
	wipe_password(j);
	free(j->stored);
	OPENSSL_cleanse(j->hash, sizeof(j->hash));
	free(j);
}

static void job_run(pw_job *j)
{
	if (j->kind == JOB_HASH) {
		j->ok = password_hash(j->password, j->hash, sizeof(j->hash));
	} else if (j->stored != NULL) {
		j->ok = password_verify(j->password, j->stored, &j->match);
	} else {
		password_verify_dummy(j->password);
		j->ok = true;
		j->match = false;
	}
	j->ran = true;
	wipe_password(j);
}

static void *worker_main(void *unused)
{
	pthread_mutex_lock(&W.mu);
	for (;;) {
		while (W.todo.head == NULL && !W.quit)
			pthread_cond_wait(&W.cond, &W.mu);
		if (W.quit)
			break;
		pw_job *j = list_pop(&W.todo);
		pthread_mutex_unlock(&W.mu);
		job_run(j);
		pthread_mutex_lock(&W.mu);
		list_push(&W.done, j);
		/* Full pipe (EAGAIN): a wake-up is pending already, and the loop
		 * drains every finished job per wake-up. */
		ssize_t n = write(W.wake_wr, "", 1);
		(void)n;
	}
	pthread_mutex_unlock(&W.mu);
	return NULL;
}

/* Run j's callback (loop thread) and free it. Not ran: ok = false. */
static void job_deliver(pw_job *j)
{
	W.outstanding--;
	bool ok = j->ran && j->ok;
	if (j->kind == JOB_HASH)
		j->hash_done(ok, ok ? j->hash : NULL, j->arg);
	else
		j->verify_done(ok, ok && j->match, j->arg);
	job_free(j);
}

/* Deliver every finished job, one at a time with the mutex released for the
 * callback (which may submit, or stop the worker). */
static void deliver_done(void)
{
	for (;;) {
		pthread_mutex_lock(&W.mu);
		pw_job *j = list_pop(&W.done);
		pthread_mutex_unlock(&W.mu);
		if (j == NULL)
			return;
		job_deliver(j);
	}
}

static void wake_cb(evutil_socket_t fd, short what, void *unused)
{
	char buf[64];
	/* Drain before taking the list: a job finished after this read writes
	 * again and fires the event again, so none is left waiting. */
	while (read(fd, buf, sizeof(buf)) > 0) {
	}
	deliver_done();
}

static void close_wake(void)
{
	if (W.wake_ev != NULL) {
		event_free(W.wake_ev);
		W.wake_ev = NULL;
	}
	if (W.wake_rd >= 0)
		close(W.wake_rd);
	if (W.wake_wr >= 0)
		close(W.wake_wr);
	W.wake_rd = W.wake_wr = -1;
}

bool password_worker_start(struct event_base *base)
{
	if (W.running) {
		log_error("password", "the password worker is already running");
		return false;
	}
	int fds[2];
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
		log_error("password", "cannot make the password worker's pipe: %s", strerror(errno));
		return false;
	}
	W.wake_rd = fds[0];
	W.wake_wr = fds[1];
	W.wake_ev = event_new(base, W.wake_rd, EV_READ | EV_PERSIST, wake_cb, NULL);
	if (W.wake_ev == NULL || event_add(W.wake_ev, NULL) != 0) {
		log_error("password", "cannot watch the password worker's pipe");
		close_wake();
		return false;
	}
	W.quit = false;
	/* The thread blocks every signal: they are the loop's to handle. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&W.thread, NULL, worker_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_error("password", "cannot start the password worker thread: %s", strerror(rc));
		close_wake();
		return false;
	}
	W.running = true;
	return true;
}

void password_worker_stop(void)
{
	if (!W.running || W.stopping)
		return;
	W.stopping = true;
	pthread_mutex_lock(&W.mu);
	W.quit = true;
	pthread_cond_signal(&W.cond);
	pthread_mutex_unlock(&W.mu);
	pthread_join(W.thread, NULL);
	/* The thread is gone: finished jobs first (they were submitted first),
	 * then the ones it never started. */
	deliver_done();
	for (;;) {
		pthread_mutex_lock(&W.mu);
		pw_job *j = list_pop(&W.todo);
		pthread_mutex_unlock(&W.mu);
		if (j == NULL)
			break;
		job_deliver(j);
	}
	close_wake();
	W.running = false;
	W.stopping = false;
}

/* A new job, or NULL when it must be refused (not running, stopping, full). */
static pw_job *job_new(job_kind kind, const char *password, void *arg)
{
	if (!W.running || W.stopping || password == NULL)
		return NULL;
	if (W.outstanding >= PASSWORD_WORKER_QUEUE_MAX)
		return NULL;
	pw_job *j = xcalloc(1, sizeof(*j));
	j->kind = kind;
	j->password_len = strlen(password);
	j->password = xstrndup(password, j->password_len);
	j->arg = arg;
	return j;
}

static void job_submit(pw_job *j)
{
	W.outstanding++;
	pthread_mutex_lock(&W.mu);
	list_push(&W.todo, j);
	pthread_cond_signal(&W.cond);
	pthread_mutex_unlock(&W.mu);
}

bool password_worker_verify(const char *password, const char *stored_or_NULL,
                            password_verify_done_fn done, void *arg)
{
	if (done == NULL)
		return false;
	pw_job *j = job_new(JOB_VERIFY, password, arg);
	if (j == NULL)
		return false;
	j->stored = xstrdup(stored_or_NULL);
	j->verify_done = done;
	job_submit(j);
	return true;
}

bool password_worker_hash(const char *password, password_hash_done_fn done, void *arg)
{
	if (done == NULL)
		return false;
	pw_job *j = job_new(JOB_HASH, password, arg);
	if (j == NULL)
		return false;
	j->hash_done = done;
	job_submit(j);
	return true;
}

unsigned password_worker_outstanding(void)
{
	return W.outstanding;
}
