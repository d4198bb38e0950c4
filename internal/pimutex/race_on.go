//go:build race

package pimutex

const raceEnabled = true
