package state

import "container/heap"

// table is a bounded map of limiter entries, one per scope, ordered by the
// instant each entry stops carrying information (until): a bucket's TAT, a
// failure mark's end, a known client's expiry. From that instant a missing
// entry and the stored one answer alike, so dropping it loses nothing.
//
// When the table is full, the entry with the earliest until goes first: an
// expired one if any, otherwise the one closest to holding nothing, never
// simply the least recently used. To push out an account's exhausted bucket
// an attacker would have to fill the whole table with entries owing more,
// which every scope's own limit prevents (CWE-770: the bound must not be a
// reset button). It is not safe for concurrent use; the caller locks.
type table[V any] struct {
	max   int
	index map[string]*entry[V]
	order entryHeap[V]
}

// entry is one keyed value of a table.
type entry[V any] struct {
	key   string
	until int64 // unix ns
	pos   int   // index in order
	val   V
}

func newTable[V any](max int) *table[V] {
	return &table[V]{max: max, index: make(map[string]*entry[V])}
}

// len returns the number of entries held.
func (t *table[V]) len() int { return len(t.index) }

// get returns key's value at now, or the zero value when there is none or it
// holds nothing any more.
func (t *table[V]) get(key string, now int64) V {
	e, ok := t.index[key]
	if !ok {
		var zero V
		return zero
	}
	if e.until <= now {
		t.remove(e)
		var zero V
		return zero
	}
	return e.val
}

// set stores v under key until until; an until at or before now deletes
// key. A new key makes room first when the table is full.
func (t *table[V]) set(key string, now int64, v V, until int64) {
	e, ok := t.index[key]
	switch {
	case until <= now:
		if ok {
			t.remove(e)
		}
	case ok:
		e.val, e.until = v, until
		heap.Fix(&t.order, e.pos)
	default:
		for len(t.index) >= t.max {
			t.remove(t.order[0])
		}
		e = &entry[V]{key: key, until: until, val: v}
		t.index[key] = e
		heap.Push(&t.order, e)
	}
}

// sweep drops up to n entries that hold nothing at now, so idle memory is
// returned without waiting for the table to fill.
func (t *table[V]) sweep(now int64, n int) {
	for i := 0; i < n && len(t.order) > 0 && t.order[0].until <= now; i++ {
		t.remove(t.order[0])
	}
}

func (t *table[V]) remove(e *entry[V]) {
	heap.Remove(&t.order, e.pos)
	delete(t.index, e.key)
}

// entryHeap is a min-heap of entries by until.
type entryHeap[V any] []*entry[V]

func (h entryHeap[V]) Len() int           { return len(h) }
func (h entryHeap[V]) Less(i, j int) bool { return h[i].until < h[j].until }
func (h entryHeap[V]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *entryHeap[V]) Push(x any) {
	e := x.(*entry[V])
	e.pos = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap[V]) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
