//go:build e2e

package rollout_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// What happens to a rollout when the world misbehaves: the engine is
// killed, a replica dies while leading, Prometheus goes away, the canary
// gets no traffic. None of these is the canary's fault, so none may roll
// it back, and none may move it on unjudged.
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
    metrics:
    - name: success-rate
      min: 0.97
      minSamples: 50
    - name: latency-p95
      max: 400
      minSamples: 50
  brief:
    steps: [20, 50]
    interval: 5s
    minInterval: 1s
    failureLimit: 2
    progressDeadline: 60s
    metrics:
    - name: success-rate
      min: 0.97
      minSamples: 50
    - name: latency-p95
      max: 400
      minSamples: 50
`

// resilienceInterval is both policies' interval.
const resilienceInterval = 5 * time.Second

// A fledge process killed with SIGKILL at two different points (in the
// middle of a step, and in the middle of the promotion) and started again
// carries on from its persisted status: same step, same step clock, no
// step twice, none skipped, no Event doubled.
func TestEngineKilledMidRolloutResumesWithoutRepeatingOrSkippingAStep(t *testing.T) {
	sb := suite.Get(t)
	ns := sb.Namespace(t)
	eng := startEngine(t, sb, ns, engineOptions{Policies: resiliencePolicies})
	logPath := eng.LogPath() // the same file across restarts (appended to)
	shopApp(t, sb, ns, "stepwise", 200)
	// Pods count as available 3 s after they are ready, so the stable
	// Deployment's rollout during the promotion takes several seconds, as
	// in a real cluster, and crash 2 can reliably land inside it (kwok
	// alone makes it last about a second, which a loaded CI machine can
	// miss between two polls).
	if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(context.Background(), "shop", types.MergePatchType,
		[]byte(`{"spec":{"minReadySeconds":3}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	history := recordCanaryWeights(t, sb, ns, "shop", "shop-canary")
	began := time.Now()
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)

	// Crash 1: just after step 2 (20%) began. The pause (2 s) is shorter
	// than what is left of the step, so the restarted engine must find the
	// step still running and its clock still ticking.
	f := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && (f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.Step >= 1)
	})
	if f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.Step != 1 {
		t.Fatalf("wanted to crash the engine at step 2, found phase=%s step=%d", f.Status.Phase, f.Status.Step)
	}
	first := crashAndRestart(t, eng, logPath, 2*time.Second)
	t.Logf("crash as step 2/5 (%d%%) began: first decision %s after the restart: phase=%s step=%d weight=%d %q",
		f.Status.CanaryWeight, first.after.Round(10*time.Millisecond),
		first.Phase, first.Step, first.Weight, first.Message)
	// Resuming means deciding from where it was: at step 2 still, or
	// judging step 2 if its interval ran out meanwhile. A canary restarted
	// from step 1 or from zero would be neither.
	if first.Phase != string(v1alpha1.PhaseProgressing) || (first.Step != 1 && !strings.HasPrefix(first.Message, "step 2/5 at 20%:")) {
		t.Errorf("after the restart at step 2 the engine decided phase=%s step=%d %q, want step 2 resumed", first.Phase, first.Step, first.Message)
	}

	// Crash 2: during the promotion, while Kubernetes rolls the stable
	// Deployment; the persisted promotion stage must carry it through.
	f = waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && (f.Status.Phase == v1alpha1.PhasePromoting || f.Status.Phase.Terminal())
	})
	if f.Status.Phase != v1alpha1.PhasePromoting {
		t.Fatalf("wanted to crash the engine during the promotion, found phase=%s (%s)", f.Status.Phase, f.Status.Message)
	}
	stage := f.Status.PromotionStage
	first = crashAndRestart(t, eng, logPath, 3*time.Second)
	t.Logf("crash during the promotion (stage %s): first decision %s after the restart: phase=%s step=%d weight=%d %q",
		stage, first.after.Round(10*time.Millisecond), first.Phase, first.Step, first.Weight, first.Message)
	if first.Phase != string(v1alpha1.PhasePromoting) {
		t.Errorf("after the restart during the promotion the engine decided phase=%s %q, want the promotion resumed", first.Phase, first.Message)
	}

	f = waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase.Terminal() && f.Status.CanaryRevision == rev
	})
	if f.Status.Phase != v1alpha1.PhaseSucceeded || f.Status.StableRevision != rev {
		t.Fatalf("rollout ended %s (%s), want %s promoted", f.Status.Phase, f.Status.Message, rev)
	}
	t.Logf("promoted in %s despite two crashes", time.Since(began).Round(time.Second))

	// The decision log is in the status, the commit point: a step taken
	// twice would be a second advance, a restart from scratch a second start.
	holds, judged := withoutHolds(verdicts(f, rev))
	want := []v1alpha1.Verdict{v1alpha1.VerdictStart, v1alpha1.VerdictAdvance, v1alpha1.VerdictAdvance, v1alpha1.VerdictAdvance,
		v1alpha1.VerdictAdvance, v1alpha1.VerdictPromote, v1alpha1.VerdictPromoted}
	if !slices.Equal(judged, want) {
		t.Errorf("decision log for %s: %v, want %v (holds aside)", rev, judged, want)
	}
	if holds > 0 {
		t.Logf("%d hold verdicts in the decision log", holds)
	}

	// What the mesh was told, version by version (a watch misses none, even
	// a weight that lived for milliseconds): each weight once, in order.
	// Equal weights in a row are one entry, so this proves that no step
	// was skipped and none gone back to; a step written twice in place
	// (re-asserted after a crash) is invisible here, and harmless with
	// absolute weights; the decision log above and the step clocks below
	// are what show that no step was taken twice.
	history.Sync(t, sb, ns, "shop")
	weights, writes, err := history.Weights()
	if err != nil {
		t.Fatal(err)
	}
	if wantW := []int32{0, 10, 20, 30, 40, 50, 100, 0}; !slices.Equal(weights, wantW) {
		t.Errorf("canary weights %v over %d VirtualService versions, want %v", weights, writes, wantW)
	} else {
		t.Logf("canary weights %v over %d VirtualService versions", weights, writes)
	}

	// Events: some may be lost at a crash (status first, effects after;
	// the Event is the last effect), but none may be emitted twice.
	events := deploymentEvents(t, sb, ns, "shop", "Promoted")
	reasserted := events["WeightsReasserted"]
	for _, reason := range []string{"StepStarted", "Promoting", "Promoted"} {
		for msg, n := range events[reason] {
			if n > 1 {
				t.Errorf("event %s %q recorded %d times, want at most once", reason, msg, n)
			}
		}
	}
	if n := len(events["StepStarted"]); n > 5 {
		t.Errorf("%d distinct StepStarted events for 5 steps: %v", n, events["StepStarted"])
	} else if n < 5 {
		t.Logf("%d of 5 StepStarted events recorded (lost at a crash): %v", n, events["StepStarted"])
	}
	if n := len(events["Promoted"]); n != 1 {
		t.Errorf("Promoted events: %v, want one", events["Promoted"])
	}
	if len(reasserted) > 0 {
		t.Logf("weights re-asserted after a crash: %v", reasserted)
	}

	// A crash neither shortens nor lengthens a step: each one is judged an
	// interval after it began, by whichever process is running then.
	// (Unless the crash fell between the status write and the weight
	// write: the step's interval then starts over, and says so.)
	for step, took := range firstJudgements(t, f, rev, 5) {
		if step == 1 && len(reasserted) > 0 {
			continue
		}
		if took < resilienceInterval || took > resilienceInterval+time.Second {
			t.Errorf("step %d/5 was first judged %s after it began, want %s (%s with the log's rounding to seconds)",
				step+1, took, resilienceInterval, resilienceInterval+time.Second)
		}
	}
	assertSettled(t, sb, ns)
}

