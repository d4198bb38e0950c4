/*
 * fmshm.h - read the fmagent shared-memory entity table from C.
 *
 * One header, C11, every function static inline. Compiles cleanly with
 *   gcc -std=c11 -Wall -Wextra -Werror -pedantic
 * and with -fsanitize=address,undefined, and as C++17 or later with g++
 * and clang++ (-Wall -Wextra -Werror -pedantic): in C++ the shared words
 * are std::atomic and the functions are in an extern "C" block. Linux, little-endian, 64-bit
 * (x86-64, arm64), with lock-free 64-bit atomics.
 *
 * FEATURE MACROS: the futex and /proc code needs syscall(), kill(),
 * clock_gettime() and friends, which glibc declares under -std=c11 only with
 * _DEFAULT_SOURCE or _GNU_SOURCE. Either put
 *     #define _GNU_SOURCE
 * at the top of the .c file, before any #include, or include fmshm.h first
 * (it defines _DEFAULT_SOURCE itself when neither is defined).
 *
 * The layout is described byte by byte in docs/shm-layout.md; the structs
 * below are that layout, and _Static_assert checks every offset and size.
 * The writer is Go (package shmem); the Go tests compile this header and
 * compare every offset with the Go constants.
 *
 * Concurrency: the writer writes every shared word with an atomic store. A
 * reader reads an entity slot with the seqlock recipe that is correct under
 * the C11 memory model: load seq (acquire); if odd, retry; load every data
 * word (relaxed atomic loads); FMSHM__FENCE(acquire); load seq again
 * (relaxed); if it changed, retry. Retries are bounded: a reader never spins
 * forever on a slot left odd by a writer that died (FMSHM_EWRITERDEAD) or
 * stays stuck (FMSHM_ETORN after max_wait_ns).
 *
 * A reader handle (fmshm) may be shared by threads for every function but
 * fmshm_open/fmshm_close; a follower (fmshm_follower) belongs to one thread.
 *
 * Quick start:
 *     fmshm r;
 *     if (fmshm_open(&r, "/dev/shm/fmagent") != 0) ...
 *     fmshm_entity e;
 *     int rc = fmshm_read_by_name(&r, "node/3/link/a", &e);
 *     if (rc == FMSHM_OK && e.state == FMSHM_STATE_DOWN) ...
 *     fmshm_close(&r);
 */
#ifndef FMSHM_H
#define FMSHM_H

#if !defined(_DEFAULT_SOURCE) && !defined(_GNU_SOURCE)
#define _DEFAULT_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/*
 * C and C++: the same structs and functions compile as C11 and as C++17 (or
 * later). In C++ the shared words are std::atomic<uint64_t> and
 * std::atomic<uint32_t>, which are lock-free and laid out exactly like the
 * integers (the static assertions below check it), and the functions have
 * C linkage in an extern "C" block, as a C library's header would.
 */
