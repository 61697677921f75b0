package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/analysis/sequential"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// watchWorld plays the cluster around Decide for the watch after a
// promotion: the Deployment rolls at once when unpaused, the previous
// revision's pods come up when asked for (unless previousStuck), and the
// Deployment's workload serves stable's counters.
type watchWorld struct {
	t             *testing.T
	in            Input
	served        sequential.Counts // the Deployment's workload's counters
	previousStuck bool
	actions       []string
}

// watchPolicy judges the error rate against stable (margin 1 point) and
// the success rate against a bound, and watches for 10 minutes after a
// promotion.
func watchPolicy() *Policy {
	p := comparing(epoch).Policy
	q := *p
	q.Metrics = append(append([]analysis.Metric{}, p.Metrics...), analysis.Metric{Name: "success-rate", Min: ptrTo(0.9), Interval: time.Minute})
	q.PostPromotion = 10 * time.Minute
	return &q
}

// newWatchWorld is a Flight at its last step (50%) with its comparison's
// evidence: stable (r1) served 20,000 requests, 100 failed (0.5%).
func newWatchWorld(t *testing.T, now time.Time) *watchWorld {
	in := comparing(now)
	in.Policy = watchPolicy()
	in.Status.Step, in.Status.CanaryWeight = 1, 50
	in.Weights = traffic.Weights{Stable: 50, Canary: 50}
	in.Status.Evidence = []v1alpha1.Evidence{{Metric: analysis.ErrorRate, Looks: 30,
		Last:   analysis.Reading{Canary: sequential.Counts{Requests: 20000, Bad: 100}, Stable: sequential.Counts{Requests: 20000, Bad: 100}},
		Canary: sequential.Counts{Requests: 20000, Bad: 100}, Stable: sequential.Counts{Requests: 20000, Bad: 100}}}
	in.StableReplicas = 2
	return &watchWorld{t: t, in: in, served: sequential.Counts{Requests: 50000, Bad: 250}}
}

// decide runs Decide (twice when it asks for checks) and applies its
// actions; it returns the decision.
func (w *watchWorld) decide() Decision {
	w.t.Helper()
	d := Decide(w.in)
	if d.NeedChecks {
		w.in.Checks = nil
		for _, m := range d.Measure {
			if m.IsComparison() {
				w.in.Checks = append(w.in.Checks, analysis.Check{Metric: m.Name, Reading: &analysis.Reading{Stable: w.served}})
				continue
			}
			v := 1 - w.served.Rate()
			o := analysis.Pass
			if v < 0.9 {
				o = analysis.Fail
			}
			w.in.Checks = append(w.in.Checks, analysis.Check{Metric: m.Name, Outcome: o, Value: &v, Message: m.Name + " " + trimFloat(v)})
		}
		d = Decide(w.in)
		w.in.Checks = nil
	}
	w.in.Status = d.Status
	o := &w.in.Observed
	for _, a := range d.Actions {
		w.actions = append(w.actions, a.String())
		switch a := a.(type) {
		case SetWeights:
			o.Weights = a.Weights
		case SetStablePaused:
			o.DeploymentPaused = a.Paused
			if !a.Paused {
				o.DeploymentRevision, o.DeploymentSettled = o.DesiredRevision, true
			}
		case EnsurePrevious:
			o.PreviousExists, o.PreviousRevision, o.PreviousReady = true, a.Revision, !w.previousStuck
			o.PreviousReplicas = max(a.Replicas, o.StableReplicas)
			if o.PreviousReady {
				o.PreviousAvailable = o.PreviousReplicas
			} else {
				o.PreviousAvailable = min(o.PreviousAvailable, o.PreviousReplicas)
			}
		case DeletePrevious:
			o.PreviousExists, o.PreviousRevision, o.PreviousReady, o.PreviousReplicas, o.PreviousAvailable = false, "", false, 0, 0
		case ScaleCanaryDown:
			o.CanaryReplicas, o.CanaryReady = 0, false
		case EnsureCanary:
			o.CanaryRevision, o.CanaryReplicas, o.CanaryReady = a.Revision, 1, true
		}
	}
	return d
}

// at moves the clock to offset after start.
func (w *watchWorld) at(start time.Time, offset time.Duration) { w.in.Now = start.Add(offset) }