// Two replicas share a Lease: only the holder acts; when it dies, the other
// takes over within the lease time and finishes the rollout, and the dead
// one, back again, stays a follower.
func TestOnlyTheLeaderActsAndAFollowerTakesOverWhenItDies(t *testing.T) {
	sb := suite.Get(t)
	ns := sb.Namespace(t)
	ctx := context.Background()
	engines := map[string]*engine{}
	logs := map[string]string{}
	for _, name := range []string{"fledge-a", "fledge-b"} {
		engines[name] = startEngine(t, sb, ns, engineOptions{Name: name, Policies: resiliencePolicies})
		logs[name] = engines[name].LogPath()
	}
	shopApp(t, sb, ns, "stepwise", 200)
	leader := leaseHolder(ctx, t, sb, ns)
	follower := map[string]string{"fledge-a": "fledge-b", "fledge-b": "fledge-a"}[leader]
	if follower == "" {
		t.Fatalf("lease held by %q, want fledge-a or fledge-b", leader)
	}
	t.Logf("%s leads, %s follows", leader, follower)
	history := recordCanaryWeights(t, sb, ns, "shop", "shop-canary")
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)

	f := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && (f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.Step >= 2)
	})
	if f.Status.Phase != v1alpha1.PhaseProgressing {
		t.Fatalf("wanted to kill the leader mid-rollout, found phase=%s (%s)", f.Status.Phase, f.Status.Message)
	}
	if n := len(engineDecisions(t, logs[follower], 0)); n != 0 {
		t.Errorf("follower %s decided %d times while %s led", follower, n, leader)
	}
	if n := len(engineDecisions(t, logs[leader], 0)); n == 0 {
		t.Errorf("leader %s never decided, yet the rollout is at step %d", leader, f.Status.Step+1)
	}

	followerOffset := logSize(t, logs[follower])
	killed := time.Now()
	engines[leader].Kill()
	var leaseAfter time.Duration
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		if leaseHolder(ctx, t, sb, ns) == follower {
			leaseAfter = time.Since(killed)
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("%s never took the lease over from the killed %s", follower, leader)
	}
	var acted time.Time
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		if d := engineDecisions(t, logs[follower], followerOffset); len(d) > 0 {
			acted = d[0].Time
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("%s took the lease but never decided", follower)
	}
	handOver := acted.Sub(killed)
	t.Logf("hand-over: %s holds the lease %s after %s was killed, and decides %s after (lease 4s, retry 0.5s)",
		follower, leaseAfter.Round(10*time.Millisecond), leader, handOver.Round(10*time.Millisecond))
	// A Lease is stolen only once it has gone unrenewed for its duration
	// (4 s), then within a retry period; the rest is the new leader
	// syncing its caches.
	if handOver > 15*time.Second {
		t.Errorf("hand-over took %s, want at most 15 s", handOver.Round(10*time.Millisecond))
	}

	// The old leader comes back as a follower: it must not act.
	restarted := logSize(t, logs[leader])
	engines[leader].Start()

	f = waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase.Terminal() && f.Status.CanaryRevision == rev
	})
	if f.Status.Phase != v1alpha1.PhaseSucceeded || f.Status.StableRevision != rev {
		t.Fatalf("rollout ended %s (%s), want %s promoted", f.Status.Phase, f.Status.Message, rev)
	}
	if n := len(engineDecisions(t, logs[leader], restarted)); n != 0 {
		t.Errorf("%s, restarted while %s led, decided %d times", leader, follower, n)
	}
	// ... and it was not silent for want of running: it saw who leads.
	if !slices.ContainsFunc(engineLogLines(t, logs[leader], restarted, "leader"), func(l engineDecision) bool { return l.Identity == follower }) {
		t.Errorf("%s, restarted, never reported %s as the leader: was it running?", leader, follower)
	}
	if h := leaseHolder(ctx, t, sb, ns); h != follower {
		t.Errorf("lease held by %q at the end, want %s", h, follower)
	}
	holds, judged := withoutHolds(verdicts(f, rev))
	want := []v1alpha1.Verdict{v1alpha1.VerdictStart, v1alpha1.VerdictAdvance, v1alpha1.VerdictAdvance, v1alpha1.VerdictAdvance,
		v1alpha1.VerdictAdvance, v1alpha1.VerdictPromote, v1alpha1.VerdictPromoted}
	if !slices.Equal(judged, want) {
		t.Errorf("decision log for %s: %v, want %v (%d holds aside)", rev, judged, want, holds)
	}
	history.Sync(t, sb, ns, "shop")
	weights, writes, err := history.Weights()
	if err != nil {
		t.Fatal(err)
	}
	if wantW := []int32{0, 10, 20, 30, 40, 50, 100, 0}; !slices.Equal(weights, wantW) {
		t.Errorf("canary weights %v over %d VirtualService versions, want %v", weights, writes, wantW)
	}
	assertSettled(t, sb, ns)
}

