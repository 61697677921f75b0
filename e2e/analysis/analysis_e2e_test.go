//go:build e2e

package analysis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fledgehq/fledge/analysis"
)

// Tests that share the sandbox's Prometheus in the steady state run in
// parallel; the outage test does not call t.Parallel, so it runs, and
// restarts Prometheus, before any of them starts.

func TestSuccessRateFailsAFaultyRevisionAndPassesAHealthyOne(t *testing.T) {
	t.Parallel()
	sb, ns := suite.Namespace(t)
	revision(t, sb, ns, "shop", nil)
	revision(t, sb, ns, "shop-canary", map[string]string{"sandbox.fledge.dev/error-rate": "0.1"})
	revision(t, sb, ns, "shop-broken", map[string]string{"sandbox.fledge.dev/error-rate": "1"})
	for _, host := range []string{"shop", "shop-canary", "shop-broken"} {
		traffic(t, sb, ns, host, 200)
	}
	q := prometheus(t, sb)
	// With 1500 requests, the measured error rate of a 10% revision is
	// within 0.1 ± 0.035 but once in 10^5 runs (4.5 standard deviations).
	successRate := analysis.Metric{Name: analysis.SuccessRate, Min: new(0.99), MinSamples: 1500, Interval: interval}

	faulty := judged(t, q, successRate, analysis.Vars{Namespace: ns, Workload: "shop-canary"})
	wantOutcome(t, "success rate of the revision with 10% errors", faulty, analysis.Fail)
	within(t, "success rate of the revision with 10% errors", faulty, 0.865, 0.935)
	if faulty.Message == "" || faulty.Threshold != ">= 0.99" || faulty.Samples < 1500 {
		t.Errorf("the failed check does not say why: %s", describe(faulty))
	}
	if want := `destination_workload="shop-canary"`; !strings.Contains(faulty.Query, want) {
		t.Errorf("the recorded query %q does not select %s", faulty.Query, want)
	}

	healthy := judged(t, q, successRate, analysis.Vars{Namespace: ns, Workload: "shop"})
	wantOutcome(t, "success rate of the healthy revision", healthy, analysis.Pass)
	within(t, "success rate of the healthy revision", healthy, 1, 1)

	// Every request failed: there is no successful series at all, and that
	// must read as 0, a failure, not as no data.
	broken := judged(t, q, successRate, analysis.Vars{Namespace: ns, Workload: "shop-broken"})
	wantOutcome(t, "success rate of the revision that fails every request", broken, analysis.Fail)
	within(t, "success rate of the revision that fails every request", broken, 0, 0)

	// A rate reads low until its window is full of traffic, so this check
	// asks for 90% of a full window's requests first: the job MinSamples
	// does for a canary that just started.
	rate := judged(t, q, analysis.Metric{Name: analysis.RequestRate, Min: new(100.0), MinSamples: 1800, Interval: interval},
		analysis.Vars{Namespace: ns, Workload: "shop"})
	wantOutcome(t, "request rate of the healthy revision", rate, analysis.Pass)
	within(t, "request rate of the healthy revision (200 requests per second)", rate, 150, 250)
}

func TestLatencyFailsASlowRevisionAndPassesAFastOne(t *testing.T) {
	t.Parallel()
	sb, ns := suite.Namespace(t)
	revision(t, sb, ns, "api", nil) // the emulator's default: p50 5 ms, p95 20 ms
	revision(t, sb, ns, "api-canary", map[string]string{"sandbox.fledge.dev/latency-ms": "p50=150,p95=400"})
	traffic(t, sb, ns, "api", 200)
	traffic(t, sb, ns, "api-canary", 200)
	q := prometheus(t, sb)
	p95 := analysis.Metric{Name: analysis.LatencyP95, Max: new(200.0), MinSamples: 500, Interval: interval}

	slow := judged(t, q, p95, analysis.Vars{Namespace: ns, Workload: "api-canary"})
	wantOutcome(t, "p95 of the slow revision", slow, analysis.Fail)
	// Istio's buckets around 400 ms are (250, 500]: the quantile is
	// interpolated inside that bucket.
	within(t, "p95 of the slow revision", slow, 250, 500)
	if slow.Threshold != "<= 200" || !strings.Contains(slow.Message, "above the maximum of 200") {
		t.Errorf("the failed check does not say why: %s", describe(slow))
	}

	fast := judged(t, q, p95, analysis.Vars{Namespace: ns, Workload: "api"})
	wantOutcome(t, "p95 of the fast revision", fast, analysis.Pass)
	within(t, "p95 of the fast revision", fast, 10, 50)
}

