/*
 * test_shm.c - C reader tests of fmshm.h against a live Go writer
 * (shmem/cmd/shmwriter, passed as argv[1]).
 *
 *   1. xxhash64 agrees with Go's (known vectors, and lookups by name of
 *      entities named by the Go writer with lengths 1..200).
 *   2. Torn reads: the writer rewrites 64 entities with the known checksum
 *      pattern (shmem/internal/testpattern) in transactions of 8, deleting some,
 *      while this reader does at least 1,000,000 verified reads and takes
 *      snapshots: zero torn reads, zero snapshots with half a transaction.
 *      Also follows the event ring and waits on the futex.
 *   3. A writer stuck mid-write (slot seq left odd): FMSHM_ETORN within the
 *      bound; the same writer SIGKILLed: FMSHM_EWRITERDEAD within the bound.
 *   4. The segment recreated by a new writer: FMSHM_ERECREATED, and a new
 *      generation on reopen. A clean close: FMSHM_ECLOSED.
 *
 * Exit status 0 only if every check passed.
 */
#include "test_common.h"

#define N_ENT 64
#define GROUP 8
#define MIN_READS 1000000

static const char *writer_bin;
static char seg_path[128];

/* ---- the Go writer --------------------------------------------------- */

static pid_t spawn(const char *mode, const char *extra)
{
	char *argv[] = {(char *)writer_bin, (char *)"-path", seg_path, (char *)"-mode", (char *)mode,
			(char *)"-n", (char *)"64", (char *)"-keep", (char *)extra, NULL};
	return spawn_writer(argv);
}

/* ---- the known pattern (shmem/internal/testpattern) ----------------------- */

static void name_of(int i, char *buf, size_t n) { snprintf(buf, n, "ctest/%04d", i); }

/* unix_ns is CLOCK_REALTIME in ns: the clock of a slot's written_at. */
static int64_t unix_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int verify(const fmshm_entity *e, int i, uint64_t id, const char *name)
{
	uint64_t v = e->incarnation;
	unsigned j, k;
	/* Written by this run's writer (layout minor 1): not 0, not in the
	 * future, not from before the last ten minutes. */
	int64_t now = unix_ns();
	if (e->written_at <= 0 || e->written_at > now || now - e->written_at > 600 * 1000000000LL)
		return 0;
	if (e->id != id || e->changed_seq != (v ^ id) || e->changed_at != (int64_t)(v * 1000003ULL) ||
	    e->owner != ((uint32_t)v ^ (uint32_t)id) || e->changed_by != (uint32_t)(v >> 3) + 7u ||
	    e->kind != 1 + i % 5 || e->state != 1 + (v & 1) || e->name_len != strlen(name) ||
	    memcmp(e->name, name, e->name_len) != 0 || e->nalarms != v % (FMSHM_MAX_ALARMS + 1))
		return 0;
	for (j = 0; j < e->nalarms; j++) {
		const fmshm_alarm *a = &e->alarms[j];
		if (a->raised_at != (int64_t)(v * 31 + j) || a->raised_by != (uint32_t)v + j ||
		    a->severity != 1 + (v + j) % 5 || a->cause_len != 8 + (v + j) % 57)
			return 0;
		for (k = 0; k < a->cause_len; k++)
			if ((unsigned char)a->cause[k] != 'a' + (v + j + k) % 26)
				return 0;
	}
	return 1;
}

static const int long_lens[] = {1, 3, 4, 7, 8, 31, 32, 33, 63, 64, 100, 199, 200};
#define N_LONG ((int)(sizeof long_lens / sizeof long_lens[0]))

static void long_name(int n, char *buf)
{
	int k;
	for (k = 0; k < n; k++)
		buf[k] = (char)('A' + (7 * k + n) % 26);
	buf[n] = 0;
}

/* ---- 1. xxhash -------------------------------------------------------- */

