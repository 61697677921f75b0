package rollout

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// The annotations a service team may put on its Deployment. They carry
// names and numbers only: never a URL, a query or a command, because
// whoever can edit a Deployment must not be able to point fledge at an
// arbitrary address or query. Those live in admin-owned policies.
const (
	// AnnotationRollout opts the Deployment in, naming its policy.
	AnnotationRollout = "fledge.dev/rollout"
	// AnnotationStepWeights replaces the policy's steps: "5,20,50". Each
	// weight stays within the policy's largest step.
	AnnotationStepWeights = "fledge.dev/step-weights"
	// AnnotationMaxWeight drops the policy's steps above it: "30".
	AnnotationMaxWeight = "fledge.dev/max-weight"
	// AnnotationInterval replaces the policy's interval: "2m", no shorter
	// than the policy's minInterval and no longer than a day.
	AnnotationInterval = "fledge.dev/interval"
	// AnnotationVirtualService names a VirtualService the team owns, and
	// optionally its route: "shop" or "shop/primary".
	AnnotationVirtualService = "fledge.dev/virtual-service"
	// AnnotationAction asks for a manual action, consumed once:
	// promote, promote-full, abort, pause or resume.
	AnnotationAction = "fledge.dev/action"
	// AnnotationActionReason optionally says why (recorded with the action).
	AnnotationActionReason = "fledge.dev/action-reason"
)

const maxInterval = 24 * time.Hour

// Overrides are the bounded per-Deployment changes to a policy.
type Overrides struct {
	Steps     []int32
	MaxWeight int32
	Interval  time.Duration
}

// FieldError is bad input with the place it came from, for Events and
// Flight conditions: "annotation fledge.dev/step-weights: ...".
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func annotationError(name, format string, args ...any) error {
	return &FieldError{Field: "annotation " + name, Err: fmt.Errorf(format, args...)}
}

// ParseOverrides reads the override annotations. It checks their syntax
// only; Effective checks them against the policy's bounds.
func ParseOverrides(annotations map[string]string) (Overrides, error) {
	var o Overrides
	if v, ok := annotations[AnnotationStepWeights]; ok {
		if len(v) > 200 {
			return o, annotationError(AnnotationStepWeights, "%s: too long", Bounded(v))
		}
		for i, part := range strings.Split(v, ",") {
			w, err := strconv.ParseInt(strings.TrimSpace(part), 10, 32)
			if err != nil {
				return o, annotationError(AnnotationStepWeights, "item %d (%s) is not a whole number", i, Bounded(part))
			}
			o.Steps = append(o.Steps, int32(w))
		}
		if err := validateSteps(o.Steps); err != nil {
			return o, annotationError(AnnotationStepWeights, "%v", err)
		}
	}
	if v, ok := annotations[AnnotationMaxWeight]; ok {
		w, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
		if err != nil || w < 1 || w > 99 {
			return o, annotationError(AnnotationMaxWeight, "%s: want a whole number in 1..99", Bounded(v))
		}
		o.MaxWeight = int32(w)
	}
	if v, ok := annotations[AnnotationInterval]; ok {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return o, annotationError(AnnotationInterval, "%s: want a duration such as 90s or 2m", Bounded(v))
		}
		// As every check's PromQL range will carry it.
		if _, err := analysis.FormatInterval(d); err != nil {
			return o, annotationError(AnnotationInterval, "%s: %v (a PromQL range such as 90s or 2m)", Bounded(v), err)
		}
		o.Interval = d
	}
	return o, nil
}

// AnnotationsOf are the override annotations that carry o's values (an
// empty value is an annotation not written).
func AnnotationsOf(o v1alpha1.FlightOverrides) map[string]string {
	out := map[string]string{}
	for k, v := range map[string]string{AnnotationStepWeights: o.StepWeights, AnnotationMaxWeight: o.MaxWeight, AnnotationInterval: o.Interval} {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

// Bounded quotes a value someone wrote, or its first 64 bytes (cut on a
// character boundary) and its length: a message that echoes a value is
// read in a condition, an Event and a log line, and must stay short
// whatever was written.
func Bounded(v string) string {
	const most = 64
	if len(v) <= most {
		return strconv.Quote(v)
	}
	cut := most
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(v[:cut]), len(v))
}

// knownAnnotations are the fledge.dev/ keys fledge reads on a Deployment.
var knownAnnotations = []string{AnnotationRollout, AnnotationStepWeights, AnnotationMaxWeight, AnnotationInterval,
	AnnotationVirtualService, AnnotationAction, AnnotationActionReason}

// UnknownAnnotations reports the fledge.dev/ keys on a Deployment that
// fledge does not read (a typo such as fledge.dev/step-weight is
// otherwise silently ignored), each with the known key nearest to it.
func UnknownAnnotations(annotations map[string]string) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(annotations)) {
		if !strings.HasPrefix(k, "fledge.dev/") || slices.Contains(knownAnnotations, k) {
			continue
		}
		best, dist := "", -1
		for _, known := range knownAnnotations {
			if d := editDistance(k, known); dist < 0 || d < dist {
				best, dist = known, d
			}
		}
		// (Keys are short: Kubernetes bounds them.)
		errs = append(errs, annotationError(k, "not an annotation fledge reads, and ignored (did you mean %s?)", best))
	}
	return errors.Join(errs...)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Effective returns the policy with the overrides applied, or an error