// A workload nobody calls has no Istio series at all. That is "cannot
// measure", whatever the metric and whatever minimum of samples, and it is
// never a pass.
func TestNoTrafficIsNeverAPass(t *testing.T) {
	t.Parallel()
	sb, ns := suite.Namespace(t)
	revision(t, sb, ns, "idle", nil)
	q := prometheus(t, sb)
	vars := analysis.Vars{Namespace: ns, Workload: "idle"}

	for _, name := range analysis.Builtins() {
		withMinimum := analysis.Metric{Name: name, Min: new(0.0), MinSamples: 1, Interval: interval}
		c := analysis.Evaluate(context.Background(), q, withMinimum, vars, time.Now())
		want := analysis.Check{
			Metric: name, Query: c.Query, Threshold: ">= 0", Samples: 0, Outcome: analysis.NotEnoughData,
			Message: "0 requests served by the canary in the last 10s, fewer than the 1 required", At: c.At,
		}
		if diff := cmp.Diff(want, c); diff != "" {
			t.Errorf("%s with a minimum of 1 sample and no traffic: want not enough data, with no value (-want +got):\n%s", name, diff)
		}

		// Without a minimum of samples, the value query finds nothing.
		withoutMinimum := withMinimum
		withoutMinimum.MinSamples = 0
		c = analysis.Evaluate(context.Background(), q, withoutMinimum, vars, time.Now())
		if c.Outcome != analysis.Error || c.Value != nil || !strings.Contains(c.Message, "no data") {
			t.Errorf("%s with no minimum of samples and no traffic: %s; want an error saying there is no data", name, describe(c))
		}
	}
}

func TestCustomMetricWithVariables(t *testing.T) {
	t.Parallel()
	sb, ns := suite.Namespace(t)
	// The traffic model of DESIGN.md: the user's Service "cart" is the
	// stable revision, fledge's "cart-canary" the canary, and the
	// VirtualService for the host clients call splits between them.
	revision(t, sb, ns, "cart", nil)
	revision(t, sb, ns, "cart-canary", nil)
	split(t, sb, ns, "cart", map[string]int32{"cart": 80, "cart-canary": 20})
	traffic(t, sb, ns, "cart", 300)
	q := prometheus(t, sb)

	const served = `sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace={{ .Namespace }},destination_workload=%s}[{{ .Interval }}]))`
	share := analysis.Metric{
		Name: "canary-share",
		Query: strings.ReplaceAll(served, "%s", "{{ .Workload }}") + " / (" +
			strings.ReplaceAll(served, "%s", "{{ .Workload }}") + " + " + strings.ReplaceAll(served, "%s", "{{ .StableWorkload }}") + ")",
		SamplesQuery: `(sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace={{ .Namespace }},destination_workload={{ .Workload }}}[{{ .Interval }}])) or vector(0))` +
			` + (sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace={{ .Namespace }},destination_workload={{ .StableWorkload }}}[{{ .Interval }}])) or vector(0))`,
		Min: new(0.1), Max: new(0.3), MinSamples: 2000, Interval: interval,
	}
	vars := analysis.Vars{Namespace: ns, Workload: "cart-canary", StableWorkload: "cart", Service: "cart"}
	c := judged(t, q, share, vars)
	wantOutcome(t, "the canary's share of the host's requests", c, analysis.Pass)
	within(t, "the canary's share of the host's requests (weight 20)", c, 0.15, 0.25)
	if c.Threshold != ">= 0.1 and <= 0.3" || c.Samples < 2000 {
		t.Errorf("check recorded as %s", describe(c))
	}
	for _, want := range []string{`destination_workload_namespace="` + ns + `"`, `destination_workload="cart-canary"`, `destination_workload="cart"`, "[10s]"} {
		if !strings.Contains(c.Query, want) {
			t.Errorf("the recorded query %q lacks %s", c.Query, want)
		}
	}

	// Both revisions have traffic in the window now: a query that forgot
	// to aggregate returns two series, which is no single value to judge.
	perWorkload := analysis.Metric{
		Name:     "per-workload",
		Query:    `sum by (destination_workload) (rate(istio_requests_total{reporter="destination",destination_workload_namespace={{ .Namespace }}}[{{ .Interval }}]))`,
		Max:      new(1000.0),
		Interval: interval,
	}
	c = analysis.Evaluate(context.Background(), q, perWorkload, vars, time.Now())
	t.Logf("%s: %s", perWorkload.Name, describe(c))
	if c.Outcome != analysis.Error || c.Value != nil || !strings.Contains(c.Message, "more than one series: 2 series") {
		t.Errorf("a query returning two series: %s; want an error naming them", describe(c))
	}
}

// Prometheus down is "cannot measure": an Error that says Prometheus
// cannot be reached, never a verdict on the canary.
func TestPrometheusOutageIsAnErrorNotAVerdict(t *testing.T) {
	sb, ns := suite.Namespace(t)
	revision(t, sb, ns, "web", nil)
	traffic(t, sb, ns, "web", 200)
	q := prometheus(t, sb)
	m := analysis.Metric{Name: analysis.SuccessRate, Min: new(0.99), MinSamples: 200, Interval: interval}
	vars := analysis.Vars{Namespace: ns, Workload: "web"}
	wantOutcome(t, "before the outage", judged(t, q, m, vars), analysis.Pass)

	restart := sb.StopPrometheusForTest(t)

	c := analysis.Evaluate(context.Background(), q, m, vars, time.Now())
	t.Logf("during the outage: %s", describe(c))
	if c.Outcome != analysis.Error || c.Value != nil || !strings.Contains(c.Message, "prometheus cannot be reached") ||
		!strings.Contains(c.Message, sb.PrometheusURL) {
		t.Errorf("during the outage: %s; want an error saying the Prometheus at %s cannot be reached", describe(c), sb.PrometheusURL)
	}

	restart()
	wantOutcome(t, "after the outage", judged(t, q, m, vars), analysis.Pass)
}
