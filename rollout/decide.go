package rollout

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/flags"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/webhooks"
)

// Input is everything a decision depends on. Decide reads nothing else:
// no clock, no API server, no randomness.
type Input struct {
	Now    time.Time
	Policy *Policy // effective: overrides applied, validated
	Status v1alpha1.FlightStatus
	Observed
	// Action is a manual action asked for (from the annotation), if any.
	Action *ActionRequest
	// Checks are the analysis results for this look-in. They are only
	// needed when a decision says NeedChecks; see Decision. Checks of
	// metrics the decision does not judge are left out, and one missing
	// for a metric it judges is asked for (NeedChecks) again.
	Checks []analysis.Check
	// Calls are the answers of hook calls made in the background, by
	// call ID, until the status records them.
	Calls map[string]CallResult
	// Delivered are the final outcomes of outbox deliveries, by ID.
	Delivered map[string]DeliveryResult
	// FlagDocs are the release flags' ConfigMap keys as read, by
	// FlagDocKey.
	FlagDocs map[string]FlagDoc
	// Gates are the policy's flag gates evaluated for this look, with
	// the Flight as it stands as context.
	Gates []flags.GateResult
	// FlagsInUse names, by FlagID, the release flags another Flight of
	// the namespace is stepping (in flight, and started first): one flag
	// follows one rollout at a time.
	FlagsInUse map[string]string
}

// CallResult is a hook's answer.
type CallResult struct {
	State    v1alpha1.CallState // OK, Rejected or Error
	Status   int
	Message  string
	Load     *webhooks.LoadResult
	Attempts int
	At       time.Time
}

// DeliveryResult is the final outcome of a delivery.
type DeliveryResult struct {
	Delivered bool
	Attempts  int
	Message   string
	At        time.Time
}

// ActionRequest is a manual action as asked for.
type ActionRequest struct {
	Kind   v1alpha1.ActionKind
	By     string // who, through what: "annotation", "api:<user>"
	Reason string
	// RequestID makes an API request idempotent: a request id already in
	// the status is answered from there, not taken again.
	RequestID string
	// Revision, if set, is a precondition: the canary revision the
	// caller means.
	Revision string
}

// ActionOutcome says what became of Input.Action.
type ActionOutcome struct {
	Taken bool
	// Replay: the request id was taken (or refused) before; Taken and
	// Message are the first answer's.
	Replay bool
	// Refusal, when not taken: ActionNotApplicable or ActionRevisionMismatch.
	Refusal string
	Message string
}

// Refusals of a manual action.
const (
	ActionNotApplicable    = "NotApplicable"
	ActionRevisionMismatch = "RevisionMismatch"
	ActionRequestIDReused  = "RequestIDReused"
)

// Decision is the outcome of Decide: the next status, the actions to apply
// and when to look again.
//
// The executor writes Status first, with optimistic concurrency, and only
// then applies Actions, in order. The status write is the commit point: if
// it loses a race (another replica, a stale cache) nothing is applied; if
// fledge dies after it, the next decision re-derives every missing effect
// from the persisted status (all actions are idempotent and re-asserted
// level-wise), so no step is ever repeated or skipped.
type Decision struct {
	Status  v1alpha1.FlightStatus
	Actions []Action
	// RequeueAfter is when to look again at the latest (0: only on change).
	RequeueAfter time.Duration
	// NeedChecks: analysis is due and Input.Checks was empty. Nothing else
	// in the decision is meaningful: measure the Measure metrics and
	// decide again with their checks.
	NeedChecks bool
	Measure    []analysis.Metric
	// Action is what became of Input.Action (nil without one).
	Action *ActionOutcome
}

// resync bounds how long a Flight goes unlooked-at when nothing is due, so
// drift (a weight edited by hand) is corrected even without an event.
const resync = 5 * time.Minute

// Decide computes the next step of a rollout.
func Decide(in Input) Decision {
	d := &decider{in: in, st: statusForDecision(&in.Status), requeue: resync}
	if !in.OptedOut {
		// Where the linked flags stand, before deciding to move on.
		d.syncFlags(false)
		// The config content seen, and whether stable's share is pinned.
		d.trackConfig()
	}
	d.decide()
	if d.st.Phase == v1alpha1.PhaseProgressing && d.st.Step >= 0 && len(d.comparisons()) > 0 {
		// Comparisons look every LookInterval (further apart for a quiet
		// canary: lookGap), whatever else is due.
		d.after(d.lookGap())
	}
	if d.needChecks {
		return Decision{Status: in.Status, NeedChecks: true, Measure: d.measure}
	}
	if !in.OptedOut {
		// The flags follow the routing in the same decision.
		d.syncFlags(true)
		d.noteFlags()
		d.flushOutbox()
		d.flagWritesLast()
	}
	d.retireBaseline()
	d.retireComparator()
	d.keepConfig()
	d.keepPrevious()
	d.retirePrevious()
	d.summarize()
	d.conditions()
	return Decision{Status: d.st, Actions: d.actions, RequeueAfter: d.requeue, Action: d.outcome}
}