// naming the annotation whose value is out of the policy's bounds.
func (p *Policy) Effective(o Overrides) (*Policy, error) {
	e := *p
	if bg := p.BlueGreen; bg != nil {
		switch {
		case o.Steps != nil:
			return nil, annotationError(AnnotationStepWeights, "policy %s is blue/green: it switches all traffic at once, with no steps to set", p.Name)
		case o.MaxWeight != 0:
			return nil, annotationError(AnnotationMaxWeight, "policy %s is blue/green: it switches all traffic at once, with no steps to cap", p.Name)
		case o.Interval > bg.PostPromotion:
			return nil, annotationError(AnnotationInterval, "%s is longer than policy %s's post-promotion analysis (%s): no round would judge the new revision after the switch", o.Interval, p.Name, bg.PostPromotion)
		}
	}
	e.Steps = append([]int32(nil), p.Steps...)
	if o.Steps != nil {
		if last := o.Steps[len(o.Steps)-1]; last > p.MaxWeight {
			return nil, annotationError(AnnotationStepWeights, "weight %d is above the largest step policy %s allows (%d)", last, p.Name, p.MaxWeight)
		}
		e.Steps = append([]int32(nil), o.Steps...)
	}
	if o.MaxWeight != 0 {
		kept := e.Steps[:0:0]
		for _, w := range e.Steps {
			if w <= o.MaxWeight {
				kept = append(kept, w)
			}
		}
		if len(kept) == 0 {
			return nil, annotationError(AnnotationMaxWeight, "%d is below the first step (%d): no step would be left", o.MaxWeight, e.Steps[0])
		}
		e.Steps = kept
	}
	if o.Interval != 0 {
		if o.Interval < p.MinInterval || o.Interval > maxInterval {
			return nil, annotationError(AnnotationInterval, "%s is outside %s..%s (policy %s)", o.Interval, p.MinInterval, maxInterval, p.Name)
		}
		// Metrics that followed the policy's interval follow the override.
		e.Metrics = append(e.Metrics[:0:0], p.Metrics...)
		for i := range e.Metrics {
			if e.Metrics[i].Interval == p.Interval {
				e.Metrics[i].Interval = o.Interval
			}
		}
		e.Interval = o.Interval
	}
	return &e, nil
}

var (
	// A Kubernetes object name (DNS-1123 subdomain), and an Istio route name.
	objectName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	routeName  = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,62}[A-Za-z0-9])?$`)
)

// ParseVirtualService reads "name" or "name/route".
func ParseVirtualService(v string) (name, route string, err error) {
	name, route, hasRoute := strings.Cut(strings.TrimSpace(v), "/")
	if !objectName.MatchString(name) {
		return "", "", annotationError(AnnotationVirtualService, "%s: want a VirtualService name, optionally /route", Bounded(v))
	}
	if hasRoute && !routeName.MatchString(route) {
		return "", "", annotationError(AnnotationVirtualService, "route %s: want letters, digits, '-', '_' or '.'", Bounded(route))
	}
	return name, route, nil
}

// ParseAction reads the action annotation ("" when absent).
func ParseAction(annotations map[string]string) (v1alpha1.ActionKind, string, error) {
	v, ok := annotations[AnnotationAction]
	if !ok {
		return "", "", nil
	}
	reason := annotations[AnnotationActionReason]
	if len(reason) > 256 {
		reason = reason[:256]
	}
	switch k := v1alpha1.ActionKind(strings.TrimSpace(v)); k {
	case v1alpha1.ActionPromote, v1alpha1.ActionPromoteFull, v1alpha1.ActionAbort, v1alpha1.ActionPause, v1alpha1.ActionResume, v1alpha1.ActionRetry:
		return k, reason, nil
	default:
		return "", "", annotationError(AnnotationAction, "%s: want promote, promote-full, abort, pause, resume or retry", Bounded(v))
	}
}
