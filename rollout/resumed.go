package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// pausedAgain ends the first part of a StableResumed hold's message, which
// says what happened: the rest is said anew at every look.
const pausedAgain = "fledge paused it again"

// stableResumed handles a Deployment that someone other than fledge
// resumed (unpaused) while a canary is in flight: `kubectl rollout
// resume`, a GitOps tool applying `paused: false`, a script. Kubernetes
// would roll the canary's template out to stable's pods, unjudged, and the
// comparisons would then hold the revision up against itself. fledge
// pauses the Deployment again at once and holds, saying so; then:
//   - stable's pods are as they were (fledge paused it before the
//     Deployment controller acted): the rollout goes on;
//   - Kubernetes began replacing them: stable no longer runs its revision
//     alone, so nothing moves on (a comparison may still roll the canary
//     back: a canary shown worse than a stable that runs some of its pods
//     is worse than stable), until a person promotes (the Deployment
//     finishes its rollout) or aborts, the template changes, or the
//     progress deadline passes, which rolls the canary back.
//
// After a rollback, reverting the template lets the Deployment roll its
// pods back to stable's revision (stableToTemplate). It reports whether the
// decision is complete.
func (d *decider) stableResumed() bool {
	held := stableResumedHold(d.st.Hold)
	if !d.in.DeploymentPaused && !d.in.StableResumed {
		// fledge's own resume, lingering: a promotion cut short by a new
		// revision whose pause did not go through, or a read that trails
		// the pause. A canary in flight has stable paused, always.
		d.do(SetStablePaused{Paused: true})
	}
	if !d.in.DeploymentPaused && d.in.StableResumed {
		d.do(SetStablePaused{Paused: true})
		msg := fmt.Sprintf("someone resumed the Deployment (kubectl rollout resume, or a manifest applied with paused: false) while %s is a canary at %d%%: %s (a canary's revision reaches stable's pods only when it is promoted)",
			d.st.CanaryRevision, d.st.CanaryWeight, pausedAgain)
		if held {
			d.event(true, "StableResumed", msg) // again: the hold's Event was for the first time
		}
		d.hold(v1alpha1.HoldStableResumed, msg+"; "+checking)
		d.st.Message = d.st.Hold.Message
		d.after(time.Second)
		return true
	}
	if !held || d.in.DesiredRevision != d.st.CanaryRevision {
		// Not resumed; or the template changed, for newRevision to decide
		// (a canary of the new one, or the revert to stable's).
		return false
	}
	h := d.st.Hold
	first, _, _ := strings.Cut(h.Message, pausedAgain)
	first += pausedAgain
	// Known once the Deployment controller has observed the pause (read
	// paused, and current: it makes no ReplicaSet after this read) and the
	// ReplicaSets read are as new as the Deployment.
	known := d.in.DeploymentPaused && d.in.DeploymentCurrent && !d.in.ReplicaSetsBehind && d.in.DeploymentRevision != ""
	changed := known && (d.in.DeploymentMixed || TemplateOf(d.in.DeploymentRevision) != TemplateOf(d.st.StableRevision))
	untouched := known && !changed
	until := h.Since.Add(d.in.Policy.ProgressDeadline)
	switch {
	case untouched:
		msg := first + "; stable's pods still run " + d.st.StableRevision + " alone: the rollout goes on"
		d.st.Hold = nil
		d.st.Message = msg
		d.event(false, "StableUnchanged", msg)
		d.record(v1alpha1.VerdictHold, msg, nil)
		return false
	case !d.in.Now.Before(until):
		why := fmt.Sprintf("%s; stable's pods %s, and no one promoted or aborted within the progress deadline (%s)", first, d.stableChangedHow(changed), d.in.Policy.ProgressDeadline)
		d.rollback(v1alpha1.VerdictRollback, why, nil)
		return true
	case !changed:
		// Not known yet: the Deployment controller has not shown what it
		// did with the unpause.
		h.Message = first + "; " + checking
		d.st.Message = h.Message
		d.after(time.Second)
		return true
	}
	h.Message = first + "; " + d.stableChanged()
	d.st.Message = h.Message
	if d.st.Phase == v1alpha1.PhaseProgressing && d.in.CanaryReady {
		// The comparisons keep looking, for a rollback only.
		if look := d.lookDue(); !look.IsZero() && !d.in.Now.Before(look) {
			held := *h
			d.drifted = true
			d.look()
			if d.st.Phase != v1alpha1.PhaseProgressing {
				return true // rolled back
			}
			d.st.Hold = &held
			d.st.Message = held.Message + "; " + d.st.Message
		}
		if look := d.lookDue(); !look.IsZero() && look.After(d.in.Now) {
			d.after(look.Sub(d.in.Now))
		}
	}
	d.after(min(until.Sub(d.in.Now), 30*time.Second))
	return true
}

// checking ends a StableResumed hold's message until stable's pods are
// known to be untouched or changed.
const checking = "checking whether Kubernetes began replacing stable's pods meanwhile"

