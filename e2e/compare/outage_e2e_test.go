//go:build e2e

package compare_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// outagePolicy: two steps of 8 s, the error rate compared with stable
// every 2 s. Its alpha and margin are small so that the comparison
// cannot yet tell at its first look, when Prometheus is stopped (at alpha
// 0.01 and a 1-point margin, a canary 1.5 points worse could be shown
// worse within two looks, before the outage could begin), and can
// after it, on the evidence of both periods.
const outagePolicy = `
policies:
  outage:
    steps: [10, 50]
    interval: 8s
    minInterval: 1s
    lookInterval: 2s
    scrapeInterval: 1s  # the sandbox's Prometheus scrapes every second
    failureLimit: 2
    progressDeadline: 60s
    alpha: 0.0001
    metrics:
    - {name: error-rate, maxIncrease: 0.005}
`

const outageInterval = 8 * time.Second

// Prometheus stops while a canary (2.5% errors against stable's 1%) is
// being compared, before the comparison could tell. The rollout holds
// and says why (the looks cannot read the counters), judges nothing and
// keeps its evidence while Prometheus is down; once it is back, the
// evidence goes on from where it was (requests and looks only grow) and
// the canary is rolled back on the evidence of both periods.
//
// It stops the shared Prometheus: not parallel, so no other test runs
// meanwhile.
func TestAPrometheusOutageHoldsTheComparisonAndKeepsItsEvidence(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, outagePolicy)
	shopApp(t, sb, ns, "outage", 200, map[string]string{"sandbox.fledge.dev/error-rate": "0.01"})
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", map[string]string{"sandbox.fledge.dev/error-rate": "0.025"})

	// Stop Prometheus once the comparison has some evidence: a look
	// after the baseline that counted canary requests.
	f := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		ev := evidenceOf(f, analysis.ErrorRate)
		return f.Status.CanaryRevision == rev && (f.Status.Phase != v1alpha1.PhaseProgressing || ev != nil && ev.Looks >= 1 && ev.Canary.Requests > 0)
	})
	if f.Status.Phase != v1alpha1.PhaseProgressing {
		t.Fatalf("the rollout ended (%s: %s) before Prometheus could be stopped", f.Status.Phase, f.Status.Message)
	}
	restartPrometheus := sb.StopPrometheusForTest(t)
	stopped := time.Now()

	held := waitFlight(t, sb, ns, "shop", 3*outageInterval, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil || f.Status.Phase != v1alpha1.PhaseProgressing
	})
	h := held.Status.Hold
	if held.Status.Phase != v1alpha1.PhaseProgressing || h == nil || h.Reason != v1alpha1.HoldAnalysisError {
		t.Fatalf("with Prometheus down: phase=%s hold=%+v (%s), want held for %s", held.Status.Phase, h, held.Status.Message, v1alpha1.HoldAnalysisError)
	}
	if !strings.Contains(h.Message, "error-rate: cannot read") || !strings.Contains(h.Message, analysis.ErrUnreachable.Error()) {
		t.Errorf("hold message %q: want the comparison's counters unreadable, %q", h.Message, analysis.ErrUnreachable)
	}
	t.Logf("held %s after Prometheus stopped: %s", time.Since(stopped).Round(100*time.Millisecond), h.Message)
	before := *evidenceOf(held, analysis.ErrorRate)

	// Two more intervals: no move, no verdict, and the evidence neither
	// grows (nothing is read) nor is lost.
	still := watchStill(t, sb, ns, 2*outageInterval+2*time.Second, func(f *v1alpha1.Flight) string {
		ev := evidenceOf(f, analysis.ErrorRate)
		switch {
		case f.Status.Phase != v1alpha1.PhaseProgressing, f.Status.Step != held.Status.Step, f.Status.CanaryWeight != held.Status.CanaryWeight:
			return fmt.Sprintf("moved: phase=%s step=%d weight=%d (%s)", f.Status.Phase, f.Status.Step, f.Status.CanaryWeight, f.Status.Message)
		case f.Status.Hold == nil || f.Status.Hold.Reason != v1alpha1.HoldAnalysisError:
			return fmt.Sprintf("hold %+v, want %s", f.Status.Hold, v1alpha1.HoldAnalysisError)
		case ev == nil || ev.Looks != before.Looks || ev.Canary != before.Canary || ev.Stable != before.Stable:
			return fmt.Sprintf("evidence %+v, was %+v", ev, before)
		}
		return ""
	})
	for _, d := range still.Status.Decisions {
		if d.Revision == rev && d.At.After(stopped) && d.Verdict != v1alpha1.VerdictHold {
			t.Errorf("a %s decision while Prometheus was down: %s", d.Verdict, d.Message)
		}
	}
	holds := 0
	for _, d := range decisionsOf(still, rev, v1alpha1.VerdictHold) {
		if d.At.After(stopped) {
			holds += 1 + int(d.Repeats) // a hold judged again the same way is one record
			for _, c := range d.Checks {
				if c.Outcome != analysis.Error {
					t.Errorf("a hold while Prometheus was down judged %s: %s (%s)", c.Metric, c.Outcome, c.Message)
				}
			}
		}
	}
	if holds < 2 {
		t.Errorf("%d hold decisions over %s of outage, want one a round, at least 2", holds, time.Since(stopped).Round(time.Second))
	}

	restartPrometheus()
	restarted := time.Now()
	t.Logf("Prometheus back after %s; evidence before: %d looks, canary %.0f requests (%.0f bad), stable %.0f (%.0f bad)",
		time.Since(stopped).Round(100*time.Millisecond), before.Looks, before.Canary.Requests, before.Canary.Bad, before.Stable.Requests, before.Stable.Bad)
	// Every reading until the verdict: the evidence only grows.
	last, wentBack := before, ""
	f = waitFlight(t, sb, ns, "shop", 3*time.Minute, func(f *v1alpha1.Flight) bool {
		if ev := evidenceOf(f, analysis.ErrorRate); ev != nil && f.Status.CanaryRevision == rev {
			if wentBack == "" && (ev.Looks < last.Looks || ev.Canary.Requests < last.Canary.Requests || ev.Stable.Requests < last.Stable.Requests) {
				wentBack = fmt.Sprintf("%+v after %+v", *ev, last)
			}
			last = *ev
		}
		return f.Status.Phase.Terminal() && f.Status.CanaryRevision == rev
	})
	if wentBack != "" {
		t.Errorf("the evidence went back after the restart: %s", wentBack)
	}
	t.Logf("%s %s after the restart: %s", f.Status.Phase, time.Since(restarted).Round(100*time.Millisecond), f.Status.Message)
	if f.Status.Phase != v1alpha1.PhaseRolledBack {
		t.Fatalf("phase %s, want %s", f.Status.Phase, v1alpha1.PhaseRolledBack)
	}
	after := evidenceOf(f, analysis.ErrorRate)
	if after == nil || after.Looks <= before.Looks || after.Canary.Requests <= before.Canary.Requests {
		t.Fatalf("evidence at the rollback %+v, want more looks and requests than before the outage %+v", after, before)
	}
	t.Logf("evidence at the rollback: %d looks, canary %.0f requests (%.0f bad), stable %.0f (%.0f bad)",
		after.Looks, after.Canary.Requests, after.Canary.Bad, after.Stable.Requests, after.Stable.Bad)
	rollbacks := decisionsOf(f, rev, v1alpha1.VerdictRollback)
	if len(rollbacks) != 1 || !strings.Contains(rollbacks[0].Message, "error-rate worse") {
		t.Fatalf("rollback decisions %+v, want one, by the error-rate comparison", rollbacks)
	}
	for _, c := range rollbacks[0].Checks {
		if c.Metric == analysis.ErrorRate && (c.Compared == nil || c.Compared.Canary.Requests <= before.Canary.Requests) {
			t.Errorf("the rollback's comparison %+v: want it judged on the requests from before the outage and after", c.Compared)
		}
	}
	assertSettled(t, sb, ns)
}

// watchStill reads "shop"'s Flight four times a second for d and fails the
// test at the first reading moved says has moved; it returns the last.
func watchStill(t *testing.T, sb *sandbox.Sandbox, ns string, d time.Duration, moved func(*v1alpha1.Flight) string) *v1alpha1.Flight {
	t.Helper()
	var last *v1alpha1.Flight
	_ = wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, d, true, func(ctx context.Context) (bool, error) {
		f, err := getFlight(ctx, sb, ns, "shop")
		if err != nil {
			return false, nil
		}
		last = f
		if why := moved(f); why != "" {
			t.Fatalf("while Prometheus was down: %s", why)
		}
		return false, nil
	})
	if last == nil {
		t.Fatal("the Flight could not be read while Prometheus was down")
	}
	return last
}
