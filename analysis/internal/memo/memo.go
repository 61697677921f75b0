// Package memo remembers pure functions' recent results, by the exact
// bits of their arguments, so that a hit answers what the function
// computes for exactly those. fledge's comparisons are functions of their
// counts, which at low traffic stay the same look after look (and are
// often the same for a canary's two latency bounds, or for two canaries),
// and each result costs a search.
//
// A Table is a direct-mapped table of arguments and results, as words: a
// colliding entry replaces the one before, so it is bounded. Each entry
// is guarded by a sequence number (a seqlock of atomic operations): a
// reader that meets an entry being written, or rewritten while it read,
// misses, and a writer that meets one being written leaves it. So it is
// safe for concurrent callers, without locks, and holds no pointers, so
// the garbage collector never scans it. It never changes an answer, only
// how soon it comes: a caller must key it by everything the function
// reads.
package memo

import (
	"math"
	"sync/atomic"
)

// Words are a function's arguments or results, as words (floats by their
// bits: see Bits).
type Words interface {
	~[1]uint64 | ~[2]uint64 | ~[4]uint64 | ~[5]uint64 | ~[8]uint64 | ~[12]uint64
}

// Table remembers results V of one function by its arguments K.
type Table[K, V Words] struct {
	slots []slot[K, V]
}

type slot[K, V Words] struct {
	// seq is 0 for an entry never written, odd while one is written, and
	// even (and one more) once it is.
	seq uint64
	key K
	val V
}

// New returns a table of size entries (a power of two). Its memory is
// taken as entries are first written.
func New[K, V Words](size int) *Table[K, V] {
	if size <= 0 || size&(size-1) != 0 {
		panic("memo: the size is not a power of two")
	}
	return &Table[K, V]{slots: make([]slot[K, V], size)}
}

func (t *Table[K, V]) slot(k *K) *slot[K, V] {
	h := uint64(0x9e3779b97f4a7c15)
	for i := range len(*k) {
		h = (h ^ (*k)[i]) * 0xbf58476d1ce4e5b9
		h ^= h >> 31
	}
	return &t.slots[h&uint64(len(t.slots)-1)]
}

// Get returns the result remembered for k, if any.
func (t *Table[K, V]) Get(k K) (v V, ok bool) {
	s := t.slot(&k)
	seq := atomic.LoadUint64(&s.seq)
	if seq == 0 || seq&1 != 0 {
		return v, false
	}
	for i := range len(k) {
		if atomic.LoadUint64(&s.key[i]) != k[i] {
			return v, false
		}
	}
	for i := range len(v) {
		v[i] = atomic.LoadUint64(&s.val[i])
	}
	if atomic.LoadUint64(&s.seq) != seq {
		var zero V
		return zero, false
	}
	return v, true
}

// Put remembers v as the result for k.
func (t *Table[K, V]) Put(k K, v V) {
	s := t.slot(&k)
	seq := atomic.LoadUint64(&s.seq)
	if seq&1 != 0 || !atomic.CompareAndSwapUint64(&s.seq, seq, seq+1) {
		return // being written
	}
	for i := range len(k) {
		atomic.StoreUint64(&s.key[i], k[i])
	}
	for i := range len(v) {
		atomic.StoreUint64(&s.val[i], v[i])
	}
	atomic.StoreUint64(&s.seq, seq+2)
}

// Bits is x's bits, for keys and results: floats equal as bits are the
// same input to any computation (== equates 0 and -0, and no NaN with
// itself).
func Bits(x float64) uint64 { return math.Float64bits(x) }

// Float is the float whose bits are w.
func Float(w uint64) float64 { return math.Float64frombits(w) }
