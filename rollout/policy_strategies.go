package rollout

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"

	"github.com/fledgehq/fledge/webhooks"
)

// Strategies: how a new revision reaches users.
const (
	// StrategyCanary (the default): cohort stages, then weighted steps.
	StrategyCanary = "canary"
	// StrategyBlueGreen: the new revision comes up at full size beside the
	// previous one and is reached only through its preview route while it
	// is judged; then all traffic switches to it at once, and it is judged
	// again with the previous revision kept at full size, ready to take
	// the traffic back.
	StrategyBlueGreen = "blueGreen"
	// StrategyMirror: for read-only services, the new revision is judged on
	// copies of the live requests alone (its mirror stage), and then
	// promoted: no user reaches it before its promotion.
	StrategyMirror = "mirror"
)

// BlueGreenSpec is the blueGreen strategy as written in the policy file.
type BlueGreenSpec struct {
	// Preview is the route that reaches the new revision before the
	// switch, and nothing else does: one header (value, or regex) or one
	// cookie's value, as a cohort's.
	Preview PreviewSpec `json:"preview"`
	// PrePromotion is the analysis of the preview: it is first judged
	// after Duration (default: the interval), by the policy's checks and
	// hooks, with the preview's own traffic or a load test's. Every check
	// needs at least MinSamples requests in it.
	PrePromotion PhaseSpec `json:"prePromotion,omitempty"`
	// PostPromotion is the analysis after the switch: for Duration
	// (default: the interval, and at least that) the new revision serves
	// everyone and is judged every interval by the policy's threshold
	// checks and hooks; a failure switches back at once. (Comparisons
	// with stable judge the preview: after the switch stable serves
	// nothing to compare with.)
	PostPromotion PhaseSpec `json:"postPromotion,omitempty"`
	// ScaleDownDelay is how long after the switch the previous revision is
	// kept at full size, at least (default, and at least: PostPromotion's
	// duration). Then the Deployment is rolled to the new revision.
	ScaleDownDelay metav1.Duration `json:"scaleDownDelay,omitempty"`
}

// PreviewSpec is a blue/green preview route.
type PreviewSpec struct {
	// Host is a host of the preview's own: fledge creates a Service of
	// that name in the app's namespace, reaching the new revision alone
	// (as "<name>-canary" does), and removes it with the canary. "{name}"
	// in it is the Deployment's name ("{name}-preview"), so that apps
	// sharing the policy in a namespace get a host each. Exclusive with a
	// header or cookie route.
	Host   string `json:"host,omitempty"`
	Header string `json:"header,omitempty"`
	Cookie string `json:"cookie,omitempty"`
	Value  string `json:"value,omitempty"`
	Regex  string `json:"regex,omitempty"`
}

// PhaseSpec is one analysis phase of a blue/green rollout.
type PhaseSpec struct {
	Duration   metav1.Duration `json:"duration,omitempty"`
	MinSamples int64           `json:"minSamples,omitempty"`
}

// BlueGreen is a validated blue/green strategy.
type BlueGreen struct {
	// Preview is the preview stage, as a cohort named "preview" whose
	// MinDuration and MinSamples are the pre-promotion analysis's.
	Preview                       Cohort
	PostPromotion, ScaleDownDelay time.Duration
}

// PreviewName names the preview stage (its cohort).
const PreviewName = "preview"

// maxScaleDownDelay bounds how long two full-size revisions run side by
// side.
const maxScaleDownDelay = 24 * time.Hour