// decider accumulates one decision.
type decider struct {
	in         Input
	st         v1alpha1.FlightStatus
	actions    []Action
	requeue    time.Duration
	needChecks bool
	measure    []analysis.Metric // what needChecks asks for
	// by is who asked for the manual action being taken, for messages.
	by string
	// outcome is what became of the manual action.
	outcome *ActionOutcome
	// newRecords and newOutbox count the decision log entries and
	// notifications this decision added.
	newRecords int
	newOutbox  []string
	// cmp caches the policy's comparisons (non-nil once found).
	cmp []analysis.Metric
	// drifted: the routing does not read as decided; the comparisons
	// still look (their evidence counts the shares as served), but
	// nothing moves on.
	drifted bool
	// judged is the last comparison judged (none while its message is
	// empty), and judgedKey what it read (see judgeEvidence).
	judged    judgement
	judgedKey judgementKey
	// hookIDs are the hook call IDs this decision derived (hookCallID).
	hookIDs []hookID
	// load caches loadOnDemand (non-nil once found).
	load []Hook
}

func (d *decider) decide() {
	if d.in.OptedOut {
		d.optOut()
		return
	}
	if d.st.Phase == "" || d.st.Phase == v1alpha1.PhaseInitializing {
		d.initialize()
		return
	}
	if d.in.RoutingError != "" {
		// Without routing nothing can move safely: hold where we are.
		d.hold(v1alpha1.HoldRouting, "routing: "+d.in.RoutingError)
		d.do(EnsureRouting{})
		d.after(10 * time.Second)
		return
	}
	if d.intakeAction() {
		return
	}
	if d.nameTaken() {
		return
	}
	switch d.st.Phase {
	case v1alpha1.PhaseProgressing:
		if !d.stableResumed() && !d.newRevision() {
			d.progress()
		}
	case v1alpha1.PhasePaused:
		if !d.stableResumed() && !d.newRevision() {
			d.paused()
		}
	case v1alpha1.PhasePromoting:
		d.promote()
	case v1alpha1.PhaseRollingBack:
		d.rollingBack() // a new revision waits until traffic is back on stable
	default: // terminal phases
		if d.watchDecides() {
			return
		}
		if !d.newRevision() {
			d.steady()
		}
	}
}

// nameTaken holds a Flight that needs a canary (one in flight, or a new
// revision waiting for one) while a name fledge would create it under is
// someone else's: fledge changes only what it created. It reports whether
// the decision is complete.
func (d *decider) nameTaken() bool {
	if d.in.NameTaken == "" {
		return false
	}
	inFlight := d.st.Phase == v1alpha1.PhaseProgressing || d.st.Phase == v1alpha1.PhasePaused
	if !inFlight && (!d.st.Phase.Terminal() || d.in.DesiredRevision == d.st.StableRevision || d.in.DesiredRevision == d.st.RejectedRevision) {
		// Nothing needs a canary, or it is on its way out (rolling back)
		// or serving everyone while stable is updated (promoting).
		return false
	}
	msg := d.in.NameTaken + ": fledge changes only objects it created, so no canary runs until that name is free (rename or delete it)"
	if inFlight && d.in.Weights != d.rest() {
		// The canary being judged is gone, and what holds its name is
		// not fledge's to send users to.
		d.do(SetWeights{Weights: d.rest()})
		msg += "; all traffic on " + d.restName() + " meanwhile"
	}
	d.hold(v1alpha1.HoldNameTaken, msg)
	d.st.Message = msg
	d.after(30 * time.Second)
	return true
}

