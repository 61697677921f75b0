package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

const blueGreenPolicy = `
policies:
  bg:
    strategy: blueGreen
    interval: 30s
    blueGreen:
      preview: {header: X-Preview, value: "yes"}
      prePromotion: {duration: 2m, minSamples: 50}
      postPromotion: {duration: 5m}
    metrics:
    - {name: error-rate}
    - {name: success-rate, min: 0.99}
`

func TestABlueGreenPolicyParsesWithItsDefaults(t *testing.T) {
	ps, err := ParseConfig([]byte(blueGreenPolicy))
	if err != nil {
		t.Fatal(err)
	}
	p := ps["bg"]
	want := &BlueGreen{
		Preview: Cohort{Name: PreviewName, Route: traffic.Cohort{Name: PreviewName, Header: "x-preview", Exact: "yes"}, Attribute: "x-preview", Value: "yes",
			MinDuration: 2 * time.Minute, MinSamples: 50},
		PostPromotion: 5 * time.Minute, ScaleDownDelay: 5 * time.Minute, // the delay defaults to the analysis
	}
	if p.Strategy != StrategyBlueGreen || len(p.Steps) != 0 || len(p.Cohorts) != 0 {
		t.Errorf("strategy %q, steps %v, cohorts %v; want blue/green, with neither", p.Strategy, p.Steps, p.Cohorts)
	}
	if diff := cmp.Diff(want, p.BlueGreen); diff != "" {
		t.Errorf("blueGreen (-want +got):\n%s", diff)
	}
	// The default deadline bounds the wait for the preview's verdict.
	if p.AnalysisDeadline != defaultAnalysisDeadline {
		t.Errorf("analysisDeadline %s, want the default %s", p.AnalysisDeadline, defaultAnalysisDeadline)
	}
	// Without a strategy, a policy is a canary.
	std, err := ParseConfig([]byte("policies:\n  c:\n    steps: [10]\n    metrics: [{name: error-rate}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c := std["c"]; c.Strategy != StrategyCanary || c.BlueGreen != nil {
		t.Errorf("strategy %q, blueGreen %+v; want canary", c.Strategy, c.BlueGreen)
	}
}

func TestBadBlueGreenPoliciesAreRefusedNamingTheField(t *testing.T) {
	base := func(extra string) string {
		return "policies:\n  bg:\n    interval: 1m\n    metrics: [{name: error-rate}, {name: success-rate, min: 0.99}]\n" + extra
	}
	bg := "    strategy: blueGreen\n    blueGreen:\n      preview: {header: x-preview, value: \"1\"}\n"
	for _, tc := range []struct{ name, policy, want string }{
		{"unknown strategy", base("    strategy: redBlack\n"), `policies.bg.strategy: "redBlack": want canary (the default), blueGreen or mirror`},
		{"settings without the strategy", base("    steps: [10]\n    blueGreen:\n      preview: {header: x-preview, value: \"1\"}\n"), "policies.bg.blueGreen: set only with strategy: blueGreen"},
		{"the strategy without settings", base("    strategy: blueGreen\n"), "policies.bg.blueGreen: required with strategy: blueGreen"},
		{"steps", base(bg + "    steps: [10, 50]\n"), "policies.bg.steps: a blue/green rollout switches all traffic at once"},
		{"stepWeight", base(bg + "    stepWeight: 10\n    maxWeight: 50\n"), "policies.bg.steps: a blue/green rollout switches all traffic at once"},
		{"cohorts", base(bg + "    cohorts: [{name: beta, header: x-tier, value: beta}]\n"), "policies.bg.cohorts: a blue/green rollout switches all traffic at once: it has no cohort stages"},
		{"sticky", base(bg + "    sticky: {}\n"), "policies.bg.sticky: a blue/green rollout switches all traffic at once: it has no weighted steps"},
		{"release flags", base(bg + "    releaseFlags: [{configMap: flags, flag: f}]\n"), "policies.bg.releaseFlags: a blue/green rollout switches all traffic at once: release flags are stepped"},
		{"no preview route", base("    strategy: blueGreen\n    blueGreen: {postPromotion: {duration: 2m}}\n"), "policies.bg.blueGreen.preview: give exactly one of header and cookie"},
		{"header and cookie", base("    strategy: blueGreen\n    blueGreen:\n      preview: {header: x-p, cookie: p, value: \"1\"}\n"), "policies.bg.blueGreen.preview: give exactly one of header and cookie"},
		{"no value", base("    strategy: blueGreen\n    blueGreen:\n      preview: {header: x-preview}\n"), "policies.bg.blueGreen.preview: give exactly one of value and regex"},
		{"the cookie header", base("    strategy: blueGreen\n    blueGreen:\n      preview: {header: Cookie, value: \"1\"}\n"), `policies.bg.blueGreen.preview.header: "Cookie" is not a header name`},
		{"a bad regex", base("    strategy: blueGreen\n    blueGreen:\n      preview: {header: x-preview, regex: \"(\"}\n"), "policies.bg.blueGreen.preview.regex:"},
		{"post-promotion shorter than the interval", base(bg + "      postPromotion: {duration: 30s}\n"), "policies.bg.blueGreen.postPromotion.duration: 30s is shorter than the interval (1m0s)"},
		{"post-promotion minSamples", base(bg + "      postPromotion: {duration: 2m, minSamples: 10}\n"), "policies.bg.blueGreen.postPromotion.minSamples:"},
		{"negative pre-promotion minSamples", base(bg + "      prePromotion: {minSamples: -1}\n"), "policies.bg.blueGreen.prePromotion.minSamples: -1 is negative"},
		{"a short pre-promotion", base(bg + "      prePromotion: {duration: 100ms}\n"), "policies.bg.blueGreen.prePromotion.duration: 100ms is shorter than 1s"},
		{"a delay shorter than the analysis", base(bg + "      postPromotion: {duration: 5m}\n      scaleDownDelay: 2m\n"), "policies.bg.blueGreen.scaleDownDelay: 2m0s must be between postPromotion's duration (5m0s) and 24h0m0s"},
		{"a delay of days", base(bg + "      scaleDownDelay: 72h\n"), "policies.bg.blueGreen.scaleDownDelay: 72h0m0s must be between"},
		{"nothing judges after the switch", "policies:\n  bg:\n    metrics: [{name: error-rate}]\n" + bg, "policies.bg.metrics: a blue/green rollout needs a threshold check (min or max) or a rollout or rollback hook"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.policy))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestABlueGreenPolicyRefusesStepOverrides(t *testing.T) {
	ps, err := ParseConfig([]byte(blueGreenPolicy))
	if err != nil {
		t.Fatal(err)
	}
	p := ps["bg"]
	for _, tc := range []struct {
		o    Overrides
		want string
	}{
		{Overrides{Steps: []int32{10, 20}}, AnnotationStepWeights + ": policy bg is blue/green"},
		{Overrides{MaxWeight: 30}, AnnotationMaxWeight + ": policy bg is blue/green"},
		{Overrides{Interval: 10 * time.Minute}, AnnotationInterval + ": 10m0s is longer than policy bg's post-promotion analysis (5m0s)"},
	} {
		if _, err := p.Effective(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.o, err, tc.want)
		}
	}
	e, err := p.Effective(Overrides{Interval: time.Minute})
	if err != nil || e.Interval != time.Minute || e.BlueGreen != p.BlueGreen {
		t.Errorf("a slower interval: %+v, %v; want it taken", e, err)
	}
}

// previewing is a blue/green Flight at its preview, comparisons looking
// every 10 s, the preview route set as decided.
func previewing(t *testing.T, now time.Time, early bool) Input {
	t.Helper()
	in := comparing(now)
	p := *in.Policy
	p.Steps, p.MaxWeight, p.EarlyPromotion, p.MinStepDuration = nil, 0, early, 30*time.Second
	p.Metrics = append(p.Metrics, analysis.Metric{Name: "success-rate", Interval: time.Minute, Min: new(0.99)})
	p.Strategy, p.BlueGreen = StrategyBlueGreen, &BlueGreen{
		Preview:       Cohort{Name: PreviewName, Route: traffic.Cohort{Name: PreviewName, Header: "x-preview", Exact: "1"}, MinDuration: time.Minute},
		PostPromotion: 2 * time.Minute, ScaleDownDelay: 2 * time.Minute,
	}
	in.Policy = &p
	in.Status.Steps, in.Status.CanaryWeight = []int32{0, 100}, 0
	in.Status.Cohorts = []v1alpha1.CohortStage{{Name: PreviewName, Header: "x-preview", Exact: "1", MinDuration: metav1.Duration{Duration: time.Minute}}}
	in.Status.BlueGreen = &v1alpha1.BlueGreenPlan{PostPromotion: metav1.Duration{Duration: 2 * time.Minute}, ScaleDownDelay: metav1.Duration{Duration: 2 * time.Minute}}
	in.Weights = traffic.Weights{Stable: 100, Cohort: traffic.Cohort{Name: PreviewName, Header: "x-preview", Exact: "1"}}
	return in
}

// measured answers a decision's request for checks: the error-rate
// comparison's counters, and the success rate at 0.999.
func measured(t *testing.T, in Input, r []analysis.Check) Decision {
	t.Helper()
	d := Decide(in)
	if !d.NeedChecks {
		return d
	}
	in.Checks = nil
	for _, m := range d.Measure {
		switch m.Name {
		case analysis.ErrorRate:
			in.Checks = append(in.Checks, r...)
		default:
			in.Checks = append(in.Checks, check(m.Name, analysis.Pass, 0.999))
		}
	}
	return Decide(in)
}

func TestEarlyPromotionOfABlueGreenPreviewSwitchesAndIsJudgedAfterTheSwitch(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := previewing(t, now, true)
	d := measured(t, in, reading(0, 0, 0, 0)) // the baseline
	// The preview's requests show the new revision no worse; it has
	// lasted its pre-promotion duration: the switch, not the promotion.
	in.Status, in.Now = d.Status, now.Add(time.Minute)
	d = measured(t, in, reading(3000, 2, 3000, 15))
	if d.Status.Phase != v1alpha1.PhaseProgressing || d.Status.Step != 1 || d.Status.CanaryWeight != 100 {
		t.Fatalf("phase %s step %d at %d%% (%s); want switched: step 2 at 100%%", d.Status.Phase, d.Status.Step, d.Status.CanaryWeight, d.Status.Message)
	}
	if !strings.Contains(d.Status.Message, "switched: all traffic on revision r2") {
		t.Errorf("message %q does not say it switched", d.Status.Message)
	}
	if got := summarize(d).Weights; !cmp.Equal(got, []traffic.Weights{{Canary: 100}}) {
		t.Errorf("weights set %+v, want all traffic on the new revision, no preview route", got)
	}
	// After the switch only the threshold checks are measured: stable
	// serves nothing to compare with.
	in.Status, in.Now, in.Weights = d.Status, now.Add(2*time.Minute), traffic.Weights{Canary: 100}
	in.Checks = nil
	ask := Decide(in)
	if !ask.NeedChecks || len(ask.Measure) != 1 || ask.Measure[0].Name != "success-rate" {
		t.Fatalf("after the switch asked for %+v (need %t), want the success rate alone", ask.Measure, ask.NeedChecks)
	}
	d = measured(t, in, nil)
	if d.Status.Phase != v1alpha1.PhaseProgressing || d.Status.Step != 1 || !strings.Contains(d.Status.Message, "kept at full size for 1m0s more") {
		t.Fatalf("a minute after the switch: phase %s step %d (%s); want still judged, the previous revision kept", d.Status.Phase, d.Status.Step, d.Status.Message)
	}
	// The post-promotion analysis is over: the promotion proper.
	in.Status, in.Now = d.Status, now.Add(3*time.Minute)
	d = measured(t, in, nil)
	if d.Status.Phase != v1alpha1.PhasePromoting {
		t.Fatalf("after the post-promotion analysis: phase %s (%s), want promoting", d.Status.Phase, d.Status.Message)
	}
}

func TestABlueGreenPreviewWaitsForItsComparisonsBeforeTheSwitch(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := previewing(t, now, false)
	d := measured(t, in, reading(0, 0, 0, 0))
	// The round after the pre-promotion duration: the success rate
	// passed, the comparison cannot tell yet. A canary would move on to
	// its next step; the preview holds, as a canary's last step does.
	in.Status, in.Now = d.Status, now.Add(time.Minute)
	d = measured(t, in, reading(40, 0, 400, 2))
	if d.Status.Step != 0 || d.Status.Hold == nil || d.Status.Hold.Reason != v1alpha1.HoldInconclusive ||
		!strings.Contains(d.Status.Message, "the switch waits until every comparison shows the new revision no worse") {
		t.Fatalf("step %d, hold %+v (%s); want the preview held, inconclusive", d.Status.Step, d.Status.Hold, d.Status.Message)
	}
	if got := summarize(d).Weights; len(got) != 0 {
		t.Errorf("weights set %+v while held, want none", got)
	}
	// A preview shown worse is rolled back: all traffic was on stable.
	in.Status, in.Now = d.Status, now.Add(time.Minute+10*time.Second)
	d = measured(t, in, reading(140, 30, 500, 3))
	if rejectedTo(d.Status) != v1alpha1.PhaseRolledBack || !strings.HasPrefix(d.Status.Message, "rolling back: preview (x-preview: 1): error-rate worse") {
		t.Fatalf("phase %s (%s), want rolled back from the preview", d.Status.Phase, d.Status.Message)
	}
}

func TestAManualPromotionOfAPreviewSwitchesAndAFullOnePromotes(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := previewing(t, now, false)
	in.Action = &ActionRequest{Kind: v1alpha1.ActionPromote, By: "api:ci"}
	d := Decide(in)
	if d.Status.Step != 1 || d.Status.CanaryWeight != 100 || d.Status.Phase != v1alpha1.PhaseProgressing {
		t.Errorf("promote at the preview: phase %s step %d at %d%% (%s); want switched", d.Status.Phase, d.Status.Step, d.Status.CanaryWeight, d.Status.Message)
	}
	in.Action = &ActionRequest{Kind: v1alpha1.ActionPromoteFull, By: "api:ci"}
	d = Decide(in)
	if d.Status.Phase != v1alpha1.PhasePromoting {
		t.Errorf("promote-full at the preview: phase %s (%s); want promoting", d.Status.Phase, d.Status.Message)
	}
}

func TestACanaryWhosePodsAreRefusedHoldsSayingWhyAndIsRolledBackAtItsDeadline(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := atStep(now, 0)
	started := metav1.NewTime(now)
	in.Status.Step, in.Status.CanaryWeight, in.Status.StepStartedAt, in.Status.RevisionStartedAt = -1, 0, nil, &started
	in.Weights = traffic.Weights{Stable: 100}
	in.CanaryReady = false
	in.CanaryTrouble = `FailedCreate: pods "shop-canary-7f9c4d-x2" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=3, limited: pods=3`
	d := Decide(in)
	if h := d.Status.Hold; h == nil || h.Reason != v1alpha1.HoldCanaryNotReady || !strings.Contains(h.Message, "exceeded quota") || !strings.Contains(h.Message, "rolled back at 01:05:00") {
		t.Fatalf("hold %+v, want the canary held, naming the quota and the deadline", h)
	}
	if w := summarize(d).Weights; len(w) != 0 {
		t.Errorf("weights set %+v, want none: nothing reaches a canary that cannot come up", w)
	}
	// The trouble of an older revision's canary is not this one's.
	in.CanaryRevision = "r1"
	if h := Decide(in).Status.Hold; h != nil && strings.Contains(h.Message, "quota") {
		t.Errorf("hold %+v names another revision's trouble", h)
	}
	in.CanaryRevision = "r2"
	held := d.Status
	// At the progress deadline: rolled back, the reason kept.
	in.Status, in.Now = held, now.Add(5*time.Minute)
	d = Decide(in)
	if d.Status.Phase != v1alpha1.PhaseRolledBack && d.Status.Phase != v1alpha1.PhaseRollingBack || !strings.Contains(d.Status.Message, "exceeded quota") {
		t.Errorf("at the deadline: phase %s (%s), want rolled back naming the quota", d.Status.Phase, d.Status.Message)
	}
	// Pods that come up after all clear the hold.
	in.Status, in.Now, in.CanaryReady, in.CanaryTrouble = held, now.Add(time.Minute), true, ""
	if d := Decide(in); d.Status.Hold != nil || d.Status.Step != 0 {
		t.Errorf("ready: step %d, hold %+v; want the first step, the hold cleared", d.Status.Step, d.Status.Hold)
	}
}

func TestAMirrorStageParsesAndBadOnesAreRefusedNamingTheField(t *testing.T) {
	ps, err := ParseConfig([]byte("policies:\n  m:\n    steps: [10, 50]\n    interval: 1m\n    mirror: {percent: 30, minSamples: 50}\n    cohorts: [{name: beta, header: x-tier, value: beta}]\n    metrics: [{name: error-rate}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Cohort{Name: MirrorName, Mirror: 30, MinDuration: time.Minute, MinSamples: 50}
	if diff := cmp.Diff(want, ps["m"].Mirror); diff != "" {
		t.Errorf("mirror (-want +got):\n%s", diff)
	}
	// Planned first, before the cohorts: copies before any user.
	in := Input{Now: epoch, Policy: ps["m"], Status: v1alpha1.FlightStatus{Phase: v1alpha1.PhaseIdle, StableRevision: "r1"},
		Observed: Observed{DesiredRevision: "r2", DeploymentRevision: "r1", DeploymentSettled: true, DeploymentPaused: true, Weights: traffic.Weights{Stable: 100}}}
	st := Decide(in).Status
	if len(st.Cohorts) != 2 || st.Cohorts[0].Mirror != 30 || st.Cohorts[1].Name != "beta" || !cmp.Equal(st.Steps, []int32{0, 0, 10, 50}) {
		t.Errorf("planned cohorts %+v, steps %v; want the mirror stage, then beta, then 10 and 50", st.Cohorts, st.Steps)
	}
	base := "policies:\n  m:\n    steps: [10]\n    metrics: [{name: error-rate}]\n"
	for _, tc := range []struct{ extra, want string }{
		{"    mirror: {percent: 0}\n", "policies.m.mirror.percent: 0: want the percentage of requests copied to the canary, 1..100"},
		{"    mirror: {percent: 101}\n", "policies.m.mirror.percent: 101"},
		{"    mirror: {percent: 10, duration: 10ms}\n", "policies.m.mirror.duration: 10ms is shorter than 1s"},
		{"    mirror: {percent: 10, minSamples: -5}\n", "policies.m.mirror.minSamples: -5 is negative"},
		{"    mirror: {percent: 10}\n    cohorts: [{name: mirror, header: x-a, value: b}]\n", `policies.m.cohorts[0].name: "mirror" names the mirror stage`},
	} {
		if _, err := ParseConfig([]byte(base + tc.extra)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.extra, err, tc.want)
		}
	}
	bg := "policies:\n  m:\n    strategy: blueGreen\n    blueGreen: {preview: {header: x-p, value: \"1\"}}\n    mirror: {percent: 10}\n    metrics: [{name: success-rate, min: 0.9}]\n"
	if _, err := ParseConfig([]byte(bg)); err == nil || !strings.Contains(err.Error(), "policies.m.mirror: a blue/green rollout is judged on its preview") {
		t.Errorf("mirror with blue/green: %v", err)
	}
}

func TestAMirrorStrategyIsAMirrorStageThenThePromotion(t *testing.T) {
	ps, err := ParseConfig([]byte("policies:\n  ro:\n    strategy: mirror\n    mirror: {percent: 50, duration: 5m}\n    metrics: [{name: error-rate}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := ps["ro"]
	if p.Strategy != StrategyMirror || len(p.Steps) != 0 || p.Mirror == nil || p.Mirror.Mirror != 50 || p.AnalysisDeadline != defaultAnalysisDeadline {
		t.Errorf("strategy %q, steps %v, mirror %+v, deadline %s; want a mirror stage alone", p.Strategy, p.Steps, p.Mirror, p.AnalysisDeadline)
	}
	for _, tc := range []struct{ policy, want string }{
		{"policies:\n  ro:\n    strategy: mirror\n    metrics: [{name: error-rate}]\n", "policies.ro.mirror: required with strategy: mirror"},
		{"policies:\n  ro:\n    strategy: mirror\n    mirror: {percent: 5}\n    steps: [10]\n    metrics: [{name: error-rate}]\n", "policies.ro.steps: a mirror rollout gives users no traffic before its promotion: it has no steps"},
		{"policies:\n  ro:\n    strategy: mirror\n    mirror: {percent: 5}\n    cohorts: [{name: b, header: x-b, value: \"1\"}]\n    metrics: [{name: error-rate}]\n", "policies.ro.cohorts: a mirror rollout gives users no traffic"},
		{"policies:\n  ro:\n    strategy: mirror\n    mirror: {percent: 5}\n    blueGreen: {preview: {header: x-p, value: \"1\"}}\n    metrics: [{name: error-rate}]\n", "policies.ro.blueGreen: set only with strategy: blueGreen"},
	} {
		if _, err := ParseConfig([]byte(tc.policy)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

// After the switch, a revision that cannot be judged (no requests) does
// not wait forever: the analysis deadline counts again from the switch,
// and onInsufficientEvidence says what happens then.
func TestASwitchedRevisionThatCannotBeJudgedMeetsTheDeadlineCountedFromTheSwitch(t *testing.T) {
	now := epoch.Add(time.Hour)
	for _, tc := range []struct {
		on   string
		want v1alpha1.Phase
	}{{OnInsufficientHold, v1alpha1.PhaseProgressing}, {OnInsufficientRollback, v1alpha1.PhaseRollingBack}, {OnInsufficientPromote, v1alpha1.PhasePromoting}} {
		in := previewing(t, now, false)
		p := *in.Policy
		p.Metrics = []analysis.Metric{{Name: "success-rate", Interval: time.Minute, Min: new(0.99)}}
		p.AnalysisDeadline, p.OnInsufficientEvidence = 30*time.Minute, tc.on
		in.Policy = &p
		started := metav1.NewTime(now.Add(-3 * time.Hour)) // long before: the preview took its time
		switchedAt := metav1.NewTime(now)
		in.Status.RevisionStartedAt, in.Status.StepStartedAt, in.Status.Step, in.Status.CanaryWeight = &started, &switchedAt, 1, 100
		in.Weights = traffic.Weights{Canary: 100}
		noData := []analysis.Check{{Metric: "success-rate", Outcome: analysis.NotEnoughData, Samples: 0}}
		// Minutes after the switch: held for want of data, not at the
		// deadline, though the revision started hours ago.
		in.Now, in.Checks = now.Add(5*time.Minute), noData
		if d := Decide(in); d.Status.Phase != v1alpha1.PhaseProgressing || d.Status.Hold == nil || d.Status.Hold.Reason != v1alpha1.HoldNotEnoughData {
			t.Fatalf("%s, 5m after the switch: phase %s, hold %+v; want held for data", tc.on, d.Status.Phase, d.Status.Hold)
		}
		in.Now = now.Add(31 * time.Minute)
		d := Decide(in)
		said := d.Status.Message
		if tc.on == OnInsufficientHold {
			if d.Status.Hold == nil || d.Status.Hold.Reason != v1alpha1.HoldInsufficientEvidence {
				t.Errorf("hold %+v, want InsufficientEvidence (people told)", d.Status.Hold)
				continue
			}
			said = d.Status.Hold.Message
		}
		if d.Status.Phase != tc.want || !strings.Contains(said, "no verdict within the analysis deadline") {
			t.Errorf("%s, past the deadline from the switch: phase %s (%s), want %s", tc.on, d.Status.Phase, said, tc.want)
		}
	}
}

func TestABlueGreenPreviewByHostParsesAndBadHostsAreRefused(t *testing.T) {
	ps, err := ParseConfig([]byte("policies:\n  bg:\n    strategy: blueGreen\n    interval: 30s\n    blueGreen:\n      preview: {host: \"{name}-preview\"}\n    metrics: [{name: success-rate, min: 0.99}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ps["bg"].BlueGreen.Preview; got.Host != "{name}-preview" || !got.Route.IsZero() {
		t.Errorf("preview %+v, want host {name}-preview and no match route", got)
	}
	base := "policies:\n  bg:\n    strategy: blueGreen\n    metrics: [{name: success-rate, min: 0.99}]\n    blueGreen:\n      preview: "
	for _, tc := range []struct{ name, preview, want string }{
		{"host and header", `{host: shop-preview, header: x-p, value: "1"}`, "policies.bg.blueGreen.preview: give either host or a header or cookie route, not both"},
		{"not a Service name", `{host: Shop_Preview}`, `policies.bg.blueGreen.preview.host: "Shop_Preview": the name of the Service fledge creates`},
		{"too long", `{host: "{name}-` + strings.Repeat("x", 60) + `"}`, "policies.bg.blueGreen.preview.host:"},
		{"the canary's Service", `{host: "{name}-canary"}`, `policies.bg.blueGreen.preview.host: "{name}-canary" names the app's own Service or one fledge makes for it`},
		{"the app's Service", `{host: "{name}"}`, `names the app's own Service`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(base + tc.preview + "\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// A preview reached by its own host has no match route: the split stays
// all on stable, the host (the Deployment's name in place of {name}) is
// in the status for the engine to make, and the messages name it.
func TestABlueGreenPreviewByHostRoutesNothingAndNamesItsHost(t *testing.T) {
	w := &world{now: epoch}
	w.policy = scriptPolicy(t, nil)
	p := *w.policy
	p.Strategy, p.Steps, p.MaxWeight = StrategyBlueGreen, nil, 0
	p.BlueGreen = &BlueGreen{Preview: Cohort{Name: PreviewName, Host: "{name}-preview", MinDuration: time.Minute}, PostPromotion: time.Minute, ScaleDownDelay: time.Minute}
	w.policy = &p
	if err := w.set([]string{"desired=r1", "deployment=r1", "settled"}); err != nil {
		t.Fatal(err)
	}
	w.decide()
	w.decide()
	_ = w.set([]string{"desired=r2"})
	w.decide()
	_ = w.set([]string{"canary-ready"})
	out := w.decide()
	st := w.status
	if st.Step != 0 || len(st.Cohorts) != 1 || st.Cohorts[0].Host != "web-preview" {
		t.Fatalf("step %d, cohorts %+v; want the preview, its host web-preview (%s)", st.Step, st.Cohorts, out)
	}
	if w.Weights != (traffic.Weights{Stable: 100}) {
		t.Errorf("routing %+v in a preview by host, want all on stable and no match route", w.Weights)
	}
	if !strings.Contains(st.Message, "preview: requests with host web-preview reach revision r2") {
		t.Errorf("message %q does not name the preview's host", st.Message)
	}
}

func TestAComparedMirrorStageParsesAndBadOnesAreRefusedNamingTheField(t *testing.T) {
	ps, err := ParseConfig([]byte("policies:\n  m:\n    steps: [50]\n    interval: 30s\n    mirror: {percent: 20, duration: 2m, compareResponses: {maxDifferent: 0.02}}\n    metrics: [{name: success-rate, min: 0.99}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := ps["m"]
	// Judged over the whole stage, not an interval of it.
	want := &analysis.Metric{Name: analysis.ResponseDiff, Max: new(0.02), MinSamples: 100, Interval: 2 * time.Minute}
	if !p.Mirror.Compared || !cmp.Equal(p.Mirror.Check, want) {
		t.Errorf("mirror %+v, check %+v; want compared, judged by %+v", p.Mirror, p.Mirror.Check, want)
	}
	if !p.NeedsStableService() {
		t.Error("a compared mirror does not ask for stable's own Service: the comparator cannot reach stable alone")
	}
	// The check judges the mirror stage, and no other.
	st := &v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing, Steps: []int32{0, 50}, Cohorts: []v1alpha1.CohortStage{{Name: MirrorName, Mirror: 20, Compared: true}}}
	names := func() (out []string) {
		for _, m := range StageMetrics(p, st) {
			out = append(out, m.Name)
		}
		return out
	}
	if got := names(); !cmp.Equal(got, []string{"success-rate", "response-diff"}) {
		t.Errorf("mirror stage metrics %v, want the policy's and the response comparison", got)
	}
	st.Step = 1
	if got := names(); !cmp.Equal(got, []string{"success-rate"}) {
		t.Errorf("weighted step metrics %v, want the policy's alone", got)
	}
	base := "policies:\n  m:\n    steps: [50]\n    metrics: [{name: success-rate, min: 0.99}]\n"
	for _, tc := range []struct{ name, policy, want string }{
		{"a share of 1", base + "    mirror: {percent: 20, compareResponses: {maxDifferent: 1}}\n", "policies.m.mirror.compareResponses.maxDifferent: 1: want the largest share"},
		{"a negative share", base + "    mirror: {percent: 20, compareResponses: {maxDifferent: -0.1}}\n", "policies.m.mirror.compareResponses.maxDifferent: -0.1"},
		{"negative samples", base + "    mirror: {percent: 20, compareResponses: {minSamples: -5}}\n", "policies.m.mirror.compareResponses.minSamples: -5: want at least 1"},
		{"listed as a metric", "policies:\n  m:\n    steps: [50]\n    metrics: [{name: response-diff, max: 0.01}]\n", "policies.m.metrics[0].name: response-diff is the mirror stage's response comparison: set mirror.compareResponses instead"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.policy))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
