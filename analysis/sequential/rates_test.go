package sequential

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The bounds are the edges of the set of rates whose mixture stays below
// 1/alpha, checked against a scan of that set on a fine grid.
func TestBoundsAreTheEdgesOfTheConfidenceSet(t *testing.T) {
	for _, c := range []Counts{{Requests: 170, Bad: 1}, {Requests: 1000, Bad: 5}, {Requests: 40, Bad: 0}, {Requests: 30, Bad: 30}, {Requests: 5000, Bad: 400}} {
		lo, hi := Bounds(c, 0.01, DefaultPrior)
		level := math.Log(100)
		scanLo, scanHi := 1.0, 0.0
		for i := 1; i < 200000; i++ {
			r := float64(i) / 200000
			if logMixture(c, DefaultPrior, r) < level {
				scanLo, scanHi = math.Min(scanLo, r), math.Max(scanHi, r)
			}
		}
		if c.Bad == 0 {
			scanLo = 0
		}
		if c.Bad == c.Requests {
			scanHi = 1
		}
		if math.Abs(lo-scanLo) > 1e-5 || math.Abs(hi-scanHi) > 1e-5 {
			t.Errorf("%+v: bounds [%g, %g], scan [%g, %g]", c, lo, hi, scanLo, scanHi)
		}
		if est := c.Rate(); est < lo || est > hi {
			t.Errorf("%+v: the estimate %g is outside [%g, %g]", c, est, lo, hi)
		}
	}
}

// At any one sample size the bounds cover the true rate at least 1-alpha
// of the time: summed exactly over the binomial distribution.
func TestBoundsCoverTheRateAtAFixedSize(t *testing.T) {
	const alpha = 0.05
	for _, prior := range []Prior{DefaultPrior, PromotionPrior} {
		for _, p := range []float64{0.001, 0.005, 0.02, 0.1, 0.4} {
			for _, n := range []int{10, 50, 200, 600} {
				var miss float64
				for k := 0; k <= n; k++ {
					lo, hi := Bounds(Counts{Requests: float64(n), Bad: float64(k)}, alpha, prior)
					if p < lo || p > hi {
						miss += binomialPMF(n, k, p)
					}
				}
				if miss > alpha {
					t.Errorf("prior %v, rate %g, %d requests: missed with probability %.4f, above alpha %g", prior, p, n, miss, alpha)
				}
			}
		}
	}
}

// And they cover it at every look at once: 2,000 seeded runs of 2,000
// requests each, checked after every request. (A rate is outside the
// bounds exactly when its mixture has reached 1/alpha, which is the
// cheaper test to run six million times.)
func TestBoundsCoverTheRateAtEveryLookAtOnce(t *testing.T) {
	const runs, alpha = 2000, 0.05
	rng := rand.New(rand.NewPCG(5, 6))
	for _, p := range []float64{0.005, 0.05} {
		missed := 0
		for range runs {
			var c Counts
			for range 2000 {
				c.Requests++
				if rng.Float64() < p {
					c.Bad++
				}
				if logMixture(c, DefaultPrior, p) >= math.Log(1/alpha) {
					missed++
					break
				}
			}
		}
		rate := float64(missed) / runs
		t.Logf("rate %g: missed at some look in %.2f%% of runs (alpha %.0f%%)", p, 100*rate, 100*alpha)
		if rate > alpha+3*math.Sqrt(alpha*(1-alpha)/runs) {
			t.Errorf("rate %g: missed at some look in %.2f%% of runs, above alpha", p, 100*rate)
		}
	}
}

// boundsByBisection is how bounds searched for the edges before Newton's
// method: bisection on each side of the estimate, to a millionth of the
// interval's width.
func boundsByBisection(c Counts, alpha float64, p Prior) (lo, hi float64) {
	floor := marginal(c, p) - math.Log(1/alpha)
	est := c.Rate()
	lo, hi = 0, 1
	if c.Bad > 0 {
		lo = bisect(func(r float64) bool { return loglik(c, r) <= floor }, 0, est)
	}
	if c.Bad < c.Requests {
		hi = bisect(func(r float64) bool { return loglik(c, r) > floor }, est, 1)
	}
	return lo, hi
}

// bisect finds where cond turns from true (at a) to false (at b), to a
// millionth of the interval's width: far below any difference a message
// shows or a verdict turns on, in 20 steps.
func bisect(cond func(float64) bool, a, b float64) float64 {
	tol := (b - a) * 1e-6
	for b-a > tol {
		mid := (a + b) / 2
		if mid == a || mid == b {
			break
		}
		if cond(mid) {
			a = mid
		} else {
			b = mid
		}
	}
	return (a + b) / 2
}

// Newton's edges are bisection's, to bisection's tolerance, over counts
// from a single request to millions, alphas and both priors; and each is
// where the log mixture meets the level, to a billionth of its distance
// to 0 or 1.
func TestBoundsAgreeWithBisection(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 30000 {
		n := math.Floor(math.Exp(rng.Float64() * 15))
		k := math.Floor(rng.Float64() * (n + 1))
		switch i % 5 {
		case 0:
			k = 0
		case 1:
			k = n
		case 2:
			k = math.Min(n, math.Floor(rng.Float64()*4))
		}
		c := Counts{Requests: n, Bad: k}
		alpha := []float64{0.01, 0.005, 0.05, 1e-4, 0.0033}[i%5]
		prior := []Prior{DefaultPrior, PromotionPrior}[i%2]
		lo, hi := bounds(c, alpha, prior)
		blo, bhi := boundsByBisection(c, alpha, prior)
		est := c.Rate()
		if math.Abs(lo-blo) > 1.01e-6*est || math.Abs(hi-bhi) > 1.01e-6*(1-est) {
			t.Fatalf("%+v alpha %g prior %v: Newton [%.12g, %.12g], bisection [%.12g, %.12g]", c, alpha, prior, lo, hi, blo, bhi)
		}
		// Just inside each edge the mixture is below the level, just
		// outside it is not (just: a billionth of the distance to 0 or
		// 1, or a few ulps).
		level := math.Log(1 / alpha)
		for i, r := range []float64{lo, hi} {
			if r <= 0 || r >= 1 {
				continue
			}
			d := math.Max(1e-9*math.Min(r, 1-r), 4e-16)
			in, out := r+d, r-d
			if i == 1 {
				in, out = r-d, r+d
			}
			if logMixture(c, prior, in) >= level || logMixture(c, prior, out) < level {
				t.Fatalf("%+v alpha %g: %.12g is not where the mixture meets the level %g", c, alpha, r, level)
			}
		}
	}
}
