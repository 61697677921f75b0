package rollout

import (
	"fmt"
	"strings"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// optOut gives the Deployment back: plain routing, no canary, unpaused
// (paused still when the Flight was reset: Observed.Reset).
func (d *decider) optOut() {
	d.do(ReleaseRouting{})
	d.do(DeleteCanary{}) // and a fresh baseline with it
	msg := "opted out: routing restored, canary removed, Deployment unpaused"
	if d.in.Reset {
		msg = "the Flight was deleted: routing restored and canary removed; the Deployment stays paused and is taken over afresh"
	} else {
		d.do(SetStablePaused{Paused: false})
	}
	if s := d.watchState(); s == v1alpha1.WatchReverted || s == v1alpha1.WatchRestoring {
		msg += fmt.Sprintf("; the revert of %s is given up with it: all traffic is on the Deployment again, which runs %s", d.st.Watch.Revision, d.in.DeploymentRevision)
	}
	if notes := d.flagNotes(); len(notes) > 0 && !d.st.Phase.Terminal() {
		msg += "; release flags left as they are, fledge no longer steps them: " + strings.Join(notes, "; ")
	}
	d.event(false, "Released", msg)
	d.do(ForgetFlight{})
	d.requeue = 0
}
