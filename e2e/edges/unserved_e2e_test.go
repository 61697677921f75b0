//go:build e2e

package edges_test

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

// TestACanaryWithNoPodReadyHasItsShareWithdrawnUntilOneIs: v2 is a canary
// at 20% of 20 requests a second when its pods stop being ready (as the
// kubelet reports a failing readiness probe: the pod's Ready condition
// false). The mesh would answer its users' 20% with 503s (no healthy
// upstream), which Istio's telemetry does not count as the canary's, so no
// comparison would see them. fledge takes the share back to stable within
// seconds, says so (an Event, the Flight), and the users' 503s stop. Once
// a pod is ready again the share comes back, the step's interval starting
// over.
func TestACanaryWithNoPodReadyHasItsShareWithdrawnUntilOneIs(t *testing.T) {
	sb, ns, _, rev := canaryAt20(t)
	ctx := context.Background()
	var mu sync.Mutex
	var unserved []time.Time // users' 503s for want of a canary endpoint
	cancel := sb.Mesh.Observe(func(req mesh.Request, resp mesh.Response) {
		if req.SourceNamespace == ns && resp.Flags == "UH" {
			mu.Lock()
			unserved = append(unserved, time.Now())
			mu.Unlock()
		}
	})
	defer cancel()
	target := traffic.Target{Namespace: ns, Name: "shop", Host: "shop", Stable: "shop", Canary: "shop-canary"}
	routing := func(want traffic.Weights, within time.Duration) time.Time {
		t.Helper()
		var w traffic.Weights
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
			var err error
			w, err = istio.New(sb.Istio).Weights(ctx, target)
			return err == nil && w == want, nil
		})
		if err != nil {
			t.Fatalf("the routing reads %+v, not %+v, %s on", w, want, within)
		}
		return time.Now()
	}

	unready := time.Now()
	setCanaryReady(t, sb, ns, false)
	withdrawn := routing(traffic.Weights{Stable: 100}, 20*time.Second)
	t.Logf("all traffic on stable %.2f s after the canary's pods went unready", withdrawn.Sub(unready).Seconds())
	waitEvent(t, sb, ns, "CanaryWithdrawn", "no pod of its revision ready to serve its 20% share")
	f := waitFlight(t, sb, ns, "shop", 10*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.CanaryWithdrawn })
	if f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.CanaryRevision != rev || f.Status.CanaryWeight != 20 ||
		f.Status.Hold == nil || f.Status.Hold.Reason != v1alpha1.HoldCanaryNotReady {
		t.Errorf("phase %s, canary %s at %d%%, hold %+v: want v2 held at its 20%% step, withdrawn", f.Status.Phase, f.Status.CanaryRevision, f.Status.CanaryWeight, f.Status.Hold)
	}
	// The users' 503s stop: none once the mesh has the routing (a second
	// after it reads all on stable), over the next 5 s.
	time.Sleep(6 * time.Second)
	mu.Lock()
	before, after := 0, 0
	for _, at := range unserved {
		if at.After(withdrawn.Add(time.Second)) {
			after++
		} else {
			before++
		}
	}
	mu.Unlock()
	t.Logf("users got %d 503s (no healthy upstream) before the share was withdrawn", before)
	if after > 0 {
		t.Errorf("users got %d 503s (no healthy upstream) with the share withdrawn", after)
	}

	ready := time.Now()
	setCanaryReady(t, sb, ns, true)
	back := routing(traffic.Weights{Stable: 80, Canary: 20}, 20*time.Second)
	t.Logf("the share back on the canary %.2f s after its pods were ready again", back.Sub(ready).Seconds())
	waitEvent(t, sb, ns, "CanaryRestored", "the 20% share is back on it")
	f = waitFlight(t, sb, ns, "shop", 10*time.Second, func(f *v1alpha1.Flight) bool { return !f.Status.CanaryWithdrawn && f.Status.Hold == nil })
	if f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.CanaryWeight != 20 {
		t.Errorf("phase %s at %d%%: want the canary going on at 20%%", f.Status.Phase, f.Status.CanaryWeight)
	}
	if at := f.Status.StepStartedAt; at == nil || at.Time.Before(ready.Truncate(time.Second)) {
		t.Errorf("the step started at %v, before the pods were ready again at %s: want its interval started over", at, ready.Format(time.TimeOnly))
	}
}

// TestACanaryWhoseServiceIsDeletedHasItsShareWithdrawnUntilItIsBack:
// someone deletes fledge's canary Service (kubectl delete service
// shop-canary) while v2 is a canary at 20%. The mesh would answer its
// share with 503s (no such host). fledge says so, takes the share back to
// stable, makes the Service again, and gives the share back.
func TestACanaryWhoseServiceIsDeletedHasItsShareWithdrawnUntilItIsBack(t *testing.T) {
	sb, ns, _, _ := canaryAt20(t)
	ctx := context.Background()
	old, err := sb.Kube.CoreV1().Services(ns).Get(ctx, "shop-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	if err := sb.Kube.CoreV1().Services(ns).Delete(ctx, "shop-canary", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, sb, ns, "CanaryWithdrawn", "no pod of its revision ready to serve its 20% share")
	waitEvent(t, sb, ns, "Held", "its Service "+ns+"/shop-canary is missing")
	var back *corev1.Service
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		back, err = sb.Kube.CoreV1().Services(ns).Get(ctx, "shop-canary", metav1.GetOptions{})
		return err == nil && back.UID != old.UID, nil
	})
	if err != nil {
		t.Fatalf("shop-canary not made again 20 s after it was deleted")
	}
	t.Logf("shop-canary made again %.2f s after it was deleted", time.Since(deleted).Seconds())
	f := waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return !f.Status.CanaryWithdrawn && f.Status.Hold == nil })
	if f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.CanaryWeight != 20 {
		t.Errorf("phase %s at %d%%: want the canary going on at 20%%", f.Status.Phase, f.Status.CanaryWeight)
	}
	t.Logf("the share back on the canary %.2f s after its Service was deleted", time.Since(deleted).Seconds())
	w, err := istio.New(sb.Istio).Weights(ctx, traffic.Target{Namespace: ns, Name: "shop", Host: "shop", Stable: "shop", Canary: "shop-canary"})
	if err != nil || w != (traffic.Weights{Stable: 80, Canary: 20}) {
		t.Errorf("routing %+v (%v): want 80/20 again", w, err)
	}
}

// setCanaryReady sets the Ready condition of the canary's pods, as the
// kubelet does after their readiness probes (kwok, which plays it here,
// makes a pod ready once and leaves its status alone after that).
func setCanaryReady(t *testing.T, sb *sandbox.Sandbox, ns string, ready bool) {
	t.Helper()
	ctx := context.Background()
	pods, err := sb.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=shop-canary"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 {
		t.Fatal("no pod of the canary (app=shop-canary)")
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	for _, p := range pods.Items {
		for i, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
				p.Status.Conditions[i].Status, p.Status.Conditions[i].LastTransitionTime = status, metav1.Now()
			}
		}
		for i := range p.Status.ContainerStatuses {
			p.Status.ContainerStatuses[i].Ready = ready
		}
		if _, err := sb.Kube.CoreV1().Pods(ns).UpdateStatus(ctx, &p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}
