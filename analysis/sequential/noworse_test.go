package sequential

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// promotionRun plays one rollout of looks at a traffic level and split
// (changing every 20 looks or so), the canary failing at rate(stable's),
// and reports whether it was ever shown no worse at alpha, and after how
// many canary requests.
func promotionRun(rng *rand.Rand, alpha, margin, ratio float64, looks int, mean float64, canaryRate func(float64) float64, incidents bool) (bool, float64) {
	var e Promotion
	var before Look
	var step int32
	share := []float64{0.1, 0.25, 0.5}[rng.IntN(3)]
	for range looks {
		if rng.IntN(20) == 0 {
			step++
			share = []float64{0.05, 0.1, 0.25, 0.5, 0.9}[rng.IntN(5)]
		}
		ps := 0.005
		if incidents && rng.IntN(20) == 0 { // an incident hitting both
			ps = 0.1
		}
		total := poissonRoughly(rng, mean)
		n := binomial(rng, total, share)
		if total > 100 { // as poissonRoughly
			n = math.Max(0, math.Min(total, math.Round(total*share+math.Sqrt(total*share*(1-share))*rng.NormFloat64())))
		}
		m := total - n
		l := Look{CanaryRequests: n, CanaryBad: binomial(rng, n, math.Min(1, canaryRate(ps))), StableRequests: m, StableBad: binomial(rng, m, ps)}
		e.Observe(l, before, step, margin, ratio)
		before = before.add(l)
		if e.Shown(alpha) {
			return true, before.CanaryRequests
		}
	}
	return false, before.CanaryRequests
}

// poissonRoughly draws a look's requests: exactly for small means, and by a
// normal approximation from 100 on. (Requests only size the strata, which
// are conditioned on: their distribution does not matter for the test.)
func poissonRoughly(rng *rand.Rand, mean float64) float64 {
	if mean < 100 {
		return poisson(rng, mean)
	}
	return math.Max(0, math.Round(mean+math.Sqrt(mean)*rng.NormFloat64()))
}

// However often it looks, whatever the traffic and the split do, a canary
// exactly at its margin (the null's boundary, where showing it no worse is
// likeliest) is shown no worse at most alpha of the time: 2,000 seeded
// rollouts of 300 looks a case, at alpha 0.05 so that a breach would show.
// The tolerance is three standard errors of the estimate.
func TestACanaryAtItsMarginIsRarelyShownNoWorse(t *testing.T) {
	const runs, alpha = 2000, 0.05
	for _, tc := range []struct {
		name          string
		margin, ratio float64
		rate          func(float64) float64
		incidents     bool
	}{
		{"1 point above stable", 0.01, 0, func(ps float64) float64 { return ps + 0.01 }, false},
		{"1 point above stable, through incidents", 0.01, 0, func(ps float64) float64 { return ps + 0.01 }, true},
		{"3 times stable", 0, 3, func(ps float64) float64 { return 3 * ps }, true},
	} {
		for _, mean := range []float64{4, 400} {
			t.Run(fmt.Sprintf("%s, %g requests a look", tc.name, mean), func(t *testing.T) {
				t.Parallel()
				rng := rand.New(rand.NewPCG(5, uint64(mean)))
				shown := 0
				for range runs {
					if ok, _ := promotionRun(rng, alpha, tc.margin, tc.ratio, 300, mean, tc.rate, tc.incidents); ok {
						shown++
					}
				}
				rate := float64(shown) / runs
				tolerance := 3 * math.Sqrt(alpha*(1-alpha)/runs)
				t.Logf("shown no worse in %d of %d runs (%.2f%%, alpha %.0f%%)", shown, runs, 100*rate, 100*alpha)
				if rate > alpha+tolerance {
					t.Errorf("shown no worse in %.2f%% of runs, above alpha %.0f%% + %.2f%%", 100*rate, 100*alpha, 100*tolerance)
				}
			})
		}
	}
}

