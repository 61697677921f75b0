package rollout

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/traffic"
)

// Config is fledge's policy file, written by the platform team (a
// ConfigMap in-cluster). It is validated as a whole: one invalid policy
// rejects the file, so a policy is never half-applied.
type Config struct {
	// WebhookSecret signs every hook call (HMAC-SHA256) unless a policy
	// names its own.
	WebhookSecret *SecretRef `json:"webhookSecret,omitempty"`
	// HookNetworks are the CIDRs of private addresses hooks may call:
	// the hook client refuses private addresses (10/8, 172.16/12,
	// 192.168/16, 100.64/10, fc00::/7) outside them, and loopback unless
	// an entry is loopback itself (127.0.0.0/8). Typically the cluster's
	// Service CIDR, where in-cluster hooks such as fledge-loadtester live.
	// Link-local addresses are a hook's allowLinkLocal's business; the API
	// server and the kubelet ports are refused whatever this says.
	HookNetworks []string `json:"hookNetworks,omitempty"`
	// Slack is the default for policies that name none.
	Slack *SlackSpec `json:"slack,omitempty"`
	// FlagSource is where flag gates are read: a ConfigMap in fledge's
	// namespace, in flagd's JSON format.
	FlagSource *FlagSourceSpec       `json:"flagSource,omitempty"`
	Policies   map[string]PolicySpec `json:"policies"`
}

