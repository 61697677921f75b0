package sequential

import (
	"math"
	"sync/atomic"
)

// memo remembers a pure function's recent results by the exact bits of
// its arguments, so that a hit returns what the function computed for
// exactly those: a comparison's statistics are a function of its counts,
// which at low traffic stay the same look after look (and are often the
// same for two latency bounds of one canary), and each costs a search.
//
// It is a direct-mapped table of immutable entries, each read and written
// with one atomic pointer operation: safe for concurrent callers, without
// locks, and bounded (a colliding entry replaces the one before).
type memo[V any] struct {
	slots [memoSlots]atomic.Pointer[memoEntry[V]]
}

const memoSlots = 1 << 12

// memoKey is a function's arguments, as bits (unused ones zero).
type memoKey [8]uint64

type memoEntry[V any] struct {
	key memoKey
	val V
}

// keyOf is the arguments' bits: floats equal as bits are the same input
// to any computation (unlike ==, which equates 0 and -0).
func keyOf(args ...float64) memoKey {
	var k memoKey
	for i, a := range args {
		k[i] = math.Float64bits(a)
	}
	return k
}

func (k *memoKey) slot() uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for _, w := range k {
		h = (h ^ w) * 0xbf58476d1ce4e5b9
		h ^= h >> 31
	}
	return h % memoSlots
}

func (m *memo[V]) get(k *memoKey) (V, bool) {
	if e := m.slots[k.slot()].Load(); e != nil && e.key == *k {
		return e.val, true
	}
	var zero V
	return zero, false
}

func (m *memo[V]) put(k *memoKey, v V) {
	m.slots[k.slot()].Store(&memoEntry[V]{key: *k, val: v})
}
