package cli

import (
	"cmp"
	"fmt"
	"strconv"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// comparisonText is a judged comparison on one line, both sides with their
// bounds, the evidence against the level that rolls back, and the evidence
// of no worse against the level that promotes (when known):
//
//	error-rate  worse  canary 7.4% [5.1%, 10.3%] vs stable 0.5% [0.4%, 0.6%]  540 canary req  margin +1 pt  evidence 312 >= 100  no worse 0.01 < 20
//
// ("vs baseline" when the canary is compared with a fresh baseline).
//
// ">=" says the evidence reached its level, "<" that it has not.
func comparisonText(c *rolloutpb.Check) string {
	k := c.GetCompared()
	side := func(s *rolloutpb.ComparisonSide) string {
		return fmt.Sprintf("%s [%s, %s]", pct(s.GetRate()), pct(s.GetLow()), pct(s.GetHigh()))
	}
	rel := func(v, level float64) string {
		if v >= level {
			return ">="
		}
		return "<"
	}
	margin := analysis.FormatMargin(k.GetMaxIncrease(), k.GetMaxRatio())
	against := cmp.Or(k.GetAgainst(), "stable")
	line := fmt.Sprintf("%s  %s  canary %s vs %s %s  %.0f canary req  margin %s  evidence %s %s %s",
		c.GetMetric(), comparisonVerdict(c.GetOutcome()), side(k.GetCanary()), against, side(k.GetStable()), k.GetCanary().GetRequests(),
		margin, sig3(k.GetEvidence()), rel(k.GetEvidence(), k.GetRollbackAt()), sig3(k.GetRollbackAt()))
	if at := k.GetPromoteAt(); at > 0 {
		line += fmt.Sprintf("  no worse %s %s %s", sig3(k.GetNoWorse()), rel(k.GetNoWorse(), at), sig3(at))
	}
	return line
}

// comparisonVerdict says what a comparison's outcome means against stable.
func comparisonVerdict(o rolloutpb.Outcome) string {
	switch o {
	case rolloutpb.Outcome_OUTCOME_FAIL:
		return "worse"
	case rolloutpb.Outcome_OUTCOME_PASS:
		return "no worse"
	case rolloutpb.Outcome_OUTCOME_INCONCLUSIVE:
		return "cannot tell yet"
	}
	return outcome(o)
}

// pct writes a rate as the decision log does ("7.4%", "0.52%").
func pct(r float64) string { return analysis.FormatPercent(r) }

// sig3 writes an evidence level with three significant digits; large
// e-values keep their exponent ("1.2e+05"), the point being their size.
func sig3(v float64) string { return strconv.FormatFloat(v, 'g', 3, 64) }