// PolicySpec is one named rollout policy as written in the config file.
type PolicySpec struct {
	// Steps are the canary weights in percent, strictly increasing, each in
	// 1..99. Either Steps, or StepWeight with MaxWeight.
	Steps []int32 `json:"steps,omitempty"`
	// StepWeight and MaxWeight give the steps StepWeight, 2*StepWeight, ...
	// up to MaxWeight.
	StepWeight int32 `json:"stepWeight,omitempty"`
	MaxWeight  int32 `json:"maxWeight,omitempty"`
	// Interval is how long the canary serves each step before it is judged
	// (default 1m).
	Interval metav1.Duration `json:"interval,omitempty"`
	// FailureLimit is the number of failed checks of a revision that roll it
	// back (default 1). Cannot-measure outcomes never count.
	FailureLimit int `json:"failureLimit,omitempty"`
	// ProgressDeadline bounds how long the canary may take to become ready
	// (default 10m); past it the revision is rolled back.
	ProgressDeadline metav1.Duration `json:"progressDeadline,omitempty"`
	// MinCanaryReplicas is the fewest pods a canary runs when fledge sizes
	// it by its traffic share, which it does when a HorizontalPodAutoscaler
	// sizes the Deployment (default 1).
	MinCanaryReplicas int32 `json:"minCanaryReplicas,omitempty"`
	// Metrics are the checks run at every step.
	Metrics []MetricSpec `json:"metrics"`
	// MinInterval bounds the fledge.dev/interval override from below
	// (default 10s): a team may slow its rollout down, or speed it up only
	// this far.
	MinInterval metav1.Duration `json:"minInterval,omitempty"`
	// Webhooks are called at the points of the rollout their type names.
	Webhooks []HookSpec `json:"webhooks,omitempty"`
	// WebhookSecret overrides the file's webhookSecret for this policy.
	WebhookSecret *SecretRef `json:"webhookSecret,omitempty"`
	// Slack overrides the file's slack settings for this policy.
	Slack *SlackSpec `json:"slack,omitempty"`
	// Cohorts are stages before the weighted steps: each sends one
	// audience, and only it, to the canary.
	Cohorts []CohortSpec `json:"cohorts,omitempty"`
	// Sticky keeps users on the canary during the weighted steps.
	Sticky *StickySpec `json:"sticky,omitempty"`
	// FlagGates are boolean flags asked before every traffic increase and
	// before promotion.
	FlagGates []FlagGateSpec `json:"flagGates,omitempty"`
	// ReleaseFlags are stepped in lockstep with the canary's traffic.
	ReleaseFlags []ReleaseFlagSpec `json:"releaseFlags,omitempty"`

	// Alpha bounds the probability that comparisons roll back a canary as
	// good as stable, however often fledge looks (default 0.01; at most
	// 0.5). It is shared among the policy's comparisons.
	Alpha *float64 `json:"alpha,omitempty"`
	// LookInterval is how often comparisons read both sides' counters
	// (default 10s, at most the interval): a canary shown worse is rolled
	// back at the next look.
	LookInterval metav1.Duration `json:"lookInterval,omitempty"`
	// EarlyPromotion promotes as soon as every comparison shows the canary
	// no worse than its margin (and the step has lasted MinStepDuration),
	// without waiting for the remaining steps.
	EarlyPromotion bool `json:"earlyPromotion,omitempty"`
	// MinStepDuration is how long the canary serves a step before an early
	// promotion (default: the interval).
	MinStepDuration metav1.Duration `json:"minStepDuration,omitempty"`
	// AnalysisDeadline bounds how long a revision may go without a verdict
	// (default 2h); OnInsufficientEvidence says what happens then: hold
	// (the default: it stays where it is and people are told), rollback or
	// promote.
	AnalysisDeadline       metav1.Duration `json:"analysisDeadline,omitempty"`
	OnInsufficientEvidence string          `json:"onInsufficientEvidence,omitempty"`
	// Strategy is how a new revision reaches users: canary (the default:
	// cohorts, then the weighted steps) or blueGreen (a preview route, then
	// all traffic at once: see BlueGreen).
	Strategy  string         `json:"strategy,omitempty"`
	BlueGreen *BlueGreenSpec `json:"blueGreen,omitempty"`
	// Mirror is a stage before any other: Percent of the live requests
	// are copied to the canary (Istio's traffic mirroring), users get
	// stable's answers only, and the canary's answers to the copies are
	// judged, first after Duration (default: the interval), each check
	// needing MinSamples of them.
	Mirror *MirrorSpec `json:"mirror,omitempty"`
	// Baseline is what the canary's comparisons compare it with: stable
	// (the default: the pods serving everyone else) or fresh (a copy of
	// stable started with the canary, at its size, given the same share:
	// see BaselineFresh).
	Baseline string `json:"baseline,omitempty"`

	// PostPromotion is the watch after a promotion: for Duration, fledge
	// keeps judging the promoted revision (against the previous
	// revision's figures and the policy's bounds) and keeps the previous
	// revision's pods ready, and on a regression sends all traffic back
	// to them (default: no watch).
	PostPromotion *PostPromotionSpec `json:"postPromotion,omitempty"`

	// ScrapeInterval is how often Prometheus scrapes the mesh's metrics
	// (default 15s, Istio's advice). The canary workload's counters are
	// shared by its revisions: a new revision's first traffic waits until
	// two scrapes after the previous canary's last, so that none of that
	// canary's requests count as the new one's.
	ScrapeInterval metav1.Duration `json:"scrapeInterval,omitempty"`
}

// MetricSpec is one check as written in the config file.
type MetricSpec struct {
	Name         string          `json:"name"`
	Query        string          `json:"query,omitempty"`
	SamplesQuery string          `json:"samplesQuery,omitempty"`
	Min          *float64        `json:"min,omitempty"`
	Max          *float64        `json:"max,omitempty"`
	MinSamples   int64           `json:"minSamples,omitempty"`
	Interval     metav1.Duration `json:"interval,omitempty"` // default: the policy's interval

	// Comparisons with stable: the built-ins error-rate and latency, or a
	// custom one given by its Requests and Bad counter templates.
	// MaxIncrease is the margin (default 0.01, one percentage point);
	// SlowerThan is latency's bound, one of the histogram's buckets, or
	// several ([100ms, 250ms, 1s]) to compare the distribution at each.
	MaxIncrease *float64 `json:"maxIncrease,omitempty"`
	// MaxRatio is a relative margin instead: the canary's rate may be up
	// to MaxRatio times stable's.
	MaxRatio   *float64 `json:"maxRatio,omitempty"`
	SlowerThan Bounds   `json:"slowerThan,omitempty"`
	Requests   string   `json:"requests,omitempty"`
	Bad        string   `json:"bad,omitempty"`
}

func (ms MetricSpec) isComparison() bool {
	return ms.Name == analysis.ErrorRate || ms.Name == analysis.Latency || ms.Requests != "" || ms.Bad != ""
}

