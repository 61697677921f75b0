package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

func TestAFreshBaselinePolicyParsesAndBadOnesAreRefusedNamingTheField(t *testing.T) {
	ps, err := ParseConfig([]byte("policies:\n  fresh:\n    baseline: fresh\n    steps: [10, 25, 50]\n    metrics: [{name: error-rate}, {name: success-rate, min: 0.99}]\n" +
		"  plain:\n    baseline: stable\n    steps: [10, 90]\n    metrics: [{name: error-rate}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ps["fresh"].Baseline; got != BaselineFresh {
		t.Errorf("baseline %q, want %q", got, BaselineFresh)
	}
	if got := ps["plain"].Baseline; got != "" {
		t.Errorf("baseline: stable parsed as %q, want the default (none)", got)
	}
	base := func(extra string) string {
		return "policies:\n  b:\n    baseline: fresh\n    metrics: [{name: error-rate}]\n" + extra
	}
	for _, tc := range []struct{ name, policy, want string }{
		{"unknown", "policies:\n  b:\n    baseline: warm\n    steps: [10]\n    metrics: [{name: error-rate}]\n", `policies.b.baseline: "warm": want stable (the default) or fresh`},
		{"a step above half", base("    steps: [10, 60]\n"), "policies.b.steps: 60 (step 1): with baseline: fresh the baseline takes as large a share as the canary, so a step is at most 50"},
		{"stepWeight past half", base("    stepWeight: 20\n    maxWeight: 80\n"), "policies.b.steps: 60 (step 2)"},
		{"no comparison", "policies:\n  b:\n    baseline: fresh\n    steps: [10]\n    metrics: [{name: success-rate, min: 0.99}]\n", "policies.b.baseline: fresh: only comparisons (error-rate, latency, or requests and bad) use a baseline"},
		{"cohorts", base("    steps: [10]\n    cohorts: [{name: beta, header: x-tier, value: beta}]\n"), "policies.b.cohorts: with baseline: fresh"},
		{"a mirror stage", base("    steps: [10]\n    mirror: {percent: 10}\n"), "policies.b.mirror: with baseline: fresh"},
		{"a load test of stable", base("    steps: [10]\n    webhookSecret: {name: s, key: k}\n    webhooks: [{name: load, type: rollout, url: \"http://lt.fledge-system/\", metadata: {url: \"http://a-canary/\", stableUrl: \"http://a-stable/\"}}]\n"),
			"policies.b.webhooks[0].metadata.stableUrl: with baseline: fresh the canary is compared with its baseline"},
		{"blue/green", "policies:\n  b:\n    baseline: fresh\n    strategy: blueGreen\n    blueGreen: {preview: {header: x-p, value: \"1\"}}\n    metrics: [{name: error-rate}, {name: success-rate, min: 0.99}]\n",
			"policies.b.baseline: fresh: strategy blueGreen has no weighted split for a baseline to share"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.policy))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// An override cannot take a fresh baseline's canary past half either.
	if _, err := ps["fresh"].Effective(Overrides{Steps: []int32{20, 60}}); err == nil || !strings.Contains(err.Error(), "above the largest step policy fresh allows (50)") {
		t.Errorf("step-weights 20,60 on a fresh baseline: error %v, want one naming the largest step", err)
	}
}

// freshComparing is a canary at its first step (10%) compared with a fresh
// baseline given the same share.
func freshComparing(now time.Time) Input {
	in := comparing(now)
	p := *in.Policy
	p.Baseline = BaselineFresh
	in.Policy = &p
	in.Status.Baseline = BaselineFresh
	in.Weights = traffic.Weights{Stable: 100 - 2*in.Status.CanaryWeight, Canary: in.Status.CanaryWeight, Baseline: in.Status.CanaryWeight}
	in.BaselineExists, in.BaselineReady, in.BaselineReplicas, in.BaselineRevision = true, true, 1, in.Status.StableRevision
	return in
}

func TestACanaryWorseThanItsFreshBaselineIsRolledBackNamingTheBaseline(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := freshComparing(now)
	d := look(t, in, reading(100, 0, 100, 0))
	if d.Status.Phase != v1alpha1.PhaseProgressing || len(d.Status.Evidence) != 1 {
		t.Fatalf("first look: phase %s (%s), evidence %+v", d.Status.Phase, d.Status.Message, d.Status.Evidence)
	}
	for _, a := range d.Actions {
		if _, ok := a.(DeleteBaseline); ok {
			t.Fatalf("the baseline of a canary in flight is deleted: %v", d.Actions)
		}
	}
	// 10 s later: the canary failed 12 of 40, its baseline 0 of 40.
	in.Status, in.Now = d.Status, now.Add(10*time.Second)
	d = look(t, in, reading(140, 12, 140, 0))
	if d.Status.Phase != v1alpha1.PhaseRollingBack && rejectedTo(d.Status) != v1alpha1.PhaseRolledBack {
		t.Fatalf("phase %s (%s), want rolled back", d.Status.Phase, d.Status.Message)
	}
	for _, want := range []string{"error-rate worse", "canary 30% [", "vs baseline 0% [", "40 canary requests"} {
		if !strings.Contains(d.Status.Message, want) {
			t.Errorf("message %q lacks %q", d.Status.Message, want)
		}
	}
	log := d.Status.Decisions[len(d.Status.Decisions)-1]
	if len(log.Checks) != 1 || log.Checks[0].Compared == nil || log.Checks[0].Compared.Against != "baseline" {
		t.Fatalf("the rollback's checks %+v do not say the canary was compared with its baseline", log.Checks)
	}
	// The routing goes back to stable first, then the baseline goes.
	var got []string
	for _, a := range d.Actions {
		switch a.(type) {
		case SetWeights, DeleteBaseline:
			got = append(got, a.String())
		}
	}
	if want := []string{"SetWeights(stable=100, canary=0)", "DeleteBaseline"}; !cmp.Equal(got, want) {
		t.Errorf("actions %v, want %v", got, want)
	}
}

func TestAFreshBaselineIsNotDeletedWhileARouteStillReachesIt(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := freshComparing(now)
	// Rolled back, but the routing read back still sends the baseline its
	// share and cannot be written this look (a routing error).
	in.Status.Phase, in.Status.Step, in.Status.CanaryWeight = v1alpha1.PhaseRolledBack, -1, 0
	in.Status.RejectedRevision = in.Status.CanaryRevision
	in.RoutingError = "virtualservice shop/web: 503"
	d := Decide(in)
	for _, a := range d.Actions {
		if _, ok := a.(DeleteBaseline); ok {
			t.Fatalf("the baseline is deleted while the routing still reaches it: %v", d.Actions)
		}
	}
	// Once the routing reads back without it, it goes.
	in.RoutingError, in.Weights = "", traffic.Weights{Stable: 100}
	d = Decide(in)
	found := false
	for _, a := range d.Actions {
		_, ok := a.(DeleteBaseline)
		found = found || ok
	}
	if !found {
		t.Errorf("a rolled-back revision's baseline is kept: %v", d.Actions)
	}
}
