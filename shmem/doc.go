// Package shmem publishes the cluster's entity table in shared memory, so
// that any local program, Go or C (shmem/fmshm.h), reads the state of any
// entity in tens of nanoseconds without a system call.
//
// A segment is one file under /dev/shm with a fixed little-endian layout
// (docs/shm-layout.md, byte by byte): a header, a hash index from entity ID
// to slot (open addressing, linear probing, tombstones), cache-line aligned
// entity slots each under its own seqlock, and an event ring (package ring).
//
// There is one writer (the agent) and any number of readers. Every shared
// word is written and read with atomic operations, which makes the seqlock
// recipe (writer: seq odd, data, seq even; reader: seq, data, seq again,
// retry if odd or changed) correct under both the Go and the C11 memory
// models. A transaction of several changes is bracketed by the table seq,
// which is itself a seqlock: Snapshot reads all entities as of one commit.
// After every commit the writer futex-wakes the table seq word (its low 32
// bits), on which Wait sleeps.
//
// Readers never spin forever: a slot left mid-write by a writer that died is
// reported after a bounded number of retries as ErrWriterDead (or ErrTorn
// if the writer is alive), and a segment replaced by a newer writer as
// ErrRecreated.
//
// NewHeap backs the same code with a Go byte slice, so tests can run writer
// and readers under the race detector, which cannot see mmap'd memory.
//
// The layout assumes a little-endian 64-bit Linux host (amd64, arm64).
package shmem
