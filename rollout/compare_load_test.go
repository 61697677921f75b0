package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/webhooks"
)

// comparingWithLoad is comparing with a load test on demand that loads
// both sides.
func comparingWithLoad(now time.Time) Input {
	in := comparing(now)
	in.Policy.WebhookSecret = &SecretRef{Name: "hooks", Key: "hmac"}
	in.Policy.Hooks = []Hook{{
		Name: "load", Type: webhooks.Rollout, URL: "http://loadtester.fledge-system/", Timeout: 45 * time.Second, OnNotEnoughData: true,
		Metadata: map[string]string{"url": "http://shop-canary.shop/", "stableUrl": "http://shop-stable.shop/", "rate": "20", "duration": "30s"},
	}}
	return in
}

// loadCalls returns the CallHook actions of a decision.
func loadCalls(d Decision) []CallHook {
	var out []CallHook
	for _, a := range d.Actions {
		if c, ok := a.(CallHook); ok {
			out = append(out, c)
		}
	}
	return out
}

// At low traffic a comparison cannot tell for a long time: the load on
// demand runs while it cannot (Inconclusive counts as lacking samples),
// the round is judged again on the counters the load produced, and once
// the comparison has decided, no load is called any more.
func TestAnUndecidedComparisonCallsTheLoadUntilItDecides(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := comparingWithLoad(now)
	d := look(t, in, reading(0, 0, 0, 0)) // the baseline
	if calls := loadCalls(d); len(calls) != 0 {
		t.Fatalf("the baseline look called %+v: a look between rounds calls no load", calls)
	}

	// The round: a handful of requests a side, equal rates: cannot tell.
	in.Status, in.Now = d.Status, now.Add(time.Minute)
	d = look(t, in, reading(30, 0, 30, 0))
	calls := loadCalls(d)
	if len(calls) != 1 || calls[0].Hook.Name != "load" || calls[0].Payload.Metadata["stableUrl"] != "http://shop-stable.shop/" {
		t.Fatalf("calls %+v, want the load hook with its stableUrl", calls)
	}
	if d.Status.Step != 0 || !strings.Contains(d.Status.Message, "generating load with load") || !strings.Contains(d.Status.Message, "cannot tell yet") {
		t.Fatalf("step %d, message %q: want step 1 waiting for the load, saying the comparison cannot tell", d.Status.Step, d.Status.Message)
	}

	// The load answered (both sides loaded): the round is measured again
	// at once and judged on the evidence the load gave both sides.
	in.Status, in.Now = d.Status, now.Add(time.Minute+35*time.Second)
	in.Calls = map[string]CallResult{calls[0].ID: {State: v1alpha1.CallOK, Status: 200, At: in.Now, Load: &webhooks.LoadResult{
		LoadFigures: webhooks.LoadFigures{Requests: 20000, Success: 0.995}, Stable: &webhooks.LoadFigures{Requests: 20000, Success: 0.995},
	}}}
	d = look(t, in, reading(20030, 100, 20030, 100))
	if d.Status.Step != 1 || d.Status.CanaryWeight != 50 {
		t.Fatalf("step %d at %d%% (%s): want step 2, on the comparison shown no worse", d.Status.Step, d.Status.CanaryWeight, d.Status.Message)
	}
	judged := d.Status.Decisions[len(d.Status.Decisions)-1].Checks
	var hook, compared bool
	for _, c := range judged {
		hook = hook || c.Metric == "hook:load" && c.Outcome == analysis.Pass
		compared = compared || c.Metric == analysis.ErrorRate && c.Outcome == analysis.Pass && c.Compared != nil && c.Compared.Stable.Requests == 20030
	}
	if !hook || !compared {
		t.Errorf("the round's checks %+v: want the load hook passed and the comparison passed on both sides' loaded requests", judged)
	}

	// Decided: the next round calls no load, and promotes.
	in.Weights = traffic.Weights{Stable: 50, Canary: 50}
	in.Calls = nil
	in.Status, in.Now = d.Status, in.Now.Add(time.Minute)
	d = look(t, in, reading(20040, 100, 20040, 100))
	if calls := loadCalls(d); len(calls) != 0 {
		t.Errorf("calls %+v once the comparison decided, want none", calls)
	}
	if d.Status.Phase != v1alpha1.PhasePromoting {
		t.Errorf("phase %s (%s), want promoting", d.Status.Phase, d.Status.Message)
	}
}

// The load on demand follows the comparison's verdict, not the round's:
// a comparison already shown no worse calls no load even when other
// checks pass, and a canary shown worse is rolled back at the round
// without waiting for any load.
func TestADecidedComparisonCallsNoLoad(t *testing.T) {
	for _, tt := range []struct {
		name      string
		round     []analysis.Check
		wantPhase v1alpha1.Phase
	}{
		{"shown no worse", reading(20000, 100, 20000, 100), v1alpha1.PhaseProgressing},
		{"shown worse", reading(400, 60, 400, 4), v1alpha1.PhaseRolledBack},
	} {
		t.Run(tt.name, func(t *testing.T) {
			now := epoch.Add(time.Hour)
			in := comparingWithLoad(now)
			d := look(t, in, reading(0, 0, 0, 0))
			in.Status, in.Now = d.Status, now.Add(time.Minute)
			d = look(t, in, tt.round)
			if calls := loadCalls(d); len(calls) != 0 {
				t.Errorf("calls %+v, want none", calls)
			}
			if rejectedTo(d.Status) != tt.wantPhase {
				t.Errorf("phase %s (%s), want %s", d.Status.Phase, d.Status.Message, tt.wantPhase)
			}
		})
	}
}

// While the load runs, the round is not measured at every decision (each
// look writes the status, which triggers the next decision: a loop of
// queries), but the comparisons keep their looks: a canary the load shows
// worse is rolled back at the next look, without waiting for the load.
func TestWhileTheLoadRunsTheComparisonsLookAtTheirPace(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := comparingWithLoad(now)
	d := look(t, in, reading(0, 0, 0, 0))
	in.Status, in.Now = d.Status, now.Add(time.Minute)
	d = look(t, in, reading(30, 0, 30, 0))
	if len(loadCalls(d)) != 1 {
		t.Fatalf("no load called: %s", d.Status.Message)
	}

	// A decision a second later (the status write's echo): nothing to
	// measure, the next look is in 9 s.
	in.Status, in.Now = d.Status, now.Add(time.Minute+time.Second)
	d = Decide(in)
	if d.NeedChecks || d.RequeueAfter > 9*time.Second {
		t.Fatalf("need checks %t, requeue %s: want none until the look in 9s", d.NeedChecks, d.RequeueAfter)
	}

	// The look: the comparison only, and the load has shown it worse.
	in.Status, in.Now = d.Status, now.Add(time.Minute+10*time.Second)
	d = look(t, in, reading(130, 20, 130, 1))
	if rejectedTo(d.Status) != v1alpha1.PhaseRolledBack || !strings.Contains(d.Status.Message, "error-rate worse") {
		t.Fatalf("phase %s (%s), want rolled back by the comparison during the load", d.Status.Phase, d.Status.Message)
	}
}
