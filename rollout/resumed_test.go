package rollout

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// pauses reports whether d pauses or resumes the Deployment, and which.
func pauses(d Decision) (paused, found bool) {
	for _, a := range d.Actions {
		if p, ok := a.(SetStablePaused); ok {
			return p.Paused, true
		}
	}
	return false, false
}

// Once Kubernetes has begun replacing stable's pods after someone resumed
// the Deployment, stable's side of a comparison runs some of the canary's
// revision: evidence that the canary is no worse proves nothing, evidence
// that it is worse still does. So a look may roll the canary back, and
// never moves it on.
func TestAfterAnOutsideResumeTheComparisonsMayRollBackButNeverMoveOn(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := comparing(now)
	p := *in.Policy
	p.EarlyPromotion = true // a look that shows it no worse would promote it
	in.Policy = &p
	d := look(t, in, reading(100, 0, 900, 5)) // the baseline

	in.Status, in.Now = d.Status, now.Add(time.Second)
	in.DeploymentPaused, in.StableResumed = false, true
	d = Decide(in)
	if p, ok := pauses(d); !ok || !p {
		t.Fatalf("actions %v: want the Deployment paused again", d.Actions)
	}
	if h := d.Status.Hold; h == nil || h.Reason != v1alpha1.HoldStableResumed || !strings.Contains(h.Message, "someone resumed the Deployment") {
		t.Fatalf("hold %+v: want StableResumed, saying what happened", h)
	}
	// Paused again, after the Deployment controller made a ReplicaSet of
	// the canary's template.
	in.DeploymentPaused, in.StableResumed = true, false
	in.DeploymentRevision, in.DeploymentMixed, in.DeploymentSettled, in.DeploymentCurrent = "r2", true, false, true
	in.Status, in.Now = d.Status, now.Add(2*time.Second)
	d = Decide(in)
	if h := d.Status.Hold; d.Status.Phase != v1alpha1.PhaseProgressing || h == nil || h.Reason != v1alpha1.HoldStableResumed ||
		!strings.Contains(h.Message, "nothing moves on") || !strings.Contains(h.Message, "someone resumed the Deployment") {
		t.Fatalf("phase %s, hold %+v: want held, saying what happened and why", d.Status.Phase, h)
	}

	// Enough evidence of an equal canary to promote it, at a look and
	// at its round: it stays where it is.
	for _, at := range []time.Duration{10 * time.Second, time.Minute} {
		in.Status, in.Now = d.Status, now.Add(at)
		d = look(t, in, reading(20800, 104, 25600, 128))
		if d.Status.Phase != v1alpha1.PhaseProgressing || d.Status.Step != 0 || d.Status.Hold == nil || d.Status.Hold.Reason != v1alpha1.HoldStableResumed {
			t.Fatalf("at %s: phase %s step %d, hold %+v (%s); want held at step 1", at, d.Status.Phase, d.Status.Step, d.Status.Hold, d.Status.Message)
		}
		if slices.ContainsFunc(d.Actions, func(a Action) bool { _, ok := a.(SetWeights); return ok }) {
			t.Errorf("at %s: the weights change: %v", at, d.Actions)
		}
	}
	// A canary shown worse is rolled back.
	in.Status, in.Now = d.Status, now.Add(time.Minute+10*time.Second)
	d = look(t, in, reading(22800, 504, 27600, 138)) // 20% of 2,000 new canary requests failed
	if rejectedTo(d.Status) != v1alpha1.PhaseRolledBack || !strings.Contains(d.Status.Message, "error-rate worse") {
		t.Fatalf("phase %s (%s): want rolled back by the comparison", d.Status.Phase, d.Status.Message)
	}
}

// An unpaused Deployment that fledge's own writes explain (a promotion cut
// short whose pause did not go through, a read that trails the pause) is
// paused again, without a hold: a canary in flight has stable paused.
func TestFledgesOwnLingeringResumeIsPausedWithoutAHold(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := atStep(now, 0)
	in.Now = now.Add(-30 * time.Second) // between two rounds
	in.DeploymentPaused = false
	d := Decide(in)
	if d.NeedChecks {
		t.Fatalf("checks asked for between rounds")
	}
	if p, ok := pauses(d); !ok || !p || d.Status.Hold != nil {
		t.Errorf("actions %v, hold %+v: want the Deployment paused, and no hold", d.Actions, d.Status.Hold)
	}
}

// A hold for an outside resume lasts at most the progress deadline.
func TestAnOutsideResumeNobodyDecidesOnIsRolledBackAtTheProgressDeadline(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := atStep(now, 0)
	in.DeploymentPaused, in.StableResumed = false, true
	d := Decide(in)
	in.DeploymentPaused, in.StableResumed, in.DeploymentRevision, in.DeploymentSettled = true, false, "r2", false
	for _, at := range []time.Duration{time.Second, time.Minute, 4*time.Minute + 59*time.Second} {
		in.Status, in.Now = d.Status, now.Add(at)
		d = Decide(in)
		if d.Status.Phase != v1alpha1.PhaseProgressing || d.RequeueAfter <= 0 || d.RequeueAfter > 30*time.Second {
			t.Fatalf("at %s: phase %s, next look in %s; want held, looking again within 30s", at, d.Status.Phase, d.RequeueAfter)
		}
	}
	in.Status, in.Now = d.Status, now.Add(5*time.Minute)
	d = Decide(in)
	if rejectedTo(d.Status) != v1alpha1.PhaseRolledBack || !strings.Contains(d.Status.Message, "someone resumed") || !strings.Contains(d.Status.Message, "progress deadline") {
		t.Fatalf("phase %s (%s): want rolled back at the progress deadline, saying why", d.Status.Phase, d.Status.Message)
	}
}

// Released, a Deployment is unpaused; reset (its Flight deleted while it
// stays opted in) it stays paused, for the take-over afresh: everything
// else is released alike.
func TestAResetReleasesAllButThePause(t *testing.T) {
	in := atStep(epoch.Add(time.Hour), 0)
	in.OptedOut = true
	released := Decide(in)
	in.Reset = true
	reset := Decide(in)
	if p, ok := pauses(released); !ok || p {
		t.Errorf("released: actions %v, want the Deployment unpaused", released.Actions)
	}
	if _, ok := pauses(reset); ok {
		t.Errorf("reset: actions %v, want the pause left alone", reset.Actions)
	}
	without := slices.DeleteFunc(slices.Clone(released.Actions), func(a Action) bool {
		_, pause := a.(SetStablePaused)
		_, event := a.(RecordEvent)
		return pause || event
	})
	got := slices.DeleteFunc(slices.Clone(reset.Actions), func(a Action) bool { _, event := a.(RecordEvent); return event })
	if fmt.Sprint(got) != fmt.Sprint(without) || len(got) == 0 {
		t.Errorf("reset releases %v, want %v (all but the unpause)", got, without)
	}
}
