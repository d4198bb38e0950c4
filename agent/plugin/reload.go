package plugin

// KeepHistory makes c use old's report history, so that a chain rebuilt
// with new arguments (SIGHUP) keeps counting the reports the old one saw:
// a threshold of 3 in 10 s does not start again from zero on a reload.
func (c *Chain) KeepHistory(old *Chain) {
	if old != nil && old.hist != nil {
		c.hist = old.hist
	}
}
