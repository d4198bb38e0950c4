// Package recency keeps keys in the order they were last touched, so that a
// bounded memory forgets the key touched longest ago in O(1) amortised time,
// and a key touched again holds one place, the newest, not two.
//
// It bounds the table's tombstones (agent/table: the alarm or entity whose
// last clear or unregister is the oldest is forgotten first) and the
// ledger's clears and unregisters (agent/core: the one acknowledged longest
// ago). Both once kept a plain queue of first places, so a key touched again
// was forgotten with its first place (DESIGN §9, "It stays").
//
// A key touched again is queued again and its older place left stale (its
// generation no longer the item's); stale places are skipped, and compacted
// away in place once the queue's array is about twice the live keys, the
// places before the head included: the array stops growing, and a touch
// allocates nothing once it has grown.
package recency

import "iter"

// Queue is a set of keys, each with a value, in the order of their last
// touch. The zero value is an empty queue.
type Queue[K comparable, V any] struct {
	m    map[K]*Item[K, V]
	q    []place[K, V] // q[head:]: oldest touch first; stale places among them
	head int
	gen  uint64
}

// Item is a key in a Queue, with its value.
type Item[K comparable, V any] struct {
	Key K
	Val V
	gen uint64 // its live place's generation; 0 once removed
}

type place[K comparable, V any] struct {
	it  *Item[K, V]
	gen uint64
}

func (p place[K, V]) live() bool { return p.it.gen == p.gen }

// Len is the number of keys.
func (q *Queue[K, V]) Len() int { return len(q.m) }

// Find returns k's item, nil if k is not in the queue. k is only looked up,
// so it may alias a buffer.
func (q *Queue[K, V]) Find(k K) *Item[K, V] { return q.m[k] }

// Add adds k, which must not be in the queue, with v, as the newest. k is
// stored: it must not alias a buffer.
func (q *Queue[K, V]) Add(k K, v V) *Item[K, V] {
	if q.m == nil {
		q.m = make(map[K]*Item[K, V])
	}
	it := &Item[K, V]{Key: k, Val: v}
	q.m[k] = it
	q.place(it)
	return it
}

// Touch makes it, an item in the queue, the newest.
func (q *Queue[K, V]) Touch(it *Item[K, V]) { q.place(it) }

// Remove removes k, if it is in the queue, and returns its item.
func (q *Queue[K, V]) Remove(k K) (*Item[K, V], bool) {
	it, ok := q.m[k]
	if !ok {
		return nil, false
	}
	delete(q.m, k)
	it.gen = 0
	return it, true
}

// Oldest returns the item touched longest ago, nil if the queue is empty.
func (q *Queue[K, V]) Oldest() *Item[K, V] {
	for q.head < len(q.q) {
		if p := q.q[q.head]; p.live() {
			return p.it
		}
		q.q[q.head] = place[K, V]{}
		q.head++
	}
	return nil
}

// All yields the items, oldest touch first.
func (q *Queue[K, V]) All() iter.Seq[*Item[K, V]] {
	return func(yield func(*Item[K, V]) bool) {
		for _, p := range q.q[q.head:] {
			if p.live() && !yield(p.it) {
				return
			}
		}
	}
}

// Reset empties the queue, keeping its memory.
func (q *Queue[K, V]) Reset() {
	clear(q.m)
	clear(q.q)
	q.q = q.q[:0]
	q.head = 0
}

func (q *Queue[K, V]) place(it *Item[K, V]) {
	q.gen++
	it.gen = q.gen
	// The whole array counts, the places before head too: at a bound
	// every new key removes the oldest, and head moves on.
	if len(q.q) >= 2*len(q.m)+32 {
		q.compact()
	}
	q.q = append(q.q, place[K, V]{it, q.gen})
}

// compact moves the live places to the front of the array, in order.
func (q *Queue[K, V]) compact() {
	n := 0
	for _, p := range q.q[q.head:] {
		if p.live() {
			q.q[n] = p
			n++
		}
	}
	clear(q.q[n:])
	q.q = q.q[:n]
	q.head = 0
}
