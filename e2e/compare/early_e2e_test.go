//go:build e2e

package compare_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// earlyPolicy walks four steps of 20 s each (80 s in all) unless every
// comparison shows the canary no worse first: then, with earlyPromotion,
// it is promoted once its step has lasted 6 s. Its alpha is 0.0001: a
// healthy canary compared with a stable failing as often is wrongly
// rolled back with a probability below alpha, which at 0.01 is a test
// failing once in a few hundred runs; showing it no worse within the
// margin takes about as long at either.
const earlyPolicy = `
policies:
  early:
    steps: [10, 25, 50, 75]
    interval: 20s
    minInterval: 1s
    lookInterval: 2s
    scrapeInterval: 1s  # the sandbox's Prometheus scrapes every second
    earlyPromotion: true
    minStepDuration: 6s
    failureLimit: 2
    progressDeadline: 60s
    alpha: 0.0001
    metrics:
    - {name: error-rate, maxIncrease: 0.01}
`

// earlySchedule is the policy's fixed schedule: its steps times its interval.
const (
	earlySteps    = 4
	earlySchedule = earlySteps * 20 * time.Second
)

// A canary failing as often as stable (0.2% of requests each), at 200
// requests a second, is shown no worse than stable + 1 pt and promoted
// before its schedule ends: the promotion says it was early, from a step
// before the last, and fewer steps were advanced through than the
// schedule has. Both durations are logged, never asserted.
func TestAHealthyCanaryIsPromotedEarly(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, earlyPolicy)
	healthy := map[string]string{"sandbox.fledge.dev/error-rate": "0.002"}
	shopApp(t, sb, ns, "early", 200, healthy)

	began := time.Now()
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", healthy)
	f := waitFlight(t, sb, ns, "shop", 2*earlySchedule, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase.Terminal() && f.Status.CanaryRevision == rev
	})
	took := time.Since(began)
	if f.Status.Phase != v1alpha1.PhaseSucceeded || f.Status.StableRevision != rev {
		t.Fatalf("rollout ended %s (%s), want %s promoted", f.Status.Phase, f.Status.Message, rev)
	}
	promotions := decisionsOf(f, rev, v1alpha1.VerdictPromote)
	if len(promotions) != 1 {
		t.Fatalf("%d promote decisions, want 1: %+v", len(promotions), f.Status.Decisions)
	}
	p := promotions[0]
	t.Logf("promoted in %s (promotion started after %s), the schedule is %s: %s",
		took.Round(100*time.Millisecond), p.At.Sub(began).Round(100*time.Millisecond), earlySchedule, p.Message)
	if !strings.Contains(p.Message, "promoting early") || !strings.Contains(p.Message, "error-rate no worse than stable") {
		t.Errorf("promotion %q: want it early, on the error-rate comparison", p.Message)
	}
	if p.Step >= earlySteps-1 {
		t.Errorf("promoted from step %d (weight %d%%), want a step before the last (%d)", p.Step+1, p.Weight, earlySteps)
	}
	// The first step follows from the start; a full schedule records an
	// advance to each of the others.
	if n := len(decisionsOf(f, rev, v1alpha1.VerdictAdvance)); n >= earlySteps-1 {
		t.Errorf("%d advance decisions, want fewer than the %d of the full schedule", n, earlySteps-1)
	}
}
