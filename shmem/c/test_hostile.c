/*
 * test_hostile.c - the C reader (fmshm.h) against hostile segments.
 *
 *   1. Random segments: a real segment written by the Go writer
 *      (shmem/cmd/shmwriter, argv[1]) is copied, then every round overwrites
 *      a few random ranges of the copy (header, index, slots or ring, with
 *      random bytes or all-ones/all-zero words) or truncates it, and the
 *      reader opens it and does every read: lookups by name, foreach,
 *      snapshot, header, check, the event follower. Each call must return
 *      (an error is fine) without a crash, a hang or, under ASan+UBSan, an
 *      out-of-bounds access. Rounds: argv[2] (default 2000), or a duration
 *      ("20s", "10m": as many rounds as fit, for make fuzz); the seed
 *      is argv[3] (default: the time), printed so a failure can be replayed.
 *   2. Foreign files: a segment owned by another user, or writable by
 *      group or others, or a symlink, is refused with FMSHM_EFOREIGN by
 *      fmshm_open (and accepted by fmshm_open_owner for the named owner).
 *
 * Exit status 0 only if every check passed.
 */
#include "test_common.h"

#define N_ENT 32

static char seg_path[128], fuzz_path[128], link_path[128];

static uint64_t rng_state;
static long opened, found; /* rounds that opened, names read */

static uint64_t rnd(void) /* xorshift64* */
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

/* Runs the Go writer in static mode until it has built the segment, copies
 * the segment into memory, stops the writer and removes the file. */
static unsigned char *real_segment(const char *writer, size_t *size)
{
	char *argv[] = {(char *)writer, (char *)"-path", seg_path, (char *)"-mode", (char *)"static",
			(char *)"-n", (char *)"32", (char *)"-capacity", (char *)"64", (char *)"-events", (char *)"64", NULL};
	int fd;
	pid_t pid = spawn_writer(argv);
	struct stat sb;
	unsigned char *buf;
	fd = open(seg_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		perror(seg_path);
		exit(1);
	}
	*size = (size_t)sb.st_size;
	buf = malloc(*size);
	if (buf == NULL || pread(fd, buf, *size, 0) != (ssize_t)*size) {
		perror("read segment");
		exit(1);
	}
	close(fd);
	stop_writer(pid, SIGTERM);
	unlink(seg_path); /* the writer unlinks it too (no -keep) */
	return buf;
}

static int count_cb(const fmshm_entity *e, void *ctx)
{
	(void)e;
	++*(int *)ctx;
	return 0;
}

/* One round: a patched (or truncated) copy of seg, opened and read. */
static void round_once(const unsigned char *seg, size_t size, unsigned char *work, fmshm_entity *snap)
{
	size_t len = size, idx_off, idx_end;
	unsigned k, patches = 1 + (unsigned)(rnd() % 6);
	fmshm r;
	fmshm_entity e;
	fmshm_info info;
	fmshm_follower fol;
	fmshm_event ev;
	uint64_t lost, seq;
	size_t n;
	int fd, rc, i, cnt = 0;
	char name[32];

	memcpy(work, seg, size);
	idx_off = (size_t)FMSHM__LOAD(&((struct fmshm_header *)(void *)work)->index_off, FMSHM__RLX);
	idx_end = idx_off + (size_t)FMSHM__LOAD(&((struct fmshm_header *)(void *)work)->index_size, FMSHM__RLX);
	for (k = 0; k < patches; k++) {
		size_t off, plen = 1 + (size_t)(rnd() % 16), j;
		unsigned where = (unsigned)(rnd() % 4), fill = (unsigned)(rnd() % 3);
		if (where == 0)
			off = (size_t)(rnd() % FMSHM_HEADER_SIZE); /* the header */
		else if (where == 1 && idx_end <= size && idx_end > idx_off)
			off = idx_off + (size_t)(rnd() % (idx_end - idx_off)); /* the index */
		else
			off = (size_t)(rnd() % size); /* anywhere: slots, ring */
		for (j = 0; j < plen && off + j < size; j++)
			work[off + j] = fill == 0 ? (unsigned char)rnd() : fill == 1 ? 0xff : 0;
	}
	if (rnd() % 16 == 0)
		len = (size_t)(rnd() % size); /* truncated */

	fd = open(fuzz_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, work, len) != (ssize_t)len) {
		perror(fuzz_path);
		exit(2);
	}
	close(fd);

	rc = fmshm_open(&r, fuzz_path);
	if (rc != FMSHM_OK)
		return;
	opened++;
	r.spin_retries = 1;
	r.max_retries = 3;
	r.max_wait_ns = 1000000;
	r.no_pid_check = 1;
	for (i = 0; i < N_ENT + 2; i++) {
		snprintf(name, sizeof name, "ctest/%04d", i);
		if (fmshm_read_by_name(&r, name, &e) == FMSHM_OK)
			found++;
	}
	(void)fmshm_foreach(&r, count_cb, &cnt);
	(void)fmshm_snapshot(&r, snap, 128, &n, &seq);
	(void)fmshm_header(&r, &info);
	(void)fmshm_check(&r);
	fmshm_follow(&r, &fol, 1);
	for (i = 0; i < 200; i++)
		if (fmshm_next_event(&r, &fol, &ev, &lost) != FMSHM_OK)
			break;
	fmshm_close(&r);
}

