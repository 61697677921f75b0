package rollout

import (
	"fmt"
	"slices"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/webhooks"
)

// startPromotion sends all traffic to the canary and lets Kubernetes roll
// the stable Deployment to the canary's template. The canary carries the
// load meanwhile, so users never meet a half-updated stable.
func (d *decider) startPromotion(why string, checks []analysis.Check) {
	d.st.Phase = v1alpha1.PhasePromoting
	d.st.PromotionStage = v1alpha1.StageUpdateStable
	t := d.now()
	d.st.StageStartedAt = &t
	d.st.Hold, d.st.CanaryWithdrawn = nil, false
	d.st.CanaryWeight = 100
	d.promotionRouting() // everyone on the canary, if it has a pod ready
	d.do(SetStablePaused{Paused: false})
	d.startWatch()
	d.st.Message = why
	d.event(false, "Promoting", why)
	d.record(v1alpha1.VerdictPromote, why, checks)
	d.after(2 * time.Second)
}

// promote follows a promotion in progress. Each look re-asserts the stage's
// state, so a restart anywhere in it converges.
func (d *decider) promote() {
	switch d.st.PromotionStage {
	case v1alpha1.StageUpdateStable:
		d.updateStable()
	case v1alpha1.StageFinalize:
		d.finalize()
	default:
		// Unknown stage (a newer fledge's status?): start the stage over.
		d.startPromotion("promotion resumed", nil)
	}
}

func (d *decider) updateStable() {
	if d.in.DesiredRevision != d.st.CanaryRevision {
		// A newer template arrived while the stable Deployment was being
		// updated: stop Kubernetes from rolling it out un-canaried, send
		// traffic back to stable, and canary the newer one. Stable may run
		// a mix of its old revision and the promoted one, both judged.
		d.do(SetStablePaused{Paused: true})
		d.startCanary(d.in.DesiredRevision, v1alpha1.VerdictRestart,
			fmt.Sprintf("revision %s arrived during the promotion of %s: canary restarting", d.in.DesiredRevision, d.st.CanaryRevision))
		return
	}
	d.promotionRouting()
	if d.in.DeploymentPaused {
		d.do(SetStablePaused{Paused: false})
	}
	if c := d.st.Config; c != nil && d.in.StalePods > 0 && c.SeenAt != nil && TemplateOf(d.in.DeploymentRevision) == TemplateOf(d.st.CanaryRevision) {
		// Its template is the promoted one, but pods made before the
		// config content changed may read the old (environment
		// variables): restarted while the canary serves everyone.
		d.do(RestartStalePods{Before: *c.SeenAt})
		d.st.Message = fmt.Sprintf("promoting %s: restarting the Deployment's %d pods made before its config changed (%s), so that they read it", d.st.CanaryRevision, d.in.StalePods, seenAt(c))
	}
	if d.in.DeploymentRevision != d.st.CanaryRevision || !d.in.DeploymentSettled || d.in.StalePods > 0 {
		started := d.in.Now
		if d.st.StageStartedAt != nil {
			started = d.st.StageStartedAt.Time
		}
		if d.in.Now.Sub(started) >= d.in.Policy.ProgressDeadline {
			// Rolling back is no longer possible without rewriting the
			// user's template, which fledge never does: say so loudly.
			d.hold(v1alpha1.HoldStableStalled, fmt.Sprintf("the Deployment has not finished rolling to %s after %s", d.st.CanaryRevision, d.in.Policy.ProgressDeadline))
		}
		d.after(2 * time.Second)
		return
	}
	// Stable runs the new revision: traffic back to it, and hold it again.
	d.st.PromotionStage = v1alpha1.StageFinalize
	d.st.StableRevision = d.st.CanaryRevision
	d.st.Hold = nil
	d.stableUpdated()
	d.setWeight(0)
	d.do(SetStablePaused{Paused: true})
	d.after(time.Second)
}

// promotionRouting sends everyone to the canary while the Deployment rolls
// to its revision, and to the Deployment's own pods (stable's Service,
// some of them already of the revision) while the canary has no pod ready
// to serve them: a canary that crashed mid-promotion would otherwise have
// the mesh answer every user with a 503, for as long as the Deployment's
// rollout takes. It is said when it moves.
func (d *decider) promotionRouting() {
	want := int32(100)
	if d.canaryDown() {
		want = 0
	}
	switch {
	case want == 0 && d.st.CanaryWeight == 100:
		d.st.Message = fmt.Sprintf("promoting %s: the canary has no pod ready: all traffic is on the Deployment's own pods (rolling to %s) until one is", d.st.CanaryRevision, d.st.CanaryRevision)
		d.event(true, "CanaryWithdrawn", d.st.Message)
		d.notifyHeld(v1alpha1.HoldCanaryNotReady, d.st.Message)
	case want == 100 && d.st.CanaryWeight == 0:
		d.st.Message = fmt.Sprintf("promoting %s: the canary is ready again: all traffic is back on it until the Deployment runs %s", d.st.CanaryRevision, d.st.CanaryRevision)
		d.event(false, "CanaryRestored", d.st.Message)
	}
	if d.st.CanaryWeight != want || d.in.Weights != d.routing(want) {
		d.setWeight(want)
	}
}

