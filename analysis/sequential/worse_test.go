package sequential

import (
	"math"
	"math/rand/v2"
	"testing"
)

// binomialPMF is P(X = k) for X ~ Bin(n, p), exactly enough for n up to a
// few hundred.
func binomialPMF(n, k int, p float64) float64 {
	ln, _ := math.Lgamma(float64(n + 1))
	lk, _ := math.Lgamma(float64(k + 1))
	lnk, _ := math.Lgamma(float64(n - k + 1))
	return math.Exp(ln - lk - lnk + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p))
}

// One look's factor is a likelihood ratio whose expectation under "the
// canary is no worse" is exactly 1 (ratio 1) or less (canary better):
// computed by summing over every split of the look's bad events.
func TestOneLookIsFairUnderTheNull(t *testing.T) {
	for _, tc := range []struct {
		name       string
		n, m       float64
		total      int
		trueTheta  func(n, m float64) float64
		wantAtMost float64
	}{
		{"equal rates, canary at 10%", 100, 900, 7, func(n, m float64) float64 { return n / (n + m) }, 1},
		{"equal rates, canary at 50%", 500, 500, 20, func(n, m float64) float64 { return n / (n + m) }, 1},
		{"canary twice as good", 100, 300, 12, func(n, m float64) float64 { return 0.5 * n / (0.5*n + m) }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			theta := tc.trueTheta(tc.n, tc.m)
			for j := range Ratios {
				var e float64
				for x := 0; x <= tc.total; x++ {
					var w Worse
					if err := w.Observe(Look{CanaryRequests: tc.n, CanaryBad: float64(x), StableRequests: tc.m, StableBad: float64(tc.total - x)}, 0); err != nil {
						t.Fatal(err)
					}
					e += binomialPMF(tc.total, x, theta) * math.Exp(w.LogLR[j])
				}
				if e > tc.wantAtMost+1e-9 {
					t.Errorf("ratio %g: E[likelihood ratio] = %.12f, want at most %g", Ratios[j], e, tc.wantAtMost)
				}
				if tc.wantAtMost == 1 && theta == tc.n/(tc.n+tc.m) && math.Abs(e-1) > 1e-9 {
					t.Errorf("ratio %g: E[likelihood ratio] = %.12f under the null, want exactly 1", Ratios[j], e)
				}
			}
		})
	}
}

// aaRun plays one rollout in which canary and stable share every rate,
// changing from look to look (traffic, weights, incidents), with errors
// drawn per request, and reports whether Worse ever reached 1/alpha.
//
// The split changes every 20 looks or so (a step), and so does the
// stratum; traffic is high (up to 400 requests a look) or low (up to 4),
// so that strata of one look and of many are both played.
func aaRun(rng *rand.Rand, alpha float64, looks int) bool {
	var w Worse
	var step int32
	share := 0.1
	mean := []float64{400, 4}[rng.IntN(2)]
	for range looks {
		if rng.IntN(20) == 0 {
			step++
			share = []float64{0.05, 0.1, 0.25, 0.5}[rng.IntN(4)]
		}
		p := 0.005
		if rng.IntN(20) == 0 { // an incident hitting both
			p = 0.1
		}
		// Requests are routed one by one, as a mesh does.
		total := float64(rng.IntN(int(mean) + 1))
		n := binomial(rng, total, share)
		m := total - n
		l := Look{CanaryRequests: n, StableRequests: m, CanaryBad: binomial(rng, n, p), StableBad: binomial(rng, m, p)}
		if err := w.Observe(l, step); err != nil {
			panic(err)
		}
		if w.Shown(alpha) {
			return true
		}
	}
	return false
}

// binomial draws Bin(n, p) one request at a time, skipping from one
// success to the next by geometric gaps (so it costs n*p draws, not n).
func binomial(rng *rand.Rand, n, p float64) float64 {
	if p <= 0 {
		return 0
	}
	if p >= 1 {
		return n
	}
	var k float64
	logq := math.Log1p(-p)
	for i := 0.0; ; k++ {
		i += math.Floor(math.Log(1-rng.Float64())/logq) + 1
		if i > n {
			return k
		}
	}
}

// However often it looks, and whatever the traffic and shared incidents
// do, Worse claims "worse" for an equal canary at most alpha of the time:
// 2,000 seeded rollouts of 300 looks each, at alpha 0.05 so that a breach
// would show. The tolerance is three standard errors of the estimate.
func TestAnEqualCanaryIsRarelyShownWorseWhateverTheLooks(t *testing.T) {
	const runs, alpha = 2000, 0.05
	rng := rand.New(rand.NewPCG(1, 2))
	rejected := 0
	for range runs {
		if aaRun(rng, alpha, 300) {
			rejected++
		}
	}
	rate := float64(rejected) / runs
	tolerance := 3 * math.Sqrt(alpha*(1-alpha)/runs)
	t.Logf("equal canary shown worse in %d of %d runs (%.2f%%, alpha %.0f%%)", rejected, runs, 100*rate, 100*alpha)
	if rate > alpha+tolerance {
		t.Errorf("shown worse in %.2f%% of runs, above alpha %.0f%% + %.2f%%", 100*rate, 100*alpha, 100*tolerance)
	}
}

