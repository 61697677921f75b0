package slack

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/webhooks"
)

// worseErrorRate is a comparison that rolled the canary back.
var worseErrorRate = analysis.Check{
	Metric: "error-rate", Value: ptr(0.074), Samples: 540, Outcome: analysis.Fail,
	Message: "error-rate worse: canary 7.4% [5.1%, 10%] vs stable 0.5% [0.4%, 0.6%], ...",
	Compared: &analysis.Compared{
		Canary:      analysis.Side{Requests: 540, Bad: 40, Rate: 0.074, Low: 0.051, High: 0.103},
		Stable:      analysis.Side{Requests: 5400, Bad: 27, Rate: 0.005, Low: 0.004, High: 0.006},
		MaxIncrease: 0.01, Evidence: 312, RollbackAt: 100, Confidence: 0.99, Looks: 9,
	},
}

// noWorseLatency is a comparison that let the canary be promoted.
var noWorseLatency = analysis.Check{
	Metric: "latency", Value: ptr(0.02), Samples: 4000, Outcome: analysis.Pass,
	Compared: &analysis.Compared{
		Canary:      analysis.Side{Requests: 4000, Bad: 80, Rate: 0.02, Low: 0.014, High: 0.027},
		Stable:      analysis.Side{Requests: 36000, Bad: 700, Rate: 0.0194, Low: 0.017, High: 0.022},
		MaxIncrease: 0.02, Evidence: 0.031, RollbackAt: 200, Confidence: 0.995, Looks: 20,
		NoWorse: 41.5, PromoteAt: 20,
	},
}

func TestBlocksShowEachComparison(t *testing.T) {
	tests := []struct {
		name                 string
		n                    webhooks.Notification
		want, inText, absent []string
	}{
		{
			name: "a rollback shows both sides with bounds and the evidence at its level, in a block of their own",
			n: with(base("RolledBack"), func(n *webhooks.Notification) {
				n.Step, n.Weight = 1, 25
				n.Checks = []analysis.Check{worseErrorRate}
			}),
			want: []string{"*error-rate*: worse than stable",
				"*Canary*\n7.4% [5.1%, 10%] of 540 requests", "*Stable*\n0.5% [0.4%, 0.6%] of 5400 requests",
				"*Evidence*\n312 ≥ 100 (alpha 0.01)", "*Margin*\n+1 pt, 99% bounds, 9 looks"},
			// With no reason given, the fallback names the comparison's figures.
			inText: []string{"error-rate worse than stable: canary 7.4% [5.1%, 10%] of 540 requests vs stable 0.5% [0.4%, 0.6%] of 5400 requests, margin +1 pt, evidence 312 ≥ 100 (alpha 0.01)"},
			absent: []string{"threshold none", "*Checks*"},
		},
		{
			name: "a promotion shows the comparisons below their level beside the threshold checks",
			n: with(base("Promoted"), func(n *webhooks.Notification) {
				n.Step, n.Weight = 2, 50
				n.Checks = []analysis.Check{passingP99, noWorseLatency}
			}),
			want: []string{"Final checks", "latency-p99* 212.5 (threshold <= 500, 5120 samples)",
				"*latency*: no worse than stable", "*Canary*\n2.0% [1.4%, 2.7%] of 4000 requests",
				"*Evidence*\n0.031 < 200 (alpha 0.005), no worse 41.5 ≥ 20", "*Margin*\n+2 pt, 99.5% bounds, 20 looks"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, blocks := Blocks(tt.n)
			shown := rendered(t, blocks)
			plain := unescape(text)
			for _, w := range tt.want {
				if !strings.Contains(shown, w) {
					t.Errorf("blocks do not show %q; they read:\n%s", w, shown)
				}
			}
			for _, w := range tt.inText {
				if !strings.Contains(plain, w) {
					t.Errorf("fallback text %q does not say %q", plain, w)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(shown, a) {
					t.Errorf("blocks show %q:\n%s", a, shown)
				}
			}
			if err := withinLimits(blocks); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("the evidence's comparison sign reaches Slack escaped", func(t *testing.T) {
		_, blocks := Blocks(with(base("Promoted"), func(n *webhooks.Notification) { n.Checks = []analysis.Check{noWorseLatency} }))
		raw, err := json.Marshal(blocks)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(raw), `0.031 \u0026lt; 200`) {
			t.Errorf("evidence not escaped for mrkdwn:\n%s", raw)
		}
	})
	t.Run("many comparisons are counted, not dropped silently", func(t *testing.T) {
		n := base("RolledBack")
		for range 7 {
			n.Checks = append(n.Checks, worseErrorRate)
		}
		_, blocks := Blocks(n)
		if shown := rendered(t, blocks); !strings.Contains(shown, "…and 3 more comparisons") || strings.Count(shown, "*Evidence*") != maxComparisons {
			t.Errorf("7 comparisons, 4 shown: got:\n%s", shown)
		}
		if err := withinLimits(blocks); err != nil {
			t.Error(err)
		}
	})
}