// Policy is a validated policy, with defaults applied: what Decide reads.
type Policy struct {
	Name             string
	Steps            []int32 // canary weights, strictly increasing, each in 1..99
	Interval         time.Duration
	FailureLimit     int
	ProgressDeadline time.Duration
	// MinCanaryReplicas bounds the canary's size from below when it is
	// sized by its share (with an autoscaler on the Deployment).
	MinCanaryReplicas int32
	Metrics           []analysis.Metric
	MinInterval       time.Duration
	MaxWeight         int32 // the largest weight an override may ask for
	Hooks             []Hook
	WebhookSecret     *SecretRef // signs hook calls; set whenever Hooks is not empty
	Slack             *Slack     // nil: no Slack messages
	Cohorts           []Cohort
	Sticky            *traffic.Sticky // Value is set per revision
	FlagGates         []string
	FlagSource        *FlagSourceSpec // where FlagGates are read; set with them
	ReleaseFlags      []ReleaseFlag

	// Comparisons (metrics judged against stable) are read every
	// LookInterval and judged at level Alpha, shared among them.
	Alpha                  float64
	LookInterval           time.Duration
	EarlyPromotion         bool
	MinStepDuration        time.Duration
	AnalysisDeadline       time.Duration
	OnInsufficientEvidence string
	ScrapeInterval         time.Duration

	// Strategy is StrategyCanary or StrategyBlueGreen; BlueGreen is set
	// with the latter (and Steps is then empty).
	Strategy  string
	BlueGreen *BlueGreen
	// Mirror is the mirror stage, if any: a stage before the cohorts,
	// with Mirror set and no route.
	Mirror *Cohort
	// Baseline is BaselineFresh when the comparisons judge the canary
	// against a fresh baseline, empty when against stable.
	Baseline string
	// PostPromotion is how long the watch after a promotion lasts (0:
	// none).
	PostPromotion time.Duration
}

// What a rollout does at its analysis deadline without a verdict.
const (
	OnInsufficientHold     = "hold"
	OnInsufficientRollback = "rollback"
	OnInsufficientPromote  = "promote"
)

// Comparisons are the policy's metrics judged against stable.
func (p *Policy) Comparisons() []analysis.Metric {
	var out []analysis.Metric
	for _, m := range p.Metrics {
		if m.IsComparison() {
			out = append(out, m)
		}
	}
	return out
}

const (
	defaultInterval         = time.Minute
	defaultProgressDeadline = 10 * time.Minute
	defaultMinInterval      = 10 * time.Second
	maxSteps                = 20
	defaultAlpha            = 0.01
	defaultLookInterval     = 10 * time.Second
	defaultScrapeInterval   = 15 * time.Second
	defaultAnalysisDeadline = 2 * time.Hour
	defaultMaxIncrease      = 0.01
)

