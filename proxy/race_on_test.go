//go:build race

package proxy_test

// raceEnabled reports whether the race detector is on: it changes
// allocation counts (sync.Pool drops items at random under it), so
// TestAllocationsPinned is skipped.
const raceEnabled = true
