//go:build race

package main

// raceEnabled: the test binary runs under the race detector, so binaries
// the tests build use it too (and reuse the race-built packages in the
// build cache).
const raceEnabled = true
