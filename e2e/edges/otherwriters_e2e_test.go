//go:build e2e

package edges_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

// resumablePolicies keep a canary at its first step for minutes, so that a
// test can resume the Deployment under it.
const resumablePolicies = `
policies:
  resumable:
    steps: [20]
    interval: 5m
    progressDeadline: 5m
    metrics:
    - {name: success-rate, min: 0.5}
`

// TestADeploymentResumedMidRolloutIsPausedAgainAndNothingUnjudgedMovesOn:
// while v2 is a canary at 20%, someone runs `kubectl rollout resume` on the
// Deployment. fledge pauses it again within seconds and holds, saying so
// (an Event and the Flight's hold). Either it paused it before the
// Deployment controller acted (stable's pods untouched: the rollout goes
// on), or the controller had begun replacing stable's pods with v2's
// (nothing moves on: the canary stays at 20%, not promoted). Which one is
// a race between two controllers; the test says which it saw. A person
// aborts; someone resumes the Deployment again, its template the rejected
// v2: paused again, and said. Then the pipeline reverts the template to
// v1: the Deployment, whatever v2 pods it had, runs v1 alone again,
// paused.
func TestADeploymentResumedMidRolloutIsPausedAgainAndNothingUnjudgedMovesOn(t *testing.T) {
	sb, ns, stable, rev := canaryAt20(t)
	ctx := context.Background()

	// `kubectl rollout resume deployment/shop`: the same patch, under the
	// field manager kubectl gives it. fledge pauses it again.
	resume := func() {
		t.Helper()
		resumed := time.Now()
		if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(ctx, "shop", types.MergePatchType, []byte(`{"spec":{"paused":false}}`),
			metav1.PatchOptions{FieldManager: "kubectl-rollout"}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{})
			return err == nil && d.Spec.Paused, nil
		})
		if err != nil {
			t.Fatalf("the Deployment is still unpaused 10 s after the resume")
		}
		t.Logf("paused again %.2f s after the resume", time.Since(resumed).Seconds())
	}
	resume()
	if msg := waitEvent(t, sb, ns, "Held", "StableResumed"); !strings.Contains(msg, "someone resumed the Deployment") {
		t.Errorf("the Held Event %q does not say what happened", msg)
	}

	// The outcome: untouched (the hold gone, the rollout going on) or
	// changed (held, saying so).
	f := waitFlight(t, sb, ns, "shop", 20*time.Second, func(f *v1alpha1.Flight) bool {
		h := f.Status.Hold
		return h == nil || h.Reason == v1alpha1.HoldStableResumed && strings.Contains(h.Message, "nothing moves on")
	})
	if h := f.Status.Hold; h != nil {
		t.Logf("Kubernetes began replacing stable's pods first; held: %s", h.Message)
		for _, want := range []string{"someone resumed the Deployment", "stable no longer runs " + stable + " alone", "promote", "progress deadline"} {
			if !strings.Contains(h.Message, want) {
				t.Errorf("hold message %q lacks %q", h.Message, want)
			}
		}
		// Nothing moves on, for as long as it is watched here.
		time.Sleep(5 * time.Second)
		f = waitFlight(t, sb, ns, "shop", time.Second, func(*v1alpha1.Flight) bool { return true })
		if f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.CanaryWeight != 20 || f.Status.Hold == nil || f.Status.Hold.Reason != v1alpha1.HoldStableResumed {
			t.Errorf("phase %s at %d%%, hold %+v: want held at 20%%", f.Status.Phase, f.Status.CanaryWeight, f.Status.Hold)
		}
	} else {
		t.Logf("paused before the Deployment controller acted: %s", f.Status.Message)
		if !strings.Contains(f.Status.Message, "stable's pods still run "+stable+" alone: the rollout goes on") {
			t.Errorf("message %q: want it said that stable is untouched", f.Status.Message)
		}
		if f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.CanaryWeight != 20 {
			t.Errorf("phase %s at %d%%: want the canary at 20%% still", f.Status.Phase, f.Status.CanaryWeight)
		}
	}
	if w, err := istio.New(sb.Istio).Weights(ctx, traffic.Target{Namespace: ns, Name: "shop", Host: "shop", Stable: "shop", Canary: "shop-canary"}); err != nil || w != (traffic.Weights{Stable: 80, Canary: 20}) {
		t.Errorf("routing %+v (%v): want 80/20 as before the resume", w, err)
	}

	// A person aborts. Then someone resumes the Deployment again, its
	// template the rejected v2: paused again, and said.
	abort := fmt.Sprintf(`{"metadata":{"annotations":{%q:"abort"}}}`, rollout.AnnotationAction)
	if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(ctx, "shop", types.MergePatchType, []byte(abort), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseAborted && f.Status.RejectedRevision == rev
	})
	resume()
	if msg := waitEvent(t, sb, ns, "StableResumed", "rolled back"); !strings.Contains(msg, "fledgectl retry") {
		t.Errorf("the StableResumed Event %q does not say how to ship it", msg)
	}

	// The pipeline reverts the template: the Deployment, whatever v2 pods
	// it had, runs v1 alone again, paused.
	if back := setImage(t, sb, ns, "shop", "example.com/shop:v1", nil); back != stable {
		t.Fatalf("the reverted template is %s, not the stable revision %s", back, stable)
	}
	waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.RejectedRevision == "" })
	var why string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		why = runsAlone(ctx, sb, ns, "shop", "example.com/shop:v1")
		return why == "", nil
	})
	if err != nil {
		f := waitFlight(t, sb, ns, "shop", time.Second, func(*v1alpha1.Flight) bool { return true })
		t.Fatalf("90 s after the revert: %s (Flight: %s)", why, f.Status.Message)
	}
	assertSettled(t, sb, ns)
}