// promoted promotes the canary by hand and follows the promotion to its
// end.
func (w *watchWorld) promoted(now time.Time) {
	w.t.Helper()
	w.in.Action = &ActionRequest{Kind: v1alpha1.ActionPromoteFull, By: "api:test", RequestID: "promote-" + w.in.Now.Format(time.RFC3339)}
	w.decide()
	w.in.Action = nil
	for i := 0; i < 10 && w.in.Status.Phase != v1alpha1.PhaseSucceeded; i++ {
		w.in.Now = w.in.Now.Add(time.Second)
		w.decide()
	}
	if w.in.Status.Phase != v1alpha1.PhaseSucceeded {
		w.t.Fatalf("not promoted: %s (%s)", w.in.Status.Phase, w.in.Status.Message)
	}
}

// A promotion under a policy that watches starts the previous revision's
// pods with it and, once done, watches the promoted revision; a watch that
// finds nothing ends at its duration and removes them.
func TestAWatchThatFindsNothingEndsAndRemovesThePreviousPods(t *testing.T) {
	now := epoch.Add(time.Hour)
	w := newWatchWorld(t, now)
	w.promoted(now)
	if !strings.Contains(strings.Join(w.actions, " "), "EnsurePrevious(r1, 2 pods)") {
		t.Fatalf("the promotion did not start r1's pods: %v", w.actions)
	}
	st := w.in.Status.Watch
	if st == nil || st.State != v1alpha1.WatchWatching || st.Revision != "r2" || st.Previous != "r1" || len(st.Figures) != 1 || st.Figures[0].Before.Requests != 20000 {
		t.Fatalf("watch %+v: want r2 watched against r1's figures", st)
	}
	start := w.in.Now
	// Ten minutes of 0.5% errors, a look every 10 s.
	for s := 10 * time.Second; s <= 10*time.Minute+10*time.Second && w.in.Status.Watch.State == v1alpha1.WatchWatching; s += 10 * time.Second {
		w.served.Requests += 1000
		w.served.Bad += 5
		w.at(start, s)
		w.decide()
		if w.in.Status.Phase != v1alpha1.PhaseSucceeded {
			t.Fatalf("at +%s: phase %s (%s)", s, w.in.Status.Phase, w.in.Status.Message)
		}
	}
	if st := w.in.Status.Watch; st.State != v1alpha1.WatchPassed || st.Figures[0].After.Requests < 50000 {
		t.Fatalf("watch %+v: want passed, having counted the promoted revision's requests", st)
	}
	if w.in.PreviousExists || !strings.Contains(strings.Join(w.actions, " "), "DeletePrevious") {
		t.Errorf("after the watch r1's pods stay: %v", w.actions)
	}
}