// A canary as good as stable (0.5%) is shown no worse than a 1-point
// margin at 95% after 665 of its requests on median with stable serving
// nine times as many, and 818 with stable serving as many: about Wald's
// bound on the average for a test that knew stable's rate (657). Comparing
// two confidence sequences, one a side, needed 950 and 2,100.
func TestAHealthyCanaryIsShownNoWorseSoon(t *testing.T) {
	for _, tc := range []struct {
		name  string
		share float64
		max   float64
	}{
		{"canary at 10%, 100 rps", 0.1, 800},
		{"canary at 50%, 1 rps", 0.5, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 8))
			var served []float64
			for range 300 {
				var e Promotion
				var before Look
				for look := 0; look < 100000 && !e.Shown(0.05); look++ {
					total := poisson(rng, 1000)
					if tc.share == 0.5 {
						total = poisson(rng, 10)
					}
					n := binomial(rng, total, tc.share)
					m := total - n
					l := Look{CanaryRequests: n, CanaryBad: binomial(rng, n, 0.005), StableRequests: m, StableBad: binomial(rng, m, 0.005)}
					e.Observe(l, before, 0, 0.01, 0)
					before = before.add(l)
				}
				served = append(served, before.CanaryRequests)
			}
			med := median(served)
			t.Logf("median canary requests before shown no worse: %.0f", med)
			if med > tc.max {
				t.Errorf("median %.0f canary requests, want at most %.0f", med, tc.max)
			}
		})
	}
}

func TestPromotionNeedsBothSidesAndAHealthyCanary(t *testing.T) {
	var e Promotion
	e.Observe(Look{CanaryRequests: 1000}, Look{}, 0, 0.01, 0)
	e.Observe(Look{CanaryRequests: 1000}, Look{CanaryRequests: 1000}, 1, 0.01, 0)
	if e.LogE != 0 {
		t.Errorf("a canary alone moved the evidence to %g", e.LogE)
	}
	// 5% against 0.5%, far beyond the margin: no bet once that is seen.
	var w Promotion
	var before Look
	for i := range 50 {
		l := Look{CanaryRequests: 100, CanaryBad: 5, StableRequests: 900, StableBad: 4}
		w.Observe(l, before, int32(i), 0.01, 0)
		before = before.add(l)
	}
	if w.Shown(0.05) || w.LogE > 0 {
		t.Errorf("a canary at 5%% against stable's 0.4%%: log e %g, want at most 0", w.LogE)
	}
}

func TestAChangedMarginStartsOver(t *testing.T) {
	e := Promotion{LogE: 2.5, Margin: 0.02}
	e.Observe(Look{CanaryRequests: 1, StableRequests: 1}, Look{}, 0, 0.01, 0)
	if e.LogE != 0 || e.Margin != 0.01 {
		t.Errorf("after the margin went from 2 points to 1: %+v, want the evidence started over", e)
	}
}

func TestBetsArePlacedOnlyBelowTheMargin(t *testing.T) {
	if l := betSize(0.02, 0.005, 1, 9, 1, 0.01); l != 0 {
		t.Errorf("canary estimated at 2%% against a boundary of 1.5%%: bet %g, want none", l)
	}
	l := betSize(0.005, 0.005, 1, 1, 1, 0.01)
	if l <= 0 || l >= 1/(1-0.01) {
		t.Fatalf("bet %g, want in (0, 1/(1-margin))", l)
	}
	// It is the best bet: near the optimum, growth falls either side.
	g := func(lambda float64) float64 {
		p := 0.005 * 0.995
		return p*math.Log1p(-lambda*0.99) + p*math.Log1p(lambda*1.01) + (1-2*p)*math.Log1p(lambda*0.01)
	}
	if g(l) < g(l*0.9) || g(l) < math.Min(g(l*1.1), g(l)) {
		t.Errorf("growth at %g is %g, below a neighbour's (%g, %g)", l, g(l), g(l*0.9), g(l*1.1))
	}
}

func FuzzPromotion(f *testing.F) {
	f.Add(100.0, 3.0, 900.0, 4.0, 0.01, 0.0)
	f.Add(1.0, 1.0, 1.0, 1.0, 0.0, 2.0)
	f.Add(1e9, 5e8, 3.0, 0.0, 0.5, 0.0)
	f.Fuzz(func(t *testing.T, n, x, m, y, margin, ratio float64) {
		l := Look{CanaryRequests: n, CanaryBad: x, StableRequests: m, StableBad: y}
		if l.Check() != nil || n > 1e7 || m > 1e7 || margin < 0 || margin >= 1 || ratio < 0 || ratio > 1e3 || math.IsNaN(margin+ratio) {
			return // refused before it reaches the evidence; counts are a look's
		}
		var e Promotion
		e.Observe(l, Look{}, 0, margin, ratio)
		e.Observe(l, l, 1, margin, ratio)
		if math.IsNaN(e.LogE) || math.IsInf(e.LogE, 0) {
			t.Fatalf("log e-value %g after %+v", e.LogE, l)
		}
	})
}

