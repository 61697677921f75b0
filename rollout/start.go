package rollout

import (
	"fmt"
	"time"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/webhooks"
)

// startTraffic brings a new canary up to its first step: the
// confirm-rollout gate, then the canary Deployment until it is ready, then
// the pre-rollout hooks, then the first weight (through the
// confirm-traffic-increase gate). A canary that never becomes ready within
// the progress deadline is rolled back.
func (d *decider) startTraffic() {
	if open, decided := d.gate(webhooks.ConfirmRollout); decided || !open {
		return
	}
	if d.st.StepStartedAt == nil && len(d.in.Policy.hooksOf(webhooks.ConfirmRollout)) > 0 {
		// The canary starts now: the progress deadline counts from here.
		t := d.now()
		d.st.StepStartedAt = &t
		d.st.Message = fmt.Sprintf("the confirm-rollout gate opened: canary %s starting", d.st.CanaryRevision)
	}
	if d.in.CanaryRevision != d.st.CanaryRevision || d.in.CanaryReplicas == 0 || !d.in.CanaryReady || !d.baselineReady() || !d.comparatorReady() {
		started := d.in.Now
		switch {
		case d.st.StepStartedAt != nil:
			started = d.st.StepStartedAt.Time
		case d.st.RevisionStartedAt != nil:
			started = d.st.RevisionStartedAt.Time
		}
		deadline := started.Add(d.in.Policy.ProgressDeadline)
		if !d.in.Now.Before(deadline) {
			d.rollback(v1alpha1.VerdictRollback, fmt.Sprintf("canary %s not ready within the progress deadline (%s)%s", d.st.CanaryRevision, d.in.Policy.ProgressDeadline, d.canaryTrouble()), nil)
			return
		}
		if trouble := d.canaryTrouble(); trouble != "" {
			// Said at once, rather than at the deadline: people can act
			// (raise the quota) while the rollout waits.
			d.hold(v1alpha1.HoldCanaryNotReady, fmt.Sprintf("canary %s cannot bring its pods up%s; no traffic reaches it, and it is rolled back at %s unless they come up",
				d.st.CanaryRevision, trouble, deadline.UTC().Format(time.TimeOnly)))
		}
		d.ensurePods()
		d.after(min(2*time.Second, deadline.Sub(d.in.Now)))
		return
	}
	if h := d.st.Hold; h != nil && h.Reason == v1alpha1.HoldCanaryNotReady {
		d.st.Hold = nil // its pods came up after all
	}
	ready := fmt.Sprintf("canary %s ready", d.st.CanaryRevision)
	if d.st.StepPassed {
		d.moveOn(ready, nil)
		return
	}
	pre := d.in.Policy.hooksOf(webhooks.PreRollout)
	if len(pre) == 0 {
		d.moveOn(ready, nil)
		return
	}
	if d.st.LastAnalysisAt != nil {
		// A pre-rollout hook failed: ask again an interval later.
		if next := d.st.LastAnalysisAt.Add(d.in.Policy.Interval); d.in.Now.Before(next) {
			d.after(next.Sub(d.in.Now))
			return
		}
	}
	recs, done := d.runHooks(pre, -1, d.st.Round)
	if !done {
		d.waitForHooks(recs)
		return
	}
	d.judge(hookChecks(pre, recs))
}