// A regression after the promotion (errors from 0.5% to 5%) sends all
// traffic to the previous revision's pods at the next look, says so, and
// stays so while the template is the regressed revision's; reverting the
// template rolls the Deployment back and returns the traffic to it.
func TestARegressionInTheWatchSendsAllTrafficToThePreviousPods(t *testing.T) {
	now := epoch.Add(time.Hour)
	w := newWatchWorld(t, now)
	w.in.Policy.Slack = &Slack{Secret: "fledge-slack"}
	w.promoted(now)
	start := w.in.Now
	var revertedAt time.Duration
	for s := 10 * time.Second; s <= 5*time.Minute; s += 10 * time.Second {
		if s > 30*time.Second {
			w.served.Requests += 1000
			w.served.Bad += 50
		} else {
			w.served.Requests += 1000
			w.served.Bad += 5
		}
		w.at(start, s)
		w.actions = nil
		d := w.decide()
		if w.in.Status.Watch.State == v1alpha1.WatchReverted {
			revertedAt = s
			if got := w.in.Weights; got != (traffic.Weights{Baseline: 100}) {
				t.Fatalf("reverted, routing %+v: want all on the previous revision's pods", got)
			}
			for _, want := range []string{"r2 regressed after its promotion", "error-rate", "all traffic is on r1's pods", "revert its template to r1"} {
				if !strings.Contains(d.Status.Message, want) {
					t.Errorf("message %q lacks %q", d.Status.Message, want)
				}
			}
			if d.Status.Phase != v1alpha1.PhaseRolledBack || d.Status.RejectedRevision != "r2" {
				t.Errorf("phase %s, rejected %q: want RolledBack, r2", d.Status.Phase, d.Status.RejectedRevision)
			}
			var told bool
			for _, e := range d.Status.Outbox {
				told = told || e.Channel == "slack" && strings.Contains(e.Notification.Reason, "regressed after its promotion")
			}
			if !told {
				t.Errorf("Slack is not told: %+v", d.Status.Outbox)
			}
			break
		}
	}
	if revertedAt == 0 {
		t.Fatalf("no revert: %s", w.in.Status.Message)
	}
	t.Logf("regression from +30s, reverted at +%s", revertedAt)
	if revertedAt > 60*time.Second {
		t.Errorf("reverted %s after the regression began, want within a few looks", revertedAt-30*time.Second)
	}
	// Still the regressed template: the traffic stays on r1's pods.
	for i := 0; i < 3; i++ {
		w.in.Now = w.in.Now.Add(time.Minute)
		w.decide()
		if w.in.Weights != (traffic.Weights{Baseline: 100}) || w.in.Status.Watch.State != v1alpha1.WatchReverted {
			t.Fatalf("routing %+v, watch %s: want all on r1's pods, reverted", w.in.Weights, w.in.Status.Watch.State)
		}
	}
	// The template goes back to r1: the Deployment rolls to it, then the
	// traffic returns to it and r1's copy goes.
	w.in.DesiredRevision = "r1"
	w.actions = nil
	for i := 0; i < 5; i++ {
		w.in.Now = w.in.Now.Add(time.Second)
		w.decide()
	}
	if w.in.Weights != plainStable || w.in.DeploymentRevision != "r1" || w.in.PreviousExists || !w.in.DeploymentPaused {
		t.Errorf("after the revert: routing %+v, Deployment at %s (paused %t), previous pods %t; want all on the Deployment at r1, paused, no copy (actions %v)",
			w.in.Weights, w.in.DeploymentRevision, w.in.DeploymentPaused, w.in.PreviousExists, w.actions)
	}
	if w.in.Status.StableRevision != "r1" {
		t.Errorf("stable %s, want r1", w.in.Status.StableRevision)
	}
}

// A fix applied while the revert stands is canaried against the previous
// revision's pods (they take stable's share), and once promoted the
// traffic is on the Deployment again and a new watch keeps r1's pods.
func TestAFixAfterARevertIsCanariedAgainstThePreviousPods(t *testing.T) {
	w := reverted(t, false)
	w.in.DesiredRevision = "r3"
	w.in.Now = w.in.Now.Add(time.Second)
	w.decide()
	if w.in.Status.Phase != v1alpha1.PhaseProgressing || w.in.Status.CanaryRevision != "r3" {
		t.Fatalf("phase %s, canary %s: want r3 canaried", w.in.Status.Phase, w.in.Status.CanaryRevision)
	}
	if w.in.Status.Baseline != "" {
		t.Errorf("a fresh baseline %q while r1's pods take stable's share", w.in.Status.Baseline)
	}
	for i := 0; i < 5 && w.in.Status.Step < 0; i++ {
		w.in.Now = w.in.Now.Add(time.Second)
		d := Decide(w.in)
		if d.NeedChecks {
			w.in.Checks = []analysis.Check{{Metric: analysis.ErrorRate, Reading: &analysis.Reading{Stable: sequential.Counts{Requests: 10}}}}
		}
		w.decide()
	}
	if want := (traffic.Weights{Canary: 10, Baseline: 90}); w.in.Weights != want {
		t.Fatalf("r3's first step routes %+v, want %+v (r1's pods in stable's place)", w.in.Weights, want)
	}
	w.served = sequential.Counts{Requests: 1e6, Bad: 5000} // the Deployment's pods, once r3
	w.promoted(w.in.Now)
	st := w.in.Status.Watch
	if w.in.Weights != plainStable || w.in.Status.StableRevision != "r3" || st == nil || st.State != v1alpha1.WatchWatching || st.Revision != "r3" || st.Previous != "r1" || !w.in.PreviousExists {
		t.Errorf("r3 promoted: routing %+v, stable %s, watch %+v, previous pods %t; want all on the Deployment, r3 watched against r1's pods, kept",
			w.in.Weights, w.in.Status.StableRevision, st, w.in.PreviousExists)
	}
}

