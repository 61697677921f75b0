//go:build e2e

package compare_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// scrapePolicy says Prometheus scrapes every 5 s (it scrapes every second
// here): a new revision's first traffic waits 10 s after the last canary's.
const scrapePolicy = `
policies:
  scrape:
    steps: [10, 50]
    interval: 30s
    minInterval: 1s
    lookInterval: 2s
    scrapeInterval: 5s
    progressDeadline: 60s
    metrics:
    - {name: error-rate, maxIncrease: 0.01}
`

// A fix pushed the moment a bad canary is rolled back reuses the canary
// workload, whose counters the bad revision shares: its first traffic waits
// until two scrapes after the bad canary's last, and the bad canary's
// failures never count as the fix's.
func TestANewRevisionRightAfterARollbackWaitsForThePreviousCanarysLastScrape(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, scrapePolicy)
	shopApp(t, sb, ns, "scrape", 200, nil)

	bad := setImage(t, sb, ns, "shop", "example.com/shop:v2", map[string]string{"sandbox.fledge.dev/error-rate": "0.3"})
	f := waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase.Terminal() && f.Status.CanaryRevision == bad
	})
	if f.Status.Phase != v1alpha1.PhaseRolledBack || f.Status.CanaryTrafficEndedAt == nil {
		t.Fatalf("phase %s, canary traffic ended at %v: want rolled back, with the end recorded", f.Status.Phase, f.Status.CanaryTrafficEndedAt)
	}
	ended := f.Status.CanaryTrafficEndedAt.Time
	fix := setImage(t, sb, ns, "shop", "example.com/shop:v3", nil)

	var waited string
	f = waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		if f.Status.CanaryRevision == fix && strings.Contains(f.Status.Message, "first traffic waits until") {
			waited = f.Status.Message
		}
		return f.Status.CanaryRevision == fix && f.Status.Step >= 0 && f.Status.StepStartedAt != nil
	})
	started := f.Status.StepStartedAt.Time
	t.Logf("rolled back at %s; the fix's first traffic at %s; it said %q", ended.Format(time.TimeOnly), started.Format(time.TimeOnly), waited)
	if started.Sub(ended) < 10*time.Second {
		t.Errorf("the fix's first traffic %s after the last canary's: want at least two scrapes (10s)", started.Sub(ended))
	}
	if waited == "" && started.Sub(ended) < 15*time.Second {
		// The canary took less than the wait to become ready, so the
		// Flight must have said why it waited (polled every 100 ms).
		t.Errorf("the Flight never said why the first traffic waited")
	}
	// The fix fails nothing: its evidence, from its first looks, holds
	// none of the bad canary's failures.
	f = waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		ev := evidenceOf(f, analysis.ErrorRate)
		return f.Status.CanaryRevision == fix && ev != nil && ev.Looks >= 3 || f.Status.Phase.Terminal()
	})
	ev := evidenceOf(f, analysis.ErrorRate)
	if f.Status.CanaryRevision != fix || ev == nil || ev.Canary.Bad != 0 || ev.Canary.Requests == 0 {
		t.Fatalf("the fix: phase %s, evidence %+v; want its own requests, none failed (%s)", f.Status.Phase, ev, f.Status.Message)
	}
}
