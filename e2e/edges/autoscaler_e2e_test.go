//go:build e2e

package edges_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// scaledPolicies walk 25% and 50%, 25 s each: time for the autoscaler to
// move in a step.
const scaledPolicies = `
policies:
  scaled:
    steps: [25, 50]
    interval: 25s
    minInterval: 1s
    lookInterval: 2s
    scrapeInterval: 1s  # the sandbox's Prometheus scrapes every second
    progressDeadline: 90s
    metrics:
    - {name: error-rate}
`

// TestAnAutoscaledCanaryIsSizedByItsShareAndFollowsTheAutoscaler: shop (2
// replicas) has a HorizontalPodAutoscaler, which the sandbox's real
// autoscaler controller enforces. The canary starts sized by its share (1
// pod for 25%); when the autoscaler takes stable to 6 pods during the first
// step, the canary follows (2); the move to 50% waits for the pods it
// needs; when the autoscaler takes stable down to 3 during the second step,
// the canary follows down (3). No user meets a canary without endpoints
// (the emulator's ground truth: no 503 UH from shop-canary), fledge never
// writes the Deployment's replicas (its managed fields), and after the
// promotion the Deployment keeps the autoscaler's 3.
func TestAnAutoscaledCanaryIsSizedByItsShareAndFollowsTheAutoscaler(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, scaledPolicies)
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "shop"},
			MinReplicas:    ptr.To(int32(2)), MaxReplicas: 10,
		},
	}
	if _, err := sb.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	shopApp(t, sb, ns, "scaled", 100, nil)
	var mu sync.Mutex
	var canaryServed, noEndpoint, failed int
	cancel := sb.Mesh.Observe(func(req mesh.Request, resp mesh.Response) {
		if req.SourceNamespace != ns || resp.Mirrored {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if strings.HasPrefix(resp.Service, "shop-canary.") {
			canaryServed++
			if resp.Flags == "UH" {
				noEndpoint++
			}
		}
		if resp.Code >= 500 {
			failed++
		}
	})
	defer cancel()

	began := time.Now()
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	step := func(weight int32) {
		t.Helper()
		waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool {
			return f.Status.CanaryRevision == rev && f.Status.CanaryWeight == weight || f.Status.Phase.Terminal()
		})
	}
	step(25)
	awaitCanary(t, sb, ns, 1, "at 25% of a stable of 2")

	// The autoscaler takes stable to 6: the canary follows to 2 (6 pods
	// for 75%, 2 for 25%).
	bounds(t, sb, ns, 6, 10)
	at := time.Now()
	awaitStable(t, sb, ns, 6)
	awaitCanary(t, sb, ns, 2, "at 25% of a stable of 6")
	t.Logf("stable scaled to 6: the canary had its 2 pods %s later", time.Since(at).Round(100*time.Millisecond))

	// The move to 50% waits for 4 pods (6 for 75%: 4 for 50%), then it
	// follows to 6.
	step(50)
	awaitCanary(t, sb, ns, 6, "at 50% of a stable of 6")
	f, err := sb.Fledge.FledgeV1alpha1().Flights(ns).Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var waited bool
	for _, d := range f.Status.Decisions {
		waited = waited || strings.Contains(d.Message, "pods it needs for 50%")
	}
	t.Logf("the move to 50%% waited for the canary's pods (in the decision log): %t", waited)

	// The autoscaler takes stable down to 3: the canary follows down.
	bounds(t, sb, ns, 2, 3)
	at = time.Now()
	awaitStable(t, sb, ns, 3)
	awaitCanary(t, sb, ns, 3, "at 50% of a stable of 3")
	t.Logf("stable scaled to 3: the canary had 3 pods %s later", time.Since(at).Round(100*time.Millisecond))

	f = waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Phase.Terminal()
	})
	t.Logf("%s in %s: %s", f.Status.Phase, time.Since(began).Round(time.Second), f.Status.Message)
	if f.Status.Phase != v1alpha1.PhaseSucceeded {
		t.Fatalf("phase %s (%s), want promoted", f.Status.Phase, f.Status.Message)
	}
	d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(d.Spec.Replicas, 0); got != 3 {
		t.Errorf("after the promotion the Deployment has %d replicas, want the autoscaler's 3", got)
	}
	for _, mf := range d.ManagedFields {
		if mf.FieldsV1 == nil || !strings.Contains(mf.Manager, "fledge") {
			continue
		}
		var fields map[string]any
		_ = json.Unmarshal(mf.FieldsV1.Raw, &fields)
		if spec, ok := fields["f:spec"].(map[string]any); ok {
			if _, wrote := spec["f:replicas"]; wrote {
				t.Errorf("fledge (%s, %s) owns the Deployment's spec.replicas", mf.Manager, mf.Operation)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("the canary served %d requests, %d of them without an endpoint; %d requests failed in all", canaryServed, noEndpoint, failed)
	if canaryServed == 0 || noEndpoint > 0 {
		t.Errorf("the canary served %d requests, %d of them 503 for want of an endpoint; want some, and none", canaryServed, noEndpoint)
	}
	assertSettled(t, sb, ns)
}

// bounds sets the autoscaler's minReplicas and maxReplicas, as a person
// would; the autoscaler controller brings the Deployment within them.
func bounds(t *testing.T, sb *sandbox.Sandbox, ns string, lo, hi int32) {
	t.Helper()
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"minReplicas": lo, "maxReplicas": hi}})
	if _, err := sb.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Patch(context.Background(), "shop", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// awaitStable waits until the autoscaler has given shop's Deployment n
// replicas.
func awaitStable(t *testing.T, sb *sandbox.Sandbox, ns string, n int32) {
	t.Helper()
	var got int32
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got = ptr.Deref(d.Spec.Replicas, 0)
		return got == n, nil
	})
	if err != nil {
		t.Fatalf("the autoscaler did not take shop to %d replicas (it has %d): %v", n, got, err)
	}
}

