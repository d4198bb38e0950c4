//go:build !race

package pimutex

const raceEnabled = false
