//go:build e2e

package rollout_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// Scenario 3: a revision whose median latency is unchanged but whose tail
// regresses is caught by the p95 check alone and rolled back.
func TestATailLatencyRegressionIsRolledBackOnP95(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, engineOptions{Policies: `
policies:
  latency:
    steps: [20, 50]
    interval: 6s
    minInterval: 1s
    failureLimit: 2
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 50}
    - {name: latency-p95, max: 150, minSamples: 50}
`})
	shopApp(t, sb, ns, "latency", 200)
	// Stable: p50=20, p95=60. The new revision: the same median, a tail
	// seven times longer.
	rev := setImage(t, sb, ns, "shop", "example.com/shop:slow-tail", map[string]string{"sandbox.fledge.dev/latency-ms": "p50=20,p95=420"})
	f := waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.RejectedRevision == rev })
	if f.Status.Phase != v1alpha1.PhaseRolledBack {
		t.Fatalf("phase %s, want %s", f.Status.Phase, v1alpha1.PhaseRolledBack)
	}
	last := f.Status.Decisions[len(f.Status.Decisions)-1]
	var p95, success *analysis.Check
	for i, c := range last.Checks {
		switch c.Metric {
		case "latency-p95":
			p95 = &last.Checks[i]
		case "success-rate":
			success = &last.Checks[i]
		}
	}
	if p95 == nil || p95.Outcome != analysis.Fail || p95.Value == nil || *p95.Value <= 150 {
		t.Fatalf("the rollback's latency-p95 check: %+v, want a failure above 150 ms", p95)
	}
	if success == nil || success.Outcome != analysis.Pass {
		t.Errorf("the rollback's success-rate check: %+v, want a pass: only the tail regressed", success)
	}
	t.Logf("rolled back: %s", f.Status.Message)
	assertSettled(t, sb, ns)
}

// Manual control without the API: fledge.dev/action on the Deployment,
// taken once, recorded in the Flight, and removed.
func TestManualActionsThroughTheAnnotationAreTakenOnce(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, engineOptions{Policies: `
policies:
  slow:
    steps: [10, 20, 30]
    interval: 60s
    minInterval: 1s
    metrics:
    - {name: success-rate, min: 0.9, minSamples: 10}
`})
	shopApp(t, sb, ns, "slow", 100)
	act := func(action, reason string) {
		t.Helper()
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{
			rollout.AnnotationAction: action, rollout.AnnotationActionReason: reason,
		}}})
		if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(ctx, "shop", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	recorded := func(kind v1alpha1.ActionKind) func(*v1alpha1.Flight) bool {
		return func(f *v1alpha1.Flight) bool { return f.Status.LastAction != nil && f.Status.LastAction.Kind == kind }
	}

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.CanaryWeight == 10 })

	// The interval is a minute: without the actions this rollout would
	// sit at 10% for the whole test.
	act("pause", "checking the dashboards")
	f := waitFlight(t, sb, ns, "shop", 30*time.Second, recorded(v1alpha1.ActionPause))
	if f.Status.Phase != v1alpha1.PhasePaused || f.Status.LastAction.Reason != "checking the dashboards" || f.Status.LastAction.By != "annotation" {
		t.Fatalf("after pause: phase %s, last action %+v", f.Status.Phase, f.Status.LastAction)
	}
	waitAnnotationGone(t, ns)

	act("resume", "")
	waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseProgressing })
	waitAnnotationGone(t, ns)

	act("promote", "looks good")
	f = waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.CanaryWeight == 20 })
	waitAnnotationGone(t, ns)
	// Taken once: the step does not move again by itself.
	time.Sleep(3 * time.Second)
	if f, _ = getFlight(ctx, sb, ns, "shop"); f.Status.CanaryWeight != 20 {
		t.Fatalf("after one promote the canary is at %d%%, want 20%%", f.Status.CanaryWeight)
	}

	act("promote-full", "ship it")
	f = waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == rev
	})
	if !strings.Contains(f.Status.Decisions[len(f.Status.Decisions)-2].Message, "ship it") {
		t.Errorf("the promotion's decision does not say why: %+v", f.Status.Decisions[len(f.Status.Decisions)-2])
	}

	// Abort a second revision.
	rev3 := setImage(t, sb, ns, "shop", "example.com/shop:v3", nil)
	waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.CanaryWeight == 10 && f.Status.CanaryRevision == rev3 })
	act("abort", "wrong build")
	f = waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseAborted })
	if f.Status.RejectedRevision != rev3 || !strings.Contains(f.Status.Message, "wrong build") {
		t.Errorf("after abort: rejected %s, message %q", f.Status.RejectedRevision, f.Status.Message)
	}
	assertSettled(t, sb, ns)
}

// waitAnnotationGone waits until fledge removed the consumed action.
func waitAnnotationGone(t *testing.T, ns string) {
	t.Helper()
	sb := suite.Get(t)
	for range 100 {
		d, err := sb.Kube.AppsV1().Deployments(ns).Get(context.Background(), "shop", metav1.GetOptions{})
		if err == nil {
			if _, ok := d.Annotations[rollout.AnnotationAction]; !ok {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("fledge never removed the consumed fledge.dev/action annotation")
}
