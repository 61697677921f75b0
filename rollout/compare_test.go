package rollout

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/analysis/sequential"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// comparing is a Flight at its first step under a policy that judges the
// error rate against stable (margin 1 point), looking every 10 s.
func comparing(now time.Time) Input {
	in := atStep(now, 0)
	started := metav1.NewTime(now) // the step starts now: its round is in a minute
	in.Status.StepStartedAt = &started
	p := *in.Policy
	p.Metrics = []analysis.Metric{{Name: analysis.ErrorRate, Interval: time.Minute, Compare: &analysis.Comparison{MaxIncrease: 0.01}}}
	p.Alpha, p.LookInterval, p.MinStepDuration, p.AnalysisDeadline, p.OnInsufficientEvidence = 0.01, 10*time.Second, time.Minute, 2*time.Hour, OnInsufficientHold
	in.Policy = &p
	return in
}

// reading is an error-rate check carrying both sides' cumulative counters.
func reading(canaryReq, canaryBad, stableReq, stableBad float64) []analysis.Check {
	return []analysis.Check{{Metric: analysis.ErrorRate, Reading: &analysis.Reading{
		Canary: sequential.Counts{Requests: canaryReq, Bad: canaryBad},
		Stable: sequential.Counts{Requests: stableReq, Bad: stableBad},
	}}}
}

// look runs Decide twice, as the engine does when it asks for checks.
func look(t *testing.T, in Input, checks []analysis.Check) Decision {
	t.Helper()
	d := Decide(in)
	if !d.NeedChecks {
		t.Fatalf("no measurement asked for: %+v", d.Status)
	}
	if len(d.Measure) == 0 || d.Measure[0].Name != analysis.ErrorRate {
		t.Fatalf("asked to measure %+v, want the error-rate comparison", d.Measure)
	}
	in.Checks = checks
	return Decide(in)
}

func TestACanaryShownWorseIsRolledBackAtALookBetweenRounds(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := comparing(now)
	// The first look sets the baseline.
	d := look(t, in, reading(100, 0, 900, 5))
	if d.Status.Phase != v1alpha1.PhaseProgressing || len(d.Status.Evidence) != 1 || d.Status.Evidence[0].Last.Canary.Requests != 100 {
		t.Fatalf("first look: phase %s, evidence %+v; want progressing with a baseline", d.Status.Phase, d.Status.Evidence)
	}
	if d.RequeueAfter != 10*time.Second {
		t.Errorf("next look in %s, want 10s", d.RequeueAfter)
	}
	// 10 s later, long before the round: 40 canary requests, 12 failed;
	// stable 360, 2 failed.
	in.Status, in.Now = d.Status, now.Add(10*time.Second)
	d = look(t, in, reading(140, 12, 1260, 7))
	if rejectedTo(d.Status) != v1alpha1.PhaseRolledBack {
		t.Fatalf("phase %s (%s), want rolled back", d.Status.Phase, d.Status.Message)
	}
	for _, want := range []string{"error-rate worse", "canary 30% [", "vs stable 0.56% [", "40 canary requests", "margin +1 pt", "alpha 0.01"} {
		if !strings.Contains(d.Status.Message, want) {
			t.Errorf("message %q lacks %q", d.Status.Message, want)
		}
	}
	// The decision log carries the same knowledge, structured.
	log := d.Status.Decisions[len(d.Status.Decisions)-1]
	if len(log.Checks) != 1 || log.Checks[0].Compared == nil {
		t.Fatalf("the rollback's checks %+v carry no comparison", log.Checks)
	}
	got := *log.Checks[0].Compared
	if got.Canary.Requests != 40 || got.Canary.Bad != 12 || got.Stable.Requests != 360 || got.Stable.Bad != 2 ||
		got.MaxIncrease != 0.01 || got.RollbackAt != 100 || got.Evidence < got.RollbackAt || got.Looks != 1 ||
		!(got.Canary.Low < 0.3 && 0.3 < got.Canary.High) || got.Stable.High > got.Canary.Low {
		t.Errorf("compared %+v: want canary 12/40 within its bounds, stable 2/360 below them, evidence at least 100", got)
	}
}