// A regression while the previous revision's pods are not ready keeps the
// traffic where it is (there is nowhere better to send it) and says so;
// once they are ready, all traffic goes to them.
func TestARevertWaitsForThePreviousPodsAndSaysSo(t *testing.T) {
	w := reverted(t, true)
	if w.in.Status.Watch.State != v1alpha1.WatchReverted || w.in.Weights != plainStable {
		t.Fatalf("watch %s, routing %+v: want reverted, the traffic still on the Deployment", w.in.Status.Watch.State, w.in.Weights)
	}
	if !strings.Contains(w.in.Status.Message, "pods are not ready") {
		t.Errorf("message %q: want the previous pods' state said", w.in.Status.Message)
	}
	w.in.Now = w.in.Now.Add(2 * time.Second)
	w.decide()
	if h := w.in.Status.Hold; h == nil || !strings.Contains(h.Message, "the traffic stays on r2 until they are") {
		t.Errorf("hold %+v: want one saying the traffic waits for r1's pods", h)
	}
	w.in.PreviousReady, w.in.PreviousAvailable = true, w.in.PreviousReplicas
	w.in.Now = w.in.Now.Add(2 * time.Second)
	w.decide()
	if w.in.Weights != (traffic.Weights{Baseline: 100}) || w.in.Status.Hold != nil {
		t.Errorf("r1's pods ready: routing %+v, hold %+v; want all on them, no hold", w.in.Weights, w.in.Status.Hold)
	}
}

