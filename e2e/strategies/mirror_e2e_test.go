//go:build e2e

package strategies_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// mirrorPolicies: half of the live requests are copied to the canary for
// its first 6 s; its answers to the copies are judged every 4 s.
const mirrorPolicies = `
policies:
  mirror:
    steps: [50]
    interval: 4s
    minInterval: 1s
    progressDeadline: 1m
    mirror: {percent: 50, duration: 6s, minSamples: 20}
    metrics:
    - {name: success-rate, min: 0.95, minSamples: 10, interval: 4s}
  read-only:
    strategy: mirror
    interval: 4s
    minInterval: 1s
    progressDeadline: 1m
    mirror: {percent: 100, duration: 6s, minSamples: 20}
    metrics:
    - {name: success-rate, min: 0.95, minSamples: 10, interval: 4s}
`

// TestAMirroredCanaryFailingItsCopiesIsRolledBackBeforeAnyUserSawIt: during
// the mirror stage the canary answers copies of half the requests and
// fails half of them; no user gets an answer from it (the emulator's ground
// truth: every user-visible answer is stable's, and no user saw an
// error), and it is rolled back for its success rate on the copies. (At
// 20 rps a 2 s window holds about 20 copies and a round about 30: at 20%
// failures, 1-2% of runs would see no failed copy in the window, or a round
// with at most one, which passes >= 95%; at 50%, under 1e-6.)
func TestAMirroredCanaryFailingItsCopiesIsRolledBackBeforeAnyUserSawIt(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, mirrorPolicies)
	stable := shopApp(t, sb, ns, "mirror", 20, nil)
	rec := record(t, sb, ns, previewHeader)
	client := "shopper-" + ns
	before := sb.Mesh.ClientCounts(client)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", map[string]string{"sandbox.fledge.dev/error-rate": "0.5"})
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Step == 0
	})
	if w := awaitRouting(t, sb, ns, traffic.Weights{Stable: 100, Mirror: 50}); w != (traffic.Weights{Stable: 100, Mirror: 50}) {
		t.Errorf("routing %+v in the mirror stage, want all on stable, 50%% mirrored", w)
	}
	time.Sleep(500 * time.Millisecond) // the emulator's routing debounce
	var users, usersOnCanary, copies, copiesFailed int
	for _, r := range rec.window(2 * time.Second) {
		switch {
		case r.mirrored:
			copies++
			if r.failed {
				copiesFailed++
			}
		default:
			users++
			if r.canary {
				usersOnCanary++
			}
		}
	}
	t.Logf("mirror stage: %d user requests (%d answered by the canary), %d copies to the canary (%d failed)", users, usersOnCanary, copies, copiesFailed)
	if users == 0 || usersOnCanary != 0 || copies == 0 || copiesFailed == 0 {
		t.Errorf("mirror stage: %d of %d user requests answered by the canary, %d copies (%d failed); want none, and failing copies", usersOnCanary, users, copies, copiesFailed)
	}

	f := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase.Terminal() })
	if f.Status.Phase != v1alpha1.PhaseRolledBack || f.Status.StableRevision != stable || !strings.Contains(f.Status.Message, "(mirror 50%): success-rate fail") {
		t.Fatalf("phase %s, stable %s (%s); want rolled back from the mirror stage for its success rate", f.Status.Phase, f.Status.StableRevision, f.Status.Message)
	}
	after := sb.Mesh.ClientCounts(client)
	t.Logf("users: %d requests, %d errors during the rollout", after.Requests-before.Requests, after.Errors-before.Errors)
	if after.Requests == before.Requests || after.Errors != before.Errors {
		t.Errorf("users got %d errors in %d requests during the rollout, want none", after.Errors-before.Errors, after.Requests-before.Requests)
	}
	assertSettled(t, sb, ns)
}

// TestAReadOnlyServiceIsJudgedOnCopiesAloneThenPromoted: strategy mirror.
// Until the promotion no user request reaches the new revision (the
// emulator's ground truth), its answers to the copies of every request
// pass, and it is promoted.
func TestAReadOnlyServiceIsJudgedOnCopiesAloneThenPromoted(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, mirrorPolicies)
	shopApp(t, sb, ns, "read-only", 20, nil)
	rec := record(t, sb, ns, previewHeader)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Step == 0
	})
	time.Sleep(500 * time.Millisecond)
	var users, usersOnNew, copies int
	for _, r := range rec.window(2 * time.Second) {
		switch {
		case r.mirrored:
			copies++
		case r.canary:
			usersOnNew++
			users++
		default:
			users++
		}
	}
	t.Logf("judged on copies: %d user requests (%d on the new revision), %d copies", users, usersOnNew, copies)
	if users == 0 || usersOnNew != 0 || copies < users*9/10 {
		t.Errorf("%d of %d user requests reached the new revision and %d were copied to it; want none, and every one copied", usersOnNew, users, copies)
	}
	f := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase.Terminal() })
	if f.Status.Phase != v1alpha1.PhaseSucceeded || f.Status.StableRevision != rev {
		t.Fatalf("phase %s, stable %s (%s); want promoted", f.Status.Phase, f.Status.StableRevision, f.Status.Message)
	}
	assertSettled(t, sb, ns)
}
