package core

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fmagent/fmagent/agent/table"
	"github.com/fmagent/fmagent/wire"
)

// The ledger's bound on clears and unregisters (maxLedgerTombs) forgets the
// one acknowledged longest ago, never the one just acknowledged: a clear is
// what the ledger must re-assert should the master that acknowledged it die
// before anyone else had it. Before, the bound forgot the first in the
// ledger's order, which is where the alarm's raise had been put: a clear of
// an alarm raised before the ledger's other clears was forgotten as it was
// recorded.
func TestLedgerBoundForgetsTheOldestClear(t *testing.T) {
	ver := func(seq uint64) wire.WriteVersion { return wire.WriteVersion{Epoch: 2, Seq: seq, Node: 1} }
	const name = "svc/l"
	id := table.ID(name)
	var l ledger
	l.init()
	seq := uint64(0)
	rec := func(r Request) {
		seq++
		l.record(&r, ver(seq))
	}
	rec(Request{Kind: wire.ReportRaise, Name: name, Cause: "early", Severity: wire.SevMajor})
	for i := range maxLedgerTombs {
		rec(Request{Kind: wire.ReportClear, Name: name, Cause: fmt.Sprintf("c%d", i)})
	}
	require.Len(t, l.tombAt, maxLedgerTombs)

	rec(Request{Kind: wire.ReportClear, Name: name, Cause: "early"})
	got, ok := l.items[ledgerKey{id, "early"}]
	require.True(t, ok, "the clear just acknowledged is held")
	require.Equal(t, wire.ReportClear, got.Kind)
	require.Equal(t, ver(seq), got.Ver)
	_, ok = l.items[ledgerKey{id, "c0"}]
	require.False(t, ok, "the clear acknowledged longest ago is forgotten")
	require.Len(t, l.tombAt, maxLedgerTombs)

	// An unregister counts with the clears, and a registration after it
	// keeps it (tombKey) in the same count.
	rec(Request{Kind: wire.ReportRegister, Name: "svc/m", EntityKind: wire.KindService})
	rec(Request{Kind: wire.ReportUnregister, Name: "svc/m"})
	_, ok = l.items[ledgerKey{table.ID("svc/m"), ""}]
	require.True(t, ok, "the unregister just acknowledged is held")
	_, ok = l.items[ledgerKey{id, "c1"}]
	require.False(t, ok, "the next oldest clear is forgotten")
	require.Len(t, l.tombAt, maxLedgerTombs)
}

// A clear acknowledged again and again (a flapping alarm's) takes a new
// place each time; the queue of places stays within twice the clears held.
func TestLedgerTombQueueBounded(t *testing.T) {
	var l ledger
	l.init()
	for i := range uint64(10_000) {
		r := Request{Kind: wire.ReportClear, Name: "svc/f", Cause: fmt.Sprintf("c%d", i%3)}
		l.record(&r, wire.WriteVersion{Epoch: 1, Seq: i + 1, Node: 1})
	}
	require.Len(t, l.tombAt, 3)
	require.LessOrEqual(t, len(l.tombQ), 2*3+33)

	// Clears of ever new alarms, the bound forgetting one for each: the
	// queue's array, the places forgotten before its head included, stays
	// within twice the bound.
	for i := range uint64(10 * maxLedgerTombs) {
		r := Request{Kind: wire.ReportClear, Name: "svc/g", Cause: fmt.Sprintf("n%d", i)}
		l.record(&r, wire.WriteVersion{Epoch: 2, Seq: i + 1, Node: 1})
	}
	require.Len(t, l.tombAt, maxLedgerTombs)
	require.LessOrEqual(t, cap(l.tombQ), 4*maxLedgerTombs+70)
}