#ifdef __cplusplus
#include <atomic>
#define FMSHM_ATOMIC_U64 std::atomic<uint64_t>
#define FMSHM_ATOMIC_U32 std::atomic<uint32_t>
#define FMSHM_STATIC_ASSERT static_assert
#define FMSHM_ALIGNOF alignof
#define FMSHM__LOAD std::atomic_load_explicit
#define FMSHM__FENCE std::atomic_thread_fence
#define FMSHM__RLX std::memory_order_relaxed
#define FMSHM__ACQ std::memory_order_acquire
#define FMSHM__SEQ std::memory_order_seq_cst
extern "C" {
#else
#include <stdatomic.h>
#define FMSHM_ATOMIC_U64 _Atomic uint64_t
#define FMSHM_ATOMIC_U32 _Atomic uint32_t
#define FMSHM_STATIC_ASSERT _Static_assert
#define FMSHM_ALIGNOF _Alignof
#define FMSHM__LOAD atomic_load_explicit
#define FMSHM__FENCE atomic_thread_fence
#define FMSHM__RLX memory_order_relaxed
#define FMSHM__ACQ memory_order_acquire
#define FMSHM__SEQ memory_order_seq_cst
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fmshm.h: the segment layout is little-endian; big-endian hosts are not supported"
#endif
FMSHM_STATIC_ASSERT(ATOMIC_LLONG_LOCK_FREE == 2, "fmshm.h needs lock-free 64-bit atomics");
FMSHM_STATIC_ASSERT(sizeof(void *) == 8, "fmshm.h needs a 64-bit host");
FMSHM_STATIC_ASSERT(sizeof(FMSHM_ATOMIC_U64) == 8 && FMSHM_ALIGNOF(FMSHM_ATOMIC_U64) == 8, "atomic u64 layout");
FMSHM_STATIC_ASSERT(sizeof(FMSHM_ATOMIC_U32) == 4, "atomic u32 layout");

/* ---------------------------------------------------------------------- */
/* Constants (the same as package wire and shmem/internal/layout).        */

#define FMSHM_DEFAULT_PATH "/dev/shm/fmagent" /* the agent's default segment */
#define FMSHM_MAGIC 0x4241544d48534d46ULL /* "FMSHMTAB" little-endian */
#define FMSHM_MAJOR 2
#define FMSHM_MINOR 1

#define FMSHM_MAX_ALARMS 8
#define FMSHM_MAX_NAME 200
#define FMSHM_MAX_CAUSE 64
#define FMSHM_HEADER_SIZE 256
#define FMSHM_HEADER_REGION 4096
#define FMSHM_PAGE 4096
#define FMSHM_BUCKET_SIZE 16
#define FMSHM_SLOT_SIZE 960
#define FMSHM_ALARM_SIZE 80
#define FMSHM_RING_HEADER_SIZE 128
#define FMSHM_RING_SLOT_SIZE 32
#define FMSHM_EVENT_RECORD 24

/* Values of the header's ready word. */
#define FMSHM_STATUS_INIT 0
#define FMSHM_STATUS_READY 1
#define FMSHM_STATUS_CLOSED 2
#define FMSHM_STATUS_REPLACED 3

/* Entity kinds, states, severities (package wire). */
#define FMSHM_KIND_NODE 1
#define FMSHM_KIND_LINK 2
#define FMSHM_KIND_PROCESS 3
#define FMSHM_KIND_SERVICE 4
#define FMSHM_KIND_CUSTOM 5
#define FMSHM_STATE_UP 1
#define FMSHM_STATE_DOWN 2
#define FMSHM_SEV_INDETERMINATE 1
#define FMSHM_SEV_WARNING 2
#define FMSHM_SEV_MINOR 3
#define FMSHM_SEV_MAJOR 4
#define FMSHM_SEV_CRITICAL 5

/* Event kinds (package shmem). */
#define FMSHM_EV_PUT 1
#define FMSHM_EV_DELETE 2
#define FMSHM_EV_STATE 3
#define FMSHM_EV_RAISED 4
#define FMSHM_EV_CLEARED 5

/* Bit positions of the fields packed into 64-bit words. */
#define FMSHM_META_KIND_SHIFT 0     /* slot meta: kind u8 at byte 48 */
#define FMSHM_META_STATE_SHIFT 8    /* state u8 at byte 49 */
#define FMSHM_META_NAMELEN_SHIFT 16 /* name_len u8 at byte 50 */
#define FMSHM_META_NALARMS_SHIFT 24 /* nalarms u8 at byte 51 */
#define FMSHM_OWNER_SHIFT 0         /* slot owner_by: owner u32 at byte 40 */
#define FMSHM_CHANGEDBY_SHIFT 32    /* changed_by u32 at byte 44 */
#define FMSHM_ALARM_BY_SHIFT 0      /* alarm by_meta: raised_by u32 at +8 */
#define FMSHM_ALARM_SEV_SHIFT 32    /* severity u8 at +12 */
#define FMSHM_ALARM_CAUSELEN_SHIFT 40 /* cause_len u8 at +13 */
#define FMSHM_EV_KIND_SHIFT 0       /* event meta: kind u8 at +24 */
#define FMSHM_EV_STATE_SHIFT 8      /* state u8 at +25 */
#define FMSHM_EV_SEV_SHIFT 16       /* severity u8 at +26 */

/* Errors: every function returns FMSHM_OK (0) or one of these. */
#define FMSHM_OK 0
#define FMSHM_ENOTFOUND (-1)   /* no such entity */
#define FMSHM_ETORN (-2)       /* no consistent read within the bound (writer alive but stuck mid-write) */
#define FMSHM_EWRITERDEAD (-3) /* writer process gone or heartbeat too old */
#define FMSHM_ERECREATED (-4)  /* a newer segment replaced this one: reopen */
#define FMSHM_ECLOSED (-5)     /* the writer closed the segment */
#define FMSHM_EBADMAGIC (-6)   /* not a segment */
#define FMSHM_EVERSION (-7)    /* unknown major version */
#define FMSHM_ELAYOUT (-8)     /* impossible layout */
#define FMSHM_ENOTREADY (-9)   /* segment still being built */
#define FMSHM_ESYS (-10)       /* system call failed: see errno */
#define FMSHM_ETIMEOUT (-11)   /* fmshm_wait timed out */
#define FMSHM_ERANGE (-12)     /* destination too small */
#define FMSHM_EFOREIGN (-13)   /* the file is not the agent's: owned by another user, or writable by others */
#define FMSHM__MOVED (-100)    /* internal: slot holds another entity */

/* ---------------------------------------------------------------------- */
/* The layout. Every field is accessed with atomic operations.            */

/* Header, at offset 0 (the header region is 4096 bytes; 256..4095 zero). */
struct fmshm_header {
	/* line 0: identity and geometry, static */
	FMSHM_ATOMIC_U64 magic;              /*   0 FMSHM_MAGIC */
	FMSHM_ATOMIC_U32 version;            /*   8 major | minor << 16 */
	FMSHM_ATOMIC_U32 header_size;        /*  12 256 */
	FMSHM_ATOMIC_U64 total_size;         /*  16 file size */
	FMSHM_ATOMIC_U64 index_off;          /*  24 */
	FMSHM_ATOMIC_U64 index_size;         /*  32 */
	FMSHM_ATOMIC_U64 slots_off;          /*  40 */
	FMSHM_ATOMIC_U64 slots_size;         /*  48 */
	FMSHM_ATOMIC_U64 ring_off;           /*  56 */
	/* line 1: geometry and writer identity, static */
	FMSHM_ATOMIC_U64 ring_size;          /*  64 */
	FMSHM_ATOMIC_U32 capacity;           /*  72 entity slots */
	FMSHM_ATOMIC_U32 slot_size;          /*  76 960 */
	FMSHM_ATOMIC_U32 max_alarms;         /*  80 8 */
	FMSHM_ATOMIC_U32 index_buckets;      /*  84 power of two */
	FMSHM_ATOMIC_U32 ring_capacity;      /*  88 events, power of two */
	FMSHM_ATOMIC_U32 ring_slot_size;     /*  92 32 */
	FMSHM_ATOMIC_U64 generation;         /*  96 */
	FMSHM_ATOMIC_U32 writer_pid;         /* 104 */
	FMSHM_ATOMIC_U32 node_id;            /* 108 */
	FMSHM_ATOMIC_U64 writer_start;       /* 112 CLOCK_MONOTONIC ns */
	FMSHM_ATOMIC_U64 writer_start_ticks; /* 120 /proc/PID/stat field 22 */
	/* line 2: rarely written */
	FMSHM_ATOMIC_U32 ready;              /* 128 FMSHM_STATUS_* */
	FMSHM_ATOMIC_U32 reserved2;          /* 132 */
	FMSHM_ATOMIC_U64 index_seq;          /* 136 odd while the index is rebuilt */
	FMSHM_ATOMIC_U64 hb_timeout;         /* 144 ns */
	FMSHM_ATOMIC_U64 index_seed;         /* 152 random per segment, mixed into the home bucket */
	FMSHM_ATOMIC_U64 reserved3[4];       /* 160 */
	/* line 3: written on every commit or beat */
	FMSHM_ATOMIC_U64 table_seq;          /* 192 table seqlock; futex word = low 32 bits */
	FMSHM_ATOMIC_U64 epoch;              /* 200 */
	FMSHM_ATOMIC_U32 master;             /* 208 */
	FMSHM_ATOMIC_U32 stale;              /* 212 */
	FMSHM_ATOMIC_U64 count;              /* 216 live entities */
	FMSHM_ATOMIC_U64 slots_used;         /* 224 high-water mark of slots */
	FMSHM_ATOMIC_U64 heartbeat;          /* 232 CLOCK_MONOTONIC ns */
	FMSHM_ATOMIC_U64 reserved4[2];       /* 240 */
};

/* Index bucket: open addressing, linear probing from the home bucket
 * fmshm__mix(id ^ index_seed) >> (64 - log2(buckets)) (fmshm__mix is
 * MurmurHash3's fmix64; the seed is random per segment, so names that share
 * a bucket cannot be found in advance). */
struct fmshm_bucket {
	FMSHM_ATOMIC_U64 id;  /* 0: entity ID; 0 = empty */
	FMSHM_ATOMIC_U64 ref; /* 8: slot index + 1; 0 with id != 0 = tombstone */
};

/* One alarm inside a slot. */
struct fmshm_alarm_rec {
	FMSHM_ATOMIC_U64 raised_at; /*  0 unix ns */
	FMSHM_ATOMIC_U64 by_meta;   /*  8 raised_by u32 | severity u8 <<32 | cause_len u8 <<40 */
	FMSHM_ATOMIC_U64 cause[8];  /* 16 64 bytes */
};

/* Entity slot: 960 bytes, cache-line aligned, under its own seqlock. */
struct fmshm_slot {
	FMSHM_ATOMIC_U64 seq;         /*   0 odd while written */
	FMSHM_ATOMIC_U64 id;          /*   8 0 = free */
	FMSHM_ATOMIC_U64 incarnation; /*  16 */
	FMSHM_ATOMIC_U64 changed_at;  /*  24 unix ns */
	FMSHM_ATOMIC_U64 changed_seq; /*  32 */
	FMSHM_ATOMIC_U64 owner_by;    /*  40 owner u32 | changed_by u32 << 32 */
	FMSHM_ATOMIC_U64 meta;        /*  48 kind | state<<8 | name_len<<16 | nalarms<<24 */
	FMSHM_ATOMIC_U64 written_at;  /*  56 unix ns, this node's clock (minor 1) */
	FMSHM_ATOMIC_U64 name[25];    /*  64 200 bytes */
	struct fmshm_alarm_rec alarms[FMSHM_MAX_ALARMS]; /* 264 */
	FMSHM_ATOMIC_U64 pad[7];      /* 904 */
};

/* Event ring header, at ring_off. */
struct fmshm_ring_header {
	FMSHM_ATOMIC_U64 capacity;    /*  0 slots, power of two */
	FMSHM_ATOMIC_U64 sizes;       /*  8 record size u32 (24) | slot size u32 (32) << 32 */
	FMSHM_ATOMIC_U64 reserved[6]; /* 16 */
	FMSHM_ATOMIC_U64 tail;        /* 64 position of the next record */
	FMSHM_ATOMIC_U64 reserved2[7];/* 72 */
};

/* Event ring slot, at ring_off + 128 + (pos & (capacity-1)) * 32. */
struct fmshm_event_rec {
	FMSHM_ATOMIC_U64 seq;       /*  0 2*pos+1 while written, 2*pos+2 when complete */
	FMSHM_ATOMIC_U64 table_seq; /*  8 */
	FMSHM_ATOMIC_U64 entity_id; /* 16 */
	FMSHM_ATOMIC_U64 meta;      /* 24 kind | state<<8 | severity<<16 */
};

#define FMSHM__OFF(t, f, o) FMSHM_STATIC_ASSERT(offsetof(struct t, f) == (o), #t "." #f " offset")
FMSHM__OFF(fmshm_header, magic, 0);
FMSHM__OFF(fmshm_header, version, 8);
FMSHM__OFF(fmshm_header, header_size, 12);
FMSHM__OFF(fmshm_header, total_size, 16);
FMSHM__OFF(fmshm_header, index_off, 24);
FMSHM__OFF(fmshm_header, index_size, 32);
FMSHM__OFF(fmshm_header, slots_off, 40);
FMSHM__OFF(fmshm_header, slots_size, 48);
FMSHM__OFF(fmshm_header, ring_off, 56);
FMSHM__OFF(fmshm_header, ring_size, 64);
FMSHM__OFF(fmshm_header, capacity, 72);
FMSHM__OFF(fmshm_header, slot_size, 76);
FMSHM__OFF(fmshm_header, max_alarms, 80);
FMSHM__OFF(fmshm_header, index_buckets, 84);
FMSHM__OFF(fmshm_header, ring_capacity, 88);
FMSHM__OFF(fmshm_header, ring_slot_size, 92);
FMSHM__OFF(fmshm_header, generation, 96);
FMSHM__OFF(fmshm_header, writer_pid, 104);
FMSHM__OFF(fmshm_header, node_id, 108);
FMSHM__OFF(fmshm_header, writer_start, 112);
FMSHM__OFF(fmshm_header, writer_start_ticks, 120);
FMSHM__OFF(fmshm_header, ready, 128);
FMSHM__OFF(fmshm_header, reserved2, 132);
FMSHM__OFF(fmshm_header, index_seq, 136);
FMSHM__OFF(fmshm_header, hb_timeout, 144);
FMSHM__OFF(fmshm_header, index_seed, 152);
FMSHM__OFF(fmshm_header, reserved3, 160);
FMSHM__OFF(fmshm_header, table_seq, 192);
FMSHM__OFF(fmshm_header, epoch, 200);
FMSHM__OFF(fmshm_header, master, 208);
FMSHM__OFF(fmshm_header, stale, 212);
FMSHM__OFF(fmshm_header, count, 216);
FMSHM__OFF(fmshm_header, slots_used, 224);
FMSHM__OFF(fmshm_header, heartbeat, 232);
FMSHM__OFF(fmshm_header, reserved4, 240);
FMSHM_STATIC_ASSERT(sizeof(struct fmshm_header) == FMSHM_HEADER_SIZE, "header size");
FMSHM__OFF(fmshm_bucket, id, 0);
FMSHM__OFF(fmshm_bucket, ref, 8);
FMSHM_STATIC_ASSERT(sizeof(struct fmshm_bucket) == FMSHM_BUCKET_SIZE, "bucket size");
FMSHM__OFF(fmshm_alarm_rec, raised_at, 0);
FMSHM__OFF(fmshm_alarm_rec, by_meta, 8);
FMSHM__OFF(fmshm_alarm_rec, cause, 16);
FMSHM_STATIC_ASSERT(sizeof(((struct fmshm_alarm_rec *)0)->cause) == FMSHM_MAX_CAUSE, "cause size");
FMSHM_STATIC_ASSERT(sizeof(struct fmshm_alarm_rec) == FMSHM_ALARM_SIZE, "alarm size");
FMSHM__OFF(fmshm_slot, seq, 0);
FMSHM__OFF(fmshm_slot, id, 8);
FMSHM__OFF(fmshm_slot, incarnation, 16);
FMSHM__OFF(fmshm_slot, changed_at, 24);
FMSHM__OFF(fmshm_slot, changed_seq, 32);
FMSHM__OFF(fmshm_slot, owner_by, 40);
FMSHM__OFF(fmshm_slot, meta, 48);
FMSHM__OFF(fmshm_slot, written_at, 56);
FMSHM__OFF(fmshm_slot, name, 64);
FMSHM__OFF(fmshm_slot, alarms, 264);
FMSHM__OFF(fmshm_slot, pad, 904);
FMSHM_STATIC_ASSERT(sizeof(((struct fmshm_slot *)0)->name) == FMSHM_MAX_NAME, "name size");
FMSHM_STATIC_ASSERT(sizeof(struct fmshm_slot) == FMSHM_SLOT_SIZE, "slot size");
FMSHM_STATIC_ASSERT(FMSHM_SLOT_SIZE % 64 == 0, "slots are cache-line aligned");
FMSHM__OFF(fmshm_ring_header, capacity, 0);
FMSHM__OFF(fmshm_ring_header, sizes, 8);
FMSHM__OFF(fmshm_ring_header, tail, 64);
FMSHM_STATIC_ASSERT(sizeof(struct fmshm_ring_header) == FMSHM_RING_HEADER_SIZE, "ring header size");
FMSHM__OFF(fmshm_event_rec, seq, 0);
FMSHM__OFF(fmshm_event_rec, table_seq, 8);
FMSHM__OFF(fmshm_event_rec, entity_id, 16);
FMSHM__OFF(fmshm_event_rec, meta, 24);
FMSHM_STATIC_ASSERT(sizeof(struct fmshm_event_rec) == FMSHM_RING_SLOT_SIZE, "event slot size");

/* ---------------------------------------------------------------------- */
/* Plain values a reader fills in.                                        */

typedef struct fmshm_alarm {
	int64_t raised_at; /* unix ns */
	uint32_t raised_by;
	uint8_t severity;  /* FMSHM_SEV_* */
	uint8_t cause_len;
	char cause[FMSHM_MAX_CAUSE + 1]; /* NUL-terminated */
} fmshm_alarm;

typedef struct fmshm_entity {
	uint64_t id;
	uint64_t incarnation;
	int64_t changed_at; /* unix ns */
	uint64_t changed_seq;
	uint32_t owner;
	uint32_t changed_by;
	uint8_t kind;  /* FMSHM_KIND_* */
	uint8_t state; /* FMSHM_STATE_* */
	uint8_t name_len;
	uint8_t nalarms;
	char name[FMSHM_MAX_NAME + 1]; /* NUL-terminated */
	fmshm_alarm alarms[FMSHM_MAX_ALARMS];
	/* unix ns by this node's clock when this node's agent wrote the row as
	 * it is (changed_at is the master's decision; written_at - changed_at
	 * is how long the change took to reach this node's table). 0 in a
	 * segment of minor version 0. */
	int64_t written_at;
} fmshm_entity;

typedef struct fmshm_event {
	uint64_t pos;       /* position in the ring */
	uint64_t table_seq; /* the commit that made the change */
	uint64_t entity_id;
	uint8_t kind;     /* FMSHM_EV_* */
	uint8_t state;    /* entity state after the change */
	uint8_t severity; /* with alarm events */
} fmshm_event;

typedef struct fmshm_info {
	uint32_t major, minor, status; /* status: FMSHM_STATUS_* */
	uint32_t capacity, ring_capacity;
	uint32_t node_id, master, writer_pid;
	uint64_t generation, count, seq, epoch;
	int stale;
	int64_t writer_start, heartbeat, heartbeat_age, hb_timeout; /* ns, CLOCK_MONOTONIC */
	int writer_alive;
} fmshm_info;

/* Reader handle. Tunables (set after fmshm_open): spin_retries attempts are
 * made back to back, then the reader yields; every max_retries attempts it
 * checks the writer (dead: FMSHM_EWRITERDEAD); after max_wait_ns with the
 * writer alive it gives up with FMSHM_ETORN. no_pid_check: trust the
 * heartbeat only (a reader in another pid namespace). */
typedef struct fmshm {
	unsigned char *base;
	size_t size;
	int fd;
	struct fmshm_header *hdr;
	struct fmshm_bucket *index;
	struct fmshm_slot *slots;
	struct fmshm_ring_header *ring;
	struct fmshm_event_rec *events;
	uint32_t capacity, mask, shift, ring_mask;
	uint32_t pid;
	uint64_t generation, start_ticks, index_seed;
	dev_t dev;
	ino_t ino;
	unsigned spin_retries, max_retries;
	uint64_t max_wait_ns;
	int no_pid_check;
	char path[256];
} fmshm;

typedef struct fmshm_follower {
	uint64_t cursor;
} fmshm_follower;

/* ---------------------------------------------------------------------- */
/* Helpers.                                                               */


static inline const char *fmshm_strerror(int e)
{
	switch (e) {
	case FMSHM_OK: return "ok";
	case FMSHM_ENOTFOUND: return "entity not found";
	case FMSHM_ETORN: return "no consistent read within the retry bound";
	case FMSHM_EWRITERDEAD: return "writer is dead";
	case FMSHM_ERECREATED: return "segment was recreated";
	case FMSHM_ECLOSED: return "segment closed";
	case FMSHM_EBADMAGIC: return "bad magic";
	case FMSHM_EVERSION: return "unsupported layout version";
	case FMSHM_ELAYOUT: return "invalid layout";
	case FMSHM_ENOTREADY: return "segment not ready";
	case FMSHM_ESYS: return "system error (see errno)";
	case FMSHM_ETIMEOUT: return "timeout";
	case FMSHM_ERANGE: return "destination too small";
	case FMSHM_EFOREIGN: return "segment not created by the agent (owner or mode)";
	}
	return "unknown error";
}

static inline int64_t fmshm__mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void fmshm__relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* xxhash64 (XXH64), the hash of entity names: id = fmshm_xxh64(name, len, 0). */
#define FMSHM__P1 11400714785074694791ULL
#define FMSHM__P2 14029467366897019727ULL
#define FMSHM__P3 1609587929392839161ULL
#define FMSHM__P4 9650029242287828579ULL
#define FMSHM__P5 2870177450012600261ULL

static inline uint64_t fmshm__rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t fmshm__rd64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t fmshm__rd32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t fmshm__round(uint64_t acc, uint64_t in)
{
	acc += in * FMSHM__P2;
	acc = fmshm__rotl(acc, 31);
	return acc * FMSHM__P1;
}
static inline uint64_t fmshm__merge(uint64_t acc, uint64_t v)
{
	acc ^= fmshm__round(0, v);
	return acc * FMSHM__P1 + FMSHM__P4;
}

static inline uint64_t fmshm_xxh64(const void *data, size_t len, uint64_t seed)
{
	const unsigned char *p = (const unsigned char *)data, *end = p + len;
	uint64_t h;
	if (len >= 32) {
		uint64_t v1 = seed + FMSHM__P1 + FMSHM__P2, v2 = seed + FMSHM__P2, v3 = seed, v4 = seed - FMSHM__P1;
		const unsigned char *limit = end - 32;
		do {
			v1 = fmshm__round(v1, fmshm__rd64(p));
			v2 = fmshm__round(v2, fmshm__rd64(p + 8));
			v3 = fmshm__round(v3, fmshm__rd64(p + 16));
			v4 = fmshm__round(v4, fmshm__rd64(p + 24));
			p += 32;
		} while (p <= limit);
		h = fmshm__rotl(v1, 1) + fmshm__rotl(v2, 7) + fmshm__rotl(v3, 12) + fmshm__rotl(v4, 18);
		h = fmshm__merge(h, v1);
		h = fmshm__merge(h, v2);
		h = fmshm__merge(h, v3);
		h = fmshm__merge(h, v4);
	} else {
		h = seed + FMSHM__P5;
	}
	h += (uint64_t)len;
	for (; p + 8 <= end; p += 8) {
		h ^= fmshm__round(0, fmshm__rd64(p));
		h = fmshm__rotl(h, 27) * FMSHM__P1 + FMSHM__P4;
	}
	if (p + 4 <= end) {
		h ^= (uint64_t)fmshm__rd32(p) * FMSHM__P1;
		h = fmshm__rotl(h, 23) * FMSHM__P2 + FMSHM__P3;
		p += 4;
	}
	for (; p < end; p++) {
		h ^= (uint64_t)*p * FMSHM__P5;
		h = fmshm__rotl(h, 11) * FMSHM__P1;
	}
	h ^= h >> 33;
	h *= FMSHM__P2;
	h ^= h >> 29;
	h *= FMSHM__P3;
	h ^= h >> 32;
	return h;
}

/* Is process pid alive (not a zombie) and, if start_ticks != 0, the one
 * that started at start_ticks? Reads /proc/PID/stat; same pid namespace. */
static inline int fmshm__proc_alive(uint32_t pid, uint64_t start_ticks)
{
	char path[64], buf[1024], *p;
	int fd, field, saved = errno;
	ssize_t n;
	if (pid == 0 || pid > INT_MAX)
		return 0;
	snprintf(path, sizeof path, "/proc/%u/stat", (unsigned)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int alive = errno != ENOENT && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
		errno = saved;
		return alive;
	}
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	errno = saved;
	if (n <= 0)
		return 1;
	buf[n] = 0;
	p = strrchr(buf, ')');
	if (p == NULL || p[1] != ' ')
		return 1;
	p += 2;
	if (*p == 'Z' || *p == 'X' || *p == 'x')
		return 0;
	if (start_ticks == 0)
		return 1;
	for (field = 0; *p && field < 19; p++) /* to field 22, starttime */
		if (*p == ' ')
			field++;
	return strtoull(p, NULL, 10) == start_ticks;
}

/* now - t in ns, wrapping as Go's int64 does: t is read from shared memory
 * and may be anything (a signed subtraction could overflow, which is
 * undefined behaviour in C). */
static inline int64_t fmshm__age(int64_t t)
{
	return (int64_t)((uint64_t)fmshm__mono_ns() - (uint64_t)t);
}

/* 1 if the writer is alive: recent heartbeat and (unless no_pid_check) its
 * process exists. */
static inline int fmshm_writer_alive(fmshm *r)
{
	int64_t hb = (int64_t)FMSHM__LOAD(&r->hdr->heartbeat, FMSHM__RLX);
	int64_t to = (int64_t)FMSHM__LOAD(&r->hdr->hb_timeout, FMSHM__RLX);
	if (to > 0 && fmshm__age(hb) > to)
		return 0;
	return r->no_pid_check || fmshm__proc_alive(r->pid, r->start_ticks);
}

static inline int fmshm__status_err(uint32_t st)
{
	switch (st) {
	case FMSHM_STATUS_READY: return FMSHM_OK;
	case FMSHM_STATUS_CLOSED: return FMSHM_ECLOSED;
	case FMSHM_STATUS_REPLACED: return FMSHM_ERECREATED;
	}
	return FMSHM_ENOTREADY;
}

static inline int fmshm__status(fmshm *r)
{
	return fmshm__status_err(FMSHM__LOAD(&r->hdr->ready, FMSHM__ACQ));
}

/* Paces the attempts of one consistent read (see the handle's tunables). */
struct fmshm__retry {
	unsigned n;
	int64_t since;
};

static inline int fmshm__again(fmshm *r, struct fmshm__retry *rt)
{
	int st;
	rt->n++;
	if (rt->n <= r->spin_retries) {
		fmshm__relax();
		return FMSHM_OK;
	}
	if (rt->n == r->spin_retries + 1)
		rt->since = fmshm__mono_ns();
	if (rt->n % r->max_retries == 0) {
		if ((st = fmshm__status(r)) != FMSHM_OK)
			return st;
		if (!fmshm_writer_alive(r))
			return FMSHM_EWRITERDEAD;
	}
	if (rt->n % 64 == 0 && (uint64_t)(fmshm__mono_ns() - rt->since) > r->max_wait_ns) {
		if ((st = fmshm__status(r)) != FMSHM_OK)
			return st;
		return fmshm_writer_alive(r) ? FMSHM_ETORN : FMSHM_EWRITERDEAD;
	}
	if (rt->n > r->max_retries) {
		struct timespec ts = {0, 50000};
		nanosleep(&ts, NULL);
	} else {
		sched_yield();
	}
	return FMSHM_OK;
}

/* ---------------------------------------------------------------------- */
/* Open and close.                                                        */

static inline uint64_t fmshm__align(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

/* Validates the header and fills in the geometry. */
static inline int fmshm__attach(fmshm *r)
{
	struct fmshm_header *h = (struct fmshm_header *)(void *)r->base;
	uint32_t cap, buckets, ringcap, v, shift;
	uint64_t idx_off, slots_off, ring_off, ring_size, total;
	r->hdr = h;
	if (FMSHM__LOAD(&h->magic, FMSHM__RLX) != FMSHM_MAGIC)
		return FMSHM_EBADMAGIC;
	v = FMSHM__LOAD(&h->version, FMSHM__RLX);
	if ((v & 0xffff) != FMSHM_MAJOR)
		return FMSHM_EVERSION;
	if (FMSHM__LOAD(&h->ready, FMSHM__ACQ) == FMSHM_STATUS_INIT)
		return FMSHM_ENOTREADY;
	cap = FMSHM__LOAD(&h->capacity, FMSHM__RLX);
	buckets = FMSHM__LOAD(&h->index_buckets, FMSHM__RLX);
	ringcap = FMSHM__LOAD(&h->ring_capacity, FMSHM__RLX);
	if (cap == 0 || cap > (1u << 24) || ringcap == 0 || (ringcap & (ringcap - 1)) != 0 ||
	    FMSHM__LOAD(&h->header_size, FMSHM__RLX) < FMSHM_HEADER_SIZE ||
	    FMSHM__LOAD(&h->slot_size, FMSHM__RLX) != FMSHM_SLOT_SIZE ||
	    FMSHM__LOAD(&h->max_alarms, FMSHM__RLX) != FMSHM_MAX_ALARMS ||
	    FMSHM__LOAD(&h->ring_slot_size, FMSHM__RLX) != FMSHM_RING_SLOT_SIZE)
		return FMSHM_ELAYOUT;
	{ /* the geometry the writer computes (shmem/internal/layout.Compute) */
		uint32_t b = 1;
		while (b < 2 * cap)
			b <<= 1;
		if (b < 16)
			b = 16;
		if (b != buckets)
			return FMSHM_ELAYOUT;
	}
	idx_off = FMSHM_HEADER_REGION;
	slots_off = fmshm__align(idx_off + (uint64_t)buckets * FMSHM_BUCKET_SIZE, FMSHM_PAGE);
	ring_off = fmshm__align(slots_off + (uint64_t)cap * FMSHM_SLOT_SIZE, FMSHM_PAGE);
	ring_size = FMSHM_RING_HEADER_SIZE + (uint64_t)ringcap * FMSHM_RING_SLOT_SIZE;
	total = fmshm__align(ring_off + ring_size, FMSHM_PAGE);
	if (FMSHM__LOAD(&h->index_off, FMSHM__RLX) != idx_off ||
	    FMSHM__LOAD(&h->slots_off, FMSHM__RLX) != slots_off ||
	    FMSHM__LOAD(&h->ring_off, FMSHM__RLX) != ring_off ||
	    FMSHM__LOAD(&h->ring_size, FMSHM__RLX) != ring_size ||
	    FMSHM__LOAD(&h->total_size, FMSHM__RLX) != total || r->size < total)
		return FMSHM_ELAYOUT;
	r->index = (struct fmshm_bucket *)(void *)(r->base + idx_off);
	r->slots = (struct fmshm_slot *)(void *)(r->base + slots_off);
	r->ring = (struct fmshm_ring_header *)(void *)(r->base + ring_off);
	r->events = (struct fmshm_event_rec *)(void *)(r->base + ring_off + FMSHM_RING_HEADER_SIZE);
	if (FMSHM__LOAD(&r->ring->capacity, FMSHM__RLX) != ringcap ||
	    FMSHM__LOAD(&r->ring->sizes, FMSHM__RLX) !=
	        ((uint64_t)FMSHM_EVENT_RECORD | (uint64_t)FMSHM_RING_SLOT_SIZE << 32))
		return FMSHM_ELAYOUT;
	for (shift = 0; (1u << shift) < buckets; shift++)
		;
	r->capacity = cap;
	r->mask = buckets - 1;
	r->shift = 64 - shift;
	r->ring_mask = ringcap - 1;
	r->generation = FMSHM__LOAD(&h->generation, FMSHM__RLX);
	r->pid = FMSHM__LOAD(&h->writer_pid, FMSHM__RLX);
	r->start_ticks = FMSHM__LOAD(&h->writer_start_ticks, FMSHM__RLX);
	r->index_seed = FMSHM__LOAD(&h->index_seed, FMSHM__RLX);
	return FMSHM_OK;
}

/* MurmurHash3's fmix64, the mixer of the index's home bucket. */
static inline uint64_t fmshm__mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* Maps the segment at path read-only, if it is the agent's: a regular file
 * owned by root, by the reader's own effective UID or by owner (pass
 * (uid_t)-1 for none), and writable by nobody else (FMSHM_EFOREIGN
 * otherwise: a file another user planted at the agent's path is never
 * trusted). On failure r is left closed. */
static inline int fmshm_open_owner(fmshm *r, const char *path, uid_t owner)
{
	struct stat st;
	void *m;
	int rc;
	memset(r, 0, sizeof *r);
	r->fd = -1;
	r->spin_retries = 100;
	r->max_retries = 10000;
	r->max_wait_ns = 100000000; /* 100 ms */
	if (strlen(path) >= sizeof r->path) {
		errno = ENAMETOOLONG;
		return FMSHM_ESYS;
	}
	strcpy(r->path, path);
	r->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (r->fd < 0)
		return FMSHM_ESYS;
	if (fstat(r->fd, &st) != 0) {
		rc = FMSHM_ESYS;
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & 022) != 0 ||
	    (st.st_uid != 0 && st.st_uid != geteuid() && st.st_uid != owner)) {
		rc = FMSHM_EFOREIGN;
		goto fail;
	}
	if (st.st_size < FMSHM_HEADER_REGION) {
		rc = FMSHM_ELAYOUT;
		goto fail;
	}
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, r->fd, 0);
	if (m == MAP_FAILED) {
		rc = FMSHM_ESYS;
		goto fail;
	}
	r->base = (unsigned char *)m;
	r->size = (size_t)st.st_size;
	r->dev = st.st_dev;
	r->ino = st.st_ino;
	rc = fmshm__attach(r);
	if (rc == FMSHM_OK)
		return FMSHM_OK;
	munmap(r->base, r->size);
	r->base = NULL;