func (d *decider) finalize() {
	if d.in.Weights != d.rest() || !d.in.DeploymentPaused {
		if d.in.Weights != d.rest() {
			d.setWeight(0)
		}
		if !d.in.DeploymentPaused {
			d.do(SetStablePaused{Paused: true})
		}
		d.after(time.Second)
		return
	}
	d.backToStable(v1alpha1.PhaseSucceeded, v1alpha1.VerdictPromoted, fmt.Sprintf("promoted %s", d.st.CanaryRevision))
	d.event(false, "Promoted", d.st.Message)
	d.notifyPromoted()
	d.tellHooks(webhooks.PostRollout, EventPromoted, d.st.Message)
	// Told as "from the old images": only now does stable run the new ones.
	d.st.StableImages = slices.Clone(d.st.CanaryImages)
	d.beginWatch()
}

// rollback rejects the canary: all traffic to stable at once. The
// Flight is RollingBack until the routing reads back at 100% stable
// (rollingBack): only then is it reported RolledBack (or Aborted), told to
// people and hooks, and the canary scaled down. The Deployment was never
// unpaused, so stable still runs its revision.
func (d *decider) rollback(v v1alpha1.Verdict, why string, checks []analysis.Check) {
	phase := v1alpha1.PhaseRolledBack
	if v == v1alpha1.VerdictAbort {
		phase = v1alpha1.PhaseAborted
	}
	d.record(v, why, checks)
	d.st.RollingBack = &v1alpha1.RollingBack{Phase: phase, Reason: why, By: d.by, Revision: d.st.CanaryRevision,
		Step: d.st.Step, Weight: d.st.CanaryWeight, Since: d.now()}
	d.st.Phase = v1alpha1.PhaseRollingBack
	d.st.CanaryWeight, d.st.Step, d.st.PromotionStage, d.st.CanaryWithdrawn = 0, -1, "", false
	d.st.StageStartedAt, d.st.StepStartedAt, d.st.Hold = nil, nil, nil
	d.st.Message = "rolling back: " + why
	d.do(SetWeights{Weights: d.rest()})
	d.after(time.Second)
}

// rollingBackRetry bounds the wait between two attempts at routing all
// traffic back to stable; rollingBackHold is how long the routing may read
// otherwise before the Flight is held (and people told) for it.
const (
	rollingBackRetry = 30 * time.Second
	rollingBackHold  = 10 * time.Second
)

// rollingBack finishes a rollback once the routing reads back at 100%
// stable, and until then sets it again, with backoff.
func (d *decider) rollingBack() {
	rb := d.st.RollingBack
	if rb == nil {
		// Not written by a version of fledge that knew the phase: finish
		// it as a rollback.
		rb = &v1alpha1.RollingBack{Phase: v1alpha1.PhaseRolledBack, Reason: d.st.Message, Revision: d.st.CanaryRevision, Since: d.now()}
	}
	if d.in.Weights != d.rest() {
		waited := d.in.Now.Sub(rb.Since.Time)
		msg := fmt.Sprintf("rolling back: %s; after %s the routing still reads %d%% canary, %d%% stable%s: setting all traffic on %s again",
			rb.Reason, waited.Round(time.Second), d.in.Weights.Canary, d.in.Weights.Stable, cohortNote(d.in.Weights), d.restName())
		d.st.Message = msg
		if waited >= rollingBackHold {
			d.hold(v1alpha1.HoldRouting, msg)
		}
		d.do(SetWeights{Weights: d.rest()})
		d.after(min(max(waited/2, time.Second), rollingBackRetry))
		return
	}
	d.st.RollingBack = nil
	t := d.now()
	d.st.CanaryTrafficEndedAt = &t
	d.backToStable(rb.Phase, "", rb.Reason)
	d.st.RejectedRevision = rb.Revision
	event := map[v1alpha1.Phase]string{v1alpha1.PhaseRolledBack: EventRolledBack, v1alpha1.PhaseAborted: EventAborted}[rb.Phase]
	d.event(true, event, rb.Reason)
	d.notifyRejected(event, rb.Reason, rb.By, rb.Step, rb.Weight, d.rejectionChecks(rb))
	d.tellHooks(webhooks.PostRollout, event, rb.Reason)
}

