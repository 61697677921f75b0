package sequential

import (
	"math"

	"github.com/fledgehq/fledge/analysis/internal/memo"
)

// Prior is the beta mixing distribution of a rate's confidence sequence.
// Any prior gives valid bounds; it only decides where they are tightest.
type Prior struct{ A, B float64 }

// DefaultPrior puts most of its weight on rates below a few percent, where
// error rates and tail-latency shares of healthy services live, while
// keeping the bounds of a rate far above them (a failing canary's 30%)
// meaningful in messages. Its mean is 1/41.
var DefaultPrior = Prior{A: 0.5, B: 20}

// PromotionPrior is where Promotion's estimates of both sides' rates start,
// before either has served: its mean (1/201) is where error rates of
// healthy services live.
var PromotionPrior = Prior{A: 1, B: 200}

// Counts are one side's requests and bad events, in total.
type Counts struct {
	Requests float64 `json:"requests"`
	Bad      float64 `json:"bad"`
}

// Rate is the observed share of bad requests, 0 without requests.
func (c Counts) Rate() float64 {
	if c.Requests <= 0 {
		return 0
	}
	return c.Bad / c.Requests
}

// logMixture is the log of Robbins' beta-binomial mixture martingale for
// rate p after bad events in requests: the prior's average likelihood over
// the likelihood at p. Under a true rate p it is a nonnegative martingale
// starting at 1, so it exceeds 1/alpha at any time with probability at
// most alpha; the p it stays below form the confidence sequence.
//
// Its value at rate r is marginal(c, p) - loglik(c, r): the first term
// does not depend on r, so a search over r computes it once.
func logMixture(c Counts, p Prior, rate float64) float64 {
	return marginal(c, p) - loglik(c, rate)
}

// marginal is the log of the prior's average likelihood of the counts.
func marginal(c Counts, p Prior) float64 {
	return lbeta(p.A+c.Bad, p.B+c.Requests-c.Bad) - lbeta(p.A, p.B)
}

// loglik is the log likelihood of the counts at a rate.
func loglik(c Counts, rate float64) float64 {
	s, f := c.Bad, c.Requests-c.Bad
	ll := 0.0
	if s > 0 {
		ll += s * math.Log(rate)
	}
	if f > 0 {
		ll += f * math.Log1p(-rate)
	}
	return ll
}

func lbeta(a, b float64) float64 {
	la, _ := math.Lgamma(a)
	lb, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	return la + lb - lab
}

// Bounds is a confidence sequence for a side's rate at level alpha: the
// true rate is within [lo, hi] at every look, simultaneously, with
// probability at least 1-alpha. Without requests it is [0, 1].
func Bounds(c Counts, alpha float64, p Prior) (lo, hi float64) {
	if c.Requests <= 0 {
		return 0, 1
	}
	k := bits[[5]uint64](c.Requests, c.Bad, alpha, p.A, p.B)
	if b, ok := boundsMemo.Get(k); ok {
		return memo.Float(b[0]), memo.Float(b[1])
	}
	lo, hi = bounds(c, alpha, p)
	boundsMemo.Put(k, [2]uint64{memo.Bits(lo), memo.Bits(hi)})
	return lo, hi
}

// bounds is Bounds, computed.
func bounds(c Counts, alpha float64, p Prior) (lo, hi float64) {
	level := math.Log(1 / alpha)
	est := c.Rate()
	// The mixture is at most 1 at the estimate (the likelihood peaks
	// there) and grows without bound towards 0 and 1 unless no event (or
	// no success) pins that end: the set below the level is an interval
	// around the estimate, found by bisection on each side.
	// In the log mixture's terms: r is in the set when
	// loglik(r) > marginal - level.
	floor := marginal(c, p) - level
	lo, hi = 0, 1
	if c.Bad > 0 {
		lo = bisect(func(r float64) bool { return loglik(c, r) <= floor }, 0, est) // excluded below
	}
	if c.Bad < c.Requests {
		hi = bisect(func(r float64) bool { return loglik(c, r) > floor }, est, 1) // included below
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