// Prometheus going away is not the canary's fault: the rollout holds at
// its weight, says why, counts no failure, and carries on when Prometheus
// is back.
func TestPrometheusOutageHoldsTheRolloutAndNeverRollsItBack(t *testing.T) {
	sb := suite.Get(t)
	ns := sb.Namespace(t)
	startEngine(t, sb, ns, engineOptions{Policies: resiliencePolicies})
	shopApp(t, sb, ns, "brief", 200)
	history := recordCanaryWeights(t, sb, ns, "shop", "shop-canary")
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)

	before := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && (f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.Step >= 0)
	})
	if before.Status.Phase != v1alpha1.PhaseProgressing || before.Status.Step != 0 {
		t.Fatalf("wanted the canary at its first step, found phase=%s step=%d", before.Status.Phase, before.Status.Step)
	}
	stopPrometheusForTest(t, sb)
	stopped := time.Now()

	held := waitFlight(t, sb, ns, "shop", 3*resilienceInterval, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil || f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.Step != 0
	})
	if h := held.Status.Hold; h == nil || h.Reason != v1alpha1.HoldAnalysisError {
		t.Fatalf("with Prometheus down: phase=%s step=%d hold=%+v, want held for %s", held.Status.Phase, held.Status.Step, h, v1alpha1.HoldAnalysisError)
	}
	t.Logf("held %s after Prometheus stopped: %s", time.Since(stopped).Round(100*time.Millisecond), held.Status.Hold.Message)
	cond := meta.FindStatusCondition(held.Status.Conditions, "Held")
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != v1alpha1.HoldAnalysisError ||
		!strings.Contains(cond.Message, analysis.ErrUnreachable.Error()) {
		t.Errorf("Held condition %+v, want True, %s, saying %q", cond, v1alpha1.HoldAnalysisError, analysis.ErrUnreachable)
	}

	// Two more intervals (and 2 s to spare for the second one's
	// judgement), looked at four times a second: the weight, the step and
	// the failure count must not move.
	holdFor := 2*resilienceInterval + 2*time.Second
	f := watchStill(t, sb, ns, holdFor, func(f *v1alpha1.Flight) string {
		switch {
		case f.Status.Phase != v1alpha1.PhaseProgressing, f.Status.Step != 0, f.Status.CanaryWeight != before.Status.CanaryWeight:
			return fmt.Sprintf("moved: phase=%s step=%d weight=%d", f.Status.Phase, f.Status.Step, f.Status.CanaryWeight)
		case f.Status.FailedChecks != before.Status.FailedChecks:
			return fmt.Sprintf("failed checks %d, was %d", f.Status.FailedChecks, before.Status.FailedChecks)
		case f.Status.Hold == nil || f.Status.Hold.Reason != v1alpha1.HoldAnalysisError:
			return fmt.Sprintf("hold %+v, want %s", f.Status.Hold, v1alpha1.HoldAnalysisError)
		}
		return ""
	})
	// Each interval was judged again, and each time it could not measure.
	errorHolds := 0
	for _, d := range f.Status.Decisions {
		if d.Revision == rev && d.Verdict == v1alpha1.VerdictHold && allChecks(d.Checks, analysis.Error) {
			errorHolds++
		}
	}
	if errorHolds < 3 {
		t.Errorf("%d hold verdicts with failed measurements over %s of outage, want at least 3 (one an interval)", errorHolds, time.Since(stopped).Round(time.Second))
	}
	// ... but on-call hears of the hold once, not once an interval.
	if n := heldEvents(t, sb, ns, v1alpha1.HoldAnalysisError); n != 1 {
		t.Errorf("%d Held events for %s over %d holds, want 1", n, v1alpha1.HoldAnalysisError, errorHolds)
	}

	restartPrometheusForTest(t, sb)
	back := time.Now()
	t.Logf("Prometheus back after %s", back.Sub(stopped).Round(100*time.Millisecond))
	f = waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase.Terminal() && f.Status.CanaryRevision == rev
	})
	if f.Status.Phase != v1alpha1.PhaseSucceeded || f.Status.StableRevision != rev {
		t.Fatalf("rollout ended %s (%s), want %s promoted", f.Status.Phase, f.Status.Message, rev)
	}
	if f.Status.FailedChecks != 0 {
		t.Errorf("%d failed checks counted against a healthy canary", f.Status.FailedChecks)
	}
	if resumed, ok := firstVerdictAt(f, rev, v1alpha1.VerdictAdvance); ok {
		// Right after its restart Prometheus may hold too little of the
		// interval to count samples: a not-enough-data hold is expected
		// then, and says so.
		var after []string
		for _, d := range f.Status.Decisions {
			if d.Revision == rev && d.Verdict == v1alpha1.VerdictHold && d.At.After(back) && len(d.Checks) > 0 {
				after = append(after, string(d.Checks[0].Outcome))
			}
		}
		t.Logf("held for %s in all (%d holds with Prometheus down); advanced %s after Prometheus came back, after holds %v",
			resumed.Sub(held.Status.Hold.Since.Time).Round(100*time.Millisecond), errorHolds, resumed.Sub(back).Round(100*time.Millisecond), after)
	}
	holds, judged := withoutHolds(verdicts(f, rev))
	want := []v1alpha1.Verdict{v1alpha1.VerdictStart, v1alpha1.VerdictAdvance, v1alpha1.VerdictPromote, v1alpha1.VerdictPromoted}
	if !slices.Equal(judged, want) {
		t.Errorf("decision log for %s: %v, want %v (%d holds aside)", rev, judged, want, holds)
	}
	history.Sync(t, sb, ns, "shop")
	weights, writes, err := history.Weights()
	if err != nil {
		t.Fatal(err)
	}
	if wantW := []int32{0, 20, 50, 100, 0}; !slices.Equal(weights, wantW) {
		t.Errorf("canary weights %v over %d VirtualService versions, want %v", weights, writes, wantW)
	}
	assertSettled(t, sb, ns)
}

