//go:build e2e

package rollout_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// Prometheus going away is not the canary's fault: the rollout holds at
// its weight, says why, counts no failure, and carries on when Prometheus
// is back.
func TestPrometheusOutageHoldsTheRolloutAndNeverRollsItBack(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, engineOptions{Policies: resiliencePolicies})
	shopApp(t, sb, ns, "brief", 200)
	history := recordCanaryWeights(t, sb, ns, "shop", "shop-canary")
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)

	before := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && (f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.Step >= 0)
	})
	if before.Status.Phase != v1alpha1.PhaseProgressing || before.Status.Step != 0 {
		t.Fatalf("wanted the canary at its first step, found phase=%s step=%d", before.Status.Phase, before.Status.Step)
	}
	restartPrometheus := sb.StopPrometheusForTest(t)
	stopped := time.Now()

	held := waitFlight(t, sb, ns, "shop", 3*resilienceInterval, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil || f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.Step != 0
	})
	if h := held.Status.Hold; h == nil || h.Reason != v1alpha1.HoldAnalysisError {
		t.Fatalf("with Prometheus down: phase=%s step=%d hold=%+v, want held for %s", held.Status.Phase, held.Status.Step, h, v1alpha1.HoldAnalysisError)
	}
	t.Logf("held %s after Prometheus stopped: %s", time.Since(stopped).Round(100*time.Millisecond), held.Status.Hold.Message)
	cond := meta.FindStatusCondition(held.Status.Conditions, "Held")
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != v1alpha1.HoldAnalysisError ||
		!strings.Contains(cond.Message, analysis.ErrUnreachable.Error()) {
		t.Errorf("Held condition %+v, want True, %s, saying %q", cond, v1alpha1.HoldAnalysisError, analysis.ErrUnreachable)
	}

	// Two more intervals (and 2 s to spare for the second one's
	// judgement), looked at four times a second: the weight, the step and
	// the failure count must not move.
	holdFor := 2*resilienceInterval + 2*time.Second
	f := watchStill(t, sb, ns, holdFor, func(f *v1alpha1.Flight) string {
		switch {
		case f.Status.Phase != v1alpha1.PhaseProgressing, f.Status.Step != 0, f.Status.CanaryWeight != before.Status.CanaryWeight:
			return fmt.Sprintf("moved: phase=%s step=%d weight=%d", f.Status.Phase, f.Status.Step, f.Status.CanaryWeight)
		case f.Status.FailedChecks != before.Status.FailedChecks:
			return fmt.Sprintf("failed checks %d, was %d", f.Status.FailedChecks, before.Status.FailedChecks)
		case f.Status.Hold == nil || f.Status.Hold.Reason != v1alpha1.HoldAnalysisError:
			return fmt.Sprintf("hold %+v, want %s", f.Status.Hold, v1alpha1.HoldAnalysisError)
		}
		return ""
	})
	// Each interval was judged again, and each time it could not measure.
	errorHolds := 0
	for _, d := range f.Status.Decisions {
		if d.Revision == rev && d.Verdict == v1alpha1.VerdictHold && allChecks(d.Checks, analysis.Error) {
			errorHolds += 1 + int(d.Repeats) // a hold judged again the same way is one record
		}
	}
	if errorHolds < 3 {
		t.Errorf("%d hold verdicts with failed measurements over %s of outage, want at least 3 (one an interval)", errorHolds, time.Since(stopped).Round(time.Second))
	}
	// ... but on-call hears of the hold once, not once an interval.
	if n := heldEvents(t, sb, ns, v1alpha1.HoldAnalysisError); n != 1 {
		t.Errorf("%d Held events for %s over %d holds, want 1", n, v1alpha1.HoldAnalysisError, errorHolds)
	}

	restartPrometheus()
	back := time.Now()
	t.Logf("Prometheus back after %s", back.Sub(stopped).Round(100*time.Millisecond))
	f = waitPromoted(t, sb, ns, rev)
	if f.Status.FailedChecks != 0 {
		t.Errorf("%d failed checks counted against a healthy canary", f.Status.FailedChecks)
	}
	if resumed, ok := firstVerdictAt(f, rev, v1alpha1.VerdictAdvance); ok {
		// Right after its restart Prometheus may hold too little of the
		// interval to count samples: a not-enough-data hold is expected
		// then, and says so.
		var after []string
		for _, d := range f.Status.Decisions {
			if d.Revision == rev && d.Verdict == v1alpha1.VerdictHold && d.At.After(back) && len(d.Checks) > 0 {
				after = append(after, string(d.Checks[0].Outcome))
			}
		}
		t.Logf("held for %s in all (%d holds with Prometheus down); advanced %s after Prometheus came back, after holds %v",
			resumed.Sub(held.Status.Hold.Since.Time).Round(100*time.Millisecond), errorHolds, resumed.Sub(back).Round(100*time.Millisecond), after)
	}
	holds, judged := withoutHolds(verdicts(f, rev))
	want := []v1alpha1.Verdict{v1alpha1.VerdictStart, v1alpha1.VerdictAdvance, v1alpha1.VerdictPromote, v1alpha1.VerdictPromoted}
	if !slices.Equal(judged, want) {
		t.Errorf("decision log for %s: %v, want %v (%d holds aside)", rev, judged, want, holds)
	}
	history.Want(t, sb, ns, "shop", 0, 20, 50, 100, 0)
	assertSettled(t, sb, ns)
}

