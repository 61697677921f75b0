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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// A fledge process killed with SIGKILL at two different points (in the
// middle of a step, and in the middle of the promotion) and started again
// carries on from its persisted status: same step, same step clock, no
// step twice, none skipped, no Event doubled.
func TestEngineKilledMidRolloutResumesWithoutRepeatingOrSkippingAStep(t *testing.T) {
	sb, ns := suite.Namespace(t)
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

	f = waitPromoted(t, sb, ns, rev)
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
	history.Want(t, sb, ns, "shop", 0, 10, 20, 30, 40, 50, 100, 0)

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
	sb, ns := suite.Namespace(t)
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

	f = waitPromoted(t, sb, ns, rev)
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
	history.Want(t, sb, ns, "shop", 0, 10, 20, 30, 40, 50, 100, 0)
	assertSettled(t, sb, ns)
}

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