// A canary nobody calls cannot be judged: the rollout holds at the first
// step, for as long as it takes, and moves on once traffic comes.
func TestCanaryWithoutTrafficHoldsUntilItCanBeMeasured(t *testing.T) {
	sb := suite.Get(t)
	ns := sb.Namespace(t)
	startEngine(t, sb, ns, engineOptions{Policies: resiliencePolicies})
	shopApp(t, sb, ns, "brief", 0)
	history := recordCanaryWeights(t, sb, ns, "shop", "shop-canary")
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)

	held := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && (f.Status.Phase != v1alpha1.PhaseProgressing ||
			f.Status.Hold != nil && f.Status.Hold.Reason != v1alpha1.HoldCanaryNotReady)
	})
	if h := held.Status.Hold; held.Status.Phase != v1alpha1.PhaseProgressing || h == nil || h.Reason != v1alpha1.HoldNotEnoughData {
		t.Fatalf("without traffic: phase=%s hold=%+v, want held for %s", held.Status.Phase, h, v1alpha1.HoldNotEnoughData)
	}
	cond := meta.FindStatusCondition(held.Status.Conditions, "Held")
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != v1alpha1.HoldNotEnoughData {
		t.Errorf("Held condition %+v, want True, %s", cond, v1alpha1.HoldNotEnoughData)
	}
	t.Logf("held: %s", held.Status.Hold.Message)

	// Three more intervals (2 s to spare): still at the first step, never
	// promoted.
	f := watchStill(t, sb, ns, 3*resilienceInterval+2*time.Second, func(f *v1alpha1.Flight) string {
		switch {
		case f.Status.Phase != v1alpha1.PhaseProgressing, f.Status.Step != 0, f.Status.CanaryWeight != 20:
			return fmt.Sprintf("moved without traffic: phase=%s step=%d weight=%d", f.Status.Phase, f.Status.Step, f.Status.CanaryWeight)
		case f.Status.Hold == nil || f.Status.Hold.Reason != v1alpha1.HoldNotEnoughData:
			return fmt.Sprintf("hold %+v, want %s", f.Status.Hold, v1alpha1.HoldNotEnoughData)
		}
		return ""
	})
	// The decision log says why at every look: a hold, every check short
	// of samples, nothing else after the start.
	var holds int
	for _, d := range f.Status.Decisions {
		switch {
		case d.Revision != rev:
		case d.Verdict == v1alpha1.VerdictStart:
		case d.Verdict == v1alpha1.VerdictHold && allChecks(d.Checks, analysis.NotEnoughData):
			holds++
		default:
			t.Errorf("without traffic the engine decided %s at step %d: %s (checks %+v)", d.Verdict, d.Step+1, d.Message, d.Checks)
		}
	}
	if holds < 4 {
		t.Errorf("%d not-enough-data holds over %s, want one an interval (at least 4)", holds, time.Since(held.Status.Hold.Since.Time).Round(time.Second))
	}
	if n := heldEvents(t, sb, ns, v1alpha1.HoldNotEnoughData); n != 1 {
		t.Errorf("%d Held events for %s over %d holds, want 1", n, v1alpha1.HoldNotEnoughData, holds)
	}

	client := "late-shopper-" + ns
	if err := sb.Mesh.AddClient(mesh.Client{Name: client, Namespace: ns, Host: "shop", RPS: 200, Users: 300}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Mesh.RemoveClient(client) })
	traffic := time.Now()
	f = waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase.Terminal() && f.Status.CanaryRevision == rev
	})
	if f.Status.Phase != v1alpha1.PhaseSucceeded || f.Status.StableRevision != rev {
		t.Fatalf("rollout ended %s (%s), want %s promoted", f.Status.Phase, f.Status.Message, rev)
	}
	if resumed, ok := firstVerdictAt(f, rev, v1alpha1.VerdictAdvance); ok {
		t.Logf("held %s without traffic; advanced %s after traffic began; %d not-enough-data holds", resumed.Sub(held.Status.Hold.Since.Time).Round(100*time.Millisecond),
			resumed.Sub(traffic).Round(100*time.Millisecond), holds)
	}
	_, judged := withoutHolds(verdicts(f, rev))
	want := []v1alpha1.Verdict{v1alpha1.VerdictStart, v1alpha1.VerdictAdvance, v1alpha1.VerdictPromote, v1alpha1.VerdictPromoted}
	if !slices.Equal(judged, want) {
		t.Errorf("decision log for %s: %v, want %v (holds aside)", rev, judged, want)
	}
	history.Sync(t, sb, ns, "shop")
	weights, writes, err := history.Weights()
	if err != nil {
		t.Fatal(err)
	}
	if wantW := []int32{0, 20, 50, 100, 0}; !slices.Equal(weights, wantW) {
		t.Errorf("canary weights %v over %d VirtualService versions, want %v", weights, writes, wantW)
	}
	assertSettled(t, sb, ns)
}

