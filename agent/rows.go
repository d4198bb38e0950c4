package agent

import (
	"sync/atomic"

	"github.com/fmagent/fmagent/agent/table"
)

// rowCopy is a copy of some of the table's rows, taken while a.mu is held
// and turned into the API's types after it is released. The real-time loop
// takes a.mu at every wake-up; converting a table of 4,096 entities
// (an allocation or two each) held it for 1.5–13.5 ms here, so an
// operator's `fmctl list`, or a watcher's snapshot, held the heartbeats
// as long: clients listing 4,015 entities over and over under a CPU hog
// made the loops wait for the lock over 10 ms 5–20 times in 20 s, and the
// 20 ms profile's agents fall silent in those waits (soak -listers;
// soak/results). The copy is three appends into buffers
// kept from the last copy (rowCopies), so nothing is allocated while the
// lock is held once they have grown to the table's size; names and causes
// are immutable strings, shared, not copied. The alarms are copied
// because Apply edits an entity's alarm slice in place.
type rowCopy struct {
	rows   []table.Entity
	alarms []table.Alarm
	ends   []int // rows[i]'s alarms are alarms[ends[i-1]:ends[i]]
}

// rowCopies keeps emptied row copies for the next list or snapshot. A
// channel of a few, not a sync.Pool: the garbage collector empties a pool
// at every cycle, and a list flood (each list's JSON is megabytes of
// garbage) makes cycles frequent, so the copy regrew its buffers while the
// lock was held — allocations of hundreds of kilobytes, page faults and
// the collector's assists, 5–25 ms of CPU holding the lock at 4,015
// entities (traced in the soak's list run, the loop waiting up to 70 ms).
var rowCopies = make(chan *rowCopy, rowCopiesKept)

// rowCopiesKept: lists and watch snapshots run one or two at a time; more
// are allocated (and left to the collector) when more run at once.
const rowCopiesKept = 2

// rowsWanted and alarmsWanted are the most rows and alarms a copy has
// needed: newRowCopy makes room for as many before the lock is taken.
var rowsWanted, alarmsWanted atomic.Int64

// newRowCopy is an empty row copy, from rowCopies, with room for as many
// rows and alarms as the largest copy needed, made before the caller takes
// the lock; release it when the rows are converted.
func newRowCopy() *rowCopy {
	var c *rowCopy
	select {
	case c = <-rowCopies:
	default:
		c = new(rowCopy)
	}
	c.reserve(int(rowsWanted.Load()), int(alarmsWanted.Load()))
	return c
}

// reserve makes room for rows rows and alarms alarms (and a little more:
// a table grows).
func (c *rowCopy) reserve(rows, alarms int) {
	if cap(c.rows) < rows {
		rows += rows/16 + 16
		c.rows = make([]table.Entity, 0, rows)
		c.ends = make([]int, 0, rows)
	}
	if cap(c.alarms) < alarms {
		c.alarms = make([]table.Alarm, 0, alarms+alarms/16+16)
	}
}

// release resets c and gives it back to rowCopies.
func (c *rowCopy) release() {
	if n := int64(len(c.rows)); n > rowsWanted.Load() {
		rowsWanted.Store(n)
	}
	if n := int64(len(c.alarms)); n > alarmsWanted.Load() {
		alarmsWanted.Store(n)
	}
	c.reset()
	select {
	case rowCopies <- c:
	default:
	}
}

// reset empties c, keeping its buffers; the names and causes it shared are
// not kept alive. Nothing of its rows may be used after.
func (c *rowCopy) reset() {
	clear(c.rows)
	clear(c.alarms)
	c.rows, c.alarms, c.ends = c.rows[:0], c.alarms[:0], c.ends[:0]
}

// add copies e. mu held.
func (c *rowCopy) add(e *table.Entity) {
	c.rows = append(c.rows, *e)
	c.alarms = append(c.alarms, e.Alarms...)
	c.ends = append(c.ends, len(c.alarms))
}

// entities returns the copied rows, each with its own alarms, independent
// of the table, valid until release. Without mu.
func (c *rowCopy) entities() []table.Entity {
	from := 0
	for i := range c.rows {
		to := c.ends[i]
		c.rows[i].Alarms = c.alarms[from:to:to]
		from = to
	}
	return c.rows
}
