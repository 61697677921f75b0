package rollout

import (
	"testing"
	"time"

	"github.com/fledgehq/fledge/traffic"
)

// autoscaledFresh is a canary at 20% beside a fresh baseline at 20%, with
// an autoscaler giving stable 6 pods for its 60%: 2 pods each.
func autoscaledFresh(now time.Time) Input {
	in := freshComparing(now)
	in.Status.Step, in.Status.CanaryWeight, in.Status.Steps = 0, 20, []int32{20, 40}
	in.Weights = traffic.Weights{Stable: 60, Canary: 20, Baseline: 20}
	in.Autoscaler, in.AutoscalerMax, in.StableReplicas = "HorizontalPodAutoscaler web", 20, 6
	in.CanaryReplicas, in.CanaryAvailable = 2, 2
	in.BaselineReplicas, in.BaselineAvailable = 2, 2
	return in
}

// With a fresh baseline, the move to the next share waits for the
// baseline's pods too; while both are being resized, neither is taken for
// not ready (they serve on with the pods they have), and neither is
// sized back down below what the move asked for.
func TestAMoveWaitsForTheBaselinesPodsTooAndResizingIsNotNotReady(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := autoscaledFresh(now)
	d := &decider{in: in, st: *in.Status.DeepCopy()}
	// 40% with stable at 60% on 6 pods: 4 pods.
	if n := d.canaryPods(40); n != 4 {
		t.Fatalf("canary pods for 40%%: %d, want 4", n)
	}
	in.CanaryAvailable = 4 // the canary has its pods, the baseline not yet
	in.CanaryReplicas = 4
	in.BaselineReplicas, in.BaselineReady = 4, false
	d = &decider{in: in, st: *in.Status.DeepCopy()}
	if d.podsFor(40) {
		t.Errorf("the move goes on while the baseline has 2 of its 4 pods")
	}
	// Resizing, the baseline is not taken for not ready, and the canary
	// is not asked to shrink.
	d = &decider{in: in, st: *in.Status.DeepCopy()}
	if !d.canaryReady() {
		t.Errorf("a baseline being resized, with pods available, is taken for not ready: %+v", d.st.Hold)
	}
	d.ensurePods()
	for _, a := range d.actions {
		if e, ok := a.(EnsureCanary); ok && e.Replicas < 4 {
			t.Errorf("the canary is sized down to %d below the move's 4", e.Replicas)
		}
	}
	in.BaselineAvailable = 4
	d = &decider{in: in, st: *in.Status.DeepCopy()}
	if !d.podsFor(40) {
		t.Errorf("both have their 4 pods: the move still waits (%+v)", d.st.Hold)
	}
}

// Beside a fresh baseline at half, stable serves nothing: the canary's
// own pods per percent size it for promotion, and the baseline (which
// the promotion retires) is neither resized nor waited for.
func TestAtHalfBesideAFreshBaselineTheCanarySizesItselfForPromotion(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := autoscaledFresh(now)
	in.Status.Steps, in.Status.Step, in.Status.CanaryWeight = []int32{20, 50}, 1, 50
	in.Weights = traffic.Weights{Canary: 50, Baseline: 50}
	in.StableReplicas = 1 // idle: its autoscaler's minimum
	in.CanaryReplicas, in.CanaryAvailable, in.BaselineReplicas, in.BaselineAvailable = 5, 5, 5, 5
	d := &decider{in: in, st: *in.Status.DeepCopy()}
	if n := d.canaryPods(100); n != 10 {
		t.Fatalf("canary pods for all of the traffic: %d, want 10 (5 for 50%%)", n)
	}
	if d.podsFor(100) {
		t.Errorf("promotion goes on with 5 of the 10 pods")
	}
	for _, a := range d.actions {
		if _, ok := a.(EnsureBaseline); ok {
			t.Errorf("the baseline is resized for a promotion that retires it: %v", d.actions)
		}
	}
	in.CanaryReplicas, in.CanaryAvailable = 10, 10
	d = &decider{in: in, st: *in.Status.DeepCopy()}
	if !d.podsFor(100) {
		t.Errorf("10 pods for all of the traffic, and the move still waits (for the baseline?): %+v", d.st.Hold)
	}
}