// --- helpers of these scenarios ---

// engineDecision is one line of an engine's log, a "decided" one usually:
// what one process decided, which the Flight alone cannot tell (it does
// not say who wrote it).
type engineDecision struct {
	Time     time.Time `json:"time"`
	Msg      string    `json:"msg"`
	Phase    string    `json:"phase"`
	Step     int32     `json:"step"`
	Weight   int32     `json:"weight"`
	Message  string    `json:"message"`
	Identity string    `json:"identity"` // of "leader" lines
	after    time.Duration
}

// engineDecisions reads the "decided" lines of an engine's log from byte
// offset on (the log is appended to across restarts).
func engineDecisions(t *testing.T, path string, offset int64) []engineDecision {
	t.Helper()
	return engineLogLines(t, path, offset, "decided")
}

// engineLogLines reads the lines of an engine's log with message msg, from
// byte offset on.
func engineLogLines(t *testing.T, path string, offset int64, msg string) []engineDecision {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		t.Fatal(err)
	}
	var out []engineDecision
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var d engineDecision
		// Not every line is JSON: client-go's klog lines, the command line.
		if json.Unmarshal(sc.Bytes(), &d) == nil && d.Msg == msg {
			out = append(out, d)
		}
	}
	return out
}

func logSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// crashAndRestart kills the engine with SIGKILL, starts it again after
// pause, and returns the first decision of the new process, with how long
// after its start it came.
func crashAndRestart(t *testing.T, e *engine, logPath string, pause time.Duration) engineDecision {
	t.Helper()
	e.Kill()
	time.Sleep(pause)
	offset := logSize(t, logPath)
	started := time.Now()
	e.Start()
	var first engineDecision
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		if d := engineDecisions(t, logPath, offset); len(d) > 0 {
			first = d[0]
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the restarted engine never decided (log %s)", logPath)
	}
	first.after = first.Time.Sub(started)
	return first
}