// Needed says about how many more canary requests a healthy canary needs,
// and that a canary failing beyond its margin would not be shown no worse.
func TestNeededEstimatesWhatIsLeft(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var e Promotion
	var total Look
	var first float64
	for look := range 200 {
		n, m := poisson(rng, 10), poisson(rng, 90)
		l := Look{CanaryRequests: n, CanaryBad: binomial(rng, n, 0.005), StableRequests: m, StableBad: binomial(rng, m, 0.005)}
		e.Observe(l, total, 0, 0.01, 0)
		total = total.add(l)
		if look == 10 {
			var ok bool
			if first, ok = e.Needed(total, 0.05); !ok || first < 100 || first > 2000 {
				t.Fatalf("after %g canary requests: needed %g (%v), want a few hundred more", total.CanaryRequests, first, ok)
			}
		}
		if e.Shown(0.05) {
			t.Logf("said %g more after 10 looks; shown after %g more", first, total.CanaryRequests-110)
			if n, ok := e.Needed(total, 0.05); !ok || n != 0 {
				t.Errorf("shown: needed %g (%v), want 0", n, ok)
			}
			break
		}
	}
	if !e.Shown(0.05) {
		t.Fatalf("a healthy canary not shown no worse after %g requests", total.CanaryRequests)
	}
	bad := Promotion{Margin: 0.01}
	if n, ok := bad.Needed(Look{CanaryRequests: 1000, CanaryBad: 30, StableRequests: 9000, StableBad: 45}, 0.05); ok {
		t.Errorf("a canary at 3%% against stable's 0.5%% and a 1-point margin: needed %g, want none", n)
	}
}

// closeWas is close as it was first written, with maps: close, which
// keeps few bad events in arrays, must say exactly what it did.
func (e *Promotion) closeWas() {
	l, before := *e.Pending, *e.Before
	e.Pending, e.Before = nil, nil
	e.Seed++
	n, m := math.Round(l.CanaryRequests), math.Round(l.StableRequests)
	x, y := math.Min(math.Round(l.CanaryBad), n), math.Min(math.Round(l.StableBad), m)
	if n < 1 || m < 1 {
		return
	}
	r, d := 1.0, e.Margin
	if e.Ratio > 0 {
		r, d = e.Ratio, 0
	}
	a, b := 1.0, math.Floor(m/n)
	groups := n
	if m < n {
		a, b, groups = math.Floor(n/m), 1, m
	}
	pc := (before.CanaryBad + PromotionPrior.A) / (before.CanaryRequests + PromotionPrior.A + PromotionPrior.B)
	ps := (before.StableBad + PromotionPrior.A) / (before.StableRequests + PromotionPrior.A + PromotionPrior.B)
	lambda := betSize(pc, ps, a, b, r, d)
	if lambda <= 0 {
		return
	}
	rng := rand.New(rand.NewPCG(e.Seed, uint64(n)<<20^uint64(m)))
	canaryBad := placeMany(rng, x, n, a*groups, a)
	stableBad := placeMany(rng, y, m, b*groups, b)
	touched := map[float64]bool{}
	for g := range canaryBad {
		touched[g] = true
	}
	for g := range stableBad {
		touched[g] = true
	}
	logE := (groups - float64(len(touched))) * math.Log1p(lambda*d)
	for _, g := range slices.Sorted(maps.Keys(touched)) {
		z := canaryBad[g]/a - r*stableBad[g]/b - d
		logE += math.Log1p(-lambda * z)
	}
	e.LogE += logE
}