// canaryReady holds while the canary is not ready, and rolls it back when
// that lasts longer than the progress deadline.
func (d *decider) canaryReady() bool {
	// A canary an autoscaler's change is resizing serves on with the pods
	// it has.
	resizing := d.autoscaled() && d.st.Step >= 0
	ready := d.in.CanaryReady || resizing && d.in.CanaryAvailable > 0
	baselineReady := d.baselineReady() || resizing && d.in.BaselineAvailable > 0 && d.in.BaselineRevision == d.st.StableRevision
	if ready && d.in.CanaryRevision == d.st.CanaryRevision && baselineReady && d.comparatorReady() {
		if d.st.Hold != nil && d.st.Hold.Reason == v1alpha1.HoldCanaryNotReady {
			d.st.Hold = nil
		}
		if d.st.CanaryWithdrawn {
			d.giveBack()
			return false
		}
		return true
	}
	what := "canary " + d.st.CanaryRevision
	switch {
	case !d.in.CanaryReady || d.in.CanaryRevision != d.st.CanaryRevision:
	case !d.pinReady():
		what = fmt.Sprintf("stable's pods on stable's config (%s%s), which serve stable's share beside canary %s,", d.in.Name, previousSuffix, d.st.CanaryRevision)
	case !d.baselineReady():
		what = "the baseline of canary " + d.st.CanaryRevision
	default:
		what = "the response comparator of canary " + d.st.CanaryRevision
	}
	if d.in.CanaryChanged != "" && d.st.Step >= 0 {
		// Its traffic is not the revision's: the step's interval counts
		// from when it is again (the last look that saw it changed).
		t := d.now()
		d.st.StepStartedAt = &t
	}
	d.withdraw()
	withdrawn := ""
	if d.st.CanaryWithdrawn {
		withdrawn = fmt.Sprintf("; its %d%% share is on stable until it has a ready pod", d.st.CanaryWeight)
	}
	d.hold(v1alpha1.HoldCanaryNotReady, fmt.Sprintf("%s is not ready%s%s", what, d.canaryTrouble(), withdrawn))
	if d.in.Now.Sub(d.st.Hold.Since.Time) >= d.in.Policy.ProgressDeadline {
		d.rollback(v1alpha1.VerdictRollback, fmt.Sprintf("%s not ready for longer than the progress deadline (%s)%s", what, d.in.Policy.ProgressDeadline, d.canaryTrouble()), nil)
		return false
	}
	d.ensurePods()
	d.after(2 * time.Second)
	return false
}

// canaryTrouble is ": " and what the canary's Deployment says keeps its
// pods from coming up, or nothing.
func (d *decider) canaryTrouble() string {
	var out string
	switch {
	case d.in.CanaryChanged != "":
		out = ": " + d.in.CanaryChanged
		if d.st.Step >= 0 {
			out += "; the step's interval starts over once it is put back"
		}
	case d.in.CanaryTrouble != "" && d.in.CanaryRevision == d.st.CanaryRevision:
		out = ": " + d.in.CanaryTrouble
	}
	if c := d.st.Config; c != nil && c.Pinned && !d.configPinned() && d.in.PreviousTrouble != "" {
		sep := "; "
		if out == "" {
			sep = ": "
		}
		out += sep + "stable's pods on stable's config: " + d.in.PreviousTrouble
	}
	if d.st.Baseline == BaselineFresh && d.in.BaselineTrouble != "" {
		sep := "; "
		if out == "" {
			sep = ": "
		}
		out += sep + "its baseline (stable's revision " + d.st.StableRevision + " at the canary's size): " + d.in.BaselineTrouble
	}
	if d.comparing() && d.in.ComparatorTrouble != "" {
		sep := "; "
		if out == "" {
			sep = ": "
		}
		out += sep + "its response comparator: " + d.in.ComparatorTrouble
	}
	return out
}

// baselineReady reports whether the revision's fresh baseline, if it has
// one, runs stable's revision with all its pods ready.
func (d *decider) baselineReady() bool {
	if !d.pinReady() {
		return false // stable's share waits for its pinned pods first
	}
	return d.st.Baseline != BaselineFresh || d.in.BaselineReady && d.in.BaselineRevision == d.st.StableRevision
}

// ensurePods asks for the canary, and for its fresh baseline if the
// revision has one.
func (d *decider) ensurePods() {
	if d.in.ForeignAutoscaler != "" && d.in.CanaryRevision == d.st.CanaryRevision && d.in.CanaryReplicas > 0 {
		// Someone's autoscaler sets the canary's size: fledge holds
		// (autoscalerAllowsMove) and does not fight it over it.
		return
	}
	n := d.canaryPods(d.currentShare())
	if n > 0 && d.st.Step >= 0 && d.in.CanaryRevision == d.st.CanaryRevision {
		// Coming up after a resize: never below the size asked for (a
		// move waiting for its pods asked for more than the share now).
		n = max(n, d.in.CanaryReplicas)
	}
	d.ensureCanary(n, d.currentShare())
	if d.comparing() {
		d.do(EnsureComparator{})
	}
}

// comparing reports whether the revision's mirror stage compares
// responses and is ahead or under way: its comparator is wanted.
func (d *decider) comparing() bool {
	if len(d.st.Cohorts) == 0 || d.st.Cohorts[0].Mirror == 0 || !d.st.Cohorts[0].Compared {
		return false
	}
	inFlight := d.st.Phase == v1alpha1.PhaseProgressing || d.st.Phase == v1alpha1.PhasePaused
	return inFlight && d.st.Step <= 0
}

