//go:build e2e

package compare_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/e2e/demo"
	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic/istio"
)

// comparedDemoPolicy is the demo's threshold policy (demo.ThresholdPolicy:
// steps 10/25/50 every 8 s, Slack) with its success-rate threshold
// replaced by the error-rate comparison, looked at every 2 s; the p95
// threshold stays. Only how errors are judged differs, so the benchmark
// below sets one beside the other.
const comparedDemoPolicy = `
slack: {secret: fledge-slack}
policies:
  demo:
    steps: [10, 25, 50]
    interval: 8s
    minInterval: 1s
    lookInterval: 2s
    scrapeInterval: 1s  # the sandbox's Prometheus scrapes every second
    failureLimit: 2
    progressDeadline: 2m
    metrics:
    - {name: error-rate, maxIncrease: 0.01}
    - name: latency-p95
      max: 150
      minSamples: 50
`

// faultyRPS and faultyErrorRate are the faulty canary's setting: 100
// requests a second, so about 10 a second reach the canary at its first
// step (10%), of which 10% fail; stable fails none.
const (
	faultyRPS       = 100
	faultyErrorRate = "0.1"
)

// exposure is what users saw of a faulty canary: the time from its first
// bad response until the routing sent it nothing, and the bad responses
// it served meanwhile (the emulator's ground truth, not Prometheus's).
type exposure struct {
	rev     string
	seconds float64
	bad     uint64
}

// faultyRollout rolls out a revision of "shop" that fails faultyErrorRate
// of its requests, waits until it is rejected, and returns what users
// were exposed to. The moment the canary gets nothing is found by polling
// the VirtualService, as the mesh reads it.
func faultyRollout(t testing.TB, sb *sandbox.Sandbox, ns, image string) exposure {
	t.Helper()
	router := istio.New(sb.Istio)
	var mu sync.Mutex
	var first time.Time
	var bad uint64
	stop := sb.Mesh.Observe(func(_ mesh.Request, resp mesh.Response) {
		if resp.Namespace != ns || resp.Workload != "shop-canary" || resp.Code < 500 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if first.IsZero() {
			first = time.Now()
		}
		bad++
	})
	defer stop()
	rev := setImage(t, sb, ns, "shop", image, map[string]string{"sandbox.fledge.dev/error-rate": faultyErrorRate})
	var zeroAt time.Time
	for deadline := time.Now().Add(3 * time.Minute); zeroAt.IsZero(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the faulty canary %s never went to 0%% within 3m", rev)
		}
		mu.Lock()
		started := !first.IsZero()
		mu.Unlock()
		if started {
			if w, err := router.Weights(context.Background(), shopTarget(ns)); err == nil && w.Canary == 0 {
				zeroAt = time.Now()
			}
		}
	}
	stop()
	waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.RejectedRevision == rev })
	mu.Lock()
	defer mu.Unlock()
	return exposure{rev: rev, seconds: zeroAt.Sub(first).Seconds(), bad: bad}
}

// A canary failing 10% of its requests at about 10 requests a second is
// rolled back by the error-rate comparison at a look, at once: no failed
// round is counted towards the failure limit, and the rollback's checks
// show the comparison failed with both sides read while the p95
// threshold did not fail.
func TestAFaultyCanaryIsRolledBackByTheComparison(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, comparedDemoPolicy)
	shopApp(t, sb, ns, "demo", faultyRPS, nil)
	x := faultyRollout(t, sb, ns, "example.com/shop:faulty")
	f, err := getFlight(context.Background(), sb, ns, "shop")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%.1fs from the first bad response to 0%%, %d bad responses served: %s", x.seconds, x.bad, f.Status.Message)
	if f.Status.Phase != v1alpha1.PhaseRolledBack {
		t.Fatalf("phase %s, want %s", f.Status.Phase, v1alpha1.PhaseRolledBack)
	}
	rollbacks := decisionsOf(f, x.rev, v1alpha1.VerdictRollback)
	if len(rollbacks) != 1 {
		t.Fatalf("%d rollback decisions for %s, want 1: %+v", len(rollbacks), x.rev, f.Status.Decisions)
	}
	if fails := decisionsOf(f, x.rev, v1alpha1.VerdictFail); len(fails) > 0 {
		t.Errorf("failed rounds before the rollback: %+v; want none: a comparison shown worse rolls back at once", fails)
	}
	d := rollbacks[0]
	if !strings.Contains(d.Message, "error-rate worse") || strings.Contains(d.Message, "failed checks") {
		t.Errorf("rollback message %q: want the error-rate comparison's, not the failure limit's", d.Message)
	}
	var compared bool
	for _, c := range d.Checks {
		switch {
		case c.Metric == analysis.ErrorRate:
			compared = c.Outcome == analysis.Fail && c.Reading != nil && c.Reading.Stable.Requests > 0 && c.Compared != nil
		case c.Outcome == analysis.Fail:
			t.Errorf("the rollback's %s check failed too: %+v", c.Metric, c)
		}
	}
	if !compared {
		t.Errorf("the rollback's checks %+v: want the error-rate comparison failed, with both sides read", d.Checks)
	}
	assertSettled(t, sb, ns)
}

// BenchmarkFaultyCanaryTimeToZeroByPolicy measures, for the demo's
// threshold policy and for the same steps judged by the error-rate
// comparison, how long users are exposed to a canary failing 10% of its
// requests at 100 requests a second: seconds from its first bad response
// to 0% canary weight, and the bad responses served in that time. Each
// iteration is one faulty rollout; make bench runs 3.
func BenchmarkFaultyCanaryTimeToZeroByPolicy(b *testing.B) {
	for _, p := range []struct{ name, policies string }{
		{"threshold", demo.ThresholdPolicy},
		{"comparison", comparedDemoPolicy},
	} {
		b.Run(p.name, func(b *testing.B) {
			sb, ns := suite.Namespace(b)
			startEngine(b, sb, ns, p.policies)
			shopApp(b, sb, ns, "demo", faultyRPS, nil)
			var seconds, bad float64
			n := 0
			for b.Loop() {
				n++
				x := faultyRollout(b, sb, ns, fmt.Sprintf("example.com/shop:faulty-%d", n))
				seconds += x.seconds
				bad += float64(x.bad)
			}
			b.ReportMetric(seconds/float64(n), "s-first-bad-to-0%")
			b.ReportMetric(bad/float64(n), "bad-responses")
		})
	}
}