fail:
	{
		int saved = errno;
		close(r->fd);
		r->fd = -1;
		errno = saved;
	}
	return rc;
}

/* Maps the segment at path read-only: fmshm_open_owner trusting root and
 * the reader's own effective UID. */
static inline int fmshm_open(fmshm *r, const char *path)
{
	return fmshm_open_owner(r, path, (uid_t)-1);
}

static inline void fmshm_close(fmshm *r)
{
	if (r->base != NULL)
		munmap(r->base, r->size);
	if (r->fd >= 0)
		close(r->fd);
	r->base = NULL;
	r->fd = -1;
}

/* ---------------------------------------------------------------------- */
/* Lookup and read.                                                       */

/* Finds the slot of entity id: FMSHM_OK (*slot set) or FMSHM_ENOTFOUND. A
 * hit is a hint that fmshm_read_slot verifies. */
static inline int fmshm_lookup(fmshm *r, uint64_t id, uint32_t *slot)
{
	struct fmshm__retry rt = {0, 0};
	int rc;
	if (id == 0)
		return FMSHM_ENOTFOUND;
	for (;;) {
		uint64_t is = FMSHM__LOAD(&r->hdr->index_seq, FMSHM__ACQ);
		if (!(is & 1)) {
			uint32_t b = (uint32_t)(fmshm__mix(id ^ r->index_seed) >> r->shift), n;
			for (n = 0; n <= r->mask; n++) {
				uint64_t k = FMSHM__LOAD(&r->index[b].id, FMSHM__ACQ);
				if (k == id) {
					uint64_t ref = FMSHM__LOAD(&r->index[b].ref, FMSHM__ACQ);
					if (ref != 0 && ref <= r->capacity) {
						*slot = (uint32_t)(ref - 1);
						return FMSHM_OK;
					}
					break;
				}
				if (k == 0)
					break;
				b = (b + 1) & r->mask;
			}
			FMSHM__FENCE(FMSHM__ACQ);
			if (FMSHM__LOAD(&r->hdr->index_seq, FMSHM__RLX) == is)
				return FMSHM_ENOTFOUND;
		}
		if ((rc = fmshm__again(r, &rt)) != FMSHM_OK)
			return rc;
	}
}