// awaitCanary waits until shop-canary has n replicas, all available.
func awaitCanary(t *testing.T, sb *sandbox.Sandbox, ns string, n int32, what string) {
	t.Helper()
	var want, avail int32
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 45*time.Second, true, func(ctx context.Context) (bool, error) {
		d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop-canary", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		want, avail = ptr.Deref(d.Spec.Replicas, 0), d.Status.AvailableReplicas
		return want == n && avail == n, nil
	})
	if err != nil {
		t.Fatalf("%s: the canary has %d replicas (%d available), want %d", what, want, avail, n)
	}
}

// TestAnAutoscalerOnFledgesCanaryHoldsTheRolloutUntilItGoes: a team points
// a HorizontalPodAutoscaler at shop-canary, fledge's Deployment. The real
// autoscaler controller resizes it; fledge does not fight it over the
// size, holds the rollout before its next move naming the autoscaler, and
// goes on once it is deleted.
func TestAnAutoscalerOnFledgesCanaryHoldsTheRolloutUntilItGoes(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, scaledPolicies)
	shopApp(t, sb, ns, "scaled", 50, nil)
	grabby := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "grabby", Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "shop-canary"},
			MinReplicas:    ptr.To(int32(3)), MaxReplicas: 3,
		},
	}
	if _, err := sb.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, grabby, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	f := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && (f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldForeignAutoscaler || f.Status.Phase.Terminal())
	})
	if f.Status.Hold == nil || !strings.Contains(f.Status.Hold.Message, "HorizontalPodAutoscaler "+ns+"/grabby targets shop-canary") {
		t.Fatalf("hold %+v (%s): want one naming the autoscaler", f.Status.Hold, f.Status.Message)
	}
	weight := f.Status.CanaryWeight
	awaitCanary(t, sb, ns, 3, "sized by the team's autoscaler") // not fought over
	time.Sleep(3 * time.Second)
	if f, err := sb.Fledge.FledgeV1alpha1().Flights(ns).Get(ctx, "shop", metav1.GetOptions{}); err != nil || f.Status.CanaryWeight != weight {
		t.Fatalf("held at %d%%, now %+v (%v): want no move while the autoscaler is there", weight, f.Status, err)
	}
	if err := sb.Kube.AutoscalingV2().HorizontalPodAutoscalers(ns).Delete(ctx, "grabby", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f = waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Phase.Terminal()
	})
	if f.Status.Phase != v1alpha1.PhaseSucceeded {
		t.Fatalf("phase %s (%s), want promoted once the autoscaler is gone", f.Status.Phase, f.Status.Message)
	}
	assertSettled(t, sb, ns)
}
