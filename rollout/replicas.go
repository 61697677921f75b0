package rollout

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// Sizing the canary. Without an autoscaler on the Deployment the canary is
// as large as stable (the engine copies the Deployment's replicas), which
// is enough for any share. With one (a HorizontalPodAutoscaler whose
// target is the Deployment), the autoscaler sizes stable for the share of
// the traffic stable serves, and fledge sizes the canary to match: as many
// pods per percent of traffic as stable has, for the canary's share, never
// fewer than the policy's minCanaryReplicas nor more than the autoscaler's
// maxReplicas. It follows the autoscaler while a step lasts, and a share
// grows only once the canary has the pods for it. fledge never writes the
// Deployment's replicas: they are the autoscaler's, before, during and
// after the rollout.

// autoscaled reports whether an autoscaler sizes the Deployment.
func (d *decider) autoscaled() bool { return d.in.Autoscaler != "" }

// canaryPods is the canary's size for share w of the traffic, at the pods
// per percent stable has now; 0 leaves the size to the engine (as large
// as stable). A share that is not a weight (a cohort, a mirror, a preview,
// the switch of blue/green, or all of it) is sized like stable entire.
func (d *decider) canaryPods(w int32) int32 {
	if !d.autoscaled() {
		return 0
	}
	r := max(d.in.StableReplicas, 1)
	share := d.routing(d.st.CanaryWeight).Stable
	if d.st.Step < 0 {
		share = 100
	}
	if d.onPrevious() {
		// The previous revision's pods serve in stable's place, sized
		// for all of the traffic (not by an autoscaler): as many per
		// percent as they have for all of it.
		r, share = max(d.st.Watch.Replicas, d.in.PreviousReplicas, 1), 100
	}
	var n int32
	switch {
	case d.st.Phase == v1alpha1.PhasePromoting:
		// Everything is on the canary while stable rolls, and stable's
		// replicas say nothing of the load: keep the size it was given.
		n = d.in.CanaryReplicas
	case share <= 0 && d.st.Baseline == BaselineFresh && d.in.BaselineReplicas > 0 && d.st.CanaryWeight > 0:
		// Stable serves nothing (a fresh baseline at half): the
		// baseline's pods per percent, for the share it serves (it is
		// not resized for a move past half, which retires it).
		n = int32(math.Ceil(float64(d.in.BaselineReplicas) * float64(w) / float64(d.st.CanaryWeight)))
	case share <= 0 && d.in.CanaryReplicas > 0:
		n = d.in.CanaryReplicas // nothing to size it by: as it is
	case d.in.Policy.Strategy == StrategyBlueGreen || d.nextIsCohort() || share <= 0:
		n = r
	default:
		n = int32(math.Ceil(float64(r) * float64(w) / float64(share)))
	}
	if m := d.in.AutoscalerMax; m > 0 {
		n = min(n, m)
	}
	return max(n, d.in.Policy.MinCanaryReplicas, 1)
}

// nextIsCohort reports whether the stage under way, or the first one
// before traffic, sends the canary requests by something other than a
// weight (a cohort, or a mirror's copies).
func (d *decider) nextIsCohort() bool {
	if CohortOf(&d.st) != nil {
		return true
	}
	return d.st.Step < 0 && len(d.st.Cohorts) > 0
}

// nextShare is the canary's share once it moves on: the next step's
// weight, or all of it at promotion.
func (d *decider) nextShare() int32 {
	if d.st.Step+1 < int32(len(d.st.Steps)) {
		return d.st.Steps[d.st.Step+1]
	}
	return 100
}

// currentShare is the share the canary's pods are sized for now: the
// step's weight, or the first step's before traffic.
func (d *decider) currentShare() int32 {
	if d.st.Step < 0 {
		if len(d.st.Steps) > 0 {
			return d.st.Steps[0]
		}
		return 100
	}
	return d.st.CanaryWeight
}

// baselineAt reports whether a fresh baseline serves beside the canary at
// share w (it takes as much as the canary, up to half).
func (d *decider) baselineAt(w int32) bool {
	return d.st.Baseline == BaselineFresh && w > 0 && 2*w <= 100
}

// ensureCanary asks for the canary at size n (0: the engine's), in place
// of any size asked for earlier in the decision, and for a fresh baseline
// at the same size when it serves beside the canary at share w.
func (d *decider) ensureCanary(n, w int32) {
	d.actions = slices.DeleteFunc(d.actions, func(a Action) bool {
		switch a.(type) {
		case EnsureCanary, EnsureBaseline:
			return true
		}
		return false
	})
	canary, _ := ContentOf(&d.st, d.st.CanaryRevision)
	d.do(EnsureCanary{Revision: d.st.CanaryRevision, Replicas: n, Config: canary})
	if d.st.Baseline == BaselineFresh && (d.baselineAt(w) || d.st.Step < 0 || !d.in.BaselineExists) {
		stable, _ := ContentOf(&d.st, d.st.StableRevision)
		d.do(EnsureBaseline{Revision: d.st.StableRevision, Replicas: n, Config: stable})
	}
}

