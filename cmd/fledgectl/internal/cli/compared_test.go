package cli

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

func comparisonCheck(outcome rolloutpb.Outcome, evidence float64) *rolloutpb.Check {
	return &rolloutpb.Check{
		Metric: "error-rate", Outcome: outcome, Samples: 540, Message: "error-rate worse: ...",
		Compared: &rolloutpb.Comparison{
			Canary:      &rolloutpb.ComparisonSide{Requests: 540, Bad: 40, Rate: 0.074, Low: 0.051, High: 0.103},
			Stable:      &rolloutpb.ComparisonSide{Requests: 5400, Bad: 27, Rate: 0.005, Low: 0.004, High: 0.006},
			MaxIncrease: 0.01, Evidence: evidence, RollbackAt: 100, Confidence: 0.99, Looks: 9,
		},
	}
}

func TestComparisonText(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check *rolloutpb.Check
		want  string
	}{
		{
			"a rolled back comparison shows its evidence at or above the level",
			comparisonCheck(rolloutpb.Outcome_OUTCOME_FAIL, 312),
			"error-rate  worse  canary 7.4% [5.1%, 10%] vs stable 0.5% [0.4%, 0.6%]  540 canary req  margin +1 pt  evidence 312 >= 100",
		},
		{
			"an undecided comparison shows its evidence below the level",
			comparisonCheck(rolloutpb.Outcome_OUTCOME_INCONCLUSIVE, 3.2),
			"error-rate  cannot tell yet  canary 7.4% [5.1%, 10%] vs stable 0.5% [0.4%, 0.6%]  540 canary req  margin +1 pt  evidence 3.2 < 100",
		},
		{
			"a comparison shown no worse says so",
			comparisonCheck(rolloutpb.Outcome_OUTCOME_PASS, 0.01),
			"error-rate  no worse  canary 7.4% [5.1%, 10%] vs stable 0.5% [0.4%, 0.6%]  540 canary req  margin +1 pt  evidence 0.01 < 100",
		},
		{
			"a relative margin shows as a ratio",
			func() *rolloutpb.Check {
				c := comparisonCheck(rolloutpb.Outcome_OUTCOME_PASS, 0.01)
				c.Compared.MaxIncrease, c.Compared.MaxRatio = 0, 2
				return c
			}(),
			"error-rate  no worse  canary 7.4% [5.1%, 10%] vs stable 0.5% [0.4%, 0.6%]  540 canary req  margin x2  evidence 0.01 < 100",
		},
		{
			"the evidence of no worse is set against the level that promotes",
			func() *rolloutpb.Check {
				c := comparisonCheck(rolloutpb.Outcome_OUTCOME_PASS, 0.01)
				c.Compared.NoWorse, c.Compared.PromoteAt = 25, 20
				return c
			}(),
			"error-rate  no worse  canary 7.4% [5.1%, 10%] vs stable 0.5% [0.4%, 0.6%]  540 canary req  margin +1 pt  evidence 0.01 < 100  no worse 25 >= 20",
		},
		{
			"a threshold check keeps its line",
			&rolloutpb.Check{Metric: "latency-p95", Threshold: "<= 500", Samples: 1200, Outcome: rolloutpb.Outcome_OUTCOME_PASS},
			"latency-p95 - (<= 500, 1200 samples) pass",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkText(tc.check); got != tc.want {
				t.Errorf("checkText:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestPct(t *testing.T) {
	for in, want := range map[float64]string{0: "0%", 0.074: "7.4%", 0.0052: "0.52%", 1: "100%", 0.103: "10%", 0.00001: "0.001%"} {
		if got := pct(in); got != want {
			t.Errorf("pct(%v) = %s, want %s", in, got, want)
		}
	}
}

// explain, status and -o json show a judged comparison from the server.
func TestComparisonsInExplainStatusAndJSON(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	h.backend.Update("prod", "shop", func(st *v1alpha1.FlightStatus) {
		rate := 0.074
		st.Decisions = append(st.Decisions, v1alpha1.DecisionRecord{Revision: "rev-b", Verdict: v1alpha1.VerdictRollback, Step: 1, Weight: 40, Message: "error-rate worse",
			Checks: []analysis.Check{{Metric: "error-rate", Value: &rate, Samples: 540, Outcome: analysis.Fail, Compared: &analysis.Compared{
				Canary:      analysis.Side{Requests: 540, Bad: 40, Rate: 0.074, Low: 0.051, High: 0.103},
				Stable:      analysis.Side{Requests: 5400, Bad: 27, Rate: 0.005, Low: 0.004, High: 0.006},
				MaxIncrease: 0.01, Evidence: 312, RollbackAt: 100, Confidence: 0.99, Looks: 9,
			}}}})
	})
	want := "error-rate  worse  canary 7.4% [5.1%, 10%] vs stable 0.5% [0.4%, 0.6%]  540 canary req  margin +1 pt  evidence 312 >= 100"
	for _, args := range [][]string{{"explain", "shop"}, {"status", "shop"}} {
		if r := h.run(ctx, args...); !strings.Contains(r.stdout, want) {
			t.Errorf("%s does not show the comparison:\n%s%s", strings.Join(args, " "), r.stdout, r.stderr)
		}
	}
	r := h.run(ctx, "explain", "shop", "-o", "json")
	var resp rolloutpb.ExplainResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatalf("explain -o json: %v\n%s", err, r.stdout)
	}
	ds := resp.GetDecisions()
	k := ds[len(ds)-1].GetChecks()[0].GetCompared()
	if k.GetEvidence() != 312 || k.GetRollbackAt() != 100 || k.GetCanary().GetRequests() != 540 || k.GetStable().GetHigh() != 0.006 {
		t.Errorf("explain -o json: compared %v", k)
	}
	if !strings.Contains(r.stdout, `"rollbackAt"`) || !strings.Contains(r.stdout, `"maxIncrease"`) {
		t.Errorf("explain -o json does not name the fields:\n%s", r.stdout)
	}
}
