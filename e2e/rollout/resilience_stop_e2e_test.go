//go:build e2e

package rollout_test

import (
	"context"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// A leader stopped (SIGSTOP: a VM pause, a stuck node) past its Lease is
// replaced; when it runs again it must write nothing (its Lease may be
// another's: it has not renewed it within the renew deadline by its own
// clock) and exit. The rollout, taken over by the other replica, neither
// repeats nor skips a step.
func TestALeaderStoppedPastItsLeaseWritesNothingWhenItRunsAgain(t *testing.T) {
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
	history := recordCanaryWeights(t, sb, ns, "shop", "shop-canary")
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Phase == v1alpha1.PhaseProgressing && f.Status.Step >= 1
	})

	pid := engines[leader].proc.Pid()
	if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			_ = syscall.Kill(-pid, syscall.SIGCONT)
		}
	})
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return leaseHolder(ctx, t, sb, ns) == follower, nil
	})
	if err != nil {
		t.Fatalf("%s never took the lease from the stopped %s", follower, leader)
	}
	// Let the new leader act for a while (its step moves on), so that
	// the stopped one's view is stale when it runs again.
	time.Sleep(6 * time.Second)
	offset := logSize(t, logs[leader])
	if err := syscall.Kill(-pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	t.Logf("%s stopped for %s", leader, time.Since(stopped).Round(100*time.Millisecond))
	select {
	case <-engines[leader].proc.Done():
	case <-time.After(30 * time.Second):
		t.Errorf("%s still running 30 s after it resumed without its Lease, want it to exit", leader)
	}
	engines[leader].proc = nil
	if d := engineDecisions(t, logs[leader], offset); len(d) != 0 {
		t.Errorf("%s decided (and wrote) %d times after it resumed without its Lease: %+v", leader, len(d), d)
	}
	if raw, err := os.ReadFile(logs[leader]); err == nil && !strings.Contains(string(raw[offset:]), "not written") && !strings.Contains(string(raw[offset:]), "lost leadership") {
		t.Logf("%s's log after it resumed:\n%s", leader, raw[offset:])
	}

	promotedStepByStep(t, sb, ns, rev, history)
}

// A leader cut off from the API server past its renew deadline is
// replaced; when the API server is reachable again it must write nothing
// (it may have been replaced: it has not renewed its Lease) and exit. The
// rollout, taken over by the other replica, neither repeats nor skips a
// step.
func TestALeaderCutOffPastItsRenewDeadlineWritesNothingWhenItIsBack(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	target, err := url.Parse(sb.RESTConfig.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startTCPProxy(t, target.Host)
	engineBinary(t, sb) // fledge's ServiceAccount, for the proxied kubeconfig
	// fledge-a reaches the API server through the proxy, and leads: it
	// starts first.
	a := startEngine(t, sb, ns, engineOptions{Name: "fledge-a", Policies: resiliencePolicies,
		Args: []string{"--kubeconfig=" + proxiedKubeconfig(t, sb, proxy.addr)}})
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return leaseHolder(ctx, t, sb, ns) == "fledge-a", nil
	})
	if err != nil {
		t.Fatal("fledge-a never took the lease")
	}
	startEngine(t, sb, ns, engineOptions{Name: "fledge-b", Policies: resiliencePolicies})
	shopApp(t, sb, ns, "stepwise", 200)
	history := recordCanaryWeights(t, sb, ns, "shop", "shop-canary")
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Phase == v1alpha1.PhaseProgressing && f.Status.Step >= 1
	})

	proxy.Close()
	cut := time.Now()
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return leaseHolder(ctx, t, sb, ns) == "fledge-b", nil
	})
	if err != nil {
		t.Fatal("fledge-b never took the lease from the cut-off fledge-a")
	}
	time.Sleep(6 * time.Second) // fledge-b moves the rollout on meanwhile
	offset := logSize(t, a.LogPath())
	proxy.Reopen()
	t.Logf("fledge-a cut off for %s", time.Since(cut).Round(100*time.Millisecond))
	if a.proc != nil {
		select {
		case <-a.proc.Done():
		case <-time.After(30 * time.Second):
			t.Errorf("fledge-a still running 30 s after the API server was back, want it to have stepped down and exited")
		}
		a.proc = nil
	}
	if d := engineDecisions(t, a.LogPath(), offset); len(d) != 0 {
		t.Errorf("fledge-a decided (and wrote) %d times once the API server was back: %+v", len(d), d)
	}

	promotedStepByStep(t, sb, ns, rev, history)
}

// promotedStepByStep waits until revision rev of "shop" under the
// stepwise policy is promoted, and fails the test unless it went through
// each step once, in order, in its decision log and in the weights the
// VirtualService carried.
func promotedStepByStep(t *testing.T, sb *sandbox.Sandbox, ns, rev string, history *weightHistory) {
	t.Helper()
	f := waitPromoted(t, sb, ns, rev)
	holds, judged := withoutHolds(verdicts(f, rev))
	want := []v1alpha1.Verdict{v1alpha1.VerdictStart, v1alpha1.VerdictAdvance, v1alpha1.VerdictAdvance, v1alpha1.VerdictAdvance,
		v1alpha1.VerdictAdvance, v1alpha1.VerdictPromote, v1alpha1.VerdictPromoted}
	if !slices.Equal(judged, want) {
		t.Errorf("decision log for %s: %v, want %v (%d holds aside)", rev, judged, want, holds)
	}
	history.Want(t, sb, ns, "shop", 0, 10, 20, 30, 40, 50, 100, 0)
	assertSettled(t, sb, ns)
}