// initialize takes the Deployment over: fledge holds it paused from now on,
// but lets a rollout Kubernetes already started finish first, so the
// stable workload never stays half-updated.
func (d *decider) initialize() {
	d.st.Phase = v1alpha1.PhaseInitializing
	d.st.Step = -1
	if !d.in.DeploymentPaused && (d.in.DeploymentSettled || d.in.DeploymentOneRevision) {
		// Paused first, before anything else is set up (or found wrong):
		// from the first look on, a new template waits for fledge instead
		// of being rolled out by Kubernetes on its own. (A Deployment
		// rolling between two templates already is left to finish: paused
		// half-way, it would stay so.)
		d.do(SetStablePaused{Paused: true})
	}
	d.do(EnsureRouting{})
	if d.in.RoutingError != "" {
		// Usually the routing does not exist yet and EnsureRouting is about
		// to make it: look again soon. The hold says what is wrong if not.
		d.hold(v1alpha1.HoldRouting, "routing: "+d.in.RoutingError)
		d.after(time.Second)
		return
	}
	if !d.in.DeploymentSettled {
		d.hold(v1alpha1.HoldDeploymentRollout, "waiting for the Deployment's own rollout to finish before taking it over")
		d.after(5 * time.Second)
		return
	}
	if !d.in.DeploymentPaused {
		// Idle is written only once the pause is observed: whoever waits
		// for it (a pipeline about to push an image) must never meet a
		// Deployment that would roll a new template out by itself. (The
		// pause was asked for above.)
		d.st.Message = "pausing the Deployment to take it over"
		d.after(time.Second)
		return
	}
	d.st.StableRevision = d.in.DeploymentRevision
	d.st.StableImages = slices.Clone(d.in.StableImages)
	d.st.Phase = v1alpha1.PhaseIdle
	d.st.Hold = nil
	d.st.Message = "holding the Deployment at revision " + d.st.StableRevision
	d.event(false, "Initialized", d.st.Message)
	// A template already pending is canaried on the next look, which then
	// sees the Deployment paused.
	d.after(time.Second)
}

// newRevision starts, restarts or cancels a canary when the Deployment's
// template changed. It reports whether it decided.
func (d *decider) newRevision() bool {
	desired := d.in.DesiredRevision
	switch {
	case desired == "":
		return false
	case d.st.Phase.Terminal():
		if desired == d.st.StableRevision {
			if d.st.RejectedRevision != "" {
				d.st.RejectedRevision = ""
				d.st.Message = "the template is back at the stable revision " + desired
				d.record(v1alpha1.VerdictRevert, d.st.Message, nil)
			}
			return false
		}
		if desired == d.st.RejectedRevision {
			return false // rejected: wait for another template
		}
		if d.in.ConfigProblem != "" {
			d.hold(v1alpha1.HoldConfigMissing, fmt.Sprintf("new revision %s is not canaried yet: %s; it starts once that can be read (or the template changes)", desired, d.in.ConfigProblem))
			d.st.Message = d.st.Hold.Message
			d.after(10 * time.Second)
			return true
		}
		d.startCanary(desired, v1alpha1.VerdictStart, "new revision "+desired+": canary starting")
		return true
	case desired == d.st.CanaryRevision:
		return false
	case d.watchState() == v1alpha1.WatchReverted && desired == d.st.Watch.Previous:
		// The template went back to the revision the revert serves,
		// during a fix's canary: the fix goes, the Deployment is
		// restored.
		d.backToStable(v1alpha1.PhaseRolledBack, v1alpha1.VerdictRevert, fmt.Sprintf("the template went back to %s during the canary of %s", desired, d.st.CanaryRevision))
		d.restore()
		return true
	case desired == d.st.StableRevision:
		// Reverted mid-rollout: nothing to canary any more.
		d.backToStable(v1alpha1.PhaseIdle, v1alpha1.VerdictRevert, "the template went back to the stable revision "+desired+" during the rollout of "+d.st.CanaryRevision)
		d.st.RejectedRevision = ""
		d.event(false, "Reverted", d.st.Message)
		return true
	case d.in.ConfigProblem != "":
		// The canary in flight goes on; the new revision waits for what
		// it reads (its pods could not start).
		d.st.Message = fmt.Sprintf("new revision %s waits: %s; the canary of %s goes on meanwhile", desired, d.in.ConfigProblem, d.st.CanaryRevision)
		return false
	default:
		d.startCanary(desired, v1alpha1.VerdictRestart, fmt.Sprintf("revision %s replaces %s at weight %d%%: canary restarting", desired, d.st.CanaryRevision, d.st.CanaryWeight))
		return true
	}
}