static inline void fmshm__load_bytes(FMSHM_ATOMIC_U64 *w, char *dst, unsigned n)
{
	unsigned i;
	for (i = 0; i < n; i += 8) {
		uint64_t v = FMSHM__LOAD(&w[i / 8], FMSHM__RLX);
		memcpy(dst + i, &v, 8);
	}
	dst[n] = 0;
}

/* Copies a slot into d with relaxed atomic loads, no consistency check;
 * returns the ID read. Lengths are clamped so a torn read stays in bounds.
 * (Exposed for tests; use fmshm_read.) */
static inline uint64_t fmshm__decode(struct fmshm_slot *s, fmshm_entity *d)
{
	uint64_t m, ob;
	unsigned j, nl, na;
	d->id = FMSHM__LOAD(&s->id, FMSHM__RLX);
	d->incarnation = FMSHM__LOAD(&s->incarnation, FMSHM__RLX);
	d->changed_at = (int64_t)FMSHM__LOAD(&s->changed_at, FMSHM__RLX);
	d->changed_seq = FMSHM__LOAD(&s->changed_seq, FMSHM__RLX);
	d->written_at = (int64_t)FMSHM__LOAD(&s->written_at, FMSHM__RLX);
	ob = FMSHM__LOAD(&s->owner_by, FMSHM__RLX);
	d->owner = (uint32_t)(ob >> FMSHM_OWNER_SHIFT);
	d->changed_by = (uint32_t)(ob >> FMSHM_CHANGEDBY_SHIFT);
	m = FMSHM__LOAD(&s->meta, FMSHM__RLX);
	d->kind = (uint8_t)(m >> FMSHM_META_KIND_SHIFT);
	d->state = (uint8_t)(m >> FMSHM_META_STATE_SHIFT);
	nl = (uint8_t)(m >> FMSHM_META_NAMELEN_SHIFT);
	na = (uint8_t)(m >> FMSHM_META_NALARMS_SHIFT);
	if (nl > FMSHM_MAX_NAME)
		nl = FMSHM_MAX_NAME;
	if (na > FMSHM_MAX_ALARMS)
		na = FMSHM_MAX_ALARMS;
	d->name_len = (uint8_t)nl;
	d->nalarms = (uint8_t)na;
	/* name holds 201 bytes: the words of nl <= 200 bytes end at 200 */
	fmshm__load_bytes(s->name, d->name, nl);
	for (j = 0; j < na; j++) {
		struct fmshm_alarm_rec *a = &s->alarms[j];
		fmshm_alarm *da = &d->alarms[j];
		uint64_t bm = FMSHM__LOAD(&a->by_meta, FMSHM__RLX);
		unsigned cl = (uint8_t)(bm >> FMSHM_ALARM_CAUSELEN_SHIFT);
		da->raised_at = (int64_t)FMSHM__LOAD(&a->raised_at, FMSHM__RLX);
		da->raised_by = (uint32_t)(bm >> FMSHM_ALARM_BY_SHIFT);
		da->severity = (uint8_t)(bm >> FMSHM_ALARM_SEV_SHIFT);
		if (cl > FMSHM_MAX_CAUSE)
			cl = FMSHM_MAX_CAUSE;
		da->cause_len = (uint8_t)cl;
		fmshm__load_bytes(a->cause, da->cause, cl);
	}
	return d->id;
}