// canaryAt20 starts an engine and "shop" under the resumable policy, applies
// v2, and returns once v2 is a canary at 20%, with the stable and canary
// revisions.
func canaryAt20(t *testing.T) (sb *sandbox.Sandbox, ns, stable, rev string) {
	t.Helper()
	sb, ns = suite.Namespace(t)
	startEngine(t, sb, ns, resumablePolicies)
	stable = shopApp(t, sb, ns, "resumable", 20, nil)
	rev = setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Phase == v1alpha1.PhaseProgressing && f.Status.CanaryWeight == 20
	})
	return sb, ns, stable, rev
}

// runsAlone says why Deployment name does not run image alone, paused and
// settled ("" when it does).
func runsAlone(ctx context.Context, sb *sandbox.Sandbox, ns, name, image string) string {
	d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	if !d.Spec.Paused {
		return "the Deployment is not paused"
	}
	if d.Status.ObservedGeneration < d.Generation || d.Status.Replicas != *d.Spec.Replicas || d.Status.UpdatedReplicas != d.Status.Replicas || d.Status.AvailableReplicas != d.Status.Replicas {
		return fmt.Sprintf("the Deployment is not settled: %+v", d.Status)
	}
	sets, err := sb.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	for _, rs := range sets.Items {
		if !metav1.IsControlledBy(&rs, d) || rs.Status.Replicas == 0 && *rs.Spec.Replicas == 0 {
			continue
		}
		if img := rs.Spec.Template.Spec.Containers[0].Image; img != image {
			return fmt.Sprintf("ReplicaSet %s runs %s (%d pods)", rs.Name, img, rs.Status.Replicas)
		}
	}
	return ""
}

// waitEvent waits up to 10 s for an Event of reason on Deployment shop
// whose message contains text, and returns its message.
func waitEvent(t *testing.T, sb *sandbox.Sandbox, ns, reason, text string) string {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": "Deployment", "involvedObject.name": "shop", "reason": reason}.String()
	var found string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := sb.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return false, nil
		}
		for _, ev := range list.Items {
			if strings.Contains(ev.Message, text) {
				found = ev.Message
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no %s Event on shop saying %q", reason, text)
	}
	return found
}