func (d *decider) startCanary(rev string, v v1alpha1.Verdict, msg string) {
	now := d.now()
	reroute := d.st.CanaryWeight != 0 || d.in.Weights != d.rest()
	inFlight := !d.st.Phase.Terminal() && d.st.Phase != v1alpha1.PhaseInitializing
	if inFlight {
		d.canaryTrafficEnds()
	}
	if w := d.st.Watch; w != nil && w.State == v1alpha1.WatchPreparing {
		// A promotion interrupted: nothing to watch, and the previous
		// revision's pods go.
		w.State, w.Message = v1alpha1.WatchEnded, fmt.Sprintf("revision %s arrived before the promotion of %s was done: no watch", rev, w.Revision)
	}
	d.st.Phase = v1alpha1.PhaseProgressing
	d.st.CanaryRevision = rev
	if d.st.Config != nil {
		d.keepContents() // the new revision's content, for its canary
	}
	d.st.RejectedRevision = ""
	d.planCohorts(inFlight)
	d.st.Step = -1
	d.st.CanaryWeight, d.st.CanaryWithdrawn = 0, false
	d.st.FailedChecks = 0
	d.st.PromotionStage = ""
	d.st.RevisionStartedAt = &now
	d.st.StepStartedAt = nil
	d.st.LastAnalysisAt = nil
	d.st.LastLookAt, d.st.Evidence = nil, nil
	d.st.StageStartedAt = nil
	d.st.Hold = nil
	d.st.Message = msg
	d.st.Round, d.st.GateRound, d.st.StepPassed, d.st.Calls = 0, 0, false, nil
	d.st.CanaryImages = slices.Clone(d.in.DesiredImages)
	if reroute {
		d.setWeight(0) // at step -1: no match routes either
	}
	if len(d.in.StableImages) > 0 && d.in.DeploymentRevision == d.st.StableRevision {
		d.st.StableImages = slices.Clone(d.in.StableImages)
	}
	if len(d.in.Policy.hooksOf(webhooks.ConfirmRollout)) == 0 {
		// Otherwise the canary starts once the confirm-rollout gate opens.
		d.ensurePods()
	}
	d.event(false, "CanaryStarted", msg)
	d.record(v, msg, nil)
	d.notifyStarted()
	d.after(2 * time.Second)
}

// steady keeps a settled Flight settled, re-asserted on every look.
func (d *decider) steady() {
	d.st.Hold = nil
	if !d.stableToTemplate() {
		d.rejectedResumed()
		d.settle()
	}
}

// settle asks for what a Flight at rest needs and does not have yet: all
// traffic on stable, the Deployment paused, no canary running. The
// observations are fresh, and every later look asks again.
func (d *decider) settle() {
	if d.in.Weights != d.rest() {
		d.do(SetWeights{Weights: d.rest()})
	}
	if !d.in.DeploymentPaused {
		d.do(SetStablePaused{Paused: true})
	}
	if d.in.CanaryReplicas != 0 {
		d.do(ScaleCanaryDown{})
	}
}

// --- helpers ---

func (d *decider) now() metav1.Time { return metav1.NewTime(d.in.Now) }

func (d *decider) do(a Action) { d.actions = append(d.actions, a) }

// after asks to look again no later than in.
func (d *decider) after(in time.Duration) {
	if in < time.Second {
		in = time.Second
	}
	if in < d.requeue || d.requeue == 0 {
		d.requeue = in
	}
}

func (d *decider) event(warning bool, reason, msg string) {
	d.do(RecordEvent{Warning: warning, Reason: reason, Message: msg})
}

// setWeight sets the canary's share, with the match routes of the stage
// (see routing).
func (d *decider) setWeight(canary int32) {
	d.st.CanaryWeight = canary
	d.do(SetWeights{Weights: d.routing(canary)})
}

// hold records why the Flight is not moving; an Event is recorded when the
// reason changes, not on every look.
func (d *decider) hold(reason, msg string) {
	if d.st.Hold != nil && d.st.Hold.Reason == reason {
		d.st.Hold.Message = msg
		return
	}
	d.st.Hold = &v1alpha1.Hold{Reason: reason, Message: msg, Since: d.now()}
	// A person's pause is not a warning, nor a canary's pods coming up for
	// its next share; anything else holding is.
	d.event(reason != v1alpha1.HoldPaused && reason != v1alpha1.HoldCanaryScaling, "Held", reason+": "+msg)
	if notableHold(reason) {
		d.notifyHeld(reason, msg)
		d.tellHooks(webhooks.Event, string(v1alpha1.VerdictHold), reason+": "+msg)
	}
}