/* Reads slot idx consistently; FMSHM__MOVED if it does not hold id. */
static inline int fmshm__read_slot(fmshm *r, uint32_t idx, uint64_t id, fmshm_entity *dst)
{
	struct fmshm_slot *s = &r->slots[idx];
	struct fmshm__retry rt = {0, 0};
	int rc;
	for (;;) {
		uint64_t s1 = FMSHM__LOAD(&s->seq, FMSHM__ACQ);
		if (!(s1 & 1)) {
			uint64_t got = fmshm__decode(s, dst);
			FMSHM__FENCE(FMSHM__ACQ);
			if (FMSHM__LOAD(&s->seq, FMSHM__RLX) == s1)
				return got == id ? FMSHM_OK : FMSHM__MOVED;
		}
		if ((rc = fmshm__again(r, &rt)) != FMSHM_OK)
			return rc;
	}
}

/* Reads the entity at a slot found by fmshm_lookup; FMSHM_ENOTFOUND if the
 * slot no longer holds it (look it up again). */
static inline int fmshm_read_slot(fmshm *r, uint32_t slot, uint64_t id, fmshm_entity *dst)
{
	int rc = fmshm__status(r);
	if (rc != FMSHM_OK)
		return rc;
	if (slot >= r->capacity)
		return FMSHM_ENOTFOUND;
	rc = fmshm__read_slot(r, slot, id, dst);
	return rc == FMSHM__MOVED ? FMSHM_ENOTFOUND : rc;
}