// buildStrategy validates the policy's strategy, and a blue/green one's
// settings, which leave no room for steps, cohorts or sticky users. It
// reports whether the policy has no steps (blue/green, mirror).
func buildStrategy(s PolicySpec, p *Policy, field func(f, format string, args ...any)) bool {
	switch s.Strategy {
	case "", StrategyCanary:
		if s.BlueGreen != nil {
			field("blueGreen", "set only with strategy: %s", StrategyBlueGreen)
		}
		return false
	case StrategyBlueGreen:
	case StrategyMirror:
		if s.BlueGreen != nil {
			field("blueGreen", "set only with strategy: %s", StrategyBlueGreen)
		}
		if s.Mirror == nil {
			field("mirror", "required with strategy: %s (its percent at least)", StrategyMirror)
		}
		noSteps(s, "a mirror rollout gives users no traffic before its promotion", field)
		p.Strategy = StrategyMirror
		return true
	default:
		field("strategy", "%q: want %s (the default), %s or %s", s.Strategy, StrategyCanary, StrategyBlueGreen, StrategyMirror)
		return false
	}
	if s.BlueGreen == nil {
		field("blueGreen", "required with strategy: %s (its preview route at least)", StrategyBlueGreen)
		return true
	}
	noSteps(s, "a blue/green rollout switches all traffic at once", field)
	bg := s.BlueGreen
	pre, post := bg.PrePromotion, bg.PostPromotion
	var preview Cohort
	if h := bg.Preview.Host; h != "" {
		pv := bg.Preview
		if pv.Header != "" || pv.Cookie != "" || pv.Value != "" || pv.Regex != "" {
			field("blueGreen.preview", "give either host or a header or cookie route, not both")
		}
		sample := strings.ReplaceAll(h, NamePlaceholder, "app")
		switch {
		case !serviceName.MatchString(sample):
			field("blueGreen.preview.host", "%q: the name of the Service fledge creates for the preview, in the app's namespace (%s is the Deployment's name): want lower-case letters, digits and dashes, starting with a letter, at most 63", h, NamePlaceholder)
		case slices.Contains([]string{"app", "app-canary", "app-stable", "app-baseline"}, sample):
			field("blueGreen.preview.host", "%q names the app's own Service or one fledge makes for it: give the preview a host of its own, such as %s-preview", h, NamePlaceholder)
		}
		preview = Cohort{Name: PreviewName, Host: h}
	} else {
		preview = buildCohort(CohortSpec{Name: PreviewName, Header: bg.Preview.Header, Cookie: bg.Preview.Cookie, Value: bg.Preview.Value, Regex: bg.Preview.Regex},
			"blueGreen.preview", field)
	}
	preview.MinDuration = orDefault(pre.Duration.Duration, p.Interval)
	preview.MinSamples = pre.MinSamples
	if preview.MinDuration < time.Second {
		field("blueGreen.prePromotion.duration", "%s is shorter than 1s", preview.MinDuration)
	}
	if pre.MinSamples < 0 {
		field("blueGreen.prePromotion.minSamples", "%d is negative", pre.MinSamples)
	}
	if post.MinSamples != 0 {
		field("blueGreen.postPromotion.minSamples", "after the switch the new revision serves everyone: give the checks' own minSamples")
	}
	out := &BlueGreen{Preview: preview, PostPromotion: orDefault(post.Duration.Duration, p.Interval)}
	if out.PostPromotion < p.Interval {
		field("blueGreen.postPromotion.duration", "%s is shorter than the interval (%s): no analysis round would judge the new revision after the switch", out.PostPromotion, p.Interval)
	}
	out.ScaleDownDelay = orDefault(bg.ScaleDownDelay.Duration, out.PostPromotion)
	if out.ScaleDownDelay < out.PostPromotion || out.ScaleDownDelay > maxScaleDownDelay {
		field("blueGreen.scaleDownDelay", "%s must be between postPromotion's duration (%s) and %s: the previous revision stays at full size while the new one may be switched back", out.ScaleDownDelay, out.PostPromotion, maxScaleDownDelay)
	}
	// Something must judge the new revision after the switch.
	judged := false
	for _, m := range s.Metrics {
		judged = judged || !m.isComparison()
	}
	for _, h := range s.Webhooks {
		judged = judged || h.Type == string(webhooks.Rollout) && h.When != "notEnoughData" || h.Type == string(webhooks.Rollback)
	}
	if !judged && len(s.Metrics) > 0 {
		field("metrics", "a blue/green rollout needs a threshold check (min or max) or a rollout or rollback hook to judge it after the switch: comparisons with stable judge the preview, and after the switch stable serves nothing to compare with")
	}
	p.Strategy, p.BlueGreen = StrategyBlueGreen, out
	return true
}

// NamePlaceholder in a preview host is the Deployment's name.
const NamePlaceholder = "{name}"

// PreviewHost is a preview host for Deployment name: host with
// NamePlaceholder replaced.
func PreviewHost(host, name string) string { return strings.ReplaceAll(host, NamePlaceholder, name) }

