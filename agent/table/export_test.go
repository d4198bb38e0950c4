package table

// NewWithHash is New with the ID function replaced, so the external tests can
// force two names onto one ID and exercise the collision path through Apply.
func NewWithHash(maxAlarms int, hash func(string) uint64) *Table {
	t := New(maxAlarms)
	t.hash = hash
	return t
}