// A canary fifteen times worse is shown worse after a handful of its bad
// responses, at low traffic too: at 1 request a second with the canary at
// 10%, and at 0.2 with it at 50%, where a look mostly has no request, or
// one, on each side.
func TestAFifteenTimesWorseCanaryIsShownWorseSoon(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n, m   float64 // mean requests a look, each side
		maxBad float64
	}{
		{"1 rps, canary at 10%", 1, 9, 10},
		{"0.2 rps, canary at 50%", 1, 1, 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, 4))
			const runs = 500
			var badServed []float64
			for range runs {
				var w Worse
				served := 0.0
				for look := 0; look < 10000 && !w.Shown(0.01); look++ {
					n, m := poisson(rng, tc.n), poisson(rng, tc.m)
					l := Look{CanaryRequests: n, StableRequests: m, CanaryBad: binomial(rng, n, 0.075), StableBad: binomial(rng, m, 0.005)}
					if err := w.Observe(l, 0); err != nil {
						t.Fatal(err)
					}
					served += l.CanaryBad
				}
				if !w.Shown(0.01) {
					t.Fatal("a 15x worse canary was never shown worse")
				}
				badServed = append(badServed, served)
			}
			med := median(badServed)
			t.Logf("median bad responses served before shown worse: %.0f", med)
			if med > tc.maxBad {
				t.Errorf("median %.0f bad responses before the verdict, want at most %.0f", med, tc.maxBad)
			}
		})
	}
}

// Looks of one stratum are pooled: a canary's bad response in a look where
// stable served nothing still counts, once stable has served in the same
// split.
func TestLooksOfOneSplitArePooled(t *testing.T) {
	var w Worse
	for range 5 {
		for _, l := range []Look{{CanaryRequests: 1, CanaryBad: 1}, {StableRequests: 1}} {
			if err := w.Observe(l, 2); err != nil {
				t.Fatal(err)
			}
		}
	}
	if w.Pending != nil {
		t.Fatalf("pending %+v after both sides served %g requests", *w.Pending, StratumRequests)
	}
	if w.LogE() <= 0 {
		t.Errorf("log e-value %g after 5 canary failures against none of stable's in the same split, want it above 0", w.LogE())
	}
	// Another split closes the pending looks, whatever they hold.
	var v Worse
	for _, st := range []int32{0, 1} {
		if err := v.Observe(Look{CanaryRequests: 2, CanaryBad: 2, StableRequests: 1}, st); err != nil {
			t.Fatal(err)
		}
	}
	if v.LogE() <= 0 || v.Pending == nil || v.Stratum != 1 {
		t.Errorf("after a change of split: log e %g, pending %v in stratum %d; want evidence from the first, the second pending", v.LogE(), v.Pending, v.Stratum)
	}
}

func poisson(rng *rand.Rand, mean float64) float64 {
	// Knuth's method; means here are small.
	l, k, p := math.Exp(-mean), 0.0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

func TestALookNoMeasurementCanProduceIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		look Look
	}{
		{"NaN requests", Look{CanaryRequests: math.NaN()}},
		{"infinite bad", Look{CanaryRequests: 1, CanaryBad: math.Inf(1)}},
		{"a counter that went down", Look{StableRequests: -3}},
		{"more canary failures than requests", Look{CanaryRequests: 2, CanaryBad: 3}},
		{"more stable failures than requests", Look{StableRequests: 2, StableBad: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w Worse
			if err := w.Observe(tc.look, 0); err == nil {
				t.Fatalf("Observe(%+v) accepted it", tc.look)
			}
			if w.LogE() != 0 {
				t.Errorf("a refused look moved the evidence to %g", w.LogE())
			}
		})
	}
}

func TestEvidenceOverAnotherGridIsRefused(t *testing.T) {
	w := Worse{LogLR: []float64{1, 2}}
	if err := w.Observe(Look{CanaryRequests: 10, CanaryBad: 1, StableRequests: 10}, 0); err != ErrRatios {
		t.Fatalf("Observe on a 2-ratio evidence: %v, want ErrRatios", err)
	}
}

func TestLooksWithoutBadEventsOrWithOneSideIdleCarryNoEvidence(t *testing.T) {
	var w Worse
	for i, l := range []Look{
		{CanaryRequests: 100, StableRequests: 900},
		{CanaryRequests: 10, CanaryBad: 10},
		{StableRequests: 10, StableBad: 4},
		{CanaryRequests: 1, CanaryBad: 1, StableRequests: 2}, // closed by the next stratum
	} {
		if err := w.Observe(l, int32(i)); err != nil {
			t.Fatal(err)
		}
	}
	if w.LogE() != 0 {
		t.Errorf("log e-value %g, want 0", w.LogE())
	}
}

func FuzzObserve(f *testing.F) {
	f.Add(100.0, 3.0, 900.0, 4.0)
	f.Add(0.0, 0.0, 0.0, 0.0)
	f.Add(1e12, 1e12, 1.0, 0.0)
	f.Fuzz(func(t *testing.T, n, x, m, y float64) {
		var w Worse
		l := Look{CanaryRequests: n, CanaryBad: x, StableRequests: m, StableBad: y}
		if err := w.Observe(l, 0); err != nil {
			if l.Check() == nil {
				t.Fatalf("Observe refused a look Check accepts: %v", err)
			}
			return
		}
		if e := w.LogE(); math.IsNaN(e) {
			t.Fatalf("log e-value NaN after %+v", l)
		}
	})
}
