//go:build e2e

package rollout_test

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// What happens to a rollout when the world misbehaves: the engine is
// killed, a replica dies while leading (resilience_crash_e2e_test.go),
// Prometheus goes away, the canary gets no traffic
// (resilience_hold_e2e_test.go). None of these is the canary's fault, so
// none may roll it back, and none may move it on unjudged.
//
// These tests are not parallel on purpose: one of them stops the shared
// Prometheus, and a sequential top-level test never overlaps another.

// resiliencePolicies: "stepwise" has enough steps to kill the engine in the
// middle of a rollout and still see whether it resumes, repeats or skips;
// "brief" is the shortest rollout that still has a step after the one held.
// A 5 s interval at 200 rps gives a 10% canary about 100 requests a step,
// twice minSamples.
const resiliencePolicies = `
policies:
  stepwise:
    steps: [10, 20, 30, 40, 50]
    interval: 5s
    minInterval: 1s
    failureLimit: 2
    progressDeadline: 60s
` + healthChecks + `  brief:
    steps: [20, 50]
    interval: 5s
    minInterval: 1s
    failureLimit: 2
    progressDeadline: 60s
` + healthChecks

// resilienceInterval is both policies' interval.
const resilienceInterval = 5 * time.Second

// waitPromoted waits until the rollout of revision rev of "shop" ends, and
// fails the test unless it ended promoted.
func waitPromoted(t *testing.T, sb *sandbox.Sandbox, ns, rev string) *v1alpha1.Flight {
	t.Helper()
	f := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase.Terminal() && f.Status.CanaryRevision == rev
	})
	if f.Status.Phase != v1alpha1.PhaseSucceeded || f.Status.StableRevision != rev {
		t.Fatalf("rollout ended %s (%s), want %s promoted", f.Status.Phase, f.Status.Message, rev)
	}
	return f
}

// withoutHolds drops hold verdicts (cannot measure yet: Prometheus may lag
// behind a weight change by a scrape) and says how many there were.
func withoutHolds(vs []v1alpha1.Verdict) (int, []v1alpha1.Verdict) {
	out := slices.DeleteFunc(slices.Clone(vs), func(v v1alpha1.Verdict) bool { return v == v1alpha1.VerdictHold })
	return len(vs) - len(out), out
}

// deploymentEvents returns how often each message was recorded for the
// Deployment, by reason, once an event with reason last has arrived (the
// recorder sends them asynchronously). The count of an Event is how many
// times the recorder aggregated the same message into it: a message sent
// twice by one process is one Event with count 2, by two processes two
// Events; both add up here.
func deploymentEvents(t *testing.T, sb *sandbox.Sandbox, ns, name, last string) map[string]map[string]int {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": "Deployment", "involvedObject.name": name}.String()
	var out map[string]map[string]int
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := sb.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return false, nil
		}
		out = map[string]map[string]int{}
		for _, ev := range list.Items {
			if out[ev.Reason] == nil {
				out[ev.Reason] = map[string]int{}
			}
			out[ev.Reason][ev.Message] += int(max(ev.Count, 1))
		}
		return len(out[last]) > 0, nil
	})
	if err != nil {
		t.Errorf("no %s event for deployment %s/%s; events: %v", last, ns, name, out)
	}
	return out
}
