package sim

import (
	"math"
	"math/rand/v2"
)

// Buckets are the upper bounds of Istio's default request-duration
// buckets, in milliseconds (istio_request_duration_milliseconds); a last,
// implicit bucket holds everything slower.
var Buckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
	30000, 60000, 300000, 600000, 1800000, 3600000}

// Latency is a log-normal latency distribution: exp(N(ln(P50), Sigma)).
type Latency struct {
	P50   float64 // milliseconds
	Sigma float64
}

// bucketShares is the probability of each bucket (and the slower rest).
func (l Latency) bucketShares() []float64 {
	out := make([]float64, len(Buckets)+1)
	prev := 0.0
	for i, b := range Buckets {
		cdf := 0.5 * math.Erfc(-(math.Log(b)-math.Log(l.P50))/(l.Sigma*math.Sqrt2))
		out[i] = cdf - prev
		prev = cdf
	}
	out[len(Buckets)] = 1 - prev
	return out
}

// side is one side's counters as Prometheus would hold them, exactly.
type side struct {
	requests, errors float64
	// buckets counts requests per duration bucket (not cumulatively: the
	// simulator adds up Istio's le series when it measures).
	buckets []float64
}

func newSide() side { return side{buckets: make([]float64, len(Buckets))} }

// shares are a latency's bucket probabilities, cumulated for drawing one
// request's bucket by inversion.
type shares struct{ each, cumulative []float64 }

func sharesOf(l Latency) shares {
	each := l.bucketShares()
	cum := make([]float64, len(each))
	total := 0.0
	for i, p := range each {
		total += p
		cum[i] = total
	}
	return shares{each, cum}
}

// serve adds n requests failing at rate p, with latencies drawn from sh.
// A few requests are drawn one by one; many as a multinomial over the
// buckets, one conditional binomial at a time.
func (s *side) serve(rng *rand.Rand, n, p float64, sh shares) {
	if n == 0 {
		return
	}
	s.requests += n
	s.errors += binomial(rng, n, p)
	if n <= 32 {
		for range int(n) {
			// A linear scan: latencies crowd the first few buckets.
			u, i := rng.Float64(), 0
			for i < len(Buckets) && sh.cumulative[i] < u {
				i++
			}
			if i < len(Buckets) {
				s.buckets[i]++
			}
		}
		return
	}
	left, rest := n, 1.0
	for i := range Buckets {
		if left == 0 {
			break
		}
		k := left
		if sh.each[i] < rest {
			k = binomial(rng, left, sh.each[i]/rest)
		}
		s.buckets[i] += k
		left -= k
		rest -= sh.each[i]
	}
}

// poisson draws Poisson(mean): by multiplying uniforms for small means,
// and by a normal approximation, rounded, for means of 100 and more (where
// it is within a fraction of a request).
func poisson(rng *rand.Rand, mean float64) float64 {
	switch {
	case mean <= 0:
		return 0
	case mean >= 100:
		return math.Max(0, math.Round(mean+math.Sqrt(mean)*rng.NormFloat64()))
	}
	l, k, p := math.Exp(-mean), 0.0, rng.Float64()
	for p > l {
		k++
		p *= rng.Float64()
	}
	return k
}

// binomial draws Bin(n, p) by skipping from one success to the next with
// geometric gaps, so it costs about n*p draws; for large expected counts it
// uses a normal approximation, rounded and clamped.
func binomial(rng *rand.Rand, n, p float64) float64 {
	switch {
	case n <= 0 || p <= 0:
		return 0
	case p >= 1:
		return n
	case n*p > 200 && n*(1-p) > 200:
		return math.Min(n, math.Max(0, math.Round(n*p+math.Sqrt(n*p*(1-p))*rng.NormFloat64())))
	}
	g := newGaps(p)
	var k float64
	for i := 0.0; ; k++ {
		i += g.step(1 - rng.Float64())
		if i > n {
			return k
		}
	}
}

// gaps are a binomial's geometric gaps between successes, at p < 1: the
// gap drawn from v = 1-u (u uniform) is floor(log(v) / log(1-p)).
//
// It is 0 when v > q = 1-p, and 1 when q > v > q^2. Away from those bounds
// (by far more than log's and exp's errors, under an ulp) it is known
// without the log: most draws when p is large, as a latency bucket's
// often is. Near them, and beyond, it is computed. The gap is the same
// either way.
type gaps struct {
	logq           float64
	zero, one, two float64 // v >= zero: gap 0; one > v >= two: gap 1
}

func newGaps(p float64) gaps {
	g := gaps{logq: math.Log1p(-p), zero: 2, one: 2, two: 2}
	if p >= 0.2 {
		q := math.Exp(g.logq)
		g.zero, g.one, g.two = q*(1+2e-9), q*(1-2e-9), math.Exp(2*g.logq)*(1+2e-9)
	}
	return g
}

// step is 1 + the gap drawn from v.
func (g *gaps) step(v float64) float64 {
	if v >= g.zero {
		return 1
	}
	if v < g.one && v >= g.two {
		return 2
	}
	return g.computed(v)
}

// computed is a step through the log. (Not inlined, so that step is.)
//
//go:noinline
func (g *gaps) computed(v float64) float64 { return math.Floor(math.Log(v)/g.logq) + 1 }
