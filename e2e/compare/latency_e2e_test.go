//go:build e2e

package compare_test

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// tailPolicy judges errors and the share of requests slower than 250 ms
// (a bound of Istio's default buckets) against stable, every 2 s.
const tailPolicy = `
policies:
  tail:
    steps: [10, 25, 50]
    interval: 10s
    minInterval: 1s
    lookInterval: 2s
    scrapeInterval: 1s  # the sandbox's Prometheus scrapes every second
    failureLimit: 2
    progressDeadline: 60s
    metrics:
    - {name: error-rate, maxIncrease: 0.01}
    - {name: latency, slowerThan: 250ms, maxIncrease: 0.01}
`

// Stable answers with a median of 20 ms and a p99 of 200 ms (0.6% of its
// requests slower than 250 ms). A revision with the same median and a
// tail three times longer (a p99 of 600 ms: 4.2% slower than 250 ms) is
// rolled back by the latency comparison, and by it alone. Prometheus,
// over Istio's histogram, sees both sides' p50 alike and the canary's p99
// far above stable's.
func TestATailLatencyRegressionIsRolledBackByTheLatencyComparison(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, tailPolicy)
	shopApp(t, sb, ns, "tail", 300, map[string]string{"sandbox.fledge.dev/latency-ms": "p50=20,p99=200"})
	began := time.Now()
	rev := setImage(t, sb, ns, "shop", "example.com/shop:slow-tail", map[string]string{"sandbox.fledge.dev/latency-ms": "p50=20,p99=600"})
	f := waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase.Terminal() && f.Status.CanaryRevision == rev
	})
	t.Logf("%s in %s: %s", f.Status.Phase, time.Since(began).Round(100*time.Millisecond), f.Status.Message)
	if f.Status.Phase != v1alpha1.PhaseRolledBack {
		t.Fatalf("phase %s, want %s by the latency comparison", f.Status.Phase, v1alpha1.PhaseRolledBack)
	}
	rollbacks := decisionsOf(f, rev, v1alpha1.VerdictRollback)
	if len(rollbacks) != 1 {
		t.Fatalf("%d rollback decisions, want 1: %+v", len(rollbacks), f.Status.Decisions)
	}
	d := rollbacks[0]
	if !strings.Contains(d.Message, "latency worse") {
		t.Errorf("rollback message %q: want the latency comparison's", d.Message)
	}
	var latencyFailed bool
	for _, c := range d.Checks {
		switch {
		case c.Metric == analysis.Latency:
			latencyFailed = c.Outcome == analysis.Fail && c.Compared != nil && c.Compared.Stable.Requests > 0
			if c.Compared != nil {
				t.Logf("latency: canary %.2f%% of %.0f requests slower than 250 ms, stable %.3f%% of %.0f",
					100*c.Compared.Canary.Rate, c.Compared.Canary.Requests, 100*c.Compared.Stable.Rate, c.Compared.Stable.Requests)
			}
		case c.Outcome == analysis.Fail:
			t.Errorf("the rollback's %s check failed too: %+v", c.Metric, c)
		}
	}
	if !latencyFailed {
		t.Errorf("the rollback's checks %+v: want the latency comparison failed, with both sides read", d.Checks)
	}

	// What Prometheus saw of each side over the canary's life. The
	// canary's median rests on its few hundred requests: "unchanged" is
	// within three standard errors of the two estimates.
	p50 := quantiles(t, sb, ns, 0.5)
	p99 := quantiles(t, sb, ns, 0.99)
	tolerance := 3 * math.Hypot(medianError(t, sb, ns, "shop"), medianError(t, sb, ns, "shop-canary"))
	t.Logf("from Prometheus: p50 stable %.1f ms, canary %.1f ms (tolerance %.1f ms); p99 stable %.0f ms, canary %.0f ms",
		p50["shop"], p50["shop-canary"], tolerance, p99["shop"], p99["shop-canary"])
	if math.Abs(p50["shop-canary"]-p50["shop"]) > tolerance {
		t.Errorf("p50 stable %.1f ms, canary %.1f ms: want the median unchanged (within %.1f ms)", p50["shop"], p50["shop-canary"], tolerance)
	}
	// The canary's p99 rests on its slowest one or two of about a hundred
	// requests: three times stable's in truth, at least 1.5 times here.
	if p99["shop-canary"] < 1.5*p99["shop"] {
		t.Errorf("p99 stable %.0f ms, canary %.0f ms: want the canary's tail at least 1.5 times stable's", p99["shop"], p99["shop-canary"])
	}
	assertSettled(t, sb, ns)
}

// quantiles reads a quantile of each of "shop"'s workloads' request
// durations from Istio's histogram, as Prometheus interpolates it within a
// bucket: from the raw cumulative counters, the canary's whole life (its
// series are new in this test's namespace). increase() over a window
// would lose each new series' first scrape, most of a canary rolled back
// within seconds.
func quantiles(t *testing.T, sb *sandbox.Sandbox, ns string, q float64) map[string]float64 {
	t.Helper()
	query := fmt.Sprintf(`histogram_quantile(%g, sum by (le, destination_workload) (istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace=%q}))`, q, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := sb.QueryVector(ctx, query, "destination_workload")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"shop", "shop-canary"} {
		if _, ok := got[w]; !ok {
			t.Fatalf("%s: no %s in %v", query, w, got)
		}
	}
	return got
}

// medianError is the standard error, in milliseconds, of the median
// Prometheus estimates from a workload's n requests: the
// share below the median has a standard error of sqrt(0.25/n), which the
// density of the bucket holding the median turns into milliseconds.
func medianError(t *testing.T, sb *sandbox.Sandbox, ns, workload string) float64 {
	t.Helper()
	query := fmt.Sprintf(`sum by (le) (istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload_namespace=%q,destination_workload=%q})`, ns, workload)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	byLe, err := sb.QueryVector(ctx, query, "le")
	if err != nil {
		t.Fatal(err)
	}
	n := byLe["+Inf"]
	if n == 0 {
		t.Fatalf("%s: no requests", query)
	}
	type bucket struct{ le, count float64 }
	var buckets []bucket
	for le, count := range byLe {
		b, err := strconv.ParseFloat(le, 64)
		if err != nil {
			t.Fatalf("%s: le %q: %v", query, le, err)
		}
		buckets = append(buckets, bucket{b, count})
	}
	slices.SortFunc(buckets, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	lower, below := 0.0, 0.0
	for _, b := range buckets {
		share := b.count / n
		if share >= 0.5 && !math.IsInf(b.le, 0) {
			density := (share - below) / (b.le - lower)
			return math.Sqrt(0.25/n) / density
		}
		lower, below = b.le, share
	}
	t.Fatalf("%s: no bucket holds the median: %v", query, byLe)
	return 0
}