func TestCloseSaysWhatItAlwaysDid(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var bets [2]int // strata bet on with few bad events, and with many
	for i := range 20000 {
		n := math.Floor(math.Exp(rng.Float64() * 7)) // 1 to 1,100 requests
		m := math.Floor(math.Exp(rng.Float64() * 7))
		pending := Look{CanaryRequests: n, StableRequests: m,
			CanaryBad: math.Floor(rng.Float64() * rng.Float64() * (n + 1) / 2), StableBad: math.Floor(rng.Float64() * rng.Float64() * (m + 1) / 8)}
		before := Look{CanaryRequests: 10 * n, StableRequests: 10 * m, CanaryBad: float64(rng.IntN(3)), StableBad: float64(rng.IntN(20))}
		margin := []float64{0.01, 0.002, 0.05}[i%3]
		e := Promotion{LogE: rng.NormFloat64(), Margin: margin, Seed: uint64(i), Pending: &pending, Before: &before}
		if i%7 == 0 {
			e.Ratio = 2
		}
		was := e
		was.Pending, was.Before = &Look{}, &Look{}
		*was.Pending, *was.Before = pending, before
		e0 := e.LogE
		e.close()
		was.closeWas()
		if e.LogE != e0 {
			if pending.CanaryBad > smallPlace || pending.StableBad > smallPlace {
				bets[1]++
			} else if pending.CanaryBad+pending.StableBad > 0 {
				bets[0]++
			}
		}
		if math.Float64bits(e.LogE) != math.Float64bits(was.LogE) || e.Seed != was.Seed {
			t.Fatalf("pending %+v before %+v: LogE %v, was %v", pending, before, e.LogE, was.LogE)
		}
	}
	if bets[0] < 1000 || bets[1] < 1000 {
		t.Errorf("%d strata with few bad events bet on, %d with many: too few to tell", bets[0], bets[1])
	}
}

// bestBetByBisection is how bestBet searched before Newton's method.
func bestBetByBisection(atoms []atom, d float64) float64 {
	hi := 0.95 / (1 - d) // 1 - lambda*Z stays above 0.05 at Z's highest
	// Each atom's p*z, once: the slope divides it at every step of the
	// search (p*z/(1 - lambda*z) is (p*z)/(1 - lambda*z), so the same
	// bits).
	var buf [16]float64
	pz := buf[:0]
	for _, at := range atoms {
		pz = append(pz, at.p*at.z)
	}
	// The growth, E[log(1 - lambda*Z)], is concave in lambda: its slope,
	// E[-Z / (1 - lambda*Z)], falls from -E[Z] > 0 at 0. The best lambda is
	// where the slope crosses 0 (found by bisection), or hi if it never does.
	slope := func(lambda float64) float64 {
		g := 0.0
		for i, at := range atoms {
			g -= pz[i] / (1 - lambda*at.z)
		}
		return g
	}
	if slope(hi) >= 0 {
		return hi
	}
	lo, up := 0.0, hi
	for range 30 {
		mid := (lo + up) / 2
		if slope(mid) > 0 {
			lo = mid
		} else {
			up = mid
		}
	}
	return (lo + up) / 2
}

// Newton's bet is bisection's, to bisection's tolerance, over Z's
// distributions for rates, splits and margins from a healthy service's to
// a failing one's.
func TestBestBetAgreesWithBisection(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var buf [16]atom
	for range 20000 {
		ps := math.Exp(-1 - 7*rng.Float64())
		pc := ps * math.Exp(rng.NormFloat64())
		a, b := 1.0, math.Floor(math.Exp(3*rng.Float64()))
		if rng.IntN(2) == 0 {
			a, b = b, 1
		}
		r, d := 1.0, []float64{0.01, 0.001, 0.05}[rng.IntN(3)]
		if rng.IntN(4) == 0 {
			r, d = 1+rng.Float64(), 0
		}
		if pc-r*ps-d >= 0 {
			continue
		}
		atoms := outcomes(buf[:0], pc, ps, a, b, r, d)
		hi := 0.95 / (1 - d)
		got, want := bestBet(atoms, d), bestBetByBisection(atoms, d)
		if math.Abs(got-want) > hi*2e-9 {
			t.Fatalf("pc %g ps %g a %g b %g r %g d %g: Newton %.12g, bisection %.12g", pc, ps, a, b, r, d, got, want)
		}
	}
}