// cohortNote mentions routes that send a cohort to the canary.
func cohortNote(w traffic.Weights) string {
	if w.Cohort.IsZero() && w.Sticky.IsZero() {
		return ""
	}
	return " with cohort or sticky routes to it"
}

// rejectionChecks are the checks of the decision that rejected rb's
// revision, from the decision log.
func (d *decider) rejectionChecks(rb *v1alpha1.RollingBack) []analysis.Check {
	for i := len(d.st.Decisions) - 1; i >= 0; i-- {
		r := d.st.Decisions[i]
		if r.Revision == rb.Revision && (r.Verdict == v1alpha1.VerdictRollback || r.Verdict == v1alpha1.VerdictAbort) {
			return r.Checks
		}
	}
	return nil
}

// backToStable ends a revision's flight in a terminal phase.
func (d *decider) backToStable(phase v1alpha1.Phase, v v1alpha1.Verdict, why string) {
	d.canaryTrafficEnds()
	d.st.Phase = phase
	d.st.CanaryWeight = 0
	d.settle()
	d.st.Step = -1
	d.st.PromotionStage = ""
	d.st.StageStartedAt = nil
	d.st.StepStartedAt = nil
	d.st.Hold = nil
	d.st.Message = why
	if v != "" {
		d.record(v, why, nil)
	}
	d.requeue = resync
}

// canaryTrafficEnds records that the canary stops serving now, if it
// served at all.
func (d *decider) canaryTrafficEnds() {
	if d.st.Step >= 0 || d.st.CanaryWeight > 0 || d.st.PromotionStage != "" {
		t := d.now()
		d.st.CanaryTrafficEndedAt = &t
	}
}

// intakeAction takes a manual action once. It reports whether the decision
// is complete.
//
// An annotation is taken once: the status remembers it until it is seen
// removed. An API request is taken once per request id: the status
// remembers the latest ids with their answers, so a retried request gets
// the first answer instead of acting again.
func (d *decider) intakeAction() bool {
	last := d.st.LastAction
	req := d.in.Action
	if req == nil {
		if last != nil && !last.Cleared {
			last.Cleared = true
		}
		return false
	}
	api := req.RequestID != ""
	if api {
		for _, r := range d.st.Requests {
			if r.ID == req.RequestID && r.Kind != req.Kind {
				d.outcome = &ActionOutcome{Refusal: ActionRequestIDReused, Message: fmt.Sprintf("request id %q was a %s request", r.ID, r.Kind)}
				return false
			}
			if r.ID == req.RequestID {
				d.outcome = &ActionOutcome{Taken: r.Taken, Replay: true, Refusal: r.Refusal, Message: r.Message}
				return false
			}
		}
	} else if last != nil && !last.Cleared && last.Kind == req.Kind && last.RequestID == "" {
		// Taken already; its annotation is still there (a crash, or the
		// removal has not been seen yet).
		d.do(ClearAction{Value: req.Kind})
		return false
	}
	// An annotation is remembered even when refused (so that it is taken
	// once); an API request only when taken (its id is remembered anyway).
	record := &v1alpha1.ActionRecord{Kind: req.Kind, By: req.By, Reason: req.Reason, At: d.now(), RequestID: req.RequestID, Revision: req.Revision, Cleared: api}
	if !api {
		d.st.LastAction = record
	}
	d.by = req.By
	if !api {
		d.do(ClearAction{Value: req.Kind})
	}
	who := req.By
	if req.Reason != "" {
		who += ": " + req.Reason
	}
	done := d.takeAction(req, who)
	if d.outcome == nil {
		d.outcome = &ActionOutcome{Taken: true, Message: d.st.Message}
	}
	if api && d.outcome.Taken {
		d.st.LastAction = record
	}
	if api {
		d.st.Requests = append(d.st.Requests, v1alpha1.RequestRecord{ID: req.RequestID, Kind: req.Kind, By: req.By, At: d.now(),
			Taken: d.outcome.Taken, Refusal: d.outcome.Refusal, Message: d.outcome.Message})
		if n := len(d.st.Requests); n > MaxRequests {
			d.st.Requests = append([]v1alpha1.RequestRecord(nil), d.st.Requests[n-MaxRequests:]...)
		}
	}
	return done
}