func TestAnEqualCanaryWalksItsStepsAndIsPromotedOnceShownNoWorse(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := comparing(now)
	d := look(t, in, reading(0, 0, 0, 0)) // the baseline
	// The round: equal rates, inconclusive, which does not hold an
	// intermediate step.
	in.Status, in.Now = d.Status, now.Add(time.Minute)
	d = look(t, in, reading(300, 2, 2700, 13))
	if d.Status.Step != 1 || d.Status.CanaryWeight != 50 {
		t.Fatalf("step %d at %d%% (%s), want step 2 at 50%%", d.Status.Step, d.Status.CanaryWeight, d.Status.Message)
	}
	in.Weights = traffic.Weights{Stable: 50, Canary: 50} // as the decision set them
	// The last step's round: still inconclusive, so no promotion: a hold
	// that says how much is known.
	in.Status, in.Now = d.Status, now.Add(2*time.Minute)
	d = look(t, in, reading(400, 2, 2800, 14))
	if d.Status.Phase != v1alpha1.PhaseProgressing || d.Status.Hold == nil || d.Status.Hold.Reason != v1alpha1.HoldInconclusive ||
		!strings.Contains(d.Status.Message, "promotion waits until every comparison shows the canary no worse") ||
		!strings.Contains(d.Status.Message, "cannot tell yet") || !strings.Contains(d.Status.Message, "more canary requests to show it no worse") {
		t.Fatalf("phase %s, hold %+v, message %q; want held inconclusive", d.Status.Phase, d.Status.Hold, d.Status.Message)
	}
	held := *d.Status.Hold
	// The next round is still inconclusive: the same hold goes on, with
	// its message brought up to date and no second Held Event (one a
	// round would be dozens a rollout).
	in.Status, in.Now = d.Status, now.Add(3*time.Minute)
	d = look(t, in, reading(500, 2, 2900, 14))
	if h := d.Status.Hold; h == nil || h.Reason != v1alpha1.HoldInconclusive || !h.Since.Equal(&held.Since) || h.Message == held.Message {
		t.Errorf("hold %+v after a second inconclusive round; want the first one (since %s), its message updated", h, held.Since)
	}
	for _, a := range d.Actions {
		if e, ok := a.(RecordEvent); ok && e.Reason == "Held" {
			t.Errorf("a Held Event again at the next round: %s", e.Message)
		}
	}
	// Plenty of evidence at equal rates, at the next look: promoted.
	in.Status, in.Now = d.Status, now.Add(3*time.Minute+10*time.Second)
	d = look(t, in, reading(20800, 104, 25600, 128))
	if d.Status.Phase != v1alpha1.PhasePromoting {
		t.Fatalf("phase %s (%s), want promoting", d.Status.Phase, d.Status.Message)
	}
}

func TestEarlyPromotionSkipsTheRemainingSteps(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := comparing(now)
	in.Policy.EarlyPromotion = true
	in.Policy.MinStepDuration = 30 * time.Second
	in.Policy.Steps = []int32{10, 25, 50}
	in.Status.Steps = []int32{10, 25, 50}
	d := look(t, in, reading(0, 0, 0, 0))
	in.Status, in.Now = d.Status, now.Add(10*time.Second)
	// Shown no worse 10 s in, but the step's minimum is 30 s.
	d = look(t, in, reading(20000, 100, 180000, 900))
	if d.Status.Phase != v1alpha1.PhaseProgressing || d.Status.Step != 0 {
		t.Fatalf("promoted before the step's minimum: %s step %d", d.Status.Phase, d.Status.Step)
	}
	in.Status, in.Now = d.Status, now.Add(30*time.Second)
	d = look(t, in, reading(20100, 100, 181000, 905))
	if d.Status.Phase != v1alpha1.PhasePromoting || !strings.Contains(d.Status.Message, "promoting early") {
		t.Fatalf("phase %s (%s), want promoting early", d.Status.Phase, d.Status.Message)
	}
}

