//go:build !linux

package issuer

// lowPriority runs f. Only Linux can lower one thread's priority.
func lowPriority(f func()) { f() }