// followAutoscaler resizes a serving canary when the autoscaler changed
// stable's size (or the pods per percent changed with the share): the
// canary keeps as many pods per percent of traffic as stable has.
func (d *decider) followAutoscaler() {
	if !d.autoscaled() || d.st.Step < 0 || d.in.CanaryRevision != d.st.CanaryRevision {
		return
	}
	if want := d.canaryPods(d.currentShare()); want != d.in.CanaryReplicas {
		d.ensureCanary(want, d.currentShare())
	}
}

// podsFor reports whether the canary has the pods for its next share;
// if not, it sizes the canary for it and holds, the step's checks going
// on meanwhile. A canary that cannot get them within the progress
// deadline is rolled back, as one that never became ready is.
func (d *decider) podsFor(next int32) bool {
	want := d.canaryPods(next)
	if want == 0 {
		return true
	}
	if d.in.CanaryRevision == d.st.CanaryRevision && d.in.CanaryAvailable >= want &&
		(!d.baselineAt(next) || d.in.BaselineAvailable >= want) {
		if h := d.st.Hold; h != nil && h.Reason == v1alpha1.HoldCanaryScaling {
			d.st.Hold = nil
		}
		return true
	}
	if d.in.CanaryReplicas < want || d.in.CanaryRevision != d.st.CanaryRevision || d.baselineAt(next) && d.in.BaselineReplicas < want {
		d.ensureCanary(want, next)
	}
	what := fmt.Sprintf("%d%% of the traffic", next)
	if next >= 100 {
		what = "all of the traffic, to be promoted"
	}
	msg := fmt.Sprintf("the canary has %d available of the %d pods it needs for %s: %s; the traffic moves once they are up",
		d.in.CanaryAvailable, want, what, d.sizedLike())
	if trouble := d.canaryTrouble(); trouble != "" {
		msg += trouble
	}
	d.hold(v1alpha1.HoldCanaryScaling, msg)
	if d.in.Now.Sub(d.st.Hold.Since.Time) >= d.in.Policy.ProgressDeadline {
		d.rollback(v1alpha1.VerdictRollback, fmt.Sprintf("canary %s did not get the %d pods it needs for %s within the progress deadline (%s)%s",
			d.st.CanaryRevision, want, what, d.in.Policy.ProgressDeadline, d.canaryTrouble()), nil)
		return false
	}
	d.st.Message = msg
	d.after(2 * time.Second)
	return false
}

// autoscalerAllowsMove holds the canary where it is while an autoscaler
// targets one of fledge's own Deployments (its canary's, its baseline's):
// it and fledge would both set their size. The step's checks go on (a
// failing canary is still rolled back); the rollout moves on once the
// autoscaler is removed or retargeted, and one left in place past the
// progress deadline rolls the revision back.
func (d *decider) autoscalerAllowsMove() bool {
	if d.in.ForeignAutoscaler == "" {
		if h := d.st.Hold; h != nil && h.Reason == v1alpha1.HoldForeignAutoscaler {
			d.st.Hold = nil
		}
		return true
	}
	msg := fmt.Sprintf("%s: fledge sizes its own Deployments and will not fight it over their replicas; remove it, or point it at the app's Deployment %s. Holding before %s",
		d.in.ForeignAutoscaler, d.in.Name, d.nextMove())
	d.hold(v1alpha1.HoldForeignAutoscaler, msg)
	d.st.Message = msg
	if d.in.Now.Sub(d.st.Hold.Since.Time) >= d.in.Policy.ProgressDeadline {
		d.rollback(v1alpha1.VerdictRollback, fmt.Sprintf("%s, for longer than the progress deadline (%s)", d.in.ForeignAutoscaler, d.in.Policy.ProgressDeadline), nil)
		return false
	}
	d.after(2 * time.Second)
	return false
}

// sizedLike says what the canary's size follows, for people.
func (d *decider) sizedLike() string {
	share := d.routing(d.st.CanaryWeight).Stable
	if d.st.Step < 0 {
		share = 100
	}
	switch {
	case d.onPrevious():
		return fmt.Sprintf("sized like %s's pods, %d for all of the traffic", d.st.Watch.Previous, max(d.st.Watch.Replicas, d.in.PreviousReplicas))
	case share <= 0 && d.st.Baseline == BaselineFresh:
		return fmt.Sprintf("sized like its fresh baseline, %d pods for %d%%", d.in.BaselineReplicas, d.st.CanaryWeight)
	}
	return fmt.Sprintf("sized like stable, which %s gives %d pods for %d%%", d.in.Autoscaler, d.in.StableReplicas, share)
}