static void test_random_segments(const unsigned char *seg, size_t size, long rounds, double seconds)
{
	unsigned char *work = malloc(size);
	fmshm_entity *snap = malloc(128 * sizeof *snap);
	fmshm r;
	fmshm_entity e;
	long i;
	if (work == NULL || snap == NULL) {
		perror("malloc");
		exit(2);
	}
	/* The unpatched copy reads back: the rounds start from a real segment. */
	{
		int fd = open(fuzz_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		CHECK(fd >= 0 && write(fd, seg, size) == (ssize_t)size, "write copy");
		close(fd);
		CHECK(fmshm_open(&r, fuzz_path) == FMSHM_OK, "open the unpatched copy");
		r.no_pid_check = 1;
		CHECK(fmshm_read_by_name(&r, "ctest/0007", &e) == FMSHM_OK && strcmp(e.name, "ctest/0007") == 0,
		      "read ctest/0007 from the unpatched copy");
		fmshm_close(&r);
	}
	if (seconds > 0) {
		double end = now_s() + seconds;
		for (rounds = 0; now_s() < end; rounds++)
			round_once(seg, size, work, snap);
	} else {
		for (i = 0; i < rounds; i++)
			round_once(seg, size, work, snap);
	}
	unlink(fuzz_path);
	free(work);
	free(snap);
	printf("random segments: %ld rounds (%ld opened, %ld names read), no crash\n", rounds, opened, found);
	CHECK(opened > rounds / 4, "only %ld of %ld patched segments opened: the rounds test little", opened, rounds);
}

static void test_foreign(const unsigned char *seg, size_t size)
{
	fmshm r;
	int fd, rc;
	fd = open(fuzz_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0 && write(fd, seg, size) == (ssize_t)size, "write copy");
	close(fd);

	rc = fmshm_open(&r, fuzz_path);
	CHECK(rc == FMSHM_OK, "own 0600 segment: %s", fmshm_strerror(rc));
	fmshm_close(&r);

	/* Found by the random rounds (10 minutes, UBSan): a heartbeat word far
	 * from now overflowed the signed age computation. */
	{
		static const int64_t hbs[] = {INT64_MIN, INT64_MIN + 1, INT64_MAX, -1};
		unsigned k;
		for (k = 0; k < sizeof hbs / sizeof hbs[0]; k++) {
			unsigned char *w = malloc(size);
			fmshm_info info;
			memcpy(w, seg, size);
			memcpy(w + 232, &hbs[k], 8); /* heartbeat */
			memcpy(w + 144, &hbs[k], 8); /* hb_timeout */
			fd = open(fuzz_path, O_RDWR | O_TRUNC | O_CLOEXEC);
			CHECK(fd >= 0 && write(fd, w, size) == (ssize_t)size, "write copy");
			close(fd);
			free(w);
			if (fmshm_open(&r, fuzz_path) == FMSHM_OK) {
				r.no_pid_check = 1;
				(void)fmshm_header(&r, &info);
				(void)fmshm_writer_alive(&r);
				fmshm_close(&r);
			}
		}
	}

	chmod(fuzz_path, 0666);
	rc = fmshm_open(&r, fuzz_path);
	CHECK(rc == FMSHM_EFOREIGN, "0666 segment: got %s, want EFOREIGN", fmshm_strerror(rc));
	fmshm_close(&r);
	chmod(fuzz_path, 0620);
	rc = fmshm_open(&r, fuzz_path);
	CHECK(rc == FMSHM_EFOREIGN, "group-writable segment: got %s, want EFOREIGN", fmshm_strerror(rc));
	fmshm_close(&r);
	chmod(fuzz_path, 0644);

	unlink(link_path);
	CHECK(symlink(fuzz_path, link_path) == 0, "symlink");
	rc = fmshm_open(&r, link_path);
	CHECK(rc != FMSHM_OK, "a symlink at the path was opened");
	fmshm_close(&r);
	unlink(link_path);

	if (geteuid() == 0) {
		/* Another user's file (nobody, 65534) at the agent's path. */
		CHECK(chown(fuzz_path, 65534, 65534) == 0, "chown");
		rc = fmshm_open(&r, fuzz_path);
		CHECK(rc == FMSHM_EFOREIGN, "segment of uid 65534: got %s, want EFOREIGN", fmshm_strerror(rc));
		fmshm_close(&r);
		rc = fmshm_open_owner(&r, fuzz_path, 65534);
		CHECK(rc == FMSHM_OK, "segment of uid 65534 with owner 65534: %s", fmshm_strerror(rc));
		fmshm_close(&r);
		printf("foreign segments: refused (owner, mode, symlink)\n");
	} else {
		printf("foreign segments: refused (mode, symlink); the owner check needs root to chown\n");
	}
	unlink(fuzz_path);
}

int main(int argc, char **argv)
{
	size_t size;
	unsigned char *seg;
	long rounds = 2000;
	double seconds = 0;
	if (argc < 2) {
		fprintf(stderr, "usage: %s path/to/shmwriter [rounds [seed]]\n", argv[0]);
		return 2;
	}
	if (argc > 2) {
		char *end;
		double v = strtod(argv[2], &end);
		if (*end == 's' || *end == 'm' || *end == 'h') /* a duration: 20s, 10m, 1h */
			seconds = v * (*end == 'h' ? 3600 : *end == 'm' ? 60 : 1);
		else
			rounds = (long)v;
	}
	rng_state = argc > 3 ? strtoull(argv[3], NULL, 0) : (uint64_t)fmshm__mono_ns();
	if (rng_state == 0)
		rng_state = 1;
	setvbuf(stdout, NULL, _IOLBF, 0); /* the seed is printed before a sanitizer aborts */
	printf("seed %llu\n", (unsigned long long)rng_state);
	snprintf(seg_path, sizeof seg_path, "/dev/shm/fmshm-chostile-%d", (int)getpid());
	snprintf(fuzz_path, sizeof fuzz_path, "/dev/shm/fmshm-chostile-%d.fuzz", (int)getpid());
	snprintf(link_path, sizeof link_path, "/dev/shm/fmshm-chostile-%d.link", (int)getpid());
	seg = real_segment(argv[1], &size);
	test_foreign(seg, size);
	test_random_segments(seg, size, rounds, seconds);
	free(seg);
	unlink(fuzz_path);
	unlink(link_path);
	if (failures) {
		fprintf(stderr, "%d check(s) FAILED\n", failures);
		return 1;
	}
	printf("all C hostile-segment tests passed\n");
	return 0;
}
