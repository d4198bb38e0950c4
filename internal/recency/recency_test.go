package recency

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func keys(q *Queue[string, int]) []string {
	var ks []string
	for it := range q.All() {
		ks = append(ks, it.Key)
	}
	return ks
}

// A key touched again holds one place, the newest; the oldest is the one
// touched longest ago; a removed key leaves no place.
func TestOrderOfLastTouch(t *testing.T) {
	var q Queue[string, int]
	require.Nil(t, q.Oldest())
	for i, k := range []string{"a", "b", "c"} {
		q.Add(k, i)
	}
	q.Touch(q.Find("a"))
	require.Equal(t, []string{"b", "c", "a"}, keys(&q))
	require.Equal(t, "b", q.Oldest().Key)

	it, ok := q.Remove("b")
	require.True(t, ok)
	require.Equal(t, 1, it.Val)
	_, ok = q.Remove("b")
	require.False(t, ok)
	require.Nil(t, q.Find("b"))
	require.Equal(t, "c", q.Oldest().Key)
	require.Equal(t, []string{"c", "a"}, keys(&q))

	// Removed, then added again: a new place, the newest.
	q.Remove("c")
	q.Add("c", 7)
	require.Equal(t, []string{"a", "c"}, keys(&q))
	require.Equal(t, 2, q.Len())

	q.Reset()
	require.Zero(t, q.Len())
	require.Nil(t, q.Oldest())
	require.Empty(t, keys(&q))
}

// At a bound, every new key removes the oldest; one key touched again and
// again below it: either way the array, the places before the head
// included, stays within a small multiple of the keys held, and the order
// is that of a plain reference (a slice moved by hand).
func TestBoundedArrayAndOrder(t *testing.T) {
	const bound = 64
	var q Queue[string, int]
	var ref []string
	touch := func(k string) {
		if it := q.Find(k); it != nil {
			q.Touch(it)
			ref = slices.DeleteFunc(ref, func(s string) bool { return s == k })
		} else {
			q.Add(k, 0)
		}
		ref = append(ref, k)
		for q.Len() > bound {
			old := q.Oldest()
			require.Equal(t, ref[0], old.Key)
			q.Remove(old.Key)
			ref = ref[1:]
		}
	}
	for i := range 20_000 {
		switch i % 3 {
		case 0:
			touch(fmt.Sprintf("new%d", i))
		case 1:
			touch(fmt.Sprintf("hot%d", i%5))
		default:
			touch(ref[(i*7)%len(ref)]) // an older one, again
		}
	}
	require.Equal(t, ref, keys(&q))
	require.LessOrEqual(t, cap(q.q), 4*bound+70)
	for range 100_000 {
		touch("flap")
	}
	require.LessOrEqual(t, cap(q.q), 4*bound+70)
}

// Touching an item in the queue allocates nothing once the array has grown.
func TestTouchAllocs(t *testing.T) {
	var q Queue[string, int]
	for i := range 8 {
		q.Add(fmt.Sprint(i), i)
	}
	i := 0
	for range 1000 {
		q.Touch(q.Find(fmt.Sprint(i % 8)))
		i++
	}
	names := []string{"0", "1", "2", "3", "4", "5", "6", "7"}
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		q.Touch(q.Find(names[i%8]))
		i++
	}))
}
