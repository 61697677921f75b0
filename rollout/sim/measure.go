package sim

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/analysis/sequential"
)

// history keeps the canary's counters at every decision (and whenever the
// routing changed): a check's window starts at an earlier decision, since
// the core judges a step an interval after it began or after its last
// judgement, so the counters at the window's start are known exactly.
// Counters that did not change since the last record are not recorded
// again: that record answers for them.
type history struct {
	at    []int
	sides []side
	// buckets holds the recorded sides' buckets, one after another: each
	// side's are a slice of it, never written again.
	buckets []float64
}

func (h *history) record(t int, s side) {
	if h == nil {
		return // not kept: see world.hist
	}
	if n := len(h.sides); n > 0 && h.sides[n-1].same(s) {
		// Nothing served since: get answers the last record for t too.
		return
	}
	n := len(h.buckets)
	h.buckets = append(h.buckets, s.buckets...)
	s.buckets = h.buckets[n:len(h.buckets):len(h.buckets)]
	h.at = append(h.at, t)
	h.sides = append(h.sides, s)
}

// same reports whether s holds the same counters as o.
func (s side) same(o side) bool {
	return s.requests == o.requests && s.errors == o.errors && slices.Equal(s.buckets, o.buckets)
}

// get returns the counters as they were at second t: those recorded last
// at or before it.
func (h *history) get(t int) side {
	i, found := slices.BinarySearch(h.at, t)
	if !found {
		i--
	}
	return h.sides[max(i, 0)]
}

// measure runs one of a policy's checks over the interval that ends at
// second now, from the canary's exact counters sampled every second, as
// analysis would in Prometheus. Only the built-in metrics are simulated;
// a custom query is an Error check.
func measure(m analysis.Metric, hist *history, now int, at time.Time) analysis.Check {
	c := analysis.Check{Metric: m.Name, At: at}
	cur, old := hist.get(now), hist.get(now-int(m.Interval/time.Second))
	requests := cur.requests - old.requests
	c.Samples = int64(requests)
	var value float64
	switch m.Name {
	case analysis.SuccessRate:
		value = (requests - (cur.errors - old.errors)) / requests
	case analysis.LatencyP95, analysis.LatencyP99:
		q := 0.95
		if m.Name == analysis.LatencyP99 {
			q = 0.99
		}
		cumulative, sum := make([]float64, len(Buckets)), 0.0
		for i := range Buckets {
			sum += cur.buckets[i] - old.buckets[i]
			cumulative[i] = sum
		}
		value = histogramQuantile(q, cumulative, requests)
	case analysis.RequestRate:
		value = requests / m.Interval.Seconds()
	default:
		c.Outcome, c.Message = analysis.Error, fmt.Sprintf("the simulator measures built-in metrics only, not %q", m.Name)
		return c
	}
	c.Outcome, c.Message = analysis.Judge(m, c.Samples, value)
	if !math.IsNaN(value) && !math.IsInf(value, 0) {
		c.Value = &value
	}
	return c
}

// histogramQuantile is Prometheus's histogram_quantile over cumulative
// bucket counts and their total: linear interpolation within the bucket
// the rank falls in, from 0 below the first bound, and the highest finite
// bound when the rank falls in the implicit +Inf bucket. NaN without data.
func histogramQuantile(q float64, cumulative []float64, total float64) float64 {
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lowerBound, lowerCount := 0.0, 0.0
	for i, upper := range Buckets {
		if cumulative[i] >= rank {
			if cumulative[i] == lowerCount {
				return upper
			}
			return lowerBound + (upper-lowerBound)*(rank-lowerCount)/(cumulative[i]-lowerCount)
		}
		lowerBound, lowerCount = upper, cumulative[i]
	}
	return Buckets[len(Buckets)-1]
}

// measure measures one metric as the engine would: a threshold check over
// its interval, or a comparison's counters for both sides, exactly.
func (w *world) measure(m analysis.Metric, t int, at time.Time) analysis.Check {
	if !m.IsComparison() {
		if w.hist == nil {
			panic("sim: a threshold check measuresThresholds did not see: " + m.Name)
		}
		return measure(m, w.hist, t, at)
	}
	c := analysis.Check{Metric: m.Name, At: at}
	bound, latency := m.LatencyBound()
	counts := func(s side) sequential.Counts {
		switch {
		case m.Name == analysis.ErrorRate:
			return sequential.Counts{Requests: s.requests, Bad: s.errors}
		case latency:
			fast := 0.0
			for i, b := range Buckets {
				if b <= bound {
					fast += s.buckets[i]
				}
			}
			return sequential.Counts{Requests: s.requests, Bad: s.requests - fast}
		}
		return sequential.Counts{}
	}
	if m.Name != analysis.ErrorRate && !latency {
		c.Outcome, c.Message = analysis.Error, fmt.Sprintf("the simulator measures built-in comparisons only, not %q", m.Name)
		return c
	}
	c.Reading = &analysis.Reading{Canary: counts(w.canary), Stable: counts(w.stable)}
	return c
}
