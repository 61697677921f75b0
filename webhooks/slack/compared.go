package slack

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/slack-go/slack"

	"github.com/fledgehq/fledge/analysis"
)

// maxComparisons is how many comparisons get a block each; the rest are
// counted. Policies rarely hold more than two (error rate and latency).
const maxComparisons = 4

// splitComparisons parts the judged comparisons, which get blocks of
// their own, from the other checks, which are listed.
func splitComparisons(checks []analysis.Check) (listed, compared []analysis.Check) {
	for _, c := range checks {
		if c.Compared != nil {
			compared = append(compared, c)
		} else {
			listed = append(listed, c)
		}
	}
	return listed, compared
}

// comparisonBlocks gives each comparison a section whose fields are both
// sides with their bounds, the evidence against the level that rolls back,
// and the margin: what a person needs to see why the canary was judged
// as it was, without reading the sentence.
func comparisonBlocks(checks []analysis.Check) []slack.Block {
	var blocks []slack.Block
	for _, c := range checks[:min(len(checks), maxComparisons)] {
		k := c.Compared
		against := k.AgainstName()
		head := "*" + esc(orNone(c.Metric), 64) + "*: " + comparisonVerdict(c.Outcome, against)
		// Numbers only, yet escaped all the same: "<" has a meaning in mrkdwn.
		fields := []*slack.TextBlockObject{
			mrkdwn(field("Canary", formatSide(k.Canary))),
			mrkdwn(field(strings.ToUpper(against[:1])+against[1:], formatSide(k.Stable))),
			mrkdwn(field("Evidence", formatEvidence(k))),
			mrkdwn(field("Margin", fmt.Sprintf("%s, %s%% bounds, %d looks", analysis.FormatMargin(k.MaxIncrease, k.MaxRatio),
				strconv.FormatFloat(100*k.Confidence, 'g', 4, 64), k.Looks))),
		}
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn(head), fields, nil))
	}
	if extra := len(checks) - maxComparisons; extra > 0 {
		blocks = append(blocks, slack.NewContextBlock("", mrkdwn(fmt.Sprintf("…and %d more comparisons", extra))))
	}
	return blocks
}

// comparisonVerdict says what a comparison's outcome means against stable.
func comparisonVerdict(o analysis.Outcome, against string) string {
	switch o {
	case analysis.Fail:
		return "worse than " + against
	case analysis.Pass:
		return "no worse than " + against
	case analysis.Inconclusive:
		return "cannot tell yet"
	}
	return string(o)
}

// formatSide is one side: "7.4% [5.1%, 10%] of 540 requests".
func formatSide(s analysis.Side) string {
	return fmt.Sprintf("%s [%s, %s] of %.0f requests", analysis.FormatPercent(s.Rate), analysis.FormatPercent(s.Low), analysis.FormatPercent(s.High), s.Requests)
}

// formatEvidence sets the evidence against its level: "312 ≥ 100 (alpha
// 0.01)" once it rolls back, "3.2 < 100 (alpha 0.01)" before; then the
// evidence of no worse against the level that promotes, when known
// (", no worse 25 ≥ 20").
func formatEvidence(k *analysis.Compared) string {
	rel := "<"
	if k.Evidence >= k.RollbackAt {
		rel = "≥"
	}
	out := fmt.Sprintf("%s %s %s (alpha %s)", strconv.FormatFloat(k.Evidence, 'g', 3, 64), rel,
		strconv.FormatFloat(k.RollbackAt, 'g', 3, 64), strconv.FormatFloat(1-k.Confidence, 'g', 2, 64))
	if k.PromoteAt > 0 {
		rel := "<"
		if k.NoWorse >= k.PromoteAt {
			rel = "≥"
		}
		out += fmt.Sprintf(", no worse %s %s %s", strconv.FormatFloat(k.NoWorse, 'g', 3, 64), rel, strconv.FormatFloat(k.PromoteAt, 'g', 3, 64))
	}
	return out
}

// formatComparison is a comparison on one line, for the fallback text and
// where a check is named in a sentence: "worse than stable: canary 7.4%
// [5.1%, 10%] of 540 requests vs stable 0.5% [0.4%, 0.6%] of 5400
// requests, margin +1 pt, evidence 312 ≥ 100 (alpha 0.01)".
func formatComparison(c analysis.Check) string {
	k := c.Compared
	return fmt.Sprintf("%s: canary %s vs %s %s, margin %s, evidence %s", comparisonVerdict(c.Outcome, k.AgainstName()),
		formatSide(k.Canary), k.AgainstName(), formatSide(k.Stable), analysis.FormatMargin(k.MaxIncrease, k.MaxRatio), formatEvidence(k))
}
