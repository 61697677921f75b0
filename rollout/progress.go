package rollout

import (
	"fmt"
	"strconv"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/webhooks"
)

// progress moves a canary: first until it is ready, then through the steps,
// judging each one after it has served a full interval.
func (d *decider) progress() {
	now := d.in.Now
	if d.st.Step < 0 {
		d.startTraffic()
		return
	}
	w := d.st.CanaryWeight
	if want := d.routing(w); d.in.Weights != want {
		if d.previousFlip(want) {
			// The previous revision's pods came up or went (a revert
			// stands): stable's share moves to or from them. Not another
			// writer: set, and nothing counted.
			d.setWeight(w)
			d.after(time.Second)
			return
		}
		d.drift(want)
		return
	}
	if d.st.Reasserts > 0 && d.st.StepStartedAt != nil && now.Sub(d.st.StepStartedAt.Time) >= d.in.Policy.Interval {
		// Set back, and it stayed so for a whole interval: whoever else
		// wrote it has stopped.
		d.st.Reasserts = 0
		if h := d.st.Hold; h != nil && h.Reason == v1alpha1.HoldOtherWriter {
			d.st.Hold = nil
			d.event(false, "RoutingRestored", "the routing has stayed as fledge set it for a whole interval: the rollout goes on")
		}
	}
	if !d.canaryReady() {
		return
	}
	if reason, msg := d.flagTrouble(); reason != "" {
		// Said at once, while the checks go on: a failing canary is
		// still rolled back.
		d.hold(reason, msg)
	} else if h := d.st.Hold; h != nil && (h.Reason == v1alpha1.HoldFlagEdited || h.Reason == v1alpha1.HoldFlagUnreadable || h.Reason == v1alpha1.HoldFlagInUse) {
		d.st.Hold = nil
	}
	if d.st.StepPassed && d.moveOn("the gate opened", nil) {
		return
	}
	if !d.st.StepPassed && d.in.ForeignAutoscaler == "" {
		d.followAutoscaler()
	}
	if d.deadline() {
		return
	}
	due := d.analysisDue()
	if !now.Before(due) {
		d.analyze()
		return
	}
	if look := d.lookDue(); !look.IsZero() {
		if !now.Before(look) {
			d.look()
			return
		}
		due = minTime(due, look)
	}
	d.after(due.Sub(now))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// analyze runs one analysis round of the current step: the rollout and
// rollback hooks first (a load test feeds the metrics the round then
// reads), then the metric checks.
func (d *decider) analyze() {
	rollout := d.roundHooks()
	recs, done := d.runHooks(rollout, d.st.Step, d.st.Round)
	if !done {
		d.waitForHooks(recs)
		return
	}
	if why, ok := rollbackAsked(recs); ok {
		d.rollback(v1alpha1.VerdictRollback, fmt.Sprintf("%s: %s", d.where(), why), nil)
		return
	}
	if d.loadRunning() {
		return
	}
	checks, ok := d.checksFor(StageMetrics(d.in.Policy, &d.st))
	if !ok {
		return
	}
	checks, failed := d.observeAll(checks)
	if len(failed) > 0 {
		d.rollback(v1alpha1.VerdictRollback, fmt.Sprintf("%s: %s", d.where(), describeComparisons(failed)), checks)
		return
	}
	if len(recs) > 0 {
		checks = append(hookChecks(rollout, recs), checks...)
	}
	d.judge(checks)
}

// loadRunning reports whether this round's load on demand was called and
// has not answered. The round is measured again once it has; until then
// the comparisons keep looking at their own pace (one shown worse is
// rolled back at once, and with every comparison shown no worse the
// canary may be promoted, which ends the load's purpose), but nothing
// else is measured. Measuring at every decision instead would, with
// comparisons, record a look at each one, whose status write triggers the
// next decision: a loop of queries for as long as the load runs.
func (d *decider) loadRunning() bool {
	load := d.loadOnDemand()
	if len(load) == 0 || d.st.Step < 0 || !d.hooksStarted(load, d.st.Step, d.st.Round) {
		return false
	}
	if _, done := d.runHooks(load, d.st.Step, d.st.Round); done {
		return false
	}
	look := d.lookDue()
	if look.IsZero() {
		return true // the runner's answer, or the call's retry, decides again
	}
	if !d.in.Now.Before(look) {
		d.look()
		if d.st.Phase == v1alpha1.PhaseProgressing && !d.needChecks {
			d.st.Message += "; generating load with " + hookNames(load)
		}
		return true
	}
	d.after(look.Sub(d.in.Now))
	return true
}

// roundHooks are the hooks called at every analysis round: rollout hooks
// (except load on demand) and rollback hooks, in policy order.
func (d *decider) roundHooks() []Hook {
	var out []Hook
	for _, h := range d.in.Policy.Hooks {
		if h.Type == webhooks.Rollout && !h.OnNotEnoughData || h.Type == webhooks.Rollback {
			out = append(out, h)
		}
	}
	return out
}

// analysisDue is when the current step is next judged: a full interval
// after the step started, and after the previous analysis, so each
// analysis looks at a window of traffic no other one judged.
func (d *decider) analysisDue() time.Time {
	from := d.in.Now
	if d.st.StepStartedAt != nil {
		from = d.st.StepStartedAt.Time
	}
	if d.st.LastAnalysisAt != nil && d.st.LastAnalysisAt.After(from) {
		return d.st.LastAnalysisAt.Add(d.in.Policy.Interval)
	}
	wait := d.in.Policy.Interval
	if c := CohortOf(&d.st); c != nil {
		// A cohort is first judged after its minimum duration.
		wait = max(wait, c.MinDuration.Duration)
	}
	return from.Add(wait)
}

// judge applies one round of checks. A failure counts towards the limit
// and, at the limit, rolls back. Otherwise anything that cannot be
// measured (or is inconclusive) holds: it is neither a pass nor a failure.
// Only a round in which every check passed moves on.
func (d *decider) judge(checks []analysis.Check) {
	failed, notEnough := false, false
	comparisons := d.comparisons()
	for i := range checks {
		switch c := &checks[i]; c.Outcome {
		case analysis.Pass:
		case analysis.Fail:
			failed = true
		default:
			notEnough = notEnough || c.Outcome == analysis.NotEnoughData || undecided(comparisons, *c)
		}
	}
	// Too few samples: load on demand, then measure again at once. Once
	// the load ran in this round, its figures are judged too. For a
	// comparison, too few samples is being undecided (Inconclusive): its
	// bounds narrow only with requests, on both sides, so the load runs at
	// every round until the comparison decides, and no more once it has.
	load := d.loadOnDemand()
	if len(load) > 0 && d.st.Step >= 0 && (d.hooksStarted(load, d.st.Step, d.st.Round) || !failed && notEnough) {
		recs, done := d.runHooks(load, d.st.Step, d.st.Round)
		if !done {
			// Not a hold yet (nobody needs telling): only if the load
			// does not help.
			unmeasured := make([]analysis.Check, 0, len(checks))
			for _, c := range checks {
				if c.Outcome != analysis.Pass && c.Outcome != analysis.Fail {
					unmeasured = append(unmeasured, c)
				}
			}
			d.st.Message = fmt.Sprintf("%s: cannot judge: %s; generating load with %s, then measuring again", d.where(), describe(unmeasured), hookNames(load))
			return
		}
		checks = append(hookChecks(load, recs), checks...)
	}
	d.judgeRound(checks)
}

// undecided reports whether c is a comparison that cannot tell yet: one
// that lacks evidence either way, as a threshold check lacks samples.
func undecided(comparisons []analysis.Metric, c analysis.Check) bool {
	return c.Outcome == analysis.Inconclusive && metricIndex(comparisons, c.Metric) >= 0
}

// loadOnDemand are the rollout hooks called when a check lacks samples, or
// a comparison cannot tell yet. They are found once a decision (several
// of its parts ask), and only read.
func (d *decider) loadOnDemand() []Hook {
	if d.load == nil {
		d.load = []Hook{}
		for i := range d.in.Policy.Hooks {
			if h := &d.in.Policy.Hooks[i]; h.Type == webhooks.Rollout && h.OnNotEnoughData {
				d.load = append(d.load, *h)
			}
		}
	}
	return d.load
}

func (d *decider) judgeRound(checks []analysis.Check) {
	t := d.now()
	d.st.LastAnalysisAt = &t
	d.st.Round++
	d.after(d.in.Policy.Interval)
	var failed, unmeasured []analysis.Check
	for _, c := range checks {
		switch comparison := metricIndex(d.comparisons(), c.Metric) >= 0; {
		case c.Outcome == analysis.Pass:
		case c.Outcome == analysis.Fail:
			failed = append(failed, c)
		case comparison && c.Outcome == analysis.Inconclusive:
			// Not shown either way yet: no reason to hold a step (a
			// promotion waits for it, below).
		default:
			unmeasured = append(unmeasured, c)
		}
	}
	step := d.where()
	switch {
	case len(failed) > 0:
		d.st.FailedChecks++
		d.st.StepPassed = false
		if d.st.Hold != nil && !gateHold(d.st.Hold) {
			d.st.Hold = nil // judged: no longer unable to judge
		}
		msg := fmt.Sprintf("%s: %s (failed checks %d/%d)", step, describe(failed), d.st.FailedChecks, d.in.Policy.FailureLimit)
		if int(d.st.FailedChecks) >= d.in.Policy.FailureLimit {
			d.rollback(v1alpha1.VerdictRollback, msg, checks)
			return
		}
		d.st.Message = msg
		d.event(true, "CheckFailed", msg)
		d.record(v1alpha1.VerdictFail, msg, checks)
	case len(unmeasured) > 0:
		reason := v1alpha1.HoldAnalysisError
		switch unmeasured[0].Outcome {
		case analysis.NotEnoughData:
			reason = v1alpha1.HoldNotEnoughData
		case analysis.Inconclusive:
			reason = v1alpha1.HoldInconclusive
		}
		msg := fmt.Sprintf("%s: cannot judge: %s", step, describe(unmeasured))
		if gateHold(d.st.Hold) {
			// Held at a gate (or by a flag) already: that hold stays, so
			// that it is not replaced and set again at every round (with
			// an Event each time); the round says why it could not judge.
			d.st.Message = msg
		} else {
			d.hold(reason, msg)
		}
		d.st.Message = msg
		d.record(v1alpha1.VerdictHold, msg, checks)
	default:
		if h := d.st.Hold; h != nil && !gateHold(h) && !(h.Reason == v1alpha1.HoldInconclusive && d.beforePromotion()) {
			// Judged: no longer unable to judge. At the last step an
			// Inconclusive hold stays while promotion waits (below), so
			// that it is not cleared and set again, with an Event, at
			// every round; promoteEarly or a move clears it.
			d.st.Hold = nil
		}
		why := step + ": all " + strconv.Itoa(len(checks)) + " checks passed"
		if d.st.Step < 0 {
			why = fmt.Sprintf("before traffic: all %d pre-rollout hooks passed", len(checks))
		}
		if d.st.Step >= 0 && d.promoteEarly(checks, true) {
			return
		}
		if pending := d.comparisonsPending(checks); len(pending) > 0 {
			// why, and the message of a hold at the last step (why, and
			// more), written at once.
			waits := "; promotion waits until every comparison shows the canary no worse"
			if d.previewing() {
				waits = "; the switch waits until every comparison shows the new revision no worse"
			}
			msg := joinComparisons([]string{step, ": the checks passed, and "}, pending, waits)
			why = msg[:len(msg)-len(waits)]
			if d.beforePromotion() {
				// Only a canary shown no worse is promoted (or, blue/green,
				// switched to).
				d.hold(v1alpha1.HoldInconclusive, msg)
				d.st.Message = msg
				d.record(v1alpha1.VerdictHold, msg, checks)
				d.after(d.lookGap())
				return
			}
		}
		if !d.moveOn(why, checks) {
			// Passed, and held at a gate: the round goes on record.
			d.record(v1alpha1.VerdictHold, why+"; "+d.st.Message, checks)
		}
	}
}

// moveOn advances past the current step once its gate is open: the
// confirm-traffic-increase gate before a weight increase, the
// confirm-promotion gate before promoting. While a gate is closed the step
// is marked passed and its checks keep running: a failure still counts.
// It reports whether the decision is complete (advanced, or rolled back at
// a gate's deadline).
func (d *decider) moveOn(why string, checks []analysis.Check) bool {
	if d.switched() {
		// Confirmed at the switch already.
		return d.afterTheSwitch(why, checks)
	}
	if !d.flagsAllowMove() {
		d.st.StepPassed = true
		return false
	}
	if !d.autoscalerAllowsMove() || !d.podsFor(d.nextShare()) {
		d.st.StepPassed = true
		return d.st.Phase != v1alpha1.PhaseProgressing // rolled back at the deadline
	}
	t := webhooks.ConfirmTrafficIncrease
	if d.beforePromotion() {
		t = webhooks.ConfirmPromotion
	}
	open, decided := d.gate(t)
	if decided {
		return true
	}
	if !open {
		d.st.StepPassed = true
		return false
	}
	d.advance(why, v1alpha1.VerdictAdvance, checks)
	return true
}

// advance moves to the next step, or to promotion after the last one.
func (d *decider) advance(why string, v v1alpha1.Verdict, checks []analysis.Check) {
	d.st.StepPassed = false
	if h := d.st.Hold; gateHold(h) || h != nil && h.Reason == v1alpha1.HoldInconclusive {
		d.st.Hold = nil
	}
	if int(d.st.Step)+1 >= len(d.st.Steps) {
		d.startPromotion(why+"; promoting", checks)
		return
	}
	if d.st.Step < 0 && !d.baseline() {
		return // the comparisons' counters first
	}
	d.st.Step++
	d.setWeight(d.st.Steps[d.st.Step])
	t := d.now()
	d.st.StepStartedAt = &t
	d.st.Message = fmt.Sprintf("%s; step %d/%d: canary at %d%%", why, d.st.Step+1, len(d.st.Steps), d.st.CanaryWeight)
	reason := "StepStarted"
	switch c := CohortOf(&d.st); {
	case d.previewing():
		d.st.Message = fmt.Sprintf("%s; preview: requests with %s reach revision %s, and no others", why, describeCohort(c), d.st.CanaryRevision)
	case c != nil && c.Mirror > 0:
		compared := ""
		if c.Compared {
			compared = ", its answers compared with stable's"
		}
		d.st.Message = fmt.Sprintf("%s; step %d/%d: %d%% of requests copied to the canary%s (users get stable's answers only)", why, d.st.Step+1, len(d.st.Steps), c.Mirror, compared)
	case c != nil:
		d.st.Message = fmt.Sprintf("%s; step %d/%d: cohort %q (%s) on the canary", why, d.st.Step+1, len(d.st.Steps), c.Name, describeCohort(c))
	case d.switched():
		d.st.Message, reason = d.switchMessage(why), "Switched"
	}
	d.event(false, reason, d.st.Message)
	if d.switched() {
		d.notifySwitched(checks)
	}
	if d.st.Step > 0 || len(checks) > 0 || v != v1alpha1.VerdictAdvance || CohortOf(&d.st) != nil {
		// The first step follows from the start (already in the log)
		// unless pre-rollout hooks judged it, or it is a cohort's.
		d.record(v, d.st.Message, checks)
	}
	d.after(d.in.Policy.Interval)
}

// lastStep reports whether the canary is at its last step.
func (d *decider) lastStep() bool { return int(d.st.Step)+1 >= len(d.st.Steps) }

// maxReasserts is how many times in a row a step's weights are set back
// at once after someone else changed them; then fledge stops fighting,
// holds, and sets them back only after a growing pause (reassertBackoff).
const maxReasserts = 3

// reassertBackoff is the pause before the n-th setting back (n past
// maxReasserts): 30 s, doubling, at most 10 minutes.
func reassertBackoff(n int32) time.Duration {
	return min(30*time.Second<<min(max(n-maxReasserts, 0), 5), 10*time.Minute)
}

// drift handles routing that does not read as decided: a crash between
// the status write and the weight change, a hand edit, or another writer
// (a GitOps tool re-applying its manifest). The weights are set back and
// the step's interval starts over, since its traffic was not at the
// weight judged, so no step is passed on a share it did not serve. After
// maxReasserts in a row fledge stops fighting: it holds, naming the other
// writer, and tries again after a growing pause; once the routing stays
// as set for a whole interval, the rollout goes on by itself. Meanwhile
// the comparisons keep looking (their evidence counts each side's
// requests as served, whatever the split), so a canary shown worse is
// still rolled back; nothing moves on.
func (d *decider) drift(want traffic.Weights) {
	now := d.in.Now
	who, seen := "the other writer", fmt.Sprintf("the routing reads %s, not %s", describeRouting(d.in.Weights), describeRouting(want))
	if d.in.RoutingWriter != "" {
		who = d.in.RoutingWriter
		seen += " (last changed by " + who + ")"
	}
	last := d.st.StepStartedAt
	wait := reassertBackoff(d.st.Reasserts)
	switch {
	case d.in.RoutingWriteFailed:
		// fledge's own write did not go through: write again, not counted
		// as a fight (the failed write is retried with the work queue's
		// backoff, and said in the log).
		d.setWeight(d.st.CanaryWeight)
		t := d.now()
		d.st.StepStartedAt = &t
		d.st.Message = fmt.Sprintf("%s: fledge's last write of it failed; writing it again", seen)
		d.after(d.driftLook())
	case d.st.Reasserts < maxReasserts || last == nil || now.Sub(last.Time) >= wait:
		d.st.Reasserts++
		d.setWeight(d.st.CanaryWeight)
		t := d.now()
		d.st.StepStartedAt = &t
		d.event(true, "WeightsReasserted", fmt.Sprintf("%s: set back (%d in a row); the step's interval starts over", seen, d.st.Reasserts))
		d.after(d.driftLook())
	default:
		msg := fmt.Sprintf("%s: fledge set it back %d times and stops fighting; it tries again at %s, and goes on once the routing stays as set for %s. Have %s leave fledge's routing alone (see the README on GitOps)",
			seen, d.st.Reasserts, last.Add(wait).UTC().Format(time.TimeOnly), d.in.Policy.Interval, who)
		d.hold(v1alpha1.HoldOtherWriter, msg)
		d.st.Message = msg
		d.after(min(last.Add(wait).Sub(now), d.driftLook()))
	}
	if d.deadline() {
		return
	}
	if look := d.lookDue(); !look.IsZero() && !now.Before(look) && d.in.CanaryReady {
		d.drifted = true
		held := d.st.Hold
		d.look()
		if d.st.Phase == v1alpha1.PhaseProgressing && held != nil && held.Reason == v1alpha1.HoldOtherWriter {
			d.st.Message = held.Message + "; " + d.st.Message
		}
	}
}

// driftLook is when to read the routing again while it drifts: at the
// comparisons' pace, or once an interval without any.
func (d *decider) driftLook() time.Duration {
	if len(d.comparisons()) > 0 && d.in.Policy.LookInterval > 0 {
		return min(d.in.Policy.LookInterval, d.in.Policy.Interval)
	}
	return d.in.Policy.Interval
}

// paused keeps the weight where it is and judges nothing.
func (d *decider) paused() {
	// A person's pause keeps the share where it is, but not on a canary
	// with no pod ready to serve it (withdraw).
	switch {
	case d.st.Step < 0:
	case d.st.CanaryWithdrawn && d.unserved() == "":
		d.giveBack()
	case !d.st.CanaryWithdrawn && d.unserved() != "":
		d.withdraw()
	case d.in.Weights != d.routing(d.st.CanaryWeight):
		d.setWeight(d.st.CanaryWeight)
	}
	msg := fmt.Sprintf("paused at %d%%", d.st.CanaryWeight)
	if d.st.CanaryWithdrawn {
		msg += ", its share withdrawn to stable until the canary has a ready pod"
	}
	d.hold(v1alpha1.HoldPaused, msg)
}

// describe says which checks did not pass, with values and thresholds:
// "success-rate Fail (0.9712, want >= 0.99, 540 samples)", joined by "; ".
// It is written with strconv rather than fmt (the same text: %.4g is
// AppendFloat's 'g' at 4), into one buffer, because a round that cannot
// judge says so at every round.
func describe(checks []analysis.Check) string {
	var buf [512]byte
	b := buf[:0]
	for i := range checks {
		c := &checks[i]
		if i > 0 {
			b = append(b, "; "...)
		}
		b = append(append(append(b, c.Metric...), ' '), c.Outcome...)
		b = append(b, " ("...)
		if c.Value != nil {
			b = strconv.AppendFloat(b, *c.Value, 'g', 4, 64)
		} else {
			b = append(b, "no value"...)
		}
		b = append(append(b, ", want "...), c.Threshold...)
		b = append(strconv.AppendInt(append(b, ", "...), c.Samples, 10), " samples)"...)
		if c.Outcome != analysis.Fail && c.Message != "" {
			b = append(append(b, ": "...), c.Message...)
		}
	}
	return string(b)
}

// describeRouting says what a routing sends to the canary.
func describeRouting(w traffic.Weights) string {
	s := fmt.Sprintf("%d%% to the canary", w.Canary)
	if !w.Cohort.IsZero() {
		s += fmt.Sprintf(" plus cohort %q", w.Cohort.Name)
	}
	if !w.Sticky.IsZero() {
		s += fmt.Sprintf(" plus sticky cookie %s", w.Sticky.Cookie)
	}
	return s
}

// describeCohort says what a cohort matches: "x-user-tier: beta".
func describeCohort(c *v1alpha1.CohortStage) string {
	if c.Host != "" {
		return "host " + c.Host
	}
	if c.Exact != "" {
		return c.Header + ": " + c.Exact
	}
	return c.Header + " ~ " + c.Regex
}
