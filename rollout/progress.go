package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/fledgehq/fledge/analysis"
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
	if d.in.Weights.Canary != w {
		// The routing does not say what we decided: a crash between the
		// status write and the weight change, or a hand edit. Re-assert;
		// the step's interval starts over, since its traffic was not at
		// the weight being judged.
		d.setWeight(w)
		t := d.now()
		d.st.StepStartedAt = &t
		d.event(true, "WeightsReasserted", fmt.Sprintf("routing sent %d%% to the canary, not %d%%: set back; the step's interval starts over", d.in.Weights.Canary, w))
		d.after(d.in.Policy.Interval)
		return
	}
	if !d.canaryReady() {
		return
	}
	due := d.analysisDue()
	if now.Before(due) {
		d.after(due.Sub(now))
		return
	}
	if len(d.in.Checks) == 0 {
		d.needChecks = true
		return
	}
	d.judge(d.in.Checks)
}

// startTraffic waits for the canary to be ready, then sends it the first
// step's share. A canary that never becomes ready within the progress
// deadline is rolled back.
func (d *decider) startTraffic() {
	if d.in.CanaryRevision != d.st.CanaryRevision || d.in.CanaryReplicas == 0 || !d.in.CanaryReady {
		started := d.in.Now
		if d.st.RevisionStartedAt != nil {
			started = d.st.RevisionStartedAt.Time
		}
		deadline := started.Add(d.in.Policy.ProgressDeadline)
		if !d.in.Now.Before(deadline) {
			d.rollback(VerdictRollback, fmt.Sprintf("canary %s not ready within the progress deadline (%s)", d.st.CanaryRevision, d.in.Policy.ProgressDeadline), nil)
			return
		}
		d.do(EnsureCanary{Revision: d.st.CanaryRevision})
		d.after(min(2*time.Second, deadline.Sub(d.in.Now)))
		return
	}
	d.st.Step = 0
	d.setWeight(d.st.Steps[0])
	t := d.now()
	d.st.StepStartedAt = &t
	d.st.Hold = nil
	d.st.Message = fmt.Sprintf("step 1/%d: canary at %d%%", len(d.st.Steps), d.st.CanaryWeight)
	d.event(false, "StepStarted", d.st.Message)
	d.after(d.in.Policy.Interval)
}

// canaryReady holds while the canary is not ready, and rolls it back when
// that lasts longer than the progress deadline.
func (d *decider) canaryReady() bool {
	if d.in.CanaryReady && d.in.CanaryRevision == d.st.CanaryRevision {
		if d.st.Hold != nil && d.st.Hold.Reason == HoldCanaryNotReady {
			d.st.Hold = nil
		}
		return true
	}
	d.hold(HoldCanaryNotReady, fmt.Sprintf("canary %s is not ready", d.st.CanaryRevision))
	if d.in.Now.Sub(d.st.Hold.Since.Time) >= d.in.Policy.ProgressDeadline {
		d.rollback(VerdictRollback, fmt.Sprintf("canary %s not ready for longer than the progress deadline (%s)", d.st.CanaryRevision, d.in.Policy.ProgressDeadline), nil)
		return false
	}
	d.do(EnsureCanary{Revision: d.st.CanaryRevision})
	d.after(2 * time.Second)
	return false
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
		from = d.st.LastAnalysisAt.Time
	}
	return from.Add(d.in.Policy.Interval)
}

// judge applies one round of checks. A failure counts towards the limit
// and, at the limit, rolls back. Otherwise anything that cannot be
// measured (or is inconclusive) holds: it is neither a pass nor a failure.
// Only a round in which every check passed advances.
func (d *decider) judge(checks []analysis.Check) {
	t := d.now()
	d.st.LastAnalysisAt = &t
	d.after(d.in.Policy.Interval)
	var failed, unmeasured []analysis.Check
	for _, c := range checks {
		switch c.Outcome {
		case analysis.Pass:
		case analysis.Fail:
			failed = append(failed, c)
		default:
			unmeasured = append(unmeasured, c)
		}
	}
	step := fmt.Sprintf("step %d/%d at %d%%", d.st.Step+1, len(d.st.Steps), d.st.CanaryWeight)
	switch {
	case len(failed) > 0:
		d.st.FailedChecks++
		msg := fmt.Sprintf("%s: %s (failed checks %d/%d)", step, describe(failed), d.st.FailedChecks, d.in.Policy.FailureLimit)
		if int(d.st.FailedChecks) >= d.in.Policy.FailureLimit {
			d.rollback(VerdictRollback, msg, checks)
			return
		}
		d.st.Message = msg
		d.event(true, "CheckFailed", msg)
		d.record(VerdictFail, msg, checks)
	case len(unmeasured) > 0:
		reason := HoldAnalysisError
		switch unmeasured[0].Outcome {
		case analysis.NotEnoughData:
			reason = HoldNotEnoughData
		case analysis.Inconclusive:
			reason = HoldInconclusive
		}
		msg := fmt.Sprintf("%s: cannot judge: %s", step, describe(unmeasured))
		d.hold(reason, msg)
		d.st.Message = msg
		d.record(VerdictHold, msg, checks)
	default:
		d.st.Hold = nil
		d.advance(fmt.Sprintf("%s: all %d checks passed", step, len(checks)), VerdictAdvance, checks)
	}
}

// advance moves to the next step, or to promotion after the last one.
func (d *decider) advance(why string, v Verdict, checks []analysis.Check) {
	if int(d.st.Step)+1 >= len(d.st.Steps) {
		d.startPromotion(why+"; promoting", checks)
		return
	}
	d.st.Step++
	d.setWeight(d.st.Steps[d.st.Step])
	t := d.now()
	d.st.StepStartedAt = &t
	d.st.Message = fmt.Sprintf("%s; step %d/%d: canary at %d%%", why, d.st.Step+1, len(d.st.Steps), d.st.CanaryWeight)
	d.event(false, "StepStarted", d.st.Message)
	d.record(v, d.st.Message, checks)
	d.after(d.in.Policy.Interval)
}

// paused keeps the weight where it is and judges nothing.
func (d *decider) paused() {
	if d.st.Step >= 0 && d.in.Weights.Canary != d.st.CanaryWeight {
		d.setWeight(d.st.CanaryWeight)
	}
	d.hold(HoldPaused, "paused at "+fmt.Sprintf("%d%%", d.st.CanaryWeight))
}

// describe says which checks did not pass, with values and thresholds.
func describe(checks []analysis.Check) string {
	parts := make([]string, 0, len(checks))
	for _, c := range checks {
		value := "no value"
		if c.Value != nil {
			value = fmt.Sprintf("%.4g", *c.Value)
		}
		s := fmt.Sprintf("%s %s (%s, want %s, %d samples)", c.Metric, c.Outcome, value, c.Threshold, c.Samples)
		if c.Outcome != analysis.Fail && c.Message != "" {
			s += ": " + c.Message
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}