// serviceName is a Service's name (an RFC 1035 label).
var serviceName = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

// noSteps refuses what only a canary's weighted steps give meaning to, for
// a strategy without them (why says why).
func noSteps(s PolicySpec, why string, field func(f, format string, args ...any)) {
	if len(s.Steps) > 0 || s.StepWeight != 0 || s.MaxWeight != 0 {
		field("steps", "%s: it has no steps (strategy: %s has them)", why, StrategyCanary)
	}
	if len(s.Cohorts) > 0 {
		field("cohorts", "%s: it has no cohort stages (a blue/green rollout's one audience before the switch is its preview: blueGreen.preview)", why)
	}
	if s.Sticky != nil {
		field("sticky", "%s: it has no weighted steps to keep users on the new revision during", why)
	}
	if len(s.ReleaseFlags) > 0 {
		field("releaseFlags", "%s: release flags are stepped with a canary's weight, and it has none", why)
	}
}

// MirrorSpec is the mirror stage as written in the policy file.
type MirrorSpec struct {
	Percent    int32           `json:"percent"`
	Duration   metav1.Duration `json:"duration,omitempty"`
	MinSamples int64           `json:"minSamples,omitempty"`
	// CompareResponses, when set, compares the canary's answer to each
	// copy with stable's: see CompareResponsesSpec.
	CompareResponses *CompareResponsesSpec `json:"compareResponses,omitempty"`
}

// CompareResponsesSpec is a mirror stage's response comparison. The
// copies go to a comparator ("<name>-mirror", fledge's, started for the
// stage) instead of the canary: it sends each to the canary and to
// stable, and counts whether the answers' status classes, and for 2xx
// answers their bodies (a SHA-256 of the first MiB, and the length),
// differ. The stage fails when more than MaxDifferent of the copies
// compared over the stage's duration differ (at least MinSamples of them). For
// read-only traffic: copies of other methods than the safe ones (GET,
// HEAD, OPTIONS, TRACE) are neither forwarded nor compared.
type CompareResponsesSpec struct {
	// MaxDifferent is the largest share of differing answers that passes
	// (default 0.01).
	MaxDifferent *float64 `json:"maxDifferent,omitempty"`
	// MinSamples is the fewest copies compared over the stage's duration
	// for it to be judged (default 100).
	MinSamples int64 `json:"minSamples,omitempty"`
}

// Response comparison defaults.
const (
	defaultMaxDifferent     = 0.01
	defaultCompareMinSample = 100
)

// MirrorName names the mirror stage.
const MirrorName = "mirror"

// buildMirror validates the mirror stage.
func buildMirror(s PolicySpec, p *Policy, field func(f, format string, args ...any)) {
	m := s.Mirror
	if m == nil {
		return
	}
	if p.BlueGreen != nil {
		field("mirror", "a blue/green rollout is judged on its preview: a mirror stage is for canaries")
	}
	if m.Percent < 1 || m.Percent > 100 {
		field("mirror.percent", "%d: want the percentage of requests copied to the canary, 1..100", m.Percent)
	}
	c := Cohort{Name: MirrorName, Mirror: m.Percent, MinDuration: orDefault(m.Duration.Duration, p.Interval), MinSamples: m.MinSamples}
	if c.MinDuration < time.Second {
		field("mirror.duration", "%s is shorter than 1s", c.MinDuration)
	}
	if m.MinSamples < 0 {
		field("mirror.minSamples", "%d is negative", m.MinSamples)
	}
	for i, co := range p.Cohorts {
		if co.Name == MirrorName {
			field(fmt.Sprintf("cohorts[%d].name", i), "%q names the mirror stage: give the cohort another name", co.Name)
		}
	}
	if cr := m.CompareResponses; cr != nil {
		c.Compared = true
		// Over the stage's whole duration: every copy of the stage counts,
		// not only the last interval's.
		check := analysis.Metric{Name: analysis.ResponseDiff, Max: new(defaultMaxDifferent), MinSamples: defaultCompareMinSample, Interval: c.MinDuration}
		if cr.MaxDifferent != nil {
			check.Max = new(*cr.MaxDifferent)
			if v := *cr.MaxDifferent; !(v >= 0 && v < 1) { // NaN fails both
				field("mirror.compareResponses.maxDifferent", "%v: want the largest share of differing answers that passes, at least 0 and below 1", v)
			}
		}
		if cr.MinSamples != 0 {
			check.MinSamples = cr.MinSamples
			if cr.MinSamples < 1 {
				field("mirror.compareResponses.minSamples", "%d: want at least 1 copy compared", cr.MinSamples)
			}
		}
		c.Check = &check
	}
	p.Mirror = &c
}

