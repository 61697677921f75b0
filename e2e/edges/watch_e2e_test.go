//go:build e2e

package edges_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/enginetest"
	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

// watchedPolicies promote early and then watch the promoted revision for
// 90 s, keeping the previous revision's pods.
const watchedPolicies = `
policies:
  watched:
    steps: [50]
    interval: 10s
    minInterval: 1s
    lookInterval: 2s
    scrapeInterval: 1s  # the sandbox's Prometheus scrapes every second
    earlyPromotion: true
    minStepDuration: 3s
    progressDeadline: 60s
    postPromotion: {duration: 90s}
    metrics:
    - {name: error-rate, maxIncrease: 0.02}
`

// TestARegressionAfterPromotionIsCaughtByTheWatch: v2's pods answer well
// until they have been up 40 s, then fail 30% of requests (a leak). As a
// canary it is promoted before that; its pods made by the promotion
// degrade during the watch, and all traffic goes to v1's pods kept beside
// them (the emulator's ground truth: shop-previous answers everything).
// The Deployment keeps v2's template (fledge does not write it); once the
// template is reverted to v1, the Deployment rolls back, serves everyone
// again, and v1's copy is removed.
func TestARegressionAfterPromotionIsCaughtByTheWatch(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, watchedPolicies)
	stable := shopApp(t, sb, ns, "watched", 100, nil)

	var mu sync.Mutex
	var firstBad, firstPrevious time.Time
	var badAfterRevert int
	cancel := sb.Mesh.Observe(func(req mesh.Request, resp mesh.Response) {
		if req.SourceNamespace != ns || resp.Mirrored {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		switch {
		case resp.Workload == "shop" && resp.Code >= 500 && firstBad.IsZero():
			firstBad = now
		case resp.Workload == "shop-previous" && firstPrevious.IsZero() && !firstBad.IsZero():
			firstPrevious = now
		}
		if !firstPrevious.IsZero() && now.Sub(firstPrevious) > time.Second && resp.Code >= 500 {
			badAfterRevert++
		}
	})
	defer cancel()

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", map[string]string{"sandbox.fledge.dev/error-rate-after": "40s=0.3"})
	f := waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Phase.Terminal()
	})
	if f.Status.Phase != v1alpha1.PhaseSucceeded || f.Status.Watch == nil || f.Status.Watch.State != v1alpha1.WatchWatching {
		t.Fatalf("phase %s, watch %+v (%s); want promoted and watched", f.Status.Phase, f.Status.Watch, f.Status.Message)
	}
	promoted := time.Now()
	t.Logf("promoted: %s", f.Status.Message)

	f = waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Watch != nil && f.Status.Watch.State != v1alpha1.WatchWatching
	})
	if f.Status.Watch.State != v1alpha1.WatchReverted || f.Status.Phase != v1alpha1.PhaseRolledBack {
		t.Fatalf("watch %s, phase %s (%s); want reverted", f.Status.Watch.State, f.Status.Phase, f.Status.Message)
	}
	for _, want := range []string{"regressed after its promotion", "error-rate", "all traffic is on " + stable + "'s pods"} {
		if !strings.Contains(f.Status.Message, want) {
			t.Errorf("message %q lacks %q", f.Status.Message, want)
		}
	}
	if w := awaitRouting(t, sb, ns, traffic.Weights{Baseline: 100}); w != (traffic.Weights{Baseline: 100}) {
		t.Fatalf("routing %+v after the revert, want all on the previous revision's pods", w)
	}
	time.Sleep(2 * time.Second)
	mu.Lock()
	t.Logf("promoted at 0 s; first error from the promoted pods at %.1f s; first request answered by %s's pods %.1f s after it; %d errors more than 1 s after that",
		firstBad.Sub(promoted).Seconds(), stable, firstPrevious.Sub(firstBad).Seconds(), badAfterRevert)
	if firstBad.IsZero() || firstPrevious.IsZero() {
		t.Errorf("first error %v, first previous %v: want both", firstBad, firstPrevious)
	}
	mu.Unlock()
	d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "example.com/shop:v2" {
		t.Errorf("the Deployment's template has %s: fledge wrote it", img)
	}

	// The pipeline reverts the template: the Deployment rolls back to v1
	// while v1's copy serves, then everyone is on the Deployment again.
	if back := setImage(t, sb, ns, "shop", "example.com/shop:v1", nil); back != stable {
		t.Fatalf("the reverted template is %s, not the stable revision %s", back, stable)
	}
	f = waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Watch != nil && f.Status.Watch.State == v1alpha1.WatchEnded && f.Status.StableRevision == stable
	})
	t.Logf("%s", f.Status.Watch.Message)
	if w := awaitRouting(t, sb, ns, traffic.Weights{Stable: 100}); w != (traffic.Weights{Stable: 100}) {
		t.Errorf("routing %+v after the restore, want all on stable", w)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop-previous", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Errorf("shop-previous is still there after the restore")
	}
	assertSettled(t, sb, ns)
}

// awaitRouting reads shop's routing (its baseline's place taken by the
// previous revision's pods) until it is one of want, for a few seconds,
// and returns the last read.
func awaitRouting(t *testing.T, sb *sandbox.Sandbox, ns string, want ...traffic.Weights) traffic.Weights {
	t.Helper()
	var w traffic.Weights
	deadline := time.Now().Add(5 * time.Second)
	target := enginetest.ShopTarget(ns)
	target.Baseline = "shop-previous"
	for {
		var err error
		w, err = istio.New(sb.Istio).Weights(context.Background(), target)
		if err == nil && slices.Contains(want, w) || time.Now().After(deadline) {
			return w
		}
		time.Sleep(50 * time.Millisecond)
	}
}
