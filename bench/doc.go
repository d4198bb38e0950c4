// Package bench measures fmagent end to end, on real processes on loopback,
// the way DESIGN §6 asks: as distributions, next to a baseline measured in
// the same run.
//
// Run starts N real fmagent processes on `lo` (the two networks as two
// multicast groups, like scripts/demo.sh), waits until they form one
// cluster, starts N observer processes (observer i reads node i's
// shared-memory segment; see observers.go for the protocol) and measures,
// interleaving the samples so that the noise of a shared machine falls on
// all of them alike:
//
//   - report to everywhere: a client on a node other than the master's
//     (node 2, or node 3 when node 2 was elected) calls client.Raise with a
//     new cause; from just before the call to the alarm being readable in every
//     node's shared memory. The alarm's RaisedAt (the master's wall clock
//     when it took the report) splits it in client-to-master and
//     master-to-everywhere. The alarm is cleared (untimed) after each sample.
//   - down propagation: the same client sets an entity it owns down
//     (client.SetState); from the master's decision (the entity's ChangedAt,
//     stamped by the master) to the down being readable in every node's
//     shared memory. All processes read the same host clock, so the
//     difference needs no clock synchronisation.
//   - the baseline: one raw UDP multicast datagram on `lo` from this process
//     to the same N observer processes, each of which stamps CLOCK_MONOTONIC
//     as soon as its read returns: send to received by all.
//   - failure detection: SIGSTOP of a non-master agent (silent, as a hung
//     host) to its node being down in every survivor's shared memory, split
//     at the master's decision (ChangedAt of node/N), against the bound
//     interval × misses; and kill -9 (a process's end, which the exit watch
//     sees before the bound); the victim is killed and restarted between
//     repetitions.
//   - idle resource use: every agent's CPU, RSS and datagrams over a window
//     with nothing happening, and the idle floors right after (idlefloor.go):
//     N processes that do only the agents' idle ticks, in Go with the
//     agent's transport and thread and in C (csrc/hbloop.c).
//
// An observer of the agents sleeps in shmem.Reader.Wait on the table seq (a
// futex the agent wakes after every commit), reads the entity when it wakes
// and stamps CLOCK_MONOTONIC when the read shows what it waits for: what a
// local reader of the table does. The same processes stamp the baseline's
// datagrams, so both are timed alike.
//
// "Every shm" is therefore two hops: the datagram to the agent, then the
// futex to the reader. "Written in every table" is one: each row the
// observer reads carries its written_at (the agent's clock just before it
// opened the row's seqlock, docs/shm-layout.md), when the row became
// readable in that node's segment, before any reader was woken. The
// written figures (down, report, detection) are compared with the baseline
// and with one real-time hop: the relays' write of the same datagram
// (relay.go), read from their rows' written_at the same way.
//
// The command bench/cmd/e2e runs it and prints the figures; TestE2EShort
// runs a short version so that it cannot rot. docs/bench.md says how to run
// it and what was measured.
package bench