func TestACounterThatGoesDownHoldsOneLookAndKeepsTheEvidence(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := comparing(now)
	d := look(t, in, reading(100, 0, 900, 5))
	in.Status, in.Now = d.Status, now.Add(10*time.Second)
	d = look(t, in, reading(200, 1, 1800, 10))
	before := d.Status.Evidence[0]
	// A canary pod restarted: its counter went down.
	in.Status, in.Now = d.Status, now.Add(20*time.Second)
	d = look(t, in, reading(30, 0, 2700, 15))
	ev := d.Status.Evidence[0]
	if ev.Canary != before.Canary || ev.Looks != before.Looks || ev.Last.Canary.Requests != 30 {
		t.Fatalf("evidence %+v after the reset, want %+v kept and counting from 30", ev, before)
	}
	if !strings.Contains(d.Status.Message, "went down") {
		t.Errorf("message %q does not say the counter went down", d.Status.Message)
	}
	// The next look counts from the new counters.
	in.Status, in.Now = d.Status, now.Add(30*time.Second)
	d = look(t, in, reading(130, 1, 3600, 20))
	if got := d.Status.Evidence[0].Canary.Requests; got != before.Canary.Requests+100 {
		t.Errorf("canary requests %g, want %g", got, before.Canary.Requests+100)
	}
}

func TestAnOutageHoldsAndTheEvidenceFromBeforeCountsAfter(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := comparing(now)
	d := look(t, in, reading(100, 0, 900, 5))
	in.Status, in.Now = d.Status, now.Add(10*time.Second)
	d = look(t, in, reading(200, 1, 1800, 10))
	// Prometheus down for the next look.
	in.Status, in.Now = d.Status, now.Add(20*time.Second)
	d = look(t, in, []analysis.Check{{Metric: analysis.ErrorRate, Outcome: analysis.Error, Message: "error-rate: cannot read the canary's counters: prometheus cannot be reached"}})
	if d.Status.Phase != v1alpha1.PhaseProgressing || !strings.Contains(d.Status.Message, "prometheus cannot be reached") {
		t.Fatalf("phase %s, message %q; want progressing, saying why it cannot measure", d.Status.Phase, d.Status.Message)
	}
	// Back: the increments since the last good look count.
	in.Status, in.Now = d.Status, now.Add(30*time.Second)
	d = look(t, in, reading(400, 2, 3600, 20))
	if got := d.Status.Evidence[0].Canary.Requests; got != 300 {
		t.Errorf("canary requests %g, want 300 (100 before the outage, 200 through it)", got)
	}
}

func TestTheAnalysisDeadlineDoesWhatThePolicySays(t *testing.T) {
	now := epoch.Add(3 * time.Hour)
	for _, tc := range []struct {
		on        string
		wantPhase v1alpha1.Phase
		wantHold  string
	}{
		{OnInsufficientHold, v1alpha1.PhaseProgressing, v1alpha1.HoldInsufficientEvidence},
		{OnInsufficientRollback, v1alpha1.PhaseRolledBack, ""},
		{OnInsufficientPromote, v1alpha1.PhasePromoting, ""},
	} {
		t.Run(tc.on, func(t *testing.T) {
			in := comparing(now)
			in.Policy.OnInsufficientEvidence = tc.on
			started := metav1.NewTime(now.Add(-2*time.Hour - time.Second))
			in.Status.RevisionStartedAt = &started
			d := Decide(in)
			if d.NeedChecks {
				in.Checks = reading(10, 0, 90, 0)
				d = Decide(in)
			}
			if rejectedTo(d.Status) != tc.wantPhase {
				t.Fatalf("phase %s (%s), want %s", d.Status.Phase, d.Status.Message, tc.wantPhase)
			}
			if tc.wantHold != "" && (d.Status.Hold == nil || d.Status.Hold.Reason != tc.wantHold || !strings.Contains(d.Status.Hold.Message, "no verdict within the analysis deadline (2h0m0s)")) {
				t.Errorf("hold %+v, want %s naming the deadline", d.Status.Hold, tc.wantHold)
			}
		})
	}
}

