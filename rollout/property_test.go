package rollout

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// TestDecideInvariants drives Decide through many random histories (new
// revisions, readiness flapping, manual actions, every check outcome,
// drifted weights, restarts that replay a decision) and checks, after every
// decision, what must always hold:
//   - every weight set is two shares in 0..100 adding up to 100;
//   - outside a promotion, the canary never gets more than the largest step;
//   - a round of checks with a failure never advances nor promotes;
//   - a blue/green revision (every third history) is only ever routed
//     100/0 or 0/100, and leaves its preview for the promotion proper only
//     by a person's promote --full;
//   - a mirror (every third history has a mirror stage) is only ever set
//     with no traffic on the canary (Validate);
//   - a fresh baseline (every sixth history) is only ever routed the
//     canary's share, while its revision is in flight, and deleted only
//     when no route reaches it any more;
//   - Decide is deterministic and never mutates its input.
func TestDecideInvariants(t *testing.T) {
	const histories, events = 300, 60
	visited := map[v1alpha1.Phase]int{}
	switched, mirrored, baselined, compared := 0, 0, 0, 0
	outcomes := []analysis.Outcome{analysis.Pass, analysis.Pass, analysis.Pass, analysis.Fail, analysis.NotEnoughData, analysis.Error, analysis.Inconclusive}
	actions := []v1alpha1.ActionKind{v1alpha1.ActionPromote, v1alpha1.ActionPromoteFull, v1alpha1.ActionAbort, v1alpha1.ActionPause, v1alpha1.ActionResume}
	for seed := range uint64(histories) {
		rng := rand.New(rand.NewPCG(seed, 7))
		w := &world{now: epoch}
		w.policy = &Policy{Name: "p", Steps: randomSteps(rng), Interval: time.Minute, FailureLimit: 1 + rng.IntN(3), ProgressDeadline: 3 * time.Minute}
		w.policy.MaxWeight = w.policy.Steps[len(w.policy.Steps)-1]
		if seed%3 == 0 {
			p := *w.policy
			p.Steps, p.MaxWeight, p.Strategy = nil, 0, StrategyBlueGreen
			p.BlueGreen = &BlueGreen{Preview: Cohort{Name: PreviewName, Route: traffic.Cohort{Name: PreviewName, Header: "x-preview", Exact: "1"}, MinDuration: time.Duration(1+rng.IntN(3)) * time.Minute},
				PostPromotion: time.Duration(1+rng.IntN(3)) * time.Minute}
			p.BlueGreen.ScaleDownDelay = p.BlueGreen.PostPromotion + time.Duration(rng.IntN(3))*time.Minute
			w.policy = &p
		}
		if seed%3 == 1 {
			p := *w.policy
			p.Mirror = &Cohort{Name: MirrorName, Mirror: int32(1 + rng.IntN(100)), MinDuration: time.Minute}
			if seed%2 == 0 {
				p.Mirror.Compared = true
				p.Mirror.Check = &analysis.Metric{Name: analysis.ResponseDiff, Max: new(0.01), MinSamples: 100, Interval: time.Minute}
			}
			w.policy = &p
		}
		if seed%6 == 2 {
			p := *w.policy
			p.Baseline, p.Steps = BaselineFresh, slices.DeleteFunc(slices.Clone(p.Steps), func(s int32) bool { return s > MaxBaselineStep })
			if len(p.Steps) == 0 {
				p.Steps = []int32{MaxBaselineStep}
			}
			p.MaxWeight = p.Steps[len(p.Steps)-1]
			w.policy = &p
		}
		w.Weights = traffic.Weights{Stable: 100}
		w.DesiredRevision, w.DeploymentRevision, w.DeploymentSettled = "r0", "r0", true
		revisions := 0
		for e := range events {
			switch rng.IntN(10) {
			case 0:
				revisions++
				w.DesiredRevision = fmt.Sprintf("r%d", revisions)
			case 1:
				w.CanaryReady = !w.CanaryReady
				w.BaselineReady = w.BaselineExists && rng.IntN(3) > 0
				w.ComparatorReady = w.ComparatorExists && rng.IntN(3) > 0
			case 2:
				w.action = &ActionRequest{Kind: actions[rng.IntN(len(actions))], By: "test"}
			case 3:
				w.Weights.Canary = int32(rng.IntN(101))
				w.Weights.Stable, w.Weights.Baseline = 100-w.Weights.Canary, 0
			case 4:
				// Kubernetes finishes rolling an unpaused Deployment.
				if !w.DeploymentPaused {
					w.DeploymentRevision, w.DeploymentSettled = w.DesiredRevision, true
				}
			default:
				w.CanaryReady = w.CanaryReady || rng.IntN(2) == 0
				w.BaselineReady = w.BaselineExists && (w.BaselineReady || rng.IntN(2) == 0)
				w.ComparatorReady = w.ComparatorExists && (w.ComparatorReady || rng.IntN(2) == 0)
			}
			// Available pods as readiness says: none, or (ready or not)
			// some.
			w.CanaryAvailable = 0
			if w.CanaryReady || rng.IntN(3) == 0 {
				w.CanaryAvailable = 1
			}
			w.now = w.now.Add(time.Duration(rng.IntN(90)) * time.Second)
			in := Input{Now: w.now, Policy: w.policy, Status: w.status, Observed: w.Observed, Action: w.action}
			if Decide(in).NeedChecks {
				for _, m := range []string{"success-rate", "latency-p95"} {
					in.Checks = append(in.Checks, analysis.Check{Metric: m, Outcome: outcomes[rng.IntN(len(outcomes))]})
				}
			}
			before := in.Status.DeepCopy()
			d := Decide(in)
			where := fmt.Sprintf("seed %d, event %d (%s step %d at %d%%)", seed, e, in.Status.Phase, in.Status.Step, in.Status.CanaryWeight)
			if !reflect.DeepEqual(before, &in.Status) {
				t.Fatalf("%s: Decide mutated its input:\n%s", where, cmp.Diff(before, &in.Status))
			}
			if again := Decide(in); !reflect.DeepEqual(d, again) {
				t.Fatalf("%s: Decide is not deterministic:\n%s", where, cmp.Diff(d, again))
			}
			visited[d.Status.Phase]++
			if d.Status.BlueGreen != nil && d.Status.Step == 1 && d.Status.Phase == v1alpha1.PhaseProgressing {
				switched++
			}
			for _, a := range d.Actions {
				if sw, ok := a.(SetWeights); ok && sw.Weights.Mirror > 0 {
					mirrored++
				}
				if sw, ok := a.(SetWeights); ok && sw.Weights.Baseline > 0 {
					baselined++
				}
				if sw, ok := a.(SetWeights); ok && sw.Weights.MirrorCompared {
					compared++
				}
			}
			checkInvariants(t, where, in, d)
			w.status = d.Status
			for _, a := range d.Actions {
				w.apply(a)
			}
		}
	}
	// The histories must reach every phase, or the invariants were checked
	// on too little.
	for _, p := range []v1alpha1.Phase{v1alpha1.PhaseIdle, v1alpha1.PhaseProgressing, v1alpha1.PhasePaused, v1alpha1.PhasePromoting, v1alpha1.PhaseSucceeded, v1alpha1.PhaseRolledBack, v1alpha1.PhaseAborted} {
		if visited[p] == 0 {
			t.Errorf("no history reached phase %s: %v", p, visited)
		}
	}
	if switched == 0 {
		t.Error("no blue/green history reached the switch")
	}
	if mirrored == 0 {
		t.Error("no history reached a mirror stage")
	}
	if baselined == 0 {
		t.Error("no history routed a share to a fresh baseline")
	}
	if compared == 0 {
		t.Error("no history mirrored through the response comparator")
	}
	t.Logf("decisions by phase: %v; %d after a blue/green switch", visited, switched)
}

