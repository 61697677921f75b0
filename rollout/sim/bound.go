package sim

import (
	"math"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout"
)

// WaldBound is the fewest observations any sequential test needs, on
// average when the truth is rate p1, to tell it from rate p0 with
// probabilities of error alpha (deciding p1 when p0 is true) and beta (the
// converse): ((1-beta) ln((1-beta)/alpha) + beta ln(beta/(1-alpha))) /
// KL(p1 || p0), the Kullback-Leibler divergence of one Bernoulli
// observation (Wald, "Sequential Analysis", 1947, section 4.5). It assumes
// p0 known; a comparison must also learn stable's rate, and so needs more.
func WaldBound(p0, p1, alpha, beta float64) float64 {
	kl := p1*math.Log(p1/p0) + (1-p1)*math.Log((1-p1)/(1-p0))
	if kl <= 0 || math.IsNaN(kl) {
		return math.Inf(1)
	}
	return ((1-beta)*math.Log((1-beta)/alpha) + beta*math.Log(beta/(1-alpha))) / kl
}

// slowerShare is the share of requests slower than ms under a latency.
func (l Latency) slowerShare(ms float64) float64 {
	return 0.5 * math.Erfc((math.Log(ms)-math.Log(l.P50))/(l.Sigma*math.Sqrt2))
}

// fewestRequests is Wald's bound for the verdict a scenario's canary
// deserves under policy p's comparisons (the policy's alpha for a
// rollback, promotion's 95% for showing it no worse than the margin), and
// what it is the bound for; zero without comparisons.
func (sc Scenario) fewestRequests(p *rollout.Policy) (float64, string) {
	if p == nil || len(p.Comparisons()) == 0 {
		return 0, ""
	}
	const beta = 0.01
	type rates struct{ stable, canary, margin float64 }
	margin := func(m analysis.Metric, stable float64) float64 {
		if m.Compare.MaxRatio > 0 {
			return stable * (m.Compare.MaxRatio - 1)
		}
		return m.Compare.MaxIncrease
	}
	var each []rates
	for _, m := range p.Comparisons() {
		switch {
		case m.Name == analysis.ErrorRate:
			each = append(each, rates{sc.StableErrors, math.Min(1, sc.StableErrors*sc.CanaryErrorFactor), margin(m, sc.StableErrors)})
		}
		if ms, ok := m.LatencyBound(); ok && ms > 0 {
			each = append(each, rates{sc.Stable.slowerShare(ms), sc.Canary.slowerShare(ms), margin(m, sc.Stable.slowerShare(ms))})
		}
	}
	if expected(sc) == RolledBack {
		// Rolled back once any comparison shows it worse: the most
		// telling one decides.
		best := math.Inf(1)
		for _, r := range each {
			if r.canary > r.stable {
				best = math.Min(best, WaldBound(r.stable, r.canary, p.Alpha/float64(len(each)), beta))
			}
		}
		return best, "to show it worse at its policy's alpha"
	}
	// Promoted once every comparison shows it no worse than its margin:
	// the hardest one decides.
	worst := 0.0
	for _, r := range each {
		worst = math.Max(worst, WaldBound(r.stable+r.margin, r.canary, 0.05, beta))
	}
	return worst, "to show it no worse than stable plus the margin at 95%"
}

// Floor is the total traffic below which a threshold policy never judges
// its first step: there, the canary's share of one interval's requests,
// rps x weight x interval, is below the largest minSamples of its
// threshold checks, so every round holds for want of samples and nothing
// bounds that hold. Zero for a policy whose first step needs no samples.
func Floor(p *rollout.Policy) float64 {
	if len(p.Steps) == 0 || p.Interval <= 0 {
		return 0
	}
	share := float64(p.Steps[0]) / 100 * p.Interval.Seconds()
	floor := 0.0
	for _, m := range p.Metrics {
		if !m.IsComparison() && m.MinSamples > 0 {
			floor = math.Max(floor, float64(m.MinSamples)/share)
		}
	}
	return floor
}