// A canary nobody calls cannot be judged: the rollout holds at the first
// step, for as long as it takes, and moves on once traffic comes.
func TestCanaryWithoutTrafficHoldsUntilItCanBeMeasured(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, engineOptions{Policies: resiliencePolicies})
	shopApp(t, sb, ns, "brief", 0)
	history := recordCanaryWeights(t, sb, ns, "shop", "shop-canary")
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)

	held := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && (f.Status.Phase != v1alpha1.PhaseProgressing ||
			f.Status.Hold != nil && f.Status.Hold.Reason != v1alpha1.HoldCanaryNotReady)
	})
	if h := held.Status.Hold; held.Status.Phase != v1alpha1.PhaseProgressing || h == nil || h.Reason != v1alpha1.HoldNotEnoughData {
		t.Fatalf("without traffic: phase=%s hold=%+v, want held for %s", held.Status.Phase, h, v1alpha1.HoldNotEnoughData)
	}
	cond := meta.FindStatusCondition(held.Status.Conditions, "Held")
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != v1alpha1.HoldNotEnoughData {
		t.Errorf("Held condition %+v, want True, %s", cond, v1alpha1.HoldNotEnoughData)
	}
	t.Logf("held: %s", held.Status.Hold.Message)

	// Three more intervals (2 s to spare): still at the first step, never
	// promoted.
	f := watchStill(t, sb, ns, 3*resilienceInterval+2*time.Second, func(f *v1alpha1.Flight) string {
		switch {
		case f.Status.Phase != v1alpha1.PhaseProgressing, f.Status.Step != 0, f.Status.CanaryWeight != 20:
			return fmt.Sprintf("moved without traffic: phase=%s step=%d weight=%d", f.Status.Phase, f.Status.Step, f.Status.CanaryWeight)
		case f.Status.Hold == nil || f.Status.Hold.Reason != v1alpha1.HoldNotEnoughData:
			return fmt.Sprintf("hold %+v, want %s", f.Status.Hold, v1alpha1.HoldNotEnoughData)
		}
		return ""
	})
	// The decision log says why at every look: a hold, every check short
	// of samples, nothing else after the start.
	var holds int
	for _, d := range f.Status.Decisions {
		switch {
		case d.Revision != rev:
		case d.Verdict == v1alpha1.VerdictStart:
		case d.Verdict == v1alpha1.VerdictHold && allChecks(d.Checks, analysis.NotEnoughData):
			holds += 1 + int(d.Repeats)
		default:
			t.Errorf("without traffic the engine decided %s at step %d: %s (checks %+v)", d.Verdict, d.Step+1, d.Message, d.Checks)
		}
	}
	if holds < 4 {
		t.Errorf("%d not-enough-data holds over %s, want one an interval (at least 4)", holds, time.Since(held.Status.Hold.Since.Time).Round(time.Second))
	}
	if n := heldEvents(t, sb, ns, v1alpha1.HoldNotEnoughData); n != 1 {
		t.Errorf("%d Held events for %s over %d holds, want 1", n, v1alpha1.HoldNotEnoughData, holds)
	}

	sb.SendTraffic(t, mesh.Client{Name: "late-shopper-" + ns, Namespace: ns, Host: "shop", RPS: 200, Users: 300})
	traffic := time.Now()
	f = waitPromoted(t, sb, ns, rev)
	if resumed, ok := firstVerdictAt(f, rev, v1alpha1.VerdictAdvance); ok {
		t.Logf("held %s without traffic; advanced %s after traffic began; %d not-enough-data holds", resumed.Sub(held.Status.Hold.Since.Time).Round(100*time.Millisecond),
			resumed.Sub(traffic).Round(100*time.Millisecond), holds)
	}
	_, judged := withoutHolds(verdicts(f, rev))
	want := []v1alpha1.Verdict{v1alpha1.VerdictStart, v1alpha1.VerdictAdvance, v1alpha1.VerdictPromote, v1alpha1.VerdictPromoted}
	if !slices.Equal(judged, want) {
		t.Errorf("decision log for %s: %v, want %v (holds aside)", rev, judged, want)
	}
	history.Want(t, sb, ns, "shop", 0, 20, 50, 100, 0)
	assertSettled(t, sb, ns)
}

// heldEvents counts the Held events of "shop" for one hold reason. The
// engine records one when a hold begins (or changes reason), not at every
// look: a rollout held for an hour must not page anyone sixty times.
func heldEvents(t *testing.T, sb *sandbox.Sandbox, ns, reason string) int {
	t.Helper()
	n := 0
	for msg, count := range deploymentEvents(t, sb, ns, "shop", "Held")["Held"] {
		if strings.HasPrefix(msg, reason+": ") {
			n += count
		}
	}
	return n
}

func allChecks(checks []analysis.Check, o analysis.Outcome) bool {
	if len(checks) == 0 {
		return false
	}
	for _, c := range checks {
		if c.Outcome != o {
			return false
		}
	}
	return true
}

func firstVerdictAt(f *v1alpha1.Flight, rev string, v v1alpha1.Verdict) (time.Time, bool) {
	for _, d := range f.Status.Decisions {
		if d.Revision == rev && d.Verdict == v {
			return d.At.Time, true
		}
	}
	return time.Time{}, false
}

// watchStill polls the Flight for d and fails the test the first time
// moved finds something wrong; it returns the last Flight seen.
func watchStill(t *testing.T, sb *sandbox.Sandbox, ns string, d time.Duration, moved func(*v1alpha1.Flight) string) *v1alpha1.Flight {
	t.Helper()
	var last *v1alpha1.Flight
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		f, err := getFlight(context.Background(), sb, ns, "shop")
		if err != nil {
			continue
		}
		last = f
		if why := moved(f); why != "" {
			t.Fatalf("%s (message %q)", why, f.Status.Message)
		}
	}
	if last == nil {
		t.Fatal("flight unreadable")
	}
	return last
}