func (d *decider) takeAction(req *ActionRequest, who string) bool {
	ignore := func(refusal, why string) bool {
		msg := fmt.Sprintf("%s by %s ignored: %s", req.Kind, who, why)
		d.event(true, "ActionIgnored", msg)
		d.record(v1alpha1.VerdictManual, msg, nil)
		d.outcome = &ActionOutcome{Refusal: refusal, Message: msg}
		return false
	}
	if req.Kind == v1alpha1.ActionSetImage {
		// Only recorded: the new template is decided on like any other.
		msg := fmt.Sprintf("image set by %s", who)
		d.record(v1alpha1.VerdictManual, msg, nil)
		// Filed under the revision the new image makes.
		d.st.Decisions[len(d.st.Decisions)-1].Revision = d.in.DesiredRevision
		d.event(false, "ImageSet", msg)
		d.outcome = &ActionOutcome{Taken: true, Message: msg}
		return false
	}
	if req.Revision != "" && req.Revision != d.st.CanaryRevision {
		return ignore(ActionRevisionMismatch, fmt.Sprintf("it is for revision %s, the canary is %s", req.Revision, orNone(d.st.CanaryRevision)))
	}
	inFlight := d.st.Phase == v1alpha1.PhaseProgressing || d.st.Phase == v1alpha1.PhasePaused
	switch req.Kind {
	case v1alpha1.ActionAbort:
		if !inFlight {
			return ignore(ActionNotApplicable, "no canary in flight ("+string(d.st.Phase)+")")
		}
		d.rollback(v1alpha1.VerdictAbort, "aborted by "+who, nil)
		return true
	case v1alpha1.ActionPause:
		if d.st.Phase != v1alpha1.PhaseProgressing {
			return ignore(ActionNotApplicable, "only a progressing canary can be paused ("+string(d.st.Phase)+")")
		}
		d.st.Phase = v1alpha1.PhasePaused
		d.st.Message = "paused by " + who
		d.record(v1alpha1.VerdictManual, d.st.Message, nil)
		if stableResumedHold(d.st.Hold) {
			d.after(time.Second) // that hold stays: it knows what stable runs
			return true
		}
		d.paused()
		return true
	case v1alpha1.ActionResume:
		if d.st.Phase != v1alpha1.PhasePaused {
			return ignore(ActionNotApplicable, "not paused ("+string(d.st.Phase)+")")
		}
		d.st.Phase = v1alpha1.PhaseProgressing
		if !stableResumedHold(d.st.Hold) {
			d.st.Hold = nil
		}
		if d.st.Step >= 0 {
			// Judge a full interval of traffic from now on.
			t := d.now()
			d.st.StepStartedAt = &t
		}
		d.st.Message = "resumed by " + who
		d.record(v1alpha1.VerdictManual, d.st.Message, nil)
		d.event(false, "Resumed", d.st.Message)
		d.after(d.in.Policy.Interval)
		return true
	case v1alpha1.ActionPromote, v1alpha1.ActionPromoteFull:
		if !inFlight {
			return ignore(ActionNotApplicable, "no canary in flight ("+string(d.st.Phase)+")")
		}
		if d.st.Step < 0 && !d.in.CanaryReady {
			return ignore(ActionNotApplicable, "the canary is not ready yet")
		}
		// A person passing a step passes its gate too.
		d.st.Phase = v1alpha1.PhaseProgressing
		if d.st.Hold != nil && d.st.Hold.Reason == v1alpha1.HoldGate {
			d.st.Hold = nil
		}
		if req.Kind == v1alpha1.ActionPromoteFull {
			d.startPromotion("promoted by "+who+", skipping the remaining steps", nil)
			return true
		}
		d.advance("step passed by "+who, v1alpha1.VerdictManual, nil)
		return true
	case v1alpha1.ActionRetry:
		rejected := d.st.RejectedRevision
		if (d.st.Phase != v1alpha1.PhaseRolledBack && d.st.Phase != v1alpha1.PhaseAborted) || rejected == "" {
			return ignore(ActionNotApplicable, "no rolled back revision to retry ("+string(d.st.Phase)+")")
		}
		if d.in.DesiredRevision != rejected {
			return ignore(ActionNotApplicable, fmt.Sprintf("the Deployment's template is now %s, not the rejected %s", d.in.DesiredRevision, rejected))
		}
		d.st.RejectedRevision = ""
		d.startCanary(rejected, v1alpha1.VerdictStart, fmt.Sprintf("revision %s retried by %s: canary starting", rejected, who))
		return true
	}
	return ignore(ActionNotApplicable, "unknown action")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