static void test_xxhash(void)
{
	static const struct {
		const char *s;
		uint64_t h;
	} v[] = {
	    {"", 0xef46db3751d8e999ULL},
	    {"a", 0xd24ec4f1a98c6e5bULL},
	    {"abc", 0x44bc2cf5ad770999ULL},
	    {"node/3/link/b", 0xcbe3977182720fdbULL},
	    {"0123456789abcdef0123456789abcdef", 0x642a94958e71e6c5ULL},
	    {"The quick brown fox jumps over the lazy dog, 0123456789 0123456789 0123456789 01234",
	     0xff581ae76f10bd0dULL},
	};
	size_t i;
	for (i = 0; i < sizeof v / sizeof v[0]; i++)
		CHECK(fmshm_xxh64(v[i].s, strlen(v[i].s), 0) == v[i].h, "xxh64(%s)", v[i].s);
}

/* ---- 2. torn reads ---------------------------------------------------- */

static int count_cb(const fmshm_entity *e, void *ctx)
{
	(void)e;
	(*(int *)ctx)++;
	return 0;
}

static void test_torn(void)
{
	fmshm r;
	fmshm_follower fol;
	fmshm_event ev;
	fmshm_entity e, *snap;
	fmshm_info info;
	char names[N_ENT][32], lname[FMSHM_MAX_NAME + 1];
	uint64_t ids[N_ENT], last_v[N_ENT] = {0}, seq0, seq1, last_ev_seq = 0, rng = 88172645463325252ULL;
	long reads = 0, ok = 0, missing = 0, changed = 0, torn = 0, snaps = 0, half = 0, snap_fail = 0;
	long unchecked = 0, unchecked_torn = 0, events = 0, lost_events = 0, bad_events = 0, nent = 0;
	double t0, el;
	int i, rc;
	pid_t w = spawn("churn", "-deletes");

	rc = fmshm_open(&r, seg_path);
	CHECK(rc == FMSHM_OK, "open: %s", fmshm_strerror(rc));
	if (rc != FMSHM_OK)
		exit(1);
	for (i = 0; i < N_ENT; i++) {
		name_of(i, names[i], sizeof names[i]);
		ids[i] = fmshm_xxh64(names[i], strlen(names[i]), 0);
	}
	/* xxhash of every name length agrees with the Go writer's IDs */
	for (i = 0; i < N_LONG; i++) {
		long_name(long_lens[i], lname);
		rc = fmshm_read_by_name(&r, lname, &e);
		CHECK(rc == FMSHM_OK && e.incarnation == (uint64_t)long_lens[i] && e.name_len == long_lens[i],
		      "static entity of name length %d: %s", long_lens[i], fmshm_strerror(rc));
	}
	rc = fmshm_foreach(&r, count_cb, &nent);
	CHECK(rc == FMSHM_OK && nent >= N_LONG, "foreach: %s, %ld entities", fmshm_strerror(rc), nent);
	rc = fmshm_header(&r, &info);
	CHECK(rc == FMSHM_OK && info.writer_alive && info.master == 1 && info.epoch == 1 && info.node_id == 1 &&
	          info.major == FMSHM_MAJOR,
	      "header: rc=%d alive=%d master=%u epoch=%llu", rc, info.writer_alive, info.master,
	      (unsigned long long)info.epoch);

	/* wait for a commit */
	seq0 = fmshm_seq(&r);
	rc = fmshm_wait(&r, seq0, 2000, &seq1);
	CHECK(rc == FMSHM_OK && seq1 != seq0 && seq1 % 2 == 0, "wait: %s (%llu -> %llu)", fmshm_strerror(rc),
	      (unsigned long long)seq0, (unsigned long long)seq1);

	snap = calloc(r.capacity, sizeof *snap);
	fmshm_follow(&r, &fol, 1);
	seq0 = fmshm_seq(&r);
	t0 = now_s();
	while (reads < MIN_READS && now_s() - t0 < 120) {
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		i = (int)(rng % N_ENT);
		rc = fmshm_read(&r, ids[i], &e);
		reads++;
		if (rc == FMSHM_ENOTFOUND) {
			missing++;
		} else if (rc != FMSHM_OK) {
			CHECK(0, "read %ld: %s", reads, fmshm_strerror(rc));
			break;
		} else if (!verify(&e, i, ids[i], names[i])) {
			if (torn++ < 5)
				CHECK(0, "TORN read of %s: v=%llu", names[i], (unsigned long long)e.incarnation);
		} else {
			ok++;
			if (e.incarnation != last_v[i])
				changed++, last_v[i] = e.incarnation;
		}
		/* control: the same read without the seqlock would tear */
		if ((reads & 7) == 0 && atomic_load(&r.hdr->slots_used) > 0) {
			uint32_t s = (uint32_t)((rng >> 20) % atomic_load(&r.hdr->slots_used));
			uint64_t id = fmshm__decode(&r.slots[s], &e);
			int k;
			for (k = 0; k < N_ENT; k++)
				if (ids[k] == id) {
					unchecked++;
					unchecked_torn += !verify(&e, k, ids[k], names[k]);
					break;
				}
		}
		if ((reads & 15) == 0) { /* snapshot: every group all of one version */
			size_t n;
			uint64_t sseq, gv[N_ENT / GROUP];
			size_t k;
			rc = fmshm_snapshot(&r, snap, r.capacity, &n, &sseq);
			if (rc != FMSHM_OK) {
				snap_fail++;
				CHECK(rc == FMSHM_ETORN, "snapshot: %s", fmshm_strerror(rc));
			} else {
				memset(gv, 0, sizeof gv);
				for (k = 0; k < n; k++) {
					int x;
					for (x = 0; x < N_ENT && ids[x] != snap[k].id; x++)
						;
					if (x == N_ENT)
						continue;
					if (!verify(&snap[k], x, ids[x], names[x])) {
						torn++;
						CHECK(0, "TORN entity in snapshot");
					}
					if (gv[x / GROUP] == 0)
						gv[x / GROUP] = snap[k].incarnation;
					else if (gv[x / GROUP] != snap[k].incarnation) {
						if (half++ < 5)
							CHECK(0, "HALF TRANSACTION in snapshot at seq %llu: group %d v%llu and v%llu",
							      (unsigned long long)sseq, x / GROUP, (unsigned long long)gv[x / GROUP],
							      (unsigned long long)snap[k].incarnation);
					}
				}
				snaps++;
			}
		}
		if ((reads & 255) == 0) { /* drain the event ring */
			uint64_t lost;
			for (;;) {
				int got = fmshm_next_event(&r, &fol, &ev, &lost);
				lost_events += (long)lost;
				if (!got)
					break;
				events++;
				if (ev.table_seq % 2 != 0 || ev.table_seq < last_ev_seq || ev.kind < FMSHM_EV_PUT ||
				    ev.kind > FMSHM_EV_CLEARED)
					bad_events++;
				last_ev_seq = ev.table_seq;
			}
		}
	}
	el = now_s() - t0;
	seq1 = fmshm_seq(&r);
	printf("torn-read test: %ld reads in %.2fs (%.0f ns/read incl. checks): %ld verified, %ld not found (deleted), "
	       "%ld saw a new version; %llu commits during the test\n",
	       reads, el, el * 1e9 / (double)reads, ok, missing, changed, (unsigned long long)(seq1 - seq0) / 2);
	printf("  torn reads: %ld; snapshots: %ld verified, %ld with half a transaction, %ld gave up\n", torn, snaps,
	       half, snap_fail);
	printf("  control: %ld of %ld reads made WITHOUT the seqlock were torn\n", unchecked_torn, unchecked);
	printf("  events: %ld read, %ld lost (overrun), %ld malformed\n", events, lost_events, bad_events);
	CHECK(reads >= MIN_READS, "only %ld reads", reads);
	CHECK(torn == 0, "%ld torn reads", torn);
	CHECK(half == 0, "%ld snapshots with half a transaction", half);
	CHECK(snaps >= 1000, "only %ld snapshots", snaps);
	CHECK(snap_fail * 100 <= snaps, "%ld snapshots gave up", snap_fail);
	CHECK(seq1 - seq0 >= 2000 && changed >= 1000, "the writer made too little progress (%llu seq, %ld changes)",
	      (unsigned long long)(seq1 - seq0), changed);
	CHECK(events > 0 && bad_events == 0, "events: %ld, %ld malformed", events, bad_events);

	/* a clean close */
	stop_writer(w, SIGTERM);
	rc = fmshm_read(&r, ids[0], &e);
	CHECK(rc == FMSHM_ECLOSED, "read after close: %s", fmshm_strerror(rc));
	rc = fmshm_wait(&r, fmshm_seq(&r), 100, &seq1);
	CHECK(rc == FMSHM_ECLOSED, "wait after close: %s", fmshm_strerror(rc));
	free(snap);
	fmshm_close(&r);
	unlink(seg_path);
}