func TestAWatchPolicyParses(t *testing.T) {
	ps, err := ParseConfig([]byte("policies:\n  watched:\n    steps: [10]\n    postPromotion: {duration: 10m}\n    metrics: [{name: error-rate}]\n  plain:\n    steps: [10]\n    metrics: [{name: error-rate}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ps["watched"].PostPromotion != 10*time.Minute || !ps["watched"].watches() || ps["plain"].watches() {
		t.Errorf("watch %s (watches %t), none %s (watches %t)", ps["watched"].PostPromotion, ps["watched"].watches(), ps["plain"].PostPromotion, ps["plain"].watches())
	}
}

// reverted is a watch world whose promoted revision regressed: all traffic
// on r1's pods.
func reverted(t *testing.T, stuck bool) *watchWorld {
	now := epoch.Add(time.Hour)
	w := newWatchWorld(t, now)
	w.previousStuck = stuck
	w.promoted(now)
	start := w.in.Now
	for s := 10 * time.Second; w.in.Status.Watch.State == v1alpha1.WatchWatching && s < 5*time.Minute; s += 10 * time.Second {
		w.served.Requests += 1000
		w.served.Bad += 80
		w.at(start, s)
		w.decide()
	}
	if w.in.Status.Watch.State != v1alpha1.WatchReverted || !stuck && w.in.Weights != (traffic.Weights{Baseline: 100}) {
		t.Fatalf("watch %s, routing %+v: want reverted onto r1's pods", w.in.Status.Watch.State, w.in.Weights)
	}
	return w
}

// One of the previous revision's pods restarting does not send users back
// to the regressed revision: the revert stays routed while any is
// available; with none available the traffic goes where it can, and comes
// back once they are.
func TestARevertSurvivesAPreviousPodRestarting(t *testing.T) {
	w := reverted(t, false)
	w.previousStuck = true // asking again does not bring them back
	w.in.PreviousReady, w.in.PreviousAvailable = false, 1
	w.in.Now = w.in.Now.Add(time.Minute)
	w.decide()
	if w.in.Weights != (traffic.Weights{Baseline: 100}) {
		t.Errorf("one previous pod restarting: routing %+v, want all still on r1's pods", w.in.Weights)
	}
	w.in.PreviousAvailable = 0
	w.in.Now = w.in.Now.Add(time.Second)
	w.decide()
	since := w.in.Status.Hold
	if w.in.Weights != plainStable || since == nil {
		t.Fatalf("no previous pod available: routing %+v, hold %+v; want the Deployment's pods, a hold", w.in.Weights, since)
	}
	first := since.Since
	w.in.Now = w.in.Now.Add(10 * time.Second)
	w.decide()
	if h := w.in.Status.Hold; h == nil || !h.Since.Equal(&first) {
		t.Errorf("hold %+v: want the same hold, its since kept (%s)", h, first)
	}
	w.in.PreviousReady, w.in.PreviousAvailable = true, 2
	w.in.Now = w.in.Now.Add(time.Second)
	w.decide()
	if w.in.Weights != (traffic.Weights{Baseline: 100}) || w.in.Status.Hold != nil {
		t.Errorf("previous pods back: routing %+v, hold %+v", w.in.Weights, w.in.Status.Hold)
	}
}

// A revision that arrives during a promotion ends the watch being
// prepared: its previous pods go (once no route reaches them).
func TestANewRevisionDuringAPromotionEndsTheWatchBeingPrepared(t *testing.T) {
	now := epoch.Add(time.Hour)
	w := newWatchWorld(t, now)
	w.in.Action = &ActionRequest{Kind: v1alpha1.ActionPromoteFull, By: "api:test", RequestID: "p1"}
	w.decide()
	w.in.Action = nil
	if s := w.in.Status.Watch; s == nil || s.State != v1alpha1.WatchPreparing {
		t.Fatalf("watch %+v, want preparing", s)
	}
	// The Deployment is still rolling when r3 arrives.
	w.in.DeploymentSettled = false
	w.in.DesiredRevision = "r3"
	for i := 0; i < 4; i++ {
		w.in.Now = w.in.Now.Add(time.Second)
		w.decide()
	}
	if s := w.in.Status.Watch; s == nil || s.State != v1alpha1.WatchEnded || !strings.Contains(s.Message, "r3 arrived") {
		t.Fatalf("watch %+v, want ended by r3", s)
	}
	if w.in.PreviousExists {
		t.Errorf("the previous pods of an ended watch stay: %v", w.actions)
	}
}

// The restore ends once the Deployment runs the previous revision again,
// whether or not the copy's pods are all ready then.
func TestARestoreEndsOnceTheDeploymentIsBack(t *testing.T) {
	w := reverted(t, false)
	w.in.DesiredRevision = "r1"
	w.in.Now = w.in.Now.Add(time.Second)
	w.decide()
	w.in.PreviousReady = false // one of the copy's pods restarts meanwhile
	for i := 0; i < 3; i++ {
		w.in.Now = w.in.Now.Add(time.Second)
		w.decide()
	}
	if s := w.in.Status.Watch; s.State != v1alpha1.WatchEnded || w.in.Weights != plainStable || w.in.Status.StableRevision != "r1" {
		t.Errorf("watch %s, routing %+v, stable %s: want restored", s.State, w.in.Weights, w.in.Status.StableRevision)
	}
}

// While a revert stands, a canary is sized against the previous
// revision's pods, which serve in stable's place and are sized for all of
// the traffic (not by the autoscaler): a share w gets w% of them.
func TestACanaryAfterARevertIsSizedAgainstThePreviousPods(t *testing.T) {
	w := reverted(t, false)
	w.in.Autoscaler, w.in.AutoscalerMax = "HorizontalPodAutoscaler web", 40
	w.in.StableReplicas, w.in.PreviousReplicas = 1, 9 // the idle Deployment shrank; r1's pods carry everything
	w.in.DesiredRevision = "r3"
	w.in.Now = w.in.Now.Add(time.Second)
	d := w.decide()
	var got []string
	for _, a := range d.Actions {
		if e, ok := a.(EnsureCanary); ok {
			got = append(got, e.String())
		}
	}
	if len(got) != 1 || got[0] != "EnsureCanary(r3, 1 pods)" {
		t.Errorf("the first step (10%%) asks for %v, want 1 pod (9 for 100%%: 0.9 for 10%%)", got)
	}
	d2 := *d.Status.DeepCopy()
	d2.Step, d2.CanaryWeight = 1, 50
	w.in.Status = d2
	w.in.CanaryReplicas = 1
	de := &decider{in: w.in, st: d2}
	if n := de.canaryPods(50); n != 5 {
		t.Errorf("at 50%% against r1's 9 pods, sized for all of the traffic: %d canary pods, want 5", n)
	}
}

// A template reverted to the previous revision during a fix's canary
// ends the fix and restores the Deployment, rather than canarying the old
// revision against its own copy.
func TestARevertDuringAFixRestores(t *testing.T) {
	w := reverted(t, false)
	w.in.DesiredRevision = "r3"
	w.in.Now = w.in.Now.Add(time.Second)
	w.decide()
	if w.in.Status.Phase != v1alpha1.PhaseProgressing {
		t.Fatalf("phase %s, want r3 canaried", w.in.Status.Phase)
	}
	w.in.DesiredRevision = "r1"
	for i := 0; i < 5; i++ {
		w.in.Now = w.in.Now.Add(time.Second)
		w.decide()
	}
	if s := w.in.Status.Watch; s.State != v1alpha1.WatchEnded || w.in.Status.StableRevision != "r1" || w.in.Weights != plainStable || w.in.CanaryReplicas != 0 {
		t.Errorf("watch %s, stable %s, routing %+v, canary %d pods: want restored to r1, the fix gone", s.State, w.in.Status.StableRevision, w.in.Weights, w.in.CanaryReplicas)
	}
}

// The previous pods coming up during a fix's canary move stable's share to
// them without counting another writer.
func TestThePreviousPodsComingUpMidCanaryIsNotAnotherWriter(t *testing.T) {
	w := reverted(t, false)
	w.in.DesiredRevision = "r3"
	for i := 0; i < 4 && w.in.Status.Step < 0; i++ {
		w.in.Now = w.in.Now.Add(time.Second)
		w.decide()
	}
	if w.in.Weights != (traffic.Weights{Canary: 10, Baseline: 90}) {
		t.Fatalf("routing %+v, want r3 at 10%% beside r1's pods", w.in.Weights)
	}
	// The split reads stable's share on the Deployment (as it would
	// after r1's pods were lost for a moment): set back, not a fight.
	w.in.Weights = traffic.Weights{Canary: 10, Stable: 90}
	w.in.Now = w.in.Now.Add(time.Second)
	d := w.decide()
	if w.in.Weights != (traffic.Weights{Canary: 10, Baseline: 90}) || d.Status.Reasserts != 0 {
		t.Errorf("routing %+v, reasserts %d: want stable's share back on r1's pods, nothing counted", w.in.Weights, d.Status.Reasserts)
	}
}

// A policy whose Slack hears of rollbacks hears of reverts, and the
// promotion asks for the previous pods once a decision.
func TestRevertsReachSlackFilteredForRollbacks(t *testing.T) {
	now := epoch.Add(time.Hour)
	w := newWatchWorld(t, now)
	w.in.Policy.Slack = &Slack{Secret: "s", Events: map[string]bool{EventRolledBack: true}}
	w.in.Action = &ActionRequest{Kind: v1alpha1.ActionPromoteFull, By: "api:test", RequestID: "p"}
	d := w.decide()
	w.in.Action = nil
	n := 0
	for _, a := range d.Actions {
		if _, ok := a.(EnsurePrevious); ok {
			n++
		}
	}
	w.in.DeploymentSettled = false // still rolling
	w.in.Now = w.in.Now.Add(time.Second)
	d = w.decide()
	for _, a := range d.Actions {
		if _, ok := a.(EnsurePrevious); ok {
			n++
		}
	}
	if n > 1 {
		t.Errorf("the previous pods asked for %d times in two decisions with them ready after the first", n)
	}
	w.in.DeploymentSettled = true
	for i := 0; i < 5 && w.in.Status.Phase != v1alpha1.PhaseSucceeded; i++ {
		w.in.Now = w.in.Now.Add(time.Second)
		w.decide()
	}
	start := w.in.Now
	for s := 10 * time.Second; w.in.Status.Watch.State == v1alpha1.WatchWatching && s < 5*time.Minute; s += 10 * time.Second {
		w.served.Requests += 1000
		w.served.Bad += 80
		w.at(start, s)
		w.decide()
	}
	var told bool
	for _, e := range w.in.Status.Outbox {
		told = told || e.Channel == ChannelSlack && e.Event == EventReverted
	}
	if !told {
		t.Errorf("a revert does not reach a Slack that asks for rollbacks: %+v", w.in.Status.Outbox)
	}
}
