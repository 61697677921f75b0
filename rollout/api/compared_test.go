package api_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/api/apitest"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// A comparison's knowledge crosses the wire whole, in Explain and in Get's
// last decision, beside its message; a threshold check has none.
func TestComparedRoundTripsOverGRPC(t *testing.T) {
	f := newFixture(t, apitest.Options{})
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	rate := 0.3
	compared := &analysis.Compared{
		Canary:      analysis.Side{Requests: 40, Bad: 12, Rate: 0.3, Low: 0.14, High: 0.5},
		Stable:      analysis.Side{Requests: 360, Bad: 2, Rate: 0.0056, Low: 0.001, High: 0.021},
		MaxIncrease: 0.01, Evidence: 312, RollbackAt: 100, Confidence: 0.99, Looks: 4, NoWorse: 0.02, PromoteAt: 20,
	}
	f.backend.Update("prod", "shop", func(st *v1alpha1.FlightStatus) {
		st.Phase = v1alpha1.PhaseRolledBack
		st.Decisions = append(st.Decisions, v1alpha1.DecisionRecord{
			At: metav1.NewTime(at), Revision: "rev-b", Step: 1, Weight: 40, Verdict: v1alpha1.VerdictRollback, Message: "error-rate worse",
			Checks: []analysis.Check{
				{Metric: "error-rate", Value: &rate, Samples: 40, Outcome: analysis.Fail, Message: "error-rate worse: ...", Compared: compared, At: at},
				{Metric: "latency-p95", Threshold: "<= 500", Outcome: analysis.Pass, At: at},
			},
		})
	})
	want := &rolloutpb.Comparison{
		Canary:      &rolloutpb.ComparisonSide{Requests: 40, Bad: 12, Rate: 0.3, Low: 0.14, High: 0.5},
		Stable:      &rolloutpb.ComparisonSide{Requests: 360, Bad: 2, Rate: 0.0056, Low: 0.001, High: 0.021},
		MaxIncrease: 0.01, Evidence: 312, RollbackAt: 100, Confidence: 0.99, Looks: 4, NoWorse: 0.02, PromoteAt: 20,
	}

	explain, err := f.client.Explain(f.ctx, &rolloutpb.ExplainRequest{Namespace: "prod", Name: "shop", Revision: "rev-b"})
	if err != nil {
		t.Fatal(err)
	}
	ds := explain.GetDecisions()
	last := ds[len(ds)-1]
	if last.GetVerdict() != rolloutpb.Verdict_VERDICT_ROLLBACK || len(last.GetChecks()) != 2 {
		t.Fatalf("Explain's last decision: %v", last)
	}
	if diff := cmp.Diff(want, last.GetChecks()[0].GetCompared(), protocmp.Transform()); diff != "" {
		t.Errorf("Explain: error-rate's compared (-want +got):\n%s", diff)
	}
	if c := last.GetChecks()[1]; c.Compared != nil {
		t.Errorf("Explain: a threshold check carries a comparison: %v", c.Compared)
	}

	get, err := f.client.Get(f.ctx, &rolloutpb.GetRequest{Namespace: "prod", Name: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, get.GetFlight().GetLastDecision().GetChecks()[0].GetCompared(), protocmp.Transform()); diff != "" {
		t.Errorf("Get: last decision's compared (-want +got):\n%s", diff)
	}
}
