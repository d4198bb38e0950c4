/*
 * test_common.h - what the C tests of fmshm.h share (test_shm.c,
 * test_hostile.c): the failure count and CHECK, a monotonic clock in
 * seconds, and starting and stopping the Go writer (shmem/cmd/shmwriter).
 * Include it instead of fmshm.h, after nothing else.
 */
#ifndef FMSHM_TEST_COMMON_H
#define FMSHM_TEST_COMMON_H

#define _GNU_SOURCE
#include "../fmshm.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static int failures;

#define CHECK(cond, ...)                                                      \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                         \
			fputc('\n', stderr);                                  \
			failures++;                                           \
		}                                                             \
	} while (0)

static inline double now_s(void) { return (double)fmshm__mono_ns() / 1e9; }

/* Starts the Go writer with argv (argv[0] is its path, NULL-terminated),
 * its standard output a pipe, and returns once it has printed "ready" (the
 * segment exists): exits the test with status 1 if it never does, 2 if a
 * system call fails. */
static inline pid_t spawn_writer(char *const argv[])
{
	int fds[2];
	pid_t pid;
	char line[64];
	FILE *f;
	if (pipe(fds) != 0) {
		perror("pipe");
		exit(2);
	}
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execv(argv[0], argv);
		perror("execv");
		_exit(127);
	}
	close(fds[1]);
	f = fdopen(fds[0], "r");
	if (f == NULL || fgets(line, sizeof line, f) == NULL || strcmp(line, "ready\n") != 0) {
		fprintf(stderr, "FAIL: writer %s did not start\n", argv[0]);
		exit(1);
	}
	fclose(f);
	return pid;
}

/* Sends sig to the writer and reaps it (a zombie still has its pid). */
static inline void stop_writer(pid_t pid, int sig)
{
	int st;
	kill(pid, sig);
	waitpid(pid, &st, 0);
}

#endif