// The counters are read just before the canary's first traffic, so the
// first look already judges what the canary served since its first
// request: at low traffic that is most of the evidence there is.
func TestTheBaselineIsReadBeforeTheFirstTraffic(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := comparing(now)
	in.Status.Step, in.Status.CanaryWeight, in.Status.StepStartedAt = -1, 0, nil
	in.Weights = traffic.Weights{Stable: 100}
	d := Decide(in)
	if !d.NeedChecks || len(d.Measure) != 1 || len(d.Actions) != 0 {
		t.Fatalf("ready canary: need checks %v, measure %+v, actions %+v; want the counters asked for before any weight", d.NeedChecks, d.Measure, d.Actions)
	}
	in.Checks = reading(0, 0, 5000, 25)
	d = Decide(in)
	if d.Status.Step != 0 || d.Status.CanaryWeight != 10 || len(d.Status.Evidence) != 1 || d.Status.Evidence[0].Last.Stable.Requests != 5000 || d.Status.Evidence[0].Looks != 0 {
		t.Fatalf("step %d at %d%%, evidence %+v; want step 1 at 10%% with the counters as baseline", d.Status.Step, d.Status.CanaryWeight, d.Status.Evidence)
	}
	var weighted bool
	for _, a := range d.Actions {
		if w, ok := a.(SetWeights); ok && w.Weights.Canary == 10 {
			weighted = true
		}
	}
	if !weighted {
		t.Errorf("actions %+v set no 10%% weight", d.Actions)
	}
	// The first look counts the canary's first requests: 20 of them, 12
	// failed, against stable's 180 with 1: rolled back at once.
	in.Status, in.Checks, in.Now = d.Status, nil, now.Add(10*time.Second)
	in.Weights = traffic.Weights{Stable: 90, Canary: 10}
	d = look(t, in, reading(20, 12, 5180, 26))
	if rejectedTo(d.Status) != v1alpha1.PhaseRolledBack || !strings.Contains(d.Status.Message, "20 canary requests") {
		t.Fatalf("phase %s (%s): want rolled back on the canary's first 20 requests", d.Status.Phase, d.Status.Message)
	}
	// Without Prometheus the traffic still starts; the first look reads
	// the baseline instead.
	in = comparing(now)
	in.Status.Step, in.Status.CanaryWeight, in.Status.StepStartedAt = -1, 0, nil
	in.Weights = traffic.Weights{Stable: 100}
	in.Checks = []analysis.Check{{Metric: analysis.ErrorRate, Outcome: analysis.Error, Message: "prometheus: connection refused"}}
	d = Decide(in)
	if d.Status.Step != 0 || len(d.Status.Evidence) != 0 || d.Status.LastLookAt != nil {
		t.Errorf("unreadable counters: step %d, evidence %+v, last look %v; want step 1 without a baseline", d.Status.Step, d.Status.Evidence, d.Status.LastLookAt)
	}
}

