package pimutex

// RaceEnabled: whether Unlock checks its caller's thread (race builds).
const RaceEnabled = raceEnabled