/* Reads entity id consistently into dst (undefined on error). */
static inline int fmshm_read(fmshm *r, uint64_t id, fmshm_entity *dst)
{
	struct fmshm__retry rt = {0, 0};
	int rc = fmshm__status(r);
	if (rc != FMSHM_OK)
		return rc;
	for (;;) {
		uint32_t slot;
		if ((rc = fmshm_lookup(r, id, &slot)) != FMSHM_OK)
			return rc;
		rc = fmshm__read_slot(r, slot, id, dst);
		if (rc != FMSHM__MOVED)
			return rc;
		/* the slot was freed or reused under us: look up again */
		if ((rc = fmshm__again(r, &rt)) != FMSHM_OK)
			return rc;
	}
}

/* Reads the entity called name (len bytes). */
static inline int fmshm_read_by_name_n(fmshm *r, const char *name, size_t len, fmshm_entity *dst)
{
	int rc = fmshm_read(r, fmshm_xxh64(name, len, 0), dst);
	if (rc == FMSHM_OK && (dst->name_len != len || memcmp(dst->name, name, len) != 0))
		return FMSHM_ENOTFOUND; /* hash collision */
	return rc;
}

static inline int fmshm_read_by_name(fmshm *r, const char *name, fmshm_entity *dst)
{
	return fmshm_read_by_name_n(r, name, strlen(name), dst);
}