func checkInvariants(t *testing.T, where string, in Input, d Decision) {
	t.Helper()
	for _, a := range d.Actions {
		sw, ok := a.(SetWeights)
		if !ok {
			continue
		}
		if err := sw.Weights.Validate(); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if sw.Weights.Canary > in.Policy.MaxWeight && sw.Weights.Canary != 100 {
			t.Fatalf("%s: canary weight %d is above the largest step %d", where, sw.Weights.Canary, in.Policy.MaxWeight)
		}
		if sw.Weights.Canary == 100 && d.Status.Phase != v1alpha1.PhasePromoting && !switchedBlueGreen(d.Status) {
			t.Fatalf("%s: all traffic to the canary outside a promotion (phase %s)", where, d.Status.Phase)
		}
		inFlight := d.Status.Phase == v1alpha1.PhaseProgressing || d.Status.Phase == v1alpha1.PhasePaused
		if b := sw.Weights.Baseline; b > 0 && (b != sw.Weights.Canary || !inFlight || d.Status.Baseline != BaselineFresh) {
			t.Fatalf("%s: %v: a baseline share other than the canary's, or outside a fresh baseline's rollout (phase %s)", where, sw, d.Status.Phase)
		}
		if d.Status.Baseline == BaselineFresh && inFlight && d.Status.Step >= 0 && sw.Weights.Canary > 0 && sw.Weights.Baseline != sw.Weights.Canary {
			t.Fatalf("%s: %v: the canary serves without its fresh baseline beside it", where, sw)
		}
	}
	routed := in.Weights.Baseline > 0 || in.RoutingError != ""
	for _, a := range d.Actions {
		switch a := a.(type) {
		case SetWeights:
			routed = a.Weights.Baseline > 0
		case DeleteBaseline:
			inFlight := d.Status.Phase == v1alpha1.PhaseProgressing || d.Status.Phase == v1alpha1.PhasePaused
			if routed || inFlight && d.Status.Baseline == BaselineFresh {
				t.Fatalf("%s: the baseline deleted while a route reaches it or its revision is in flight (%v)", where, d.Actions)
			}
		}
	}
	// The comparator is deleted only once no mirror sends it copies, and
	// copies go to it only once it is ready (unless a person moved the
	// rollout on: copies to a comparator not up yet are lost, harmlessly,
	// as a mirror's are).
	compared := in.Weights.MirrorCompared || in.RoutingError != ""
	for _, a := range d.Actions {
		switch a := a.(type) {
		case SetWeights:
			if a.Weights.MirrorCompared && !in.Weights.MirrorCompared && !in.ComparatorReady && in.Action == nil {
				t.Fatalf("%s: copies sent to a comparator that is not ready (%v)", where, d.Actions)
			}
			compared = a.Weights.MirrorCompared
		case DeleteComparator:
			if compared {
				t.Fatalf("%s: the comparator deleted while a mirror sends it copies (%v)", where, d.Actions)
			}
		}
	}
	if d.Status.Phase != v1alpha1.PhasePromoting && d.Status.CanaryWeight > in.Policy.MaxWeight && !switchedBlueGreen(d.Status) {
		t.Fatalf("%s: status says canary at %d%%, above the largest step", where, d.Status.CanaryWeight)
	}
	full := in.Action != nil && in.Action.Kind == v1alpha1.ActionPromoteFull
	if in.Status.BlueGreen != nil && in.Status.Step == 0 && in.Status.Phase == v1alpha1.PhaseProgressing && d.Status.Phase == v1alpha1.PhasePromoting && !full {
		t.Fatalf("%s: promoted from the blue/green preview, skipping the analysis after the switch (%s)", where, d.Status.Message)
	}
	failed := slices.ContainsFunc(in.Checks, func(c analysis.Check) bool { return c.Outcome == analysis.Fail })
	if failed && in.Action == nil {
		if d.Status.Phase == v1alpha1.PhasePromoting && in.Status.Phase != v1alpha1.PhasePromoting {
			t.Fatalf("%s: promoted on a failed check", where)
		}
		if d.Status.Phase == v1alpha1.PhaseProgressing && d.Status.Step > in.Status.Step && in.Status.Phase == v1alpha1.PhaseProgressing {
			t.Fatalf("%s: advanced from step %d to %d on a failed check", where, in.Status.Step, d.Status.Step)
		}
	}
}

// switchedBlueGreen reports whether a status is a blue/green revision
// after its switch, before its promotion proper: all traffic on it.
func switchedBlueGreen(st v1alpha1.FlightStatus) bool {
	return st.BlueGreen != nil && st.Step == 1 && (st.Phase == v1alpha1.PhaseProgressing || st.Phase == v1alpha1.PhasePaused)
}

func randomSteps(rng *rand.Rand) []int32 {
	var steps []int32
	for w := int32(1 + rng.IntN(20)); w < 100 && len(steps) < 5; w += int32(1 + rng.IntN(40)) {
		steps = append(steps, w)
	}
	return steps
}