// comparatorReady reports whether the comparator the revision's mirror
// stage needs, if any, is ready.
func (d *decider) comparatorReady() bool { return !d.comparing() || d.in.ComparatorReady }

// retireComparator removes the mirror stage's comparator once it is not
// wanted and no mirror sends it copies (as retireBaseline).
func (d *decider) retireComparator() {
	if !d.in.ComparatorExists || d.in.OptedOut || d.comparing() {
		return
	}
	routed := d.in.Weights.MirrorCompared || d.in.RoutingError != ""
	for _, a := range d.actions {
		if w, ok := a.(SetWeights); ok {
			routed = w.Weights.MirrorCompared
		}
	}
	if !routed {
		d.do(DeleteComparator{})
	}
}

// retireBaseline removes a fresh baseline that is no longer wanted (the
// revision promoted, rolled back or replaced by one without), once no
// route sends it traffic: after the decision's last change of the
// weights, or with none, after what was read.
func (d *decider) retireBaseline() {
	if !d.in.BaselineExists || d.in.OptedOut {
		return // (opting out removes it with the canary: DeleteCanary)
	}
	inFlight := d.st.Phase == v1alpha1.PhaseProgressing || d.st.Phase == v1alpha1.PhasePaused
	if inFlight && d.st.Baseline == BaselineFresh {
		return
	}
	routed := d.in.Weights.Baseline > 0 || d.in.RoutingError != ""
	for _, a := range d.actions {
		if w, ok := a.(SetWeights); ok {
			routed = w.Weights.Baseline > 0
		}
	}
	if routed {
		return // the next look, once the routing is set without it
	}
	d.do(DeleteBaseline{})
}

// withdraw takes the step's share off a canary with no pod ready to serve
// it: the mesh would answer its users 503 (no healthy upstream), and those
// failures are not the canary workload's in Istio's telemetry, so no
// comparison would see them. So while the canary (or its fresh baseline,
// which serves as large a share) has no available pod, all traffic is on
// stable; the hold goes on, bounded by the progress deadline, and
// giveBack restores the share once a pod is ready. A canary with some
// pods ready keeps its share: the mesh sends it to those.
func (d *decider) withdraw() {
	if d.st.CanaryWithdrawn || d.st.Step < 0 {
		return
	}
	what := d.unserved()
	if what == "" {
		return
	}
	d.st.CanaryWithdrawn = true
	d.setWeight(d.st.CanaryWeight)
	until := fmt.Sprintf(", or until the progress deadline (%s) rolls the canary back", d.in.Policy.ProgressDeadline)
	if d.st.Phase == v1alpha1.PhasePaused {
		until = " (the rollout is paused: nothing moves on meanwhile)"
	}
	msg := fmt.Sprintf("%s has no pod of its revision ready to serve its %d%% share: all of it is on stable until one is%s", what, d.st.CanaryWeight, until)
	d.event(true, "CanaryWithdrawn", msg)
	// People hear of it (a canary that was serving went down), unlike a
	// canary still starting.
	d.notifyHeld(v1alpha1.HoldCanaryNotReady, msg)
}

// unserved names what the step's routing sends users to with no pod ready
// to serve them: the canary, or its fresh baseline ("" when neither).
func (d *decider) unserved() string {
	w := d.stepRouting(d.st.CanaryWeight)
	toCanary := w.Canary > 0 || w.Cohort.Name != "" || w.Sticky.Cookie != ""
	switch {
	case toCanary && d.canaryDown():
		return "canary " + d.st.CanaryRevision
	case w.Baseline > 0 && !d.in.BaselineReady && d.in.BaselineAvailable == 0:
		return "the baseline of canary " + d.st.CanaryRevision
	}
	return ""
}

// canaryDown reports whether the canary has no pod ready to serve.
func (d *decider) canaryDown() bool { return !d.in.CanaryReady && d.in.CanaryAvailable == 0 }

// giveBack restores the step's share once the canary withdrawn from it is
// ready again; the step's interval starts over, as its traffic does.
func (d *decider) giveBack() {
	d.st.CanaryWithdrawn = false
	d.setWeight(d.st.CanaryWeight)
	t := d.now()
	d.st.StepStartedAt = &t
	what := "canary " + d.st.CanaryRevision
	if d.st.Baseline == BaselineFresh {
		what += " and its baseline"
	}
	d.st.Message = fmt.Sprintf("%s ready again: the %d%% share is back on it, and the step's interval starts over", what, d.st.CanaryWeight)
	d.event(false, "CanaryRestored", d.st.Message)
	d.after(time.Second)
}