// A new revision's first traffic waits until two scrapes after the
// previous canary stopped serving: the canary workload's counters are
// shared by its revisions, and the old canary's last requests, not yet
// scraped, would otherwise count as the new one's.
func TestTheFirstTrafficWaitsForThePreviousCanarysLastScrape(t *testing.T) {
	now := epoch.Add(time.Hour)
	// A canary shown worse is rolled back: its traffic ends now.
	in := comparing(now)
	in.Policy.ScrapeInterval = 15 * time.Second
	d := look(t, in, reading(0, 0, 0, 0))
	in.Status, in.Now = d.Status, now.Add(10*time.Second)
	d = look(t, in, reading(40, 12, 360, 2))
	// Rolled back once the routing reads back at stable.
	in.Status, in.Now, in.Weights = d.Status, in.Now.Add(time.Second), traffic.Weights{Stable: 100}
	d = Decide(in)
	if d.Status.Phase != v1alpha1.PhaseRolledBack || d.Status.CanaryTrafficEndedAt == nil || !d.Status.CanaryTrafficEndedAt.Time.Equal(in.Now) {
		t.Fatalf("phase %s, canary traffic ended at %v; want rolled back, ended at %v", d.Status.Phase, d.Status.CanaryTrafficEndedAt, in.Now)
	}
	ended := in.Now
	// A fixed revision is ready 5 s later: no weight, no counters yet.
	in = comparing(ended.Add(5 * time.Second))
	in.Policy.ScrapeInterval = 15 * time.Second
	in.Status.Step, in.Status.CanaryWeight, in.Status.StepStartedAt = -1, 0, nil
	in.Status.CanaryTrafficEndedAt = d.Status.CanaryTrafficEndedAt
	in.Weights = traffic.Weights{Stable: 100}
	w := Decide(in)
	if w.NeedChecks || len(w.Actions) != 0 || w.Status.Step != -1 {
		t.Fatalf("5 s after the last canary's traffic: need checks %v, actions %+v, step %d; want a wait", w.NeedChecks, w.Actions, w.Status.Step)
	}
	if w.RequeueAfter != 25*time.Second || !strings.Contains(w.Status.Message, "first traffic waits until") || !strings.Contains(w.Status.Message, "scrapeInterval 15s") {
		t.Errorf("requeue in %s, message %q; want 25s, saying why and until when", w.RequeueAfter, w.Status.Message)
	}
	// Two scrapes later, the counters are read and the traffic starts.
	in.Status, in.Now = w.Status, ended.Add(30*time.Second)
	w = Decide(in)
	if !w.NeedChecks {
		t.Fatalf("two scrapes after: need checks %v (%s); want the baseline asked for", w.NeedChecks, w.Status.Message)
	}
	in.Checks = reading(40, 12, 5000, 25)
	w = Decide(in)
	if w.Status.Step != 0 || w.Status.CanaryWeight != 10 || w.Status.Evidence[0].Last.Canary.Requests != 40 {
		t.Errorf("step %d at %d%%, evidence %+v; want step 1 with the old canary's requests in the baseline", w.Status.Step, w.Status.CanaryWeight, w.Status.Evidence)
	}
}

// A tail regression with an unchanged median: compared at two bounds,
// the share slower than 100 ms is the same on both sides and the share
// slower than 1 s is 10x stable's. The tail's comparison rolls the canary
// back, and says which bound it was.
func TestATailRegressionIsRolledBackByItsBound(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := comparing(now)
	ps, err := ParseConfig([]byte(`
policies:
  tail:
    steps: [10, 50]
    metrics:
    - {name: latency, slowerThan: [100ms, 1s]}
`))
	if err != nil {
		t.Fatal(err)
	}
	in.Policy.Metrics = ps["tail"].Metrics
	at := func(mid, tail [4]float64) []analysis.Check {
		out := []analysis.Check{}
		for _, c := range []struct {
			name string
			v    [4]float64
		}{{"latency-100ms", mid}, {"latency-1s", tail}} {
			out = append(out, analysis.Check{Metric: c.name, Reading: &analysis.Reading{
				Canary: sequential.Counts{Requests: c.v[0], Bad: c.v[1]}, Stable: sequential.Counts{Requests: c.v[2], Bad: c.v[3]}}})
		}
		return out
	}
	d := Decide(in)
	if !d.NeedChecks || len(d.Measure) != 2 {
		t.Fatalf("measure %+v, want both bounds", d.Measure)
	}
	in.Checks = at([4]float64{0, 0, 0, 0}, [4]float64{0, 0, 0, 0})
	d = Decide(in)
	in.Status, in.Now, in.Checks = d.Status, now.Add(10*time.Second), nil
	// 1,000 canary requests: 100 slower than 100 ms (as stable's 10%), 20
	// slower than 1 s (stable: 0.2%).
	in.Checks = at([4]float64{1000, 100, 9000, 900}, [4]float64{1000, 20, 9000, 18})
	d = Decide(in)
	if rejectedTo(d.Status) != v1alpha1.PhaseRolledBack || !strings.Contains(d.Status.Message, "latency-1s worse") || strings.Contains(d.Status.Message, "latency-100ms worse") {
		t.Fatalf("phase %s (%s), want rolled back by latency-1s alone", d.Status.Phase, d.Status.Message)
	}
}