func (d *decider) record(v v1alpha1.Verdict, msg string, checks []analysis.Check) {
	d.newRecords++
	rec := v1alpha1.DecisionRecord{
		At: d.now(), Revision: d.st.CanaryRevision, Step: d.st.Step, Weight: d.st.CanaryWeight,
		Verdict: v, Message: msg, Checks: checks,
	}
	if n := len(d.st.Decisions); n > 0 && v == v1alpha1.VerdictHold && sameHold(d.st.Decisions[n-1], rec) {
		// The same hold as the last record, round after round: that
		// record brought up to date and counted, not another one.
		// Thirty identical holds would push the log's history out, and
		// weigh on every status write (a rollout's status was five times
		// larger). (A copy: the input's array is shared, never written.)
		last := d.st.Decisions[n-1]
		rec.Repeats, rec.Since = last.Repeats+1, last.Since
		if rec.Since == nil {
			rec.Since = last.At.DeepCopy()
		}
		log := slices.Clone(d.st.Decisions)
		log[n-1] = rec
		d.st.Decisions = log
		return
	}
	if n := len(d.st.Decisions); n >= MaxDecisions {
		// A full log: the newest MaxDecisions-1 and this one, in an array
		// of its own (the input's is shared, and never written).
		log := make([]v1alpha1.DecisionRecord, 0, MaxDecisions)
		log = append(log, d.st.Decisions[n-MaxDecisions+1:]...)
		d.st.Decisions = append(log, rec)
	} else {
		d.st.Decisions = append(d.st.Decisions, rec)
	}
	if v != v1alpha1.VerdictHold {
		// Holds reach event hooks through hold, once per reason.
		d.tellHooks(webhooks.Event, string(v), msg)
	}
}

// sameHold reports whether record next holds as last did: the same
// revision at the same step and weight, with the same checks reaching the
// same outcomes.
func sameHold(last, next v1alpha1.DecisionRecord) bool {
	if last.Verdict != v1alpha1.VerdictHold || last.Revision != next.Revision || last.Step != next.Step || last.Weight != next.Weight || len(last.Checks) != len(next.Checks) {
		return false
	}
	for i := range last.Checks {
		if last.Checks[i].Metric != next.Checks[i].Metric || last.Checks[i].Outcome != next.Checks[i].Outcome {
			return false
		}
	}
	return true
}

// conditions derives the Flight's conditions from its status.
// summarize keeps the status's summary for people: the step as "2/4", and
// when the phase or the step last changed.
func (d *decider) summarize() {
	if n := int32(len(d.st.Steps)); n > 0 {
		// "%d/%d", written with strconv; the status's own string is kept
		// when it reads the same (it does at almost every look).
		var buf [24]byte
		b := strconv.AppendInt(buf[:0], int64(min(max(d.st.Step+1, 0), n)), 10)
		b = strconv.AppendInt(append(b, '/'), int64(n), 10)
		if string(b) != d.st.Progress {
			d.st.Progress = string(b)
		}
	} else {
		d.st.Progress = ""
	}
	old := d.in.Status
	if d.st.LastTransitionTime == nil || d.st.Phase != old.Phase || d.st.Step != old.Step || d.st.CanaryRevision != old.CanaryRevision {
		now := d.now()
		d.st.LastTransitionTime = &now
	}
}

func (d *decider) conditions() {
	now := d.now()
	inFlight := metav1.Condition{Type: "Progressing", Status: metav1.ConditionFalse, Reason: string(d.st.Phase), Message: d.st.Message, LastTransitionTime: now}
	if !d.st.Phase.Terminal() && d.st.Phase != v1alpha1.PhaseInitializing {
		inFlight.Status = metav1.ConditionTrue
	}
	held := metav1.Condition{Type: "Held", Status: metav1.ConditionFalse, Reason: "NotHeld", LastTransitionTime: now}
	if h := d.st.Hold; h != nil {
		held.Status, held.Reason, held.Message = metav1.ConditionTrue, h.Reason, h.Message
	}
	if conditionSet(d.st.Conditions, &inFlight) && conditionSet(d.st.Conditions, &held) {
		return // as they were: the input's, shared (statusForDecision)
	}
	// A copy of their own to set them in (a Condition holds no reference
	// but its time's location, which DeepCopy shares too).
	d.st.Conditions = slices.Clone(d.st.Conditions)
	meta.SetStatusCondition(&d.st.Conditions, inFlight)
	meta.SetStatusCondition(&d.st.Conditions, held)
}

// conditionSet reports whether conds has c as SetStatusCondition would
// leave it: one of its type, with its status, reason, message and
// observed generation (setting it changes nothing).
func conditionSet(conds []metav1.Condition, c *metav1.Condition) bool {
	old := meta.FindStatusCondition(conds, c.Type)
	return old != nil && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message && old.ObservedGeneration == c.ObservedGeneration
}