// TestACanaryChangedBySomeoneIsPutBackAndNotJudgedMeanwhile: while v2 is a
// canary at 20%, someone sets another image on fledge's canary Deployment
// (kubectl set image deployment/shop-canary). fledge says so (a Held
// Event), puts the revision's image back within seconds, and goes on once
// the canary runs it again, its step's interval started over.
func TestACanaryChangedBySomeoneIsPutBackAndNotJudgedMeanwhile(t *testing.T) {
	sb, ns, _, rev := canaryAt20(t)
	ctx := context.Background()

	changed := time.Now()
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"shop","image":"example.com/shop:v3"}]}}}}`)
	if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(ctx, "shop-canary", types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: "kubectl-set"}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop-canary", metav1.GetOptions{})
		return err == nil && d.Spec.Template.Spec.Containers[0].Image == "example.com/shop:v2", nil
	})
	if err != nil {
		t.Fatalf("shop-canary does not run example.com/shop:v2 again 15 s after someone changed it")
	}
	t.Logf("the canary's image put back %.2f s after the change", time.Since(changed).Seconds())
	if msg := waitEvent(t, sb, ns, "Held", "someone changed its images to example.com/shop:v3"); !strings.Contains(msg, "not its revision's example.com/shop:v2") {
		t.Errorf("the Held Event %q does not say what the canary should run", msg)
	}
	f := waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Hold == nil })
	if f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.CanaryWeight != 20 || f.Status.CanaryRevision != rev {
		t.Errorf("phase %s, canary %s at %d%% (%s): want v2's canary going on at 20%%", f.Status.Phase, f.Status.CanaryRevision, f.Status.CanaryWeight, f.Status.Message)
	}
	// Its step's interval starts over: the traffic the changed canary
	// served is not judged as v2's.
	if at := f.Status.StepStartedAt; at == nil || at.Time.Before(changed.Truncate(time.Second)) {
		t.Errorf("the step started at %v, before the change at %s: want its interval started over", at, changed.Format(time.TimeOnly))
	}
}

// TestAFlightDeletedMidRolloutIsAResetThatShipsNothingUnjudged: someone
// deletes shop's Flight while v2 is a canary at 20%. fledge releases the
// routing and the canary, keeps the Deployment paused, takes it over afresh
// (a new Flight) and canaries v2 again: stable's pods never run v2.
func TestAFlightDeletedMidRolloutIsAResetThatShipsNothingUnjudged(t *testing.T) {
	sb, ns, stable, rev := canaryAt20(t)
	ctx := context.Background()
	old := waitFlight(t, sb, ns, "shop", time.Second, func(*v1alpha1.Flight) bool { return true })

	var mu sync.Mutex
	var unpaused, v2pods bool
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		// Watch, by polling, for the two things that would ship v2
		// unjudged: the Deployment unpaused, or a pod of v2 in it.
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{})
			if err != nil {
				continue
			}
			sets, err := sb.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			mu.Lock()
			unpaused = unpaused || !d.Spec.Paused
			for _, rs := range sets.Items {
				if metav1.IsControlledBy(&rs, d) && rs.Spec.Template.Spec.Containers[0].Image == "example.com/shop:v2" && (*rs.Spec.Replicas > 0 || rs.Status.Replicas > 0) {
					v2pods = true
				}
			}
			mu.Unlock()
		}
	}()
	if err := sb.Fledge.FledgeV1alpha1().Flights(ns).Delete(ctx, "shop", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f := waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		return f.UID != old.UID && f.Status.CanaryRevision == rev && f.Status.Phase == v1alpha1.PhaseProgressing && f.Status.CanaryWeight == 20
	})
	close(stop)
	<-done
	t.Logf("taken over afresh: %s", f.Status.Message)
	if f.Status.StableRevision != stable {
		t.Errorf("the new Flight's stable revision is %s, want %s", f.Status.StableRevision, stable)
	}
	mu.Lock()
	defer mu.Unlock()
	if unpaused || v2pods {
		t.Errorf("through the reset, the Deployment was unpaused: %t; ran pods of v2: %t; want neither", unpaused, v2pods)
	}
}