// Baselines: what the comparisons compare the canary with.
const (
	// BaselineStable (the default): stable's pods, which serve everyone
	// the canary does not.
	BaselineStable = "stable"
	// BaselineFresh: a baseline Deployment ("<name>-baseline") started
	// with the canary from stable's template, at the canary's size, and
	// given the same share of traffic, so that the two differ in their
	// revision only: not in age, warm caches, or load per pod (Kayenta's
	// advice). It is removed when the revision is promoted, rolled back,
	// or the Deployment opts out.
	BaselineFresh = "fresh"
)

// MaxBaselineStep is the largest step with a fresh baseline: the baseline
// takes as large a share as the canary.
const MaxBaselineStep = 50

// buildBaseline validates the policy's baseline: a fresh one takes a share
// of a weighted split beside the canary, so it needs weighted steps of at
// most MaxBaselineStep and no stage in which an audience reaches the
// canary alone, and a comparison to use it.
func buildBaseline(s PolicySpec, p *Policy, field func(f, format string, args ...any)) {
	switch s.Baseline {
	case "", BaselineStable:
		return
	case BaselineFresh:
	default:
		field("baseline", "%q: want %s (the default) or %s", s.Baseline, BaselineStable, BaselineFresh)
		return
	}
	p.Baseline = BaselineFresh
	if p.Strategy != StrategyCanary {
		field("baseline", "%s: strategy %s has no weighted split for a baseline to share (it is for canaries)", BaselineFresh, p.Strategy)
	}
	if len(p.Comparisons()) == 0 {
		field("baseline", "%s: only comparisons (error-rate, latency, or requests and bad) use a baseline, and the policy has none", BaselineFresh)
	}
	for i, w := range p.Steps {
		if w > MaxBaselineStep {
			field("steps", "%d (step %d): with baseline: %s the baseline takes as large a share as the canary, so a step is at most %d", w, i, BaselineFresh, MaxBaselineStep)
			break
		}
	}
	if len(p.Cohorts) > 0 {
		field("cohorts", "with baseline: %s the canary is compared with a baseline serving the same share; a cohort stage sends an audience to the canary alone, with nothing to compare it with", BaselineFresh)
	}
	if p.Mirror != nil {
		field("mirror", "with baseline: %s the canary is compared with a baseline serving the same share; a mirror stage's copies reach the canary alone", BaselineFresh)
	}
	for i, h := range s.Webhooks {
		if _, ok := h.Metadata[MetadataStableURL]; ok {
			field(fmt.Sprintf("webhooks[%d].metadata.%s", i, MetadataStableURL), "with baseline: %s the canary is compared with its baseline, and a load test sent to stable would load the side the comparisons do not read: load the canary alone, or compare with stable", BaselineFresh)
		}
	}
}

// PostPromotionSpec is the watch after a promotion.
type PostPromotionSpec struct {
	// Duration is how long the watch lasts (at most 24h).
	Duration metav1.Duration `json:"duration"`
}

// maxWatch bounds a watch after a promotion: the previous revision's pods
// run beside the promoted one all that time.
const maxWatch = 24 * time.Hour

// buildWatch validates the watch after a promotion.
func buildWatch(s PolicySpec, p *Policy, field func(f, format string, args ...any)) {
	if s.PostPromotion == nil {
		return
	}
	d := s.PostPromotion.Duration.Duration
	switch {
	case d <= 0:
		field("postPromotion.duration", "%s: required, and above 0 (leave postPromotion out for no watch)", d)
	case d > maxWatch:
		field("postPromotion.duration", "%s is longer than %s: the previous revision's pods run beside the promoted one all that time", d, maxWatch)
	case p.Strategy == StrategyBlueGreen:
		field("postPromotion", "strategy %s judges after its switch already (blueGreen.postPromotion) and keeps the previous revision until then", StrategyBlueGreen)
	default:
		p.PostPromotion = d
	}
}