func TestPctWritesRatesWithoutExponents(t *testing.T) {
	for rate, want := range map[float64]string{0: "0%", 1: "100%", 0.074: "7.4%", 0.0052: "0.52%", 0.000028: "0.0028%", 8.8e-8: "<0.001%"} {
		if got := pct(rate); got != want {
			t.Errorf("pct(%g) = %q, want %q", rate, got, want)
		}
	}
}

// With a relative margin, a canary is promoted once shown to fail at most
// maxRatio times as often as stable, and the messages say "x2".
func TestARelativeMarginPromotesACanaryWithinIt(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := comparing(now)
	in.Policy.Metrics = []analysis.Metric{{Name: analysis.ErrorRate, Interval: time.Minute, Compare: &analysis.Comparison{MaxRatio: 2}}}
	in.Policy.Steps, in.Status.Steps = []int32{10}, []int32{10}
	d := look(t, in, reading(0, 0, 0, 0))
	in.Status, in.Now = d.Status, now.Add(time.Minute)
	d = look(t, in, reading(40000, 200, 400000, 2000))
	if d.Status.Phase != v1alpha1.PhasePromoting || !strings.Contains(d.Status.Message, "error-rate no worse than stable x2") || !strings.Contains(d.Status.Message, "margin x2") {
		t.Fatalf("phase %s (%s), want promoting within the relative margin", d.Status.Phase, d.Status.Message)
	}
}

// A caller may measure ahead: checks of the policy's metrics a decision
// does not judge are left out, and one missing for a metric it judges is
// asked for again (never judged as absent).
func TestChecksOfOtherMetricsAreLeftOutAndMissingOnesAskedFor(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := comparing(now)
	p := *in.Policy
	p.Metrics = append(slices.Clone(p.Metrics), analysis.Metric{Name: analysis.SuccessRate, Interval: time.Minute, Min: ptrTo(0.99)})
	in.Policy = &p
	d := look(t, in, reading(100, 0, 900, 5)) // the baseline
	in.Status, in.Now = d.Status, now.Add(10*time.Second)

	// A look judges the comparison only: success-rate is left out, even failed.
	failed := check(analysis.SuccessRate, analysis.Fail, 0.5)
	failed.Message = "success-rate 0.5 < 0.99"
	in.Checks = append(reading(140, 0, 1260, 7), failed)
	ahead := Decide(in)
	in.Checks = reading(140, 0, 1260, 7)
	asked := Decide(in)
	if ahead.NeedChecks || ahead.Status.Phase != v1alpha1.PhaseProgressing {
		t.Fatalf("measured ahead: need checks %v, phase %s (%s)", ahead.NeedChecks, ahead.Status.Phase, ahead.Status.Message)
	}
	if diff := cmp.Diff(asked, ahead); diff != "" {
		t.Errorf("a check of another metric changed the look (-as asked +ahead):\n%s", diff)
	}

	// The round judges both: with only the comparison given, it asks.
	in.Status, in.Now = asked.Status, now.Add(time.Minute)
	in.Checks = reading(150, 0, 1300, 7)
	d = Decide(in)
	if !d.NeedChecks || len(d.Measure) != 2 {
		t.Fatalf("a round given one of its two checks: need checks %v, measure %v; want both asked for", d.NeedChecks, d.Measure)
	}
}

