package engine

import (
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/analysis/sequential"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

func TestComparisonMetricsFollowTheEvidence(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	// Two comparisons share alpha 0.01: each rolls back at 200.
	p := &rollout.Policy{Alpha: 0.01, Metrics: []analysis.Metric{
		{Name: analysis.ErrorRate, Compare: &analysis.Comparison{MaxIncrease: 0.01}},
		{Name: analysis.Latency, Compare: &analysis.Comparison{MaxIncrease: 0.02, SlowerThanMs: 500}},
	}}
	var worse sequential.Worse
	look := sequential.Look{CanaryRequests: 400, CanaryBad: 40, StableRequests: 4000, StableBad: 20}
	if err := worse.Observe(look, 0); err != nil {
		t.Fatal(err)
	}
	f := &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}}
	f.Status.Evidence = []v1alpha1.Evidence{
		{Metric: analysis.ErrorRate, Canary: sequential.Counts{Requests: 400, Bad: 40}, Stable: sequential.Counts{Requests: 4000, Bad: 20}, Worse: worse, Looks: 1, NoWorse: sequential.Promotion{LogE: math.Log(4), Margin: 0.01}},
		{Metric: analysis.Latency, Canary: sequential.Counts{Requests: 400, Bad: 4}, Stable: sequential.Counts{Requests: 4000, Bad: 40}, Looks: 1},
	}
	m.observe(f, p)

	c := &m.comparison
	for _, tc := range []struct {
		name string
		got  float64
		want float64
	}{
		{"error-rate's evidence", testutil.ToFloat64(c.evidence.WithLabelValues("shop", "cart", "error-rate")), worse.E()},
		{"latency's evidence (none yet)", testutil.ToFloat64(c.evidence.WithLabelValues("shop", "cart", "latency")), 1},
		{"error-rate's evidence of no worse", testutil.ToFloat64(c.noWorse.WithLabelValues("shop", "cart", "error-rate")), 4},
		{"error-rate's rollback level", testutil.ToFloat64(c.rollbackAt.WithLabelValues("shop", "cart", "error-rate")), 200},
		{"the canary's bad ratio", testutil.ToFloat64(c.badRatio.WithLabelValues("shop", "cart", "error-rate", "canary")), 0.1},
		{"stable's bad ratio", testutil.ToFloat64(c.badRatio.WithLabelValues("shop", "cart", "error-rate", "stable")), 0.005},
		{"the canary's requests", testutil.ToFloat64(c.requests.WithLabelValues("shop", "cart", "latency", "canary")), 400},
		{"stable's requests", testutil.ToFloat64(c.requests.WithLabelValues("shop", "cart", "latency", "stable")), 4000},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if worse.E() <= 1 {
		t.Fatalf("a canary at 10%% against 0.5%% should have evidence above 1, has %v", worse.E())
	}
	problems, err := testutil.GatherAndLint(reg, "fledge_comparison_evidence", "fledge_comparison_rollback_at", "fledge_comparison_no_worse", "fledge_comparison_bad_ratio", "fledge_comparison_requests")
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}

	// A comparison that leaves the evidence loses its series; the other's stay.
	f.Status.Evidence = f.Status.Evidence[:1]
	m.observe(f, p)
	if n := testutil.CollectAndCount(c.requests); n != 2 {
		t.Errorf("%d request series after latency left the evidence, want error-rate's 2", n)
	}
	if n := testutil.CollectAndCount(c.evidence); n != 1 {
		t.Errorf("%d evidence series, want 1", n)
	}

	// A new revision clears the evidence: no series is left behind.
	f.Status.Evidence = nil
	m.observe(f, p)
	if n := series(c); n != 0 {
		t.Errorf("%d series left after the evidence was cleared", n)
	}

	// A deleted Flight is forgotten.
	f.Status.Evidence = []v1alpha1.Evidence{{Metric: analysis.ErrorRate, Canary: sequential.Counts{Requests: 1}}}
	m.observe(f, p)
	m.forget("shop", "cart")
	if n := series(c); n != 0 {
		t.Errorf("%d series left after the Flight was forgotten", n)
	}
}

func series(c *comparisonMetrics) int {
	return testutil.CollectAndCount(c.evidence) + testutil.CollectAndCount(c.rollbackAt) + testutil.CollectAndCount(c.noWorse) + testutil.CollectAndCount(c.badRatio) + testutil.CollectAndCount(c.requests)
}