// leaseHolder is who holds the Lease the engines of namespace ns share
// ("" if nobody does yet).
func leaseHolder(ctx context.Context, t *testing.T, sb *sandbox.Sandbox, ns string) string {
	t.Helper()
	l, err := sb.Kube.CoordinationV1().Leases(engineNamespace).Get(ctx, LeaseName(ns), metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
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

// heldEvents counts the Held events of "shop" for one hold reason. The
// engine records one when a hold begins (or changes reason), not at every
// look: a rollout held for an hour must not page anyone sixty times.
func heldEvents(t *testing.T, sb *sandbox.Sandbox, ns, reason string) int {
	t.Helper()
	n := 0
	for msg, count := range deploymentEvents(t, sb, ns, "shop", "Held")["Held"] {
		if strings.HasPrefix(msg, reason+": ") {
			n += count
		}
	}
	return n
}

// withoutHolds drops hold verdicts (cannot measure yet: Prometheus may lag
// behind a weight change by a scrape) and says how many there were.
func withoutHolds(vs []v1alpha1.Verdict) (int, []v1alpha1.Verdict) {
	out := slices.DeleteFunc(slices.Clone(vs), func(v v1alpha1.Verdict) bool { return v == v1alpha1.VerdictHold })
	return len(vs) - len(out), out
}

func allChecks(checks []analysis.Check, o analysis.Outcome) bool {
	if len(checks) == 0 {
		return false
	}
	for _, c := range checks {
		if c.Outcome != o {
			return false
		}
	}
	return true
}

// firstJudgements returns, for each step of a revision but the first, how
// long after it began it was first judged. A step begins with the decision
// that advanced to it (its At is the step's StepStartedAt); it is judged by
// the first decision whose message names it ("step 2/5 at 20%: ...").
// Decision times are stored to the second, so a duration here is the true
// one rounded either way: 5.1 s may read 5 s or 6 s, never 4 s or 7 s.
func firstJudgements(t *testing.T, f *v1alpha1.Flight, rev string, steps int) map[int]time.Duration {
	t.Helper()
	out := map[int]time.Duration{}
	var began time.Time
	for _, d := range f.Status.Decisions {
		if d.Revision != rev {
			continue
		}
		if !began.IsZero() {
			step := int(d.Step)
			if d.Verdict == v1alpha1.VerdictAdvance {
				step-- // recorded after moving on
			}
			if _, seen := out[step]; !seen && strings.HasPrefix(d.Message, fmt.Sprintf("step %d/%d at ", step+1, steps)) {
				out[step] = d.At.Sub(began)
			}
		}
		if d.Verdict == v1alpha1.VerdictAdvance {
			began = d.At.Time
		}
	}
	if len(out) != steps-1 {
		t.Errorf("found the first judgement of %d steps in the decision log, want %d: %v", len(out), steps-1, out)
	}
	return out
}

func firstVerdictAt(f *v1alpha1.Flight, rev string, v v1alpha1.Verdict) (time.Time, bool) {
	for _, d := range f.Status.Decisions {
		if d.Revision == rev && d.Verdict == v {
			return d.At.Time, true
		}
	}
	return time.Time{}, false
}

// watchStill polls the Flight for d and fails the test the first time
// moved finds something wrong; it returns the last Flight seen.
func watchStill(t *testing.T, sb *sandbox.Sandbox, ns string, d time.Duration, moved func(*v1alpha1.Flight) string) *v1alpha1.Flight {
	t.Helper()
	var last *v1alpha1.Flight
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		f, err := getFlight(context.Background(), sb, ns, "shop")
		if err != nil {
			continue
		}
		last = f
		if why := moved(f); why != "" {
			t.Fatalf("%s (message %q)", why, f.Status.Message)
		}
	}
	if last == nil {
		t.Fatal("flight unreadable")
	}
	return last
}

// stopPrometheusForTest stops the shared Prometheus and makes sure it runs
// again when the test ends, passed or not: every later test needs it.
func stopPrometheusForTest(t *testing.T, sb *sandbox.Sandbox) {
	t.Helper()
	if err := sb.StopPrometheus(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := sb.StartPrometheus(ctx); err != nil && !strings.Contains(err.Error(), "already running") {
			t.Errorf("restart prometheus: %v", err)
		}
	})
}

func restartPrometheusForTest(t *testing.T, sb *sandbox.Sandbox) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sb.StartPrometheus(ctx); err != nil {
		t.Fatal(err)
	}
}