// ParseConfig parses and validates a policy file. Unknown fields are
// errors, so a misspelt setting is not silently ignored. The error lists
// every problem, each with its field path.
func ParseConfig(data []byte) (map[string]*Policy, error) {
	var cfg Config
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	if len(cfg.Policies) == 0 {
		return nil, errors.New("policy file: policies: at least one policy is required")
	}
	names := make([]string, 0, len(cfg.Policies))
	for name := range cfg.Policies {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make(map[string]*Policy, len(names))
	networks, errs := parseHookNetworks(cfg.HookNetworks)
	for _, name := range names {
		spec := cfg.Policies[name]
		if spec.WebhookSecret == nil {
			spec.WebhookSecret = cfg.WebhookSecret
		}
		if spec.Slack == nil {
			spec.Slack = cfg.Slack
		}
		p, err := spec.build(name, cfg.FlagSource != nil)
		if err == nil && len(p.FlagGates) > 0 {
			p.FlagSource = cfg.FlagSource.withDefaults()
		}
		if err == nil {
			for i := range p.Hooks {
				p.Hooks[i].Networks = networks
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[name] = p
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// parseHookNetworks reads the file's hookNetworks: each a CIDR, written as
// the network it names (10.96.0.0/12, not 10.96.0.1/12).
func parseHookNetworks(cidrs []string) ([]netip.Prefix, []error) {
	var out []netip.Prefix
	var errs []error
	for i, s := range cidrs {
		field := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("hookNetworks[%d]: %s", i, fmt.Sprintf(format, args...)))
		}
		n, err := netip.ParsePrefix(s)
		switch {
		case err == nil && n != n.Masked():
			field("%q has bits set past its prefix length: write %s", s, n.Masked())
		case err == nil:
			out = append(out, n)
		default:
			if a, aerr := netip.ParseAddr(s); aerr == nil && a.Zone() == "" {
				field("%q is an address, not a CIDR: write %s for it alone", s, netip.PrefixFrom(a, a.BitLen()))
			} else {
				field("%q is not a CIDR (such as 10.96.0.0/12 or fd00:10:96::/108)", s)
			}
		}
	}
	return out, errs
}

func (s PolicySpec) build(name string, hasFlagSource bool) (*Policy, error) {
	var errs []error
	field := func(f string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("policies.%s.%s: %s", name, f, fmt.Sprintf(format, args...)))
	}
	if !validName(name) {
		field("", "policy names are lower-case letters, digits and dashes")
	}
	p := &Policy{
		Name:             name,
		Interval:         orDefault(s.Interval.Duration, defaultInterval),
		FailureLimit:     s.FailureLimit,
		ProgressDeadline: orDefault(s.ProgressDeadline.Duration, defaultProgressDeadline),
		MinInterval:      orDefault(s.MinInterval.Duration, defaultMinInterval),
	}
	if p.FailureLimit == 0 {
		p.FailureLimit = 1
	}
	switch p.MinCanaryReplicas = s.MinCanaryReplicas; {
	case p.MinCanaryReplicas == 0:
		p.MinCanaryReplicas = 1
	case p.MinCanaryReplicas < 0:
		field("minCanaryReplicas", "%d: must be at least 1", s.MinCanaryReplicas)
	}
	p.Strategy = StrategyCanary
	switch {
	case buildStrategy(s, p, field):
		// No steps: a preview, then the switch.
	case len(s.Steps) > 0 && (s.StepWeight != 0 || s.MaxWeight != 0):
		field("steps", "give either steps or stepWeight and maxWeight, not both")
	case len(s.Steps) > 0:
		if err := validateSteps(s.Steps); err != nil {
			field("steps", "%v", err)
		}
		p.Steps = append([]int32(nil), s.Steps...)
	case s.StepWeight != 0 || s.MaxWeight != 0:
		steps, err := stepsFrom(s.StepWeight, s.MaxWeight)
		if err != nil {
			field("stepWeight", "%v", err)
		}
		p.Steps = steps
	default:
		field("steps", "required (or stepWeight and maxWeight)")
	}
	if len(p.Steps) > 0 {
		p.MaxWeight = p.Steps[len(p.Steps)-1]
	}
	if p.Interval < time.Second {
		field("interval", "%s is shorter than 1s", p.Interval)
	}
	if p.MinInterval < time.Second || p.MinInterval > p.Interval {
		field("minInterval", "%s must be between 1s and the interval (%s)", p.MinInterval, p.Interval)
	}
	if p.FailureLimit < 1 {
		field("failureLimit", "%d: must be at least 1", s.FailureLimit)
	}
	if p.ProgressDeadline < time.Second {
		field("progressDeadline", "%s is shorter than 1s", p.ProgressDeadline)
	}
	if len(s.Metrics) == 0 {
		field("metrics", "at least one metric is required: a canary nothing judges is not a canary")
	}
	seen := map[string]bool{}
	for i, ms := range s.Metrics {
		if ms.Name == analysis.ResponseDiff {
			field(fmt.Sprintf("metrics[%d].name", i), "%s is the mirror stage's response comparison: set mirror.compareResponses instead", ms.Name)
		}
		m := analysis.Metric{
			Name: ms.Name, Query: ms.Query, SamplesQuery: ms.SamplesQuery,
			Min: ms.Min, Max: ms.Max, MinSamples: ms.MinSamples,
			Interval: orDefault(ms.Interval.Duration, p.Interval),
		}
		var bounds []float64
		for _, b := range ms.SlowerThan {
			bounds = append(bounds, float64(b.Duration)/float64(time.Millisecond))
		}
		if ms.isComparison() {
			m.Compare = &analysis.Comparison{MaxIncrease: defaultMaxIncrease, Requests: ms.Requests, Bad: ms.Bad}
			if len(bounds) == 1 {
				m.Compare.SlowerThanMs = bounds[0]
			}
			if ms.MaxIncrease != nil {
				m.Compare.MaxIncrease = *ms.MaxIncrease
			}
			if ms.MaxRatio != nil {
				m.Compare.MaxRatio = *ms.MaxRatio
				if ms.MaxIncrease == nil {
					m.Compare.MaxIncrease = 0 // the ratio is the margin
				}
			}
		} else if ms.MaxIncrease != nil || ms.MaxRatio != nil || len(bounds) > 0 {
			field(fmt.Sprintf("metrics[%d].maxIncrease", i), "only comparisons (error-rate, latency, or requests and bad) have a margin or a bound")
		}
		// The latency distribution, compared at several bounds: one
		// comparison per bound, each with its own evidence and verdict.
		each := []analysis.Metric{m}
		if len(bounds) > 1 && ms.Name == analysis.Latency {
			each = each[:0]
			for j, b := range bounds {
				c := *m.Compare
				c.SlowerThanMs = b
				one := m
				one.Name, one.Compare = analysis.LatencyAt(b), &c
				if j > 0 && b <= bounds[j-1] {
					field(fmt.Sprintf("metrics[%d].slowerThan[%d]", i, j), "%s: the bounds must increase", ms.SlowerThan[j].Duration)
				}
				each = append(each, one)
			}
		} else if len(bounds) > 1 {
			field(fmt.Sprintf("metrics[%d].slowerThan", i), "only the latency comparison has bounds")
		}
		for _, m := range each {
			if seen[m.Name] {
				field(fmt.Sprintf("metrics[%d].name", i), "%q appears twice", m.Name)
			}
			seen[m.Name] = true
			for _, err := range splitJoined(validateMetric(m)) {
				var fe *analysis.FieldError
				if errors.As(err, &fe) {
					field(fmt.Sprintf("metrics[%d].%s", i, fe.Field), "%v", fe.Err)
				} else {
					field(fmt.Sprintf("metrics[%d]", i), "%v", err)
				}
			}
			p.Metrics = append(p.Metrics, m)
		}
	}
	buildJudgement(s, p, field)
	p.Hooks = buildHooks(s.Webhooks, field)
	if s.WebhookSecret != nil {
		validateSecretRef(*s.WebhookSecret, "webhookSecret", field)
		p.WebhookSecret = s.WebhookSecret
	} else if len(s.Webhooks) > 0 {
		field("webhookSecret", "required with webhooks (here or at the top of the file): every call is signed")
	}
	p.Slack = buildSlack(s.Slack, field)
	buildFlags(s, hasFlagSource, p, field)
	buildMirror(s, p, field)
	buildBaseline(s, p, field)
	buildWatch(s, p, field)
	if len(p.ReleaseFlags) == 0 {
		for i, ms := range s.Metrics {
			for _, q := range []struct{ field, text string }{{"query", ms.Query}, {"samplesQuery", ms.SamplesQuery}} {
				t, err := analysis.ParseTemplate(q.text)
				if err == nil && (t.Uses("Flag") || t.Uses("OnVariant") || t.Uses("OffVariant")) {
					field(fmt.Sprintf("metrics[%d].%s", i, q.field), "uses .Flag, .OnVariant or .OffVariant, but the policy links no release flag")
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// validateMetric checks a metric as analysis will run it (templates parsed
// as PromQL, thresholds, samples, interval): a policy is never loaded with
// a check that could only ever be an error.
var validateMetric = analysis.Validate

// splitJoined returns the errors an errors.Join holds (or err alone).
func splitJoined(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func validateSteps(steps []int32) error {
	if len(steps) > maxSteps {
		return fmt.Errorf("%d steps: at most %d", len(steps), maxSteps)
	}
	for i, w := range steps {
		if w < 1 || w > 99 {
			return fmt.Errorf("[%d] = %d: each weight must be in 1..99 (promotion sends the rest)", i, w)
		}
		if i > 0 && w <= steps[i-1] {
			return fmt.Errorf("[%d] = %d: weights must increase (previous %d)", i, w, steps[i-1])
		}
	}
	return nil
}

func stepsFrom(step, max int32) ([]int32, error) {
	if step < 1 || step > 99 {
		return nil, fmt.Errorf("%d: must be in 1..99", step)
	}
	if max < step || max > 99 {
		return nil, fmt.Errorf("maxWeight %d: must be in stepWeight..99", max)
	}
	var steps []int32
	for w := step; w <= max; w += step {
		steps = append(steps, w)
	}
	if steps[len(steps)-1] != max {
		steps = append(steps, max)
	}
	if len(steps) > maxSteps {
		return nil, fmt.Errorf("gives %d steps: at most %d", len(steps), maxSteps)
	}
	return steps, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return !strings.HasPrefix(s, "-") && !strings.HasSuffix(s, "-")
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// buildJudgement applies and checks the settings of comparisons and of the
// analysis deadline.
func buildJudgement(s PolicySpec, p *Policy, field func(string, string, ...any)) {
	p.Alpha = defaultAlpha
	if s.Alpha != nil {
		p.Alpha = *s.Alpha
		if !(p.Alpha > 0 && p.Alpha <= 0.5) { // NaN fails both
			field("alpha", "%v: must be above 0 and at most 0.5", *s.Alpha)
		}
	}
	p.LookInterval = orDefault(s.LookInterval.Duration, min(defaultLookInterval, p.Interval))
	if p.LookInterval < time.Second || p.LookInterval > p.Interval {
		field("lookInterval", "%s must be between 1s and the interval (%s)", p.LookInterval, p.Interval)
	}
	p.EarlyPromotion = s.EarlyPromotion
	p.MinStepDuration = orDefault(s.MinStepDuration.Duration, p.Interval)
	if p.MinStepDuration < time.Second {
		field("minStepDuration", "%s is shorter than 1s", p.MinStepDuration)
	}
	if s.EarlyPromotion && len(p.Comparisons()) == 0 {
		field("earlyPromotion", "needs at least one comparison (error-rate, latency, or requests and bad) to show the canary no worse")
	}
	// A healthy canary walks every step at least an interval each: the
	// deadline is for rollouts that cannot reach a verdict, so it must
	// leave room for that schedule (twice over, by default).
	schedule := time.Duration(max(len(p.Steps), 1)) * p.Interval
	what := fmt.Sprintf("%d steps x %s", max(len(p.Steps), 1), p.Interval)
	if bg := p.BlueGreen; bg != nil {
		// The deadline bounds the wait for a verdict on the preview: the
		// switch is one.
		schedule, what = bg.Preview.MinDuration, "blueGreen.prePromotion.duration"
	}
	if p.Strategy == StrategyMirror && s.Mirror != nil {
		schedule, what = orDefault(s.Mirror.Duration.Duration, p.Interval), "mirror.duration"
	}
	p.AnalysisDeadline = orDefault(s.AnalysisDeadline.Duration, max(defaultAnalysisDeadline, 2*schedule))
	if p.AnalysisDeadline < schedule {
		field("analysisDeadline", "%s is shorter than the policy's schedule (%s)", p.AnalysisDeadline, what)
	}
	p.ScrapeInterval = orDefault(s.ScrapeInterval.Duration, defaultScrapeInterval)
	if p.ScrapeInterval < time.Second || p.ScrapeInterval > 5*time.Minute {
		field("scrapeInterval", "%s must be between 1s and 5m", p.ScrapeInterval)
	}
	switch p.OnInsufficientEvidence = cmp.Or(s.OnInsufficientEvidence, OnInsufficientHold); p.OnInsufficientEvidence {
	case OnInsufficientHold, OnInsufficientRollback, OnInsufficientPromote:
	default:
		field("onInsufficientEvidence", "%q: want hold, rollback or promote", s.OnInsufficientEvidence)
	}
}