/* ---------------------------------------------------------------------- */
/* Whole table.                                                           */

/* Calls fn for every entity, each read consistently (not all at one
 * instant: use fmshm_snapshot), until fn returns non-zero. */
static inline int fmshm_foreach(fmshm *r, int (*fn)(const fmshm_entity *e, void *ctx), void *ctx)
{
	fmshm_entity e;
	uint64_t used = FMSHM__LOAD(&r->hdr->slots_used, FMSHM__ACQ);
	uint32_t i;
	int rc;
	if (used > r->capacity)
		used = r->capacity;
	for (i = 0; i < used; i++) {
		struct fmshm_slot *s = &r->slots[i];
		struct fmshm__retry rt = {0, 0};
		if ((rc = fmshm__status(r)) != FMSHM_OK)
			return rc;
		for (;;) {
			uint64_t s1 = FMSHM__LOAD(&s->seq, FMSHM__ACQ);
			if (!(s1 & 1)) {
				fmshm__decode(s, &e);
				FMSHM__FENCE(FMSHM__ACQ);
				if (FMSHM__LOAD(&s->seq, FMSHM__RLX) == s1)
					break;
			}
			if ((rc = fmshm__again(r, &rt)) != FMSHM_OK)
				return rc;
		}
		if (e.id != 0 && fn(&e, ctx) != 0)
			break;
	}
	return FMSHM_OK;
}

/* Reads every entity as of one table seq (no commit half visible) into
 * dst[0..cap); *n is the number read, *seq the table seq. FMSHM_ERANGE if
 * cap is too small (*n is then the number needed at that moment). */
static inline int fmshm_snapshot(fmshm *r, fmshm_entity *dst, size_t cap, size_t *n, uint64_t *seq)
{
	struct fmshm__retry rt = {0, 0};
	int rc;
	for (;;) {
		uint64_t s1;
		if ((rc = fmshm__status(r)) != FMSHM_OK)
			return rc;
		s1 = FMSHM__LOAD(&r->hdr->table_seq, FMSHM__ACQ);
		if (!(s1 & 1)) {
			uint64_t used = FMSHM__LOAD(&r->hdr->slots_used, FMSHM__ACQ);
			size_t k = 0, need = 0;
			uint32_t i;
			int ok = 1;
			if (used > r->capacity)
				used = r->capacity;
			for (i = 0; i < used && ok; i++) {
				struct fmshm_slot *s = &r->slots[i];
				fmshm_entity tmp, *e = k < cap ? &dst[k] : &tmp;
				uint64_t q1 = FMSHM__LOAD(&s->seq, FMSHM__ACQ);
				if (q1 & 1) {
					ok = 0;
					break;
				}
				fmshm__decode(s, e);
				FMSHM__FENCE(FMSHM__ACQ);
				if (FMSHM__LOAD(&s->seq, FMSHM__RLX) != q1) {
					ok = 0;
					break;
				}
				if (e->id != 0) {
					need++;
					if (k < cap)
						k++;
				}
			}
			FMSHM__FENCE(FMSHM__ACQ);
			if (ok && FMSHM__LOAD(&r->hdr->table_seq, FMSHM__RLX) == s1) {
				*n = need > cap ? need : k;
				if (seq)
					*seq = s1;
				return need > cap ? FMSHM_ERANGE : FMSHM_OK;
			}
		}
		if ((rc = fmshm__again(r, &rt)) != FMSHM_OK)
			return rc;
	}
}

/* The current table seq (odd while a commit is being published). */
static inline uint64_t fmshm_seq(fmshm *r)
{
	return FMSHM__LOAD(&r->hdr->table_seq, FMSHM__ACQ);
}

