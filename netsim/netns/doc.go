// Package netns holds fmagent's real-network integration test (DESIGN §7,
// "Real networks"): real fmagent processes in Linux network namespaces, on
// two bridges, with real cuts, kills and partitions.
//
// The test (TestClusterInNetns, in netns_test.go) needs root, to create
// network namespaces, and iproute2's `ip`; CI runs as root. Without them it
// skips and says so; any other setup failure fails it.
//
// # Topology
//
// Everything lives in namespaces the test creates, named
// fmtest-<pid>-<rand>-<role>, so nothing touches the host's own networking
// and parallel runs cannot collide:
//
//	fmtest-…-hub   bridges bra, brb (networks A and B) and bra2, brb2 (the
//	               other side of a partition); holds the bridge-side end
//	               of every veth: n<i>a, n<i>b
//	fmtest-…-n<i>  node i: eth-a 10.201.<r>.<i>/24 (A), eth-b
//	               10.202.<r>.<i>/24 (B), lo; runs `fmagent` for node i
//
// A link is cut by setting its bridge-side end down (so the node's own
// interface and addresses stay as they were, as with a pulled cable), a
// whole network by setting its bridge down, and a partition is made by
// moving the bridge-side ends of one side's nodes to bra2/brb2. The bridges
// have multicast snooping off: with snooping on, a port that goes down
// forgets its group memberships and, without an IGMP querier, never learns
// them again.
//
// # Cleanup
//
// Every namespace (and with it every veth and bridge), agent process,
// shared-memory file and state directory the test creates is removed when it
// ends, pass or fail (t.Cleanup, and TestMain on exit or on SIGINT/SIGTERM);
// agents also get SIGKILL if the test process dies (Pdeathsig). What a run
// killed with SIGKILL (or by go test's -timeout) leaves behind is removed by
// the next run: it deletes fmtest-<pid>-… namespaces, shared-memory files
// and temporary directories whose <pid> is no longer alive, never those of
// a live run.
package netns