// stableResumedHold reports whether h is a StableResumed hold, which a
// person's pause and resume of the rollout keep: it alone knows that
// stable's pods may have changed.
func stableResumedHold(h *v1alpha1.Hold) bool {
	return h != nil && h.Reason == v1alpha1.HoldStableResumed
}

// stableChanged says what became of stable's pods, and what ends the hold.
func (d *decider) stableChanged() string {
	p := d.in.Policy
	at := d.in.Now.Add(p.ProgressDeadline)
	if h := d.st.Hold; stableResumedHold(h) {
		at = h.Since.Add(p.ProgressDeadline)
	}
	return fmt.Sprintf("stable's pods %s, so stable no longer runs %s alone and nothing moves on (a comparison may still roll the canary back): promote to let the Deployment finish (fledgectl promote --full), or abort and revert the template to %s; rolled back at %s (the progress deadline, %s) otherwise",
		d.stableChangedHow(true), d.st.StableRevision, d.st.StableRevision, at.UTC().Format(time.TimeOnly), p.ProgressDeadline)
}

func (d *decider) stableChangedHow(changed bool) string {
	if !changed {
		return "could not be told untouched (the Deployment controller has not shown what it did)"
	}
	if TemplateOf(d.in.DeploymentRevision) != TemplateOf(d.st.StableRevision) {
		return "are being replaced by Kubernetes with " + d.in.DeploymentRevision + "'s"
	}
	return "run more than one revision"
}

// restoringStable begins the message of a Deployment that stableToTemplate
// resumed.
const restoringStable = "the template is stable's revision"

// stableToTemplate lets a Deployment whose template is stable's revision,
// but which runs pods of another (resumed by someone while a canary was in
// flight, then rolled back; or a promotion cut short), roll them back to
// it: fledge resumes it, the Deployment controller replaces those pods,
// and settle pauses it again once it runs its template alone. The
// template is the one judged, so nothing unjudged reaches users. It
// reports whether the decision is complete.
func (d *decider) stableToTemplate() bool {
	switch d.watchState() {
	case "", v1alpha1.WatchEnded:
	default:
		return false // the watch's revert and restore decide
	}
	stable := TemplateOf(d.st.StableRevision)
	if stable == "" || TemplateOf(d.in.DesiredRevision) != stable {
		return false
	}
	restoring := strings.HasPrefix(d.st.Message, restoringStable)
	if d.in.ReplicaSetsBehind || restoring && !d.in.DeploymentCurrent {
		// Not known yet: what it runs (the ReplicaSets read trail the
		// Deployment), or what the Deployment controller did with the
		// resume. A restore under way goes on meanwhile.
		if restoring {
			d.after(2 * time.Second)
		}
		return restoring
	}
	// Its newest ReplicaSet is of another template, or (a template reverted
	// while paused makes stable's ReplicaSet the newest again at once) the
	// Deployment controller counts pods not of its template, stable's;
	// then on until it counts none.
	other := d.in.DeploymentRevision != "" && TemplateOf(d.in.DeploymentRevision) != stable
	if !other && !(d.in.DeploymentCurrent && d.in.DeploymentOffTemplate) {
		if restoring {
			d.st.Message = fmt.Sprintf("the Deployment runs %s alone again: paused", d.st.StableRevision)
			d.event(false, "StableRestored", d.st.Message)
		}
		return false
	}
	if d.in.Weights != d.rest() {
		d.do(SetWeights{Weights: d.rest()})
	}
	if d.in.CanaryReplicas != 0 {
		d.do(ScaleCanaryDown{})
	}
	if d.in.DeploymentPaused {
		d.do(SetStablePaused{Paused: false}) // again, if a read trails the first
	}
	if !restoring {
		d.st.Message = fmt.Sprintf("%s %s, but the Deployment runs pods of another revision: fledge resumed it to roll them back to %s, and pauses it again once it runs %s alone",
			restoringStable, d.st.StableRevision, d.st.StableRevision, d.st.StableRevision)
		d.event(false, "StableRestoring", d.st.Message)
	}
	d.after(2 * time.Second)
	return true
}

// rejectedResumed says, when someone resumes a Deployment whose template is
// a revision fledge rolled back, that Kubernetes may have begun rolling it
// out; settle pauses it again.
func (d *decider) rejectedResumed() {
	rejected := d.st.RejectedRevision
	if d.in.DeploymentPaused || !d.in.StableResumed || rejected == "" || d.in.DesiredRevision != rejected {
		return
	}
	d.st.Message = fmt.Sprintf("someone resumed the Deployment, whose template is %s, rolled back: %s. Any of %s's pods Kubernetes made meanwhile serve until the template goes back to %s (then fledge rolls them back); to ship %s, canary it again (fledgectl retry)",
		rejected, pausedAgain, rejected, d.st.StableRevision, rejected)
	d.event(true, "StableResumed", d.st.Message)
}
