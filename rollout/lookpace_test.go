package rollout

import (
	"testing"
	"time"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// A quiet canary is looked at less often: one expected to serve fewer
// than quietRequests requests in a LookInterval (at the rate both sides
// served since the baseline, and its weight) is looked at again once it
// has served about that many on average, at most quietLooks LookIntervals
// later; a busy one every LookInterval. Between two looks nothing is
// measured.
func TestAQuietCanaryIsLookedAtLessOften(t *testing.T) {
	now := epoch.Add(time.Hour)
	for _, c := range []struct {
		name           string
		canary, stable float64 // served in the minute after the baseline
		want           time.Duration
	}{
		{"busy: 1.7 canary requests a second", 100, 900, 10 * time.Second},
		{"0.083 canary requests a second", 5, 45, 36 * time.Second},
		{"0.017 canary requests a second", 1, 9, 60 * time.Second},
		{"no request yet", 0, 0, 60 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := comparing(now)
			p := *in.Policy
			p.Interval = 5 * time.Minute // no round in the way
			in.Policy = &p
			d := look(t, in, reading(0, 0, 0, 0)) // the baseline
			if d.RequeueAfter != 10*time.Second {
				t.Fatalf("after the baseline, next look in %s; want 10s (nothing known of the rate)", d.RequeueAfter)
			}
			in.Status, in.Now = d.Status, now.Add(time.Minute)
			d = look(t, in, reading(c.canary, 0, c.stable, 0))
			if d.Status.Phase != v1alpha1.PhaseProgressing || d.RequeueAfter != c.want {
				t.Fatalf("phase %s, next look in %s (%s); want progressing, %s", d.Status.Phase, d.RequeueAfter, d.Status.Message, c.want)
			}
			// Woken halfway (an event), it measures nothing and waits
			// for the look.
			in.Status, in.Now = d.Status, in.Now.Add(c.want/2)
			if d = Decide(in); d.NeedChecks || d.RequeueAfter != c.want-c.want/2 {
				t.Errorf("halfway: asked to measure %t, next in %s; want nothing measured, the look in %s", d.NeedChecks, d.RequeueAfter, c.want-c.want/2)
			}
		})
	}
}
