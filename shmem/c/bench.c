/*
 * bench.c - C reader benchmark of fmshm.h against a live Go writer
 * (shmem/cmd/shmwriter, argv[1]) holding 1024 entities. Prints the median
 * ns/op of 5 runs of each operation.
 */
#define _GNU_SOURCE
#include "../fmshm.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define N 1024
#define RUNS 5

static char seg_path[128];

static pid_t spawn(const char *bin)
{
	int fds[2];
	char line[64];
	FILE *f;
	pid_t pid;
	if (pipe(fds) != 0)
		exit(2);
	pid = fork();
	if (pid == 0) {
		char *argv[] = {(char *)bin, (char *)"-path", seg_path, (char *)"-mode", (char *)"static",
		                (char *)"-n", (char *)"1024", (char *)"-capacity", (char *)"4096", NULL};
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execv(bin, argv);
		_exit(127);
	}
	close(fds[1]);
	f = fdopen(fds[0], "r");
	if (f == NULL || fgets(line, sizeof line, f) == NULL || strcmp(line, "ready\n") != 0) {
		fprintf(stderr, "writer %s did not start\n", bin);
		exit(1);
	}
	fclose(f);
	return pid;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static fmshm r;
static uint64_t ids[N];
static char names[N][32];
static uint32_t slots[N];
static volatile uint64_t sink;

enum { READ_ONE, READ_CYCLE, LOOKUP, READ_SLOT, READ_NAME };

static double run(int op, long iters)
{
	fmshm_entity e;
	long i;
	int64_t t0 = fmshm__mono_ns();
	uint64_t acc = 0;
	for (i = 0; i < iters; i++) {
		int rc = 0;
		uint32_t s;
		switch (op) {
		case READ_ONE: rc = fmshm_read(&r, ids[7], &e); break;
		case READ_CYCLE: rc = fmshm_read(&r, ids[i & (N - 1)], &e); break;
		case LOOKUP: rc = fmshm_lookup(&r, ids[i & (N - 1)], &s); acc += s; break;
		case READ_SLOT: rc = fmshm_read_slot(&r, slots[7], ids[7], &e); break;
		case READ_NAME: rc = fmshm_read_by_name(&r, names[7], &e); break;
		}
		if (rc != FMSHM_OK) {
			fprintf(stderr, "op %d: %s\n", op, fmshm_strerror(rc));
			exit(1);
		}
		acc += e.state;
	}
	sink = acc;
	return (double)(fmshm__mono_ns() - t0) / (double)iters;
}

int main(int argc, char **argv)
{
	static const struct {
		int op;
		const char *name;
	} ops[] = {
	    {READ_ONE, "lookup+read by ID, one entity (the headline figure)"},
	    {READ_CYCLE, "lookup+read by ID, cycling over 1024 entities"},
	    {LOOKUP, "lookup only, cycling over 1024 entities"},
	    {READ_SLOT, "read of a cached slot"},
	    {READ_NAME, "read by name (xxhash64 + lookup + read)"},
	};
	long iters = 5000000;
	pid_t w;
	int i, k, rc;
	if (argc < 2) {
		fprintf(stderr, "usage: %s path/to/shmwriter [iterations]\n", argv[0]);
		return 2;
	}
	if (argc > 2)
		iters = atol(argv[2]);
	snprintf(seg_path, sizeof seg_path, "/dev/shm/fmshm-cbench-%d", (int)getpid());
	w = spawn(argv[1]);
	if ((rc = fmshm_open(&r, seg_path)) != FMSHM_OK) {
		fprintf(stderr, "open: %s\n", fmshm_strerror(rc));
		return 1;
	}
	for (i = 0; i < N; i++) {
		snprintf(names[i], sizeof names[i], "ctest/%04d", i);
		ids[i] = fmshm_xxh64(names[i], strlen(names[i]), 0);
		if (fmshm_lookup(&r, ids[i], &slots[i]) != FMSHM_OK) {
			fprintf(stderr, "entity %s missing\n", names[i]);
			return 1;
		}
	}
	printf("C reader (fmshm.h), %ld iterations x %d runs, median:\n", iters, RUNS);
	for (k = 0; k < (int)(sizeof ops / sizeof ops[0]); k++) {
		double t[RUNS];
		run(ops[k].op, iters / 10); /* warm up */
		for (i = 0; i < RUNS; i++)
			t[i] = run(ops[k].op, iters);
		qsort(t, RUNS, sizeof t[0], cmp);
		printf("  %-55s %6.1f ns/op  (min %.1f, max %.1f)\n", ops[k].name, t[RUNS / 2], t[0], t[RUNS - 1]);
	}
	fmshm_close(&r);
	kill(w, SIGTERM);
	waitpid(w, NULL, 0);
	unlink(seg_path);
	return 0;
}
