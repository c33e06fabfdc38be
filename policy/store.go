package policy

import "sync/atomic"

// Store holds the current policy snapshot. Readers Load one *Set per request
// and use it for the whole request; a reloader Swaps in a new Set only after
// it compiled, so a bad edit never replaces the last good policy. The zero
// value holds nil, which denies everything. A Store is safe for concurrent
// use and must not be copied after first use.
type Store struct {
	p atomic.Pointer[Set]
}

// NewStore returns a Store holding s.
func NewStore(s *Set) *Store {
	st := &Store{}
	st.p.Store(s)
	return st
}

// Load returns the current snapshot (nil if none was stored).
func (st *Store) Load() *Set { return st.p.Load() }

// Swap makes s the current snapshot. In-flight requests keep the snapshot
// they loaded.
func (st *Store) Swap(s *Set) { st.p.Store(s) }
