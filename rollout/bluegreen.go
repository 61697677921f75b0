package rollout

import (
	"fmt"
	"slices"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/webhooks"
)

// A blue/green revision walks the canary's state machine with two steps
// (planCohorts): the preview, a cohort stage at weight 0 whose cohort is
// the preview route, judged by every check and hook (comparisons with
// stable included) after its pre-promotion duration; and the switch, a
// step at weight 100 judged every interval by the threshold checks and the
// hooks for its post-promotion duration, while the Deployment, paused,
// keeps the previous revision at full size. Leaving the preview is the
// promotion a person or the confirm-promotion gate confirms; a failure
// after the switch is a rollback like any other, which sends every
// request back to the previous revision at once. Once the post-promotion
// analysis and the scale-down delay are over, the promotion proper rolls
// the Deployment to the new revision while it carries the traffic.

// previewing reports whether a blue/green revision is at its preview.
func (d *decider) previewing() bool { return d.st.BlueGreen != nil && d.st.Step == 0 }

// switched reports whether a blue/green revision serves all traffic,
// between the switch and its promotion proper.
func (d *decider) switched() bool { return d.st.BlueGreen != nil && d.st.Step == 1 }

// beforePromotion reports whether moving on from the current step is the
// promotion users see: a canary's last step, a blue/green preview. Only a
// canary every comparison shows no worse moves on from it.
func (d *decider) beforePromotion() bool {
	if d.st.BlueGreen != nil {
		return d.st.Step == 0
	}
	return d.lastStep()
}

// keptFor is how much longer a switched blue/green revision is judged,
// with the previous revision at full size, before its promotion proper:
// until both its post-promotion analysis and its scale-down delay are
// over.
func (d *decider) keptFor() time.Duration {
	bg := d.st.BlueGreen
	if bg == nil || d.st.StepStartedAt == nil {
		return 0
	}
	return d.st.StepStartedAt.Add(max(bg.PostPromotion.Duration, bg.ScaleDownDelay.Duration)).Sub(d.in.Now)
}

// afterTheSwitch moves a switched blue/green revision on once its checks
// passed: to the promotion proper once the post-promotion analysis and the
// scale-down delay are over, and until then it says how long the previous
// revision is still kept. It reports whether the decision is complete.
func (d *decider) afterTheSwitch(why string, checks []analysis.Check) bool {
	if !d.flagsAllowMove() {
		d.st.StepPassed = true
		return false
	}
	if left := d.keptFor(); left > 0 {
		bg := d.st.BlueGreen
		d.st.Message = fmt.Sprintf("%s; the previous revision %s is kept at full size for %s more (post-promotion analysis %s, scale-down delay %s)",
			why, orNone(d.st.StableRevision), left.Round(time.Second), bg.PostPromotion.Duration, bg.ScaleDownDelay.Duration)
		d.after(min(left, d.in.Policy.Interval))
		return true
	}
	d.advance(why, v1alpha1.VerdictAdvance, checks)
	return true
}

// notifySwitched tells people that every request now reaches the new
// revision, with the checks that judged its preview. (Event hooks hear of
// the switch as of every move, through the decision's record.)
func (d *decider) notifySwitched(checks []analysis.Check) {
	d.notify(webhooks.Notification{
		Event: EventSwitched, FromImages: ImageRefs(d.st.StableImages), ToImages: ImageRefs(d.st.CanaryImages),
		Plan: slices.Clone(d.st.Steps), Step: d.st.Step, Weight: d.st.CanaryWeight, Reason: d.st.Message, Checks: copyChecks(checks),
	})
}

// switchMessage says what the switch did.
func (d *decider) switchMessage(why string) string {
	bg := d.st.BlueGreen
	until := d.in.Now.Add(max(bg.PostPromotion.Duration, bg.ScaleDownDelay.Duration)).UTC().Format(time.TimeOnly)
	return fmt.Sprintf("%s; switched: all traffic on revision %s, judged for %s; the previous revision %s is kept at full size until %s, ready to take the traffic back",
		why, d.st.CanaryRevision, bg.PostPromotion.Duration, orNone(d.st.StableRevision), until)
}