/* Reads the header; master, epoch, stale, count and seq consistently. */
static inline int fmshm_header(fmshm *r, fmshm_info *out)
{
	struct fmshm_header *h = r->hdr;
	unsigned attempt;
	uint32_t v = FMSHM__LOAD(&h->version, FMSHM__RLX);
	memset(out, 0, sizeof *out);
	out->major = v & 0xffff;
	out->minor = v >> 16;
	out->status = FMSHM__LOAD(&h->ready, FMSHM__ACQ);
	out->capacity = r->capacity;
	out->ring_capacity = r->ring_mask + 1;
	out->node_id = FMSHM__LOAD(&h->node_id, FMSHM__RLX);
	out->writer_pid = r->pid;
	out->generation = FMSHM__LOAD(&h->generation, FMSHM__RLX);
	out->writer_start = (int64_t)FMSHM__LOAD(&h->writer_start, FMSHM__RLX);
	out->hb_timeout = (int64_t)FMSHM__LOAD(&h->hb_timeout, FMSHM__RLX);
	for (attempt = 0; attempt <= r->max_retries; attempt++) {
		uint64_t s1 = FMSHM__LOAD(&h->table_seq, FMSHM__ACQ);
		out->master = FMSHM__LOAD(&h->master, FMSHM__RLX);
		out->epoch = FMSHM__LOAD(&h->epoch, FMSHM__RLX);
		out->stale = FMSHM__LOAD(&h->stale, FMSHM__RLX) != 0;
		out->count = FMSHM__LOAD(&h->count, FMSHM__RLX);
		out->seq = s1;
		FMSHM__FENCE(FMSHM__ACQ);
		if (!(s1 & 1) && FMSHM__LOAD(&h->table_seq, FMSHM__RLX) == s1)
			break;
		if (attempt > r->spin_retries)
			sched_yield();
	}
	out->heartbeat = (int64_t)FMSHM__LOAD(&h->heartbeat, FMSHM__RLX);
	out->heartbeat_age = fmshm__age(out->heartbeat);
	out->writer_alive = out->status == FMSHM_STATUS_READY && fmshm_writer_alive(r);
	return fmshm__status_err(out->status);
}

/* FMSHM_OK if the segment is still the live one; FMSHM_ECLOSED,
 * FMSHM_ERECREATED (replaced, or another file at the path: reopen) or
 * FMSHM_EWRITERDEAD otherwise. Makes system calls. */
static inline int fmshm_check(fmshm *r)
{
	struct stat st;
	int rc = fmshm__status(r);
	if (rc != FMSHM_OK)
		return rc;
	if (stat(r->path, &st) != 0)
		return FMSHM_ECLOSED;
	if (st.st_dev != r->dev || st.st_ino != r->ino)
		return FMSHM_ERECREATED;
	return fmshm_writer_alive(r) ? FMSHM_OK : FMSHM_EWRITERDEAD;
}

/* ---------------------------------------------------------------------- */
/* Waiting for a change.                                                  */

/* Sleeps until the table seq differs from last and is even, and stores it
 * in *seq. timeout_ms < 0 waits forever. The writer futex-wakes the low 32
 * bits of the table seq word after every commit (a shared, not private,
 * futex). FMSHM_ETIMEOUT, FMSHM_ECLOSED, FMSHM_ERECREATED, or
 * FMSHM_EWRITERDEAD (checked every 100 ms while nothing changes). */
static inline int fmshm_wait(fmshm *r, uint64_t last, int timeout_ms, uint64_t *seq)
{
	int64_t deadline = timeout_ms < 0 ? 0 : fmshm__mono_ns() + (int64_t)timeout_ms * 1000000;
	for (;;) {
		int64_t slice = 100000000; /* 100 ms */
		struct timespec ts;
		uint64_t s;
		int rc = fmshm__status(r);
		if (rc != FMSHM_OK)
			return rc;
		s = FMSHM__LOAD(&r->hdr->table_seq, FMSHM__SEQ);
		if (s != last && !(s & 1)) {
			if (seq)
				*seq = s;
			return FMSHM_OK;
		}
		if (timeout_ms >= 0) {
			int64_t left = deadline - fmshm__mono_ns();
			if (left <= 0)
				return FMSHM_ETIMEOUT;
			if (left < slice)
				slice = left;
		}
		ts.tv_sec = slice / 1000000000;
		ts.tv_nsec = slice % 1000000000;
		/* FUTEX_WAIT = 0; the futex word is the low half (little-endian) */
		syscall(SYS_futex, (void *)&r->hdr->table_seq, 0, (uint32_t)s, &ts, NULL, 0);
		if (fmshm__status(r) == FMSHM_OK &&
		    FMSHM__LOAD(&r->hdr->table_seq, FMSHM__ACQ) == s && !fmshm_writer_alive(r))
			return FMSHM_EWRITERDEAD;
	}
}

/* ---------------------------------------------------------------------- */
/* Following the event ring (lossy broadcast, package ring).              */

/* Positions f after the newest event (from_oldest: at the oldest one still
 * in the ring). */
static inline void fmshm_follow(fmshm *r, fmshm_follower *f, int from_oldest)
{
	uint64_t t = FMSHM__LOAD(&r->ring->tail, FMSHM__ACQ), cap = (uint64_t)r->ring_mask + 1;
	f->cursor = t;
	if (from_oldest)
		f->cursor = t > cap ? t - cap : 0;
}

static inline uint64_t fmshm__jump(fmshm *r, fmshm_follower *f, uint64_t t)
{
	uint64_t half = ((uint64_t)r->ring_mask + 1) / 2, nc = f->cursor + 1, lost;
	if (t > half && t - half > nc)
		nc = t - half;
	lost = nc - f->cursor;
	f->cursor = nc;
	return lost;
}

/* Reads the next event: 1 if one was read, 0 if there is none yet. *lost
 * (if lost != NULL) receives the number of events this follower missed
 * because it fell more than the ring's size behind; it then jumps to half a
 * ring behind the newest. */
static inline int fmshm_next_event(fmshm *r, fmshm_follower *f, fmshm_event *ev, uint64_t *lost)
{
	uint64_t cap = (uint64_t)r->ring_mask + 1, nlost = 0;
	int got = 0;
	for (;;) {
		uint64_t t = FMSHM__LOAD(&r->ring->tail, FMSHM__ACQ), c, want, s1, m;
		struct fmshm_event_rec *e;
		if (f->cursor >= t) {
			if (f->cursor > t)
				f->cursor = t;
			break;
		}
		if (t - f->cursor > cap) {
			nlost += fmshm__jump(r, f, t);
			continue;
		}
		c = f->cursor;
		e = &r->events[c & r->ring_mask];
		want = 2 * c + 2;
		s1 = FMSHM__LOAD(&e->seq, FMSHM__ACQ);
		if (s1 != want) {
			if (s1 > want) {
				nlost += fmshm__jump(r, f, FMSHM__LOAD(&r->ring->tail, FMSHM__ACQ));
				continue;
			}
			break; /* not complete yet */
		}
		ev->pos = c;
		ev->table_seq = FMSHM__LOAD(&e->table_seq, FMSHM__RLX);
		ev->entity_id = FMSHM__LOAD(&e->entity_id, FMSHM__RLX);
		m = FMSHM__LOAD(&e->meta, FMSHM__RLX);
		FMSHM__FENCE(FMSHM__ACQ);
		if (FMSHM__LOAD(&e->seq, FMSHM__RLX) != want) {
			nlost += fmshm__jump(r, f, FMSHM__LOAD(&r->ring->tail, FMSHM__ACQ));
			continue;
		}
		ev->kind = (uint8_t)(m >> FMSHM_EV_KIND_SHIFT);
		ev->state = (uint8_t)(m >> FMSHM_EV_STATE_SHIFT);
		ev->severity = (uint8_t)(m >> FMSHM_EV_SEV_SHIFT);
		f->cursor = c + 1;
		got = 1;
		break;
	}
	if (lost)
		*lost = nlost;
	return got;
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FMSHM_H */
