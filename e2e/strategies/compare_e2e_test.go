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

// comparePolicies: every live request is copied through the response
// comparator for the first 8 s; the share of copies whose answers differ
// from stable's is judged every 4 s (at most 1%).
const comparePolicies = `
policies:
  compared:
    steps: [50]
    interval: 4s
    minInterval: 1s
    progressDeadline: 1m
    mirror:
      percent: 100
      duration: 8s
      minSamples: 20
      compareResponses: {maxDifferent: 0.01, minSamples: 30}
    metrics:
    - {name: success-rate, min: 0.95, minSamples: 10, interval: 4s}
`

// TestACanaryAnsweringDifferentBodiesIsCaughtByTheResponseComparison: the
// canary answers 200 as stable does, but with another body for 5% of the
// requests: its success rate passes, the response comparison (the
// comparator's counts of copies whose answers differ) rolls it back from
// the mirror stage, users got stable's answers alone, and the comparator
// is gone afterwards.
func TestACanaryAnsweringDifferentBodiesIsCaughtByTheResponseComparison(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, comparePolicies)
	stable := shopApp(t, sb, ns, "compared", 40, nil)
	client := "shopper-" + ns
	before := sb.Mesh.ClientCounts(client)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", map[string]string{"sandbox.fledge.dev/body-diff-rate": "0.05"})
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Step == 0 || f.Status.Phase.Terminal()
	})
	want := traffic.Weights{Stable: 100, Mirror: 100, MirrorCompared: true}
	if w := awaitRouting(t, sb, ns, want); w != want {
		t.Errorf("routing %+v in the mirror stage, want all on stable, every request copied to the comparator", w)
	}
	f := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Phase.Terminal()
	})
	got := sb.Mesh.MirrorComparisons(ns, "shop-canary")
	t.Logf("%s: %s; comparisons %v", f.Status.Phase, f.Status.Message, got)
	if f.Status.Phase != v1alpha1.PhaseRolledBack || f.Status.StableRevision != stable || !strings.Contains(f.Status.Message, "response-diff fail") {
		t.Fatalf("phase %s, stable %s (%s); want rolled back from the mirror stage by the response comparison", f.Status.Phase, f.Status.StableRevision, f.Status.Message)
	}
	if got["body_differs"] == 0 || got["same"] == 0 || got["status_differs"] != 0 {
		t.Errorf("comparisons %v: want bodies differing among the same, and no status differing", got)
	}
	after := sb.Mesh.ClientCounts(client)
	if after.Requests == before.Requests || after.Errors != before.Errors {
		t.Errorf("users got %d errors in %d requests during the rollout, want none", after.Errors-before.Errors, after.Requests-before.Requests)
	}
	assertComparatorGone(t, sb, ns)
	assertSettled(t, sb, ns)
}

// TestAHealthyCanaryPassesTheResponseComparison: a canary answering as
// stable does is compared as the same on every copy and promoted.
func TestAHealthyCanaryPassesTheResponseComparison(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, comparePolicies)
	shopApp(t, sb, ns, "compared", 40, nil)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	f := waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Phase.Terminal()
	})
	got := sb.Mesh.MirrorComparisons(ns, "shop-canary")
	t.Logf("%s: %s; comparisons %v", f.Status.Phase, f.Status.Message, got)
	if f.Status.Phase != v1alpha1.PhaseSucceeded {
		t.Fatalf("phase %s (%s); want promoted", f.Status.Phase, f.Status.Message)
	}
	if got["same"] == 0 || got["body_differs"] != 0 || got["status_differs"] != 0 {
		t.Errorf("comparisons %v: want every copy the same", got)
	}
	var judged bool
	for _, d := range f.Status.Decisions {
		for _, c := range d.Checks {
			judged = judged || c.Metric == "response-diff" && c.Outcome == "pass"
		}
	}
	if !judged {
		t.Error("no decision judged the response comparison")
	}
	assertComparatorGone(t, sb, ns)
	assertSettled(t, sb, ns)
}

// assertComparatorGone waits briefly for shop-mirror's Deployment and
// Service to be deleted.
func assertComparatorGone(t *testing.T, sb *sandbox.Sandbox, ns string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, errD := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop-mirror", metav1.GetOptions{})
		_, errS := sb.Kube.CoreV1().Services(ns).Get(ctx, "shop-mirror", metav1.GetOptions{})
		return apierrors.IsNotFound(errD) && apierrors.IsNotFound(errS), nil
	})
	if err != nil {
		t.Error("the comparator's Deployment or Service is still there after the rollout")
	}
}
