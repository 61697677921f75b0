//go:build e2e

package strategies_test

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// baselinePolicies compare the canary with a fresh baseline: a copy of
// stable started with it, given the same share.
const baselinePolicies = `
policies:
  fresh:
    baseline: fresh
    steps: [20, 50]
    interval: 20s
    minInterval: 1s
    lookInterval: 2s
    scrapeInterval: 1s  # the sandbox's Prometheus scrapes every second
    earlyPromotion: true
    minStepDuration: 4s
    progressDeadline: 60s
    metrics:
    - {name: latency, slowerThan: 50ms, maxIncrease: 0.1}
    - {name: error-rate}
`

// TestACanarySlowerThanItsFreshBaselineIsRolledBackAndTheBaselineIsGone: the
// canary answers twice as slowly as stable's template (p50 40 ms against
// 20). While it serves, a baseline of stable's template serves the same
// share (the emulator's ground truth: requests answered by shop-baseline's
// pods, at about the canary's count); the latency comparison with the
// baseline rolls it back, saying "vs baseline"; afterwards the baseline's
// Deployment and Service are gone and all traffic is on stable.
func TestACanarySlowerThanItsFreshBaselineIsRolledBackAndTheBaselineIsGone(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, baselinePolicies)
	stable := shopApp(t, sb, ns, "fresh", 100, nil)
	rec := record(t, sb, ns, previewHeader)

	began := time.Now()
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", map[string]string{"sandbox.fledge.dev/latency-ms": "p50=40,p95=120"})
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Step >= 0 || f.Status.Phase.Terminal()
	})
	if w := awaitRouting(t, sb, ns, traffic.Weights{Stable: 60, Canary: 20, Baseline: 20}); w != (traffic.Weights{Stable: 60, Canary: 20, Baseline: 20}) {
		t.Errorf("routing %+v at the first step, want stable 60, canary 20, baseline 20", w)
	}
	time.Sleep(500 * time.Millisecond) // the emulator's routing debounce
	var all, onCanary, onBaseline int
	for _, r := range rec.window(2 * time.Second) {
		all++
		switch {
		case r.canary:
			onCanary++
		case r.baseline:
			onBaseline++
		}
	}
	t.Logf("first step: %d requests, %d answered by the canary, %d by the baseline", all, onCanary, onBaseline)

	f := waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Phase.Terminal()
	})
	t.Logf("%s in %s: %s", f.Status.Phase, time.Since(began).Round(time.Second), f.Status.Message)
	if f.Status.Phase != v1alpha1.PhaseRolledBack || f.Status.StableRevision != stable {
		t.Fatalf("phase %s, stable %s (%s); want rolled back", f.Status.Phase, f.Status.StableRevision, f.Status.Message)
	}
	if !strings.Contains(f.Status.Message, "latency") || !strings.Contains(f.Status.Message, "vs baseline") {
		t.Errorf("message %q: want the latency comparison with the baseline", f.Status.Message)
	}
	if onCanary == 0 || onBaseline == 0 || onBaseline < onCanary/2 || onBaseline > onCanary*2 {
		t.Errorf("the canary answered %d requests and the baseline %d (of %d); want the same share each", onCanary, onBaseline, all)
	}
	assertBaselineGone(t, sb, ns)
	assertSettled(t, sb, ns)
}

// TestAHealthyCanaryWithAFreshBaselineIsPromotedAndTheBaselineIsGone: a
// canary no slower than its baseline is shown no worse and promoted; the
// baseline is gone afterwards.
func TestAHealthyCanaryWithAFreshBaselineIsPromotedAndTheBaselineIsGone(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, baselinePolicies)
	shopApp(t, sb, ns, "fresh", 200, nil)

	began := time.Now()
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	f := waitFlight(t, sb, ns, "shop", 3*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Phase.Terminal()
	})
	t.Logf("%s in %s: %s", f.Status.Phase, time.Since(began).Round(time.Second), f.Status.Message)
	if f.Status.Phase != v1alpha1.PhaseSucceeded || f.Status.StableRevision != rev {
		t.Fatalf("phase %s, stable %s (%s); want %s promoted", f.Status.Phase, f.Status.StableRevision, f.Status.Message, rev)
	}
	var compared bool
	for _, d := range f.Status.Decisions {
		for _, c := range d.Checks {
			compared = compared || c.Compared != nil && c.Compared.Against == "baseline"
		}
	}
	if !compared {
		t.Errorf("no decision compared the canary with its baseline: %+v", f.Status.Decisions)
	}
	assertBaselineGone(t, sb, ns)
	assertSettled(t, sb, ns)
}

// assertBaselineGone waits briefly for shop-baseline's Deployment and
// Service to be deleted.
func assertBaselineGone(t *testing.T, sb *sandbox.Sandbox, ns string) {
	t.Helper()
	var left []string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		left = nil
		if _, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop-baseline", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, "deployment")
		}
		if _, err := sb.Kube.CoreV1().Services(ns).Get(ctx, "shop-baseline", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, "service")
		}
		return len(left) == 0, nil
	})
	if err != nil {
		t.Errorf("the baseline's %v still there after the rollout", left)
	}
}