/* ---- 3. writer stuck, then killed, mid-write; 4. recreated ------------ */

static void test_dead_writer(void)
{
	fmshm r, r2;
	fmshm_entity e;
	fmshm_info info;
	double t0, el;
	int rc;
	uint64_t stuck_id = fmshm_xxh64("ctest/0000", 10, 0), good_id = fmshm_xxh64("ctest/0001", 10, 0);
	pid_t w = spawn("stuck", NULL);

	rc = fmshm_open(&r, seg_path);
	CHECK(rc == FMSHM_OK, "open: %s", fmshm_strerror(rc));
	if (rc != FMSHM_OK)
		exit(1);
	r.max_wait_ns = 50000000; /* 50 ms */
	rc = fmshm_read(&r, good_id, &e);
	CHECK(rc == FMSHM_OK && verify(&e, 1, good_id, "ctest/0001"), "good entity: %s", fmshm_strerror(rc));

	t0 = now_s();
	rc = fmshm_read(&r, stuck_id, &e);
	el = now_s() - t0;
	printf("stuck live writer: read returned \"%s\" after %.1f ms\n", fmshm_strerror(rc), el * 1e3);
	CHECK(rc == FMSHM_ETORN, "stuck writer: %s", fmshm_strerror(rc));
	CHECK(el < 1.0, "stuck writer: took %.3fs", el);

	stop_writer(w, SIGKILL);
	t0 = now_s();
	rc = fmshm_read(&r, stuck_id, &e);
	el = now_s() - t0;
	printf("killed writer: read returned \"%s\" after %.1f ms\n", fmshm_strerror(rc), el * 1e3);
	CHECK(rc == FMSHM_EWRITERDEAD, "killed writer: %s", fmshm_strerror(rc));
	CHECK(el < 1.0, "killed writer: took %.3fs", el);
	{
		size_t n;
		fmshm_entity *snap = calloc(r.capacity, sizeof *snap);
		rc = fmshm_snapshot(&r, snap, r.capacity, &n, NULL);
		CHECK(rc == FMSHM_EWRITERDEAD, "snapshot, killed writer: %s", fmshm_strerror(rc));
		free(snap);
	}
	CHECK(fmshm_check(&r) == FMSHM_EWRITERDEAD, "check after kill");
	fmshm_header(&r, &info);
	CHECK(!info.writer_alive, "header says the killed writer is alive");

	/* a new writer takes the path over: the old mapping learns at once */
	w = spawn("static", NULL);
	rc = fmshm_read(&r, good_id, &e);
	CHECK(rc == FMSHM_ERECREATED, "read after recreate: %s", fmshm_strerror(rc));
	CHECK(fmshm_check(&r) == FMSHM_ERECREATED, "check after recreate");
	rc = fmshm_open(&r2, seg_path);
	CHECK(rc == FMSHM_OK && r2.generation > r.generation, "reopen: %s, generation %llu -> %llu",
	      fmshm_strerror(rc), (unsigned long long)r.generation, (unsigned long long)r2.generation);
	rc = fmshm_read(&r2, good_id, &e);
	CHECK(rc == FMSHM_OK, "read after reopen: %s", fmshm_strerror(rc));
	printf("recreated segment: old reader got \"%s\"; generation %llu -> %llu\n", fmshm_strerror(FMSHM_ERECREATED),
	       (unsigned long long)r.generation, (unsigned long long)r2.generation);
	fmshm_close(&r2);
	fmshm_close(&r);
	stop_writer(w, SIGTERM);
	unlink(seg_path);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s path/to/shmwriter\n", argv[0]);
		return 2;
	}
	writer_bin = argv[1];
	snprintf(seg_path, sizeof seg_path, "/dev/shm/fmshm-ctest-%d", (int)getpid());
	unlink(seg_path);
	test_xxhash();
	test_torn();
	test_dead_writer();
	unlink(seg_path);
	if (failures) {
		fprintf(stderr, "%d check(s) FAILED\n", failures);
		return 1;
	}
	printf("all C tests passed\n");
	return 0;
}
