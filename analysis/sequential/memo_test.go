package sequential

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// Bounds, Needed and LogE remember what they computed: a hit answers what the
// computation does, bit for bit, whichever goroutines ask at once.
func TestMemoAnswersWhatTheComputationDoes(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 1000 {
				// Few distinct counts, so that most calls are hits,
				// and alphas that collide in the table.
				n := float64(rng.IntN(40))
				c := Counts{Requests: n, Bad: math.Floor(rng.Float64() * (n + 1))}
				alpha := []float64{0.01, 0.0033, 0.05, math.Copysign(0, -1)}[rng.IntN(4)]
				lo, hi := Bounds(c, alpha, DefaultPrior)
				wlo, whi := 0.0, 1.0
				if c.Requests > 0 {
					wlo, whi = bounds(c, alpha, DefaultPrior)
				}
				if math.Float64bits(lo) != math.Float64bits(wlo) || math.Float64bits(hi) != math.Float64bits(whi) {
					t.Errorf("Bounds(%+v, %g) = [%g, %g], computed [%g, %g]", c, alpha, lo, hi, wlo, whi)
					return
				}
				w := Worse{LogLR: []float64{float64(rng.IntN(3)), -1, float64(rng.IntN(2))}[:1+rng.IntN(3)]}
				if got, want := w.LogE(), w.logE(); math.Float64bits(got) != math.Float64bits(want) {
					t.Errorf("%+v: LogE %g, computed %g", w, got, want)
					return
				}
				e := Promotion{LogE: float64(rng.IntN(3)), Margin: 0.01}
				total := Look{CanaryRequests: n, CanaryBad: c.Bad, StableRequests: 9 * n, StableBad: float64(rng.IntN(3))}
				got, ok := e.Needed(total, PromotionLevelForTest)
				want, wok := e.needed(total, PromotionLevelForTest)
				if math.Float64bits(got) != math.Float64bits(want) || ok != wok {
					t.Errorf("Needed(%+v, %+v) = %g, %v; computed %g, %v", e, total, got, ok, want, wok)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// PromotionLevelForTest is rollout's PromotionLevel.
const PromotionLevelForTest = 0.05

// A key is the arguments' bits: 0 and -0, equal as floats, are two keys.
func TestMemoKeysAreBits(t *testing.T) {
	if bits[[5]uint64](0) == bits[[5]uint64](math.Copysign(0, -1)) {
		t.Error("0 and -0 share a key")
	}
	if bits[[5]uint64](1, 2) == bits[[5]uint64](2, 1) {
		t.Error("the arguments' order is not in the key")
	}
}
