//go:build race

package issuer

// raceEnabled reports whether the race detector is on; it slows bcrypt
// about tenfold, so the timing test takes fewer samples.
const raceEnabled = true
