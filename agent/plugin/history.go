package plugin

import (
	"slices"

	"github.com/fmagent/fmagent/wire"
)

// DefaultHistorySize is the number of fault reports a chain's History keeps:
// at 100 reports a second, the last 40 seconds, four times the default
// windows of threshold and blame. It costs about 128 KiB.
const DefaultHistorySize = 4096

// History is a fixed-size ring of the most recent fault reports: who reported
// what, when. It is the chain's memory, for plugins that decide from more
// than one report (threshold, blame).
//
// Only ReportFault reports are recorded: they are the opinions about others
// that need corroboration; raises, clears, registrations and owner or
// membership up/down carry no evidence about anyone else.
//
// The bound: once full, each new report overwrites the oldest, so a count over
// a window holding more reports than the ring is a lower bound. Queries find
// the window's start by binary search and scan only the reports inside it, so
// they cost the number of reports in the window, at most the ring size. Times
// are clamped to never go backwards (a stepped wall clock must not hide
// recent reports from the search). Queries use a scratch buffer, so even
// they are not safe for concurrent use.
type History struct {
	ring []histEntry
	next int // index the next Record writes
	n    int // entries in use
	last int64
	// scratch counts distinct values without allocating: a small sorted set
	// while few values are distinct (the usual case: a handful of reporters),
	// and past smallSet every value, sorted at the end. Its capacity is the
	// ring size, the most values one query can add.
	scratch []uint64
	many    bool
}

// smallSet is where distinct counting switches from a sorted set (cost per
// value: a binary search and a short insert) to collect-and-sort.
const smallSet = 64

type histEntry struct {
	at     int64
	entity uint64
	from   wire.NodeID
}

// NewHistory returns an empty History keeping the last size fault reports
// (DefaultHistorySize if size <= 0). All its memory is allocated here.
func NewHistory(size int) *History {
	if size <= 0 {
		size = DefaultHistorySize
	}
	return &History{ring: make([]histEntry, size), scratch: make([]uint64, 0, size)}
}

// Cap is the number of reports the History keeps.
func (h *History) Cap() int { return len(h.ring) }

// Len is the number of reports it holds now.
func (h *History) Len() int { return h.n }

// Reset forgets every report (a new master starts with no history).
func (h *History) Reset() {
	h.next, h.n, h.last = 0, 0, 0
}

// Record adds r if it is a fault report. It allocates nothing.
func (h *History) Record(r *Report) {
	if r.Kind != wire.ReportFault {
		return
	}
	at := r.At
	if h.n > 0 && at < h.last {
		at = h.last
	}
	h.last = at
	h.ring[h.next] = histEntry{at: at, entity: r.Entity, from: r.From}
	h.next++
	if h.next == len(h.ring) {
		h.next = 0
	}
	if h.n < len(h.ring) {
		h.n++
	}
}

// window returns the reports at or after since, oldest first, as at most two
// contiguous pieces of the ring. Times never go backwards in the ring (Record
// clamps them), so the start is found by binary search and the queries are
// plain loops over the window, with no per-report call.
func (h *History) window(since int64) (older, newer []histEntry) {
	size := len(h.ring)
	first := h.next - h.n // logical index 0, possibly negative
	if first < 0 {
		first += size
	}
	at := func(j int) int64 { // time of the j-th oldest report
		j += first
		if j >= size {
			j -= size
		}
		return h.ring[j].at
	}
	lo, hi := 0, h.n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if at(m) < since {
			lo = m + 1
		} else {
			hi = m
		}
	}
	start, count := first+lo, h.n-lo
	if start >= size {
		start -= size
	}
	if start+count <= size {
		return nil, h.ring[start : start+count]
	}
	return h.ring[start:], h.ring[:start+count-size]
}

// Count is the number of fault reports against entity since since.
func (h *History) Count(entity uint64, since int64) int {
	a, b := h.window(since)
	n := 0
	for i := range a {
		if a[i].entity == entity {
			n++
		}
	}
	for i := range b {
		if b[i].entity == entity {
			n++
		}
	}
	return n
}

// Reporters is the number of distinct nodes that reported against entity
// since since.
func (h *History) Reporters(entity uint64, since int64) int {
	return h.OtherReporters(entity, 0, since)
}

// OtherReporters is the number of distinct nodes other than except that
// reported against entity since since: does anyone else agree? (except 0,
// which is no node, excludes nobody.)
func (h *History) OtherReporters(entity uint64, except wire.NodeID, since int64) int {
	a, b := h.window(since)
	h.scratch, h.many = h.scratch[:0], false
	for _, w := range [2][]histEntry{a, b} {
		for i := range w {
			if w[i].entity == entity && (w[i].from != except || except == 0) {
				h.add(uint64(w[i].from))
			}
		}
	}
	return h.distinct()
}

// ByReporter is the number of fault reports reporter sent since since,
// against anything.
func (h *History) ByReporter(reporter wire.NodeID, since int64) int {
	a, b := h.window(since)
	n := 0
	for i := range a {
		if a[i].from == reporter {
			n++
		}
	}
	for i := range b {
		if b[i].from == reporter {
			n++
		}
	}
	return n
}

// Targets is the number of distinct entities reporter reported against since
// since.
func (h *History) Targets(reporter wire.NodeID, since int64) int {
	a, b := h.window(since)
	h.scratch, h.many = h.scratch[:0], false
	for _, w := range [2][]histEntry{a, b} {
		for i := range w {
			if w[i].from == reporter {
				h.add(w[i].entity)
			}
		}
	}
	return h.distinct()
}

// add adds v to the values being counted by distinct.
func (h *History) add(v uint64) {
	if h.many {
		h.scratch = append(h.scratch, v)
		return
	}
	i, found := slices.BinarySearch(h.scratch, v)
	if found {
		return
	}
	if len(h.scratch) >= smallSet {
		h.many = true
		h.scratch = append(h.scratch, v)
		return
	}
	h.scratch = slices.Insert(h.scratch, i, v)
}

// distinct is the number of distinct values added since the scratch buffer
// was emptied. The buffer never outgrows its capacity (one value per ring
// entry at most), so this allocates nothing.
func (h *History) distinct() int {
	if !h.many {
		return len(h.scratch)
	}
	s := h.scratch
	slices.Sort(s)
	n := 1
	for i := 1; i < len(s); i++ {
		if s[i] != s[i-1] {
			n++
		}
	}
	return n
}