// Another writer keeps setting the routing back (a GitOps tool re-applying
// its manifest): fledge sets it back three times, then stops fighting and
// holds, naming the writer, and tries again after a pause; the comparisons
// keep looking meanwhile, so a canary shown worse is still rolled back,
// and nothing moves on; once the routing stays as set for an interval,
// the rollout goes on.
func TestAnotherWriterOfTheRoutingIsFoughtABoundedNumberOfTimes(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := comparing(now)
	d := look(t, in, reading(0, 0, 0, 0)) // the baseline
	in.Status = d.Status
	in.Weights, in.RoutingWriter = traffic.Weights{Stable: 100}, `"argocd-controller" (Apply at 01:00:05 UTC)`
	var held *v1alpha1.Hold
	reasserts := 0
	at := now
	for i := range 8 {
		at = at.Add(10 * time.Second)
		in.Now = at
		d = Decide(in)
		if d.NeedChecks {
			in.Checks = reading(float64(10*(i+1)), 0, float64(90*(i+1)), 0)
			d = Decide(in)
			in.Checks = nil
		}
		if len(summarize(d).Weights) > 0 {
			reasserts++
		}
		if d.Status.Phase != v1alpha1.PhaseProgressing || d.Status.Step != 0 {
			t.Fatalf("look %d: phase %s step %d, want still at the first step", i, d.Status.Phase, d.Status.Step)
		}
		in.Status, held = d.Status, d.Status.Hold
	}
	// 80 s: three at once, then one after the 30 s pause.
	if reasserts != 4 {
		t.Errorf("set back %d times in 80 s, want 3 in a row and then 1 after a 30 s pause", reasserts)
	}
	if held == nil || held.Reason != v1alpha1.HoldOtherWriter || !strings.Contains(held.Message, "argocd-controller") || !strings.Contains(held.Message, "stops fighting") {
		t.Fatalf("hold %+v, want OtherWriter naming argocd-controller", held)
	}
	if in.Status.LastLookAt == nil || !in.Status.LastLookAt.Time.After(now.Add(time.Minute)) {
		t.Errorf("last look %v: the comparisons must keep looking while the routing is fought over", in.Status.LastLookAt)
	}

	// A canary shown worse meanwhile is rolled back.
	bad := in
	bad.Now = at.Add(10 * time.Second)
	bad.Checks = reading(200, 60, 900, 1)
	if d := Decide(bad); rejectedTo(d.Status) != v1alpha1.PhaseRolledBack {
		t.Errorf("a canary shown worse while the routing is not as set: phase %s (%s), want rolled back", d.Status.Phase, d.Status.Message)
	}

	// The other writer stops: set back once more, and once it stays for
	// an interval (1m), the hold ends.
	in.Weights = traffic.Weights{Stable: 90, Canary: 10}
	for i := range 8 {
		at = at.Add(10 * time.Second)
		in.Now = at
		d = Decide(in)
		if d.NeedChecks {
			in.Checks = reading(float64(100+10*i), 0, float64(900+90*i), 0)
			d = Decide(in)
			in.Checks = nil
		}
		in.Status = d.Status
		if ws := summarize(d).Weights; len(ws) > 0 {
			in.Weights = ws[len(ws)-1] // now nobody else writes: fledge's weights stay
		}
	}
	if h := in.Status.Hold; h != nil && h.Reason == v1alpha1.HoldOtherWriter || in.Status.Reasserts != 0 {
		t.Errorf("after the routing stayed as set for a minute: hold %+v, reasserts %d; want the hold gone", h, in.Status.Reasserts)
	}
}

