package sequential

import "github.com/fledgehq/fledge/analysis/internal/memo"

// Bounds, Needed and LogE remember their recent results (analysis/internal/memo):
// a comparison's counts stay the same look after look at low traffic, and
// are often the same for two latency bounds, or for two canaries' sides
// (Bounds, whose table is the largest); each result costs a search.
var (
	boundsMemo = memo.New[[5]uint64, [2]uint64](1 << 14)
	neededMemo = memo.New[[8]uint64, [2]uint64](1 << 12)
	logEMemo   = memo.New[[12]uint64, [1]uint64](1 << 12)
)

// bits are the arguments' bits, for a memo's key.
func bits[K ~[5]uint64 | ~[8]uint64](args ...float64) K {
	var k K
	for i, a := range args {
		k[i] = memo.Bits(a)
	}
	return k
}
