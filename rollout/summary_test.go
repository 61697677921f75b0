package rollout

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
)

// The status's summary for kubectl get flights: the step as "2/2", and
// the time of the last change of phase or step, kept while nothing moves.
func TestTheStatusSaysTheStepAndWhenItLastChanged(t *testing.T) {
	now := epoch.Add(time.Hour)
	earlier := metav1.NewTime(now.Add(-10 * time.Minute))
	decide := func(in Input, checks ...analysis.Check) Decision {
		t.Helper()
		d := Decide(in)
		if d.NeedChecks {
			in.Checks = checks
			d = Decide(in)
		}
		return d
	}

	// A failed check below the limit: no move, the time stays.
	in := atStep(now, 0)
	in.Status.LastTransitionTime = &earlier
	d := decide(in, check("success-rate", analysis.Fail, 0.9))
	if d.Status.Progress != "1/2" {
		t.Errorf("at step 0 of [10 50]: progress %q, want 1/2", d.Status.Progress)
	}
	if d.Status.LastTransitionTime == nil || !d.Status.LastTransitionTime.Equal(&earlier) {
		t.Errorf("nothing moved, yet the last transition is %v, want %v", d.Status.LastTransitionTime, earlier)
	}

	// Every check passes: the next step, now.
	in = atStep(now, 0)
	in.Status.LastTransitionTime = &earlier
	d = decide(in, check("success-rate", analysis.Pass, 0.999))
	if d.Status.Progress != "2/2" || d.Status.Step != 1 {
		t.Errorf("advanced: step %d, progress %q, want 2/2", d.Status.Step, d.Status.Progress)
	}
	if d.Status.LastTransitionTime == nil || !d.Status.LastTransitionTime.Time.Equal(now) {
		t.Errorf("advanced at %v, yet the last transition is %v", now, d.Status.LastTransitionTime)
	}

	// Before the canary's traffic, the step is 0 of n.
	in = atStep(now, 0)
	in.Status.Step, in.Status.CanaryWeight = -1, 0
	in.Observed.CanaryReady, in.Observed.Weights.Canary, in.Observed.Weights.Stable = false, 0, 100
	if d := Decide(in); d.Status.Step != -1 || d.Status.Progress != "0/2" {
		t.Errorf("before traffic: progress %q, want 0/2", d.Status.Progress)
	}
}