// explain is written with strconv, at every look; it says what
// fmt.Sprintf with this format said.
func TestExplainWritesWhatItsFormatDid(t *testing.T) {
	format := func(c *analysis.Compared) string {
		return fmt.Sprintf("canary %s [%s, %s] vs stable %s [%s, %s], %.0f canary requests, margin %s, evidence %.3g (rolled back at %.3g, alpha %.2g), no worse %.3g (promoted at %.3g)",
			pct(c.Canary.Rate), pct(c.Canary.Low), pct(c.Canary.High), pct(c.Stable.Rate), pct(c.Stable.Low), pct(c.Stable.High),
			c.Canary.Requests, analysis.FormatMargin(c.MaxIncrease, c.MaxRatio), c.Evidence, c.RollbackAt, 1-c.Confidence, c.NoWorse, c.PromoteAt)
	}
	special := []float64{0, math.Copysign(0, -1), 1, -1, 0.5, 1.5, 2.5, 999.5, 1e21, 1e-7, 8.8e-8, 0.0052, 0.074, 99.95, 1e308, math.Inf(1), math.Inf(-1), math.NaN(), math.SmallestNonzeroFloat64}
	rng := rand.New(rand.NewPCG(1, 2))
	v := func() float64 {
		switch rng.IntN(4) {
		case 0:
			return special[rng.IntN(len(special))]
		case 1:
			return rng.Float64()
		case 2:
			return math.Round(rng.Float64() * 1e4)
		}
		return math.Exp(rng.NormFloat64() * 20)
	}
	for range 20000 {
		c := &analysis.Compared{
			Canary:      analysis.Side{Requests: v(), Bad: v(), Rate: v(), Low: v(), High: v()},
			Stable:      analysis.Side{Requests: v(), Bad: v(), Rate: v(), Low: v(), High: v()},
			MaxIncrease: v(), Evidence: v(), RollbackAt: v(), Confidence: v(), NoWorse: v(), PromoteAt: v(),
		}
		if rng.IntN(2) == 0 {
			c.MaxRatio = v()
		}
		if got, want := explain(c), format(c); got != want {
			t.Fatalf("%+v:\n got %s\nwant %s", c, got, want)
		}
	}
}

// Two comparisons that read the same counts (a canary's latency bounds,
// with no request slower than either) are judged the same, each under its
// own name; one that reads other counts is judged on its own.
func TestComparisonsReadingTheSameAreJudgedTheSame(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := comparing(now)
	ps, err := ParseConfig([]byte(`
policies:
  tail:
    steps: [10, 50]
    metrics:
    - {name: latency, slowerThan: [100ms, 250ms, 1s]}
`))
	if err != nil {
		t.Fatal(err)
	}
	in.Policy.Metrics = ps["tail"].Metrics
	at := func(v ...[4]float64) []analysis.Check {
		var out []analysis.Check
		for i, name := range []string{"latency-100ms", "latency-250ms", "latency-1s"} {
			out = append(out, analysis.Check{Metric: name, Reading: &analysis.Reading{
				Canary: sequential.Counts{Requests: v[i][0], Bad: v[i][1]}, Stable: sequential.Counts{Requests: v[i][2], Bad: v[i][3]}}})
		}
		return out
	}
	in.Checks = at([4]float64{}, [4]float64{}, [4]float64{})
	d := Decide(in)
	in.Status, in.Now = d.Status, now.Add(10*time.Second)
	if len(d.Status.Evidence) != 3 {
		t.Fatalf("evidence %+v, want a baseline for each bound", d.Status.Evidence)
	}
	in.Checks = at([4]float64{300, 0, 2700, 0}, [4]float64{300, 0, 2700, 0}, [4]float64{300, 3, 2700, 1})
	look := &decider{in: in, st: statusForDecision(&in.Status), requeue: resync}
	checks, _ := look.observeAll(slices.Clone(in.Checks))
	d = Decide(in)
	tail := func(c analysis.Check) string { return strings.TrimPrefix(c.Message, c.Metric) }
	if !strings.HasPrefix(checks[0].Message, "latency-100ms: ") || !strings.HasPrefix(checks[1].Message, "latency-250ms: ") {
		t.Errorf("messages %q, %q: each under its own name", checks[0].Message, checks[1].Message)
	}
	if tail(checks[0]) != tail(checks[1]) || *checks[0].Compared != *checks[1].Compared || checks[0].Outcome != checks[1].Outcome {
		t.Errorf("the same counts judged differently:\n%+v\n%+v", checks[0], checks[1])
	}
	if tail(checks[2]) == tail(checks[1]) || checks[2].Compared.Canary.Bad != 3 {
		t.Errorf("latency-1s judged as the others: %+v", checks[2])
	}
	if d.Status.Message != "" && !strings.Contains(d.Status.Message, checks[0].Message) {
		t.Errorf("status message %q", d.Status.Message)
	}
}
