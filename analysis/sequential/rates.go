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
	// The mixture is at most 1 at the estimate (the likelihood peaks
	// there) and grows without bound towards 0 and 1 unless no event (or
	// no success) pins that end: the set below the level is an interval
	// around the estimate. In the log mixture's terms, r is in the set
	// when g(r) = loglik(r) - floor > 0, floor = marginal - level: g is
	// concave, with its peak at the estimate, so each edge is the one root
	// of g on its side, found by Newton's method (edge).
	floor := marginal(c, p) - level
	s, f := c.Bad, c.Requests-c.Bad
	lo, hi = 0, 1
	switch {
	case s == 0:
		// g(r) = f*log(1-r) - floor: its root in closed form.
		hi = -math.Expm1(floor / f)
	case f == 0:
		lo = math.Exp(floor / s) // g(r) = s*log(r) - floor
	default:
		est := s / c.Requests
		// Where the parabola that matches g at its peak crosses 0: a
		// start near each root (exact for large counts).
		w := math.Sqrt(2 * (loglik(c, est) - floor) * est * (1 - est) / c.Requests)
		lo = edge(s, f, floor, 0, est, est-w)
		hi = edge(s, f, floor, est, 1, est+w)
	}
	return lo, hi
}

// edge is the root of g(r) = s*log(r) + f*log(1-r) - floor (s, f > 0)
// between a and b, where g changes sign once, to about 1e-12 of its
// distance to 0 or 1: Newton's method from start, kept within the bracket (a step
// that would leave it halves it instead). g is concave, so from the side
// where g < 0 Newton's steps approach the root from that side, without
// overshooting it: a handful of steps, against bisection's twenty to a
// millionth.
func edge(s, f, floor, a, b, start float64) float64 {
	rising := a == 0 // the lower edge: g rises through it
	r := start
	if !(r > a && r < b) {
		r = (a + b) / 2
	}
	for range 100 {
		g := s*math.Log(r) + f*math.Log1p(-r) - floor
		if g == 0 {
			return r
		}
		if (g < 0) == rising {
			a = r // the root is above r
		} else {
			b = r
		}
		next := r - g/(s/r-f/(1-r))
		if !(next > a && next < b) {
			next = (a + b) / 2
		}
		if math.Abs(next-r) <= 1e-12*min(r, 1-r) || b-a <= 1e-15*min(r, 1-r) {
			return next
		}
		r = next
	}
	return r
}
