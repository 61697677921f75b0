package analysis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/fledgehq/fledge/analysis/sequential"
)

// Names of the built-in comparisons, judged against stable from Istio's
// standard telemetry.
const (
	// ErrorRate is the share of requests that failed (5xx, or a gRPC
	// status other than OK), as success-rate counts them.
	ErrorRate = "error-rate"
	// Latency is the share of requests slower than Comparison.SlowerThanMs,
	// from Istio's duration histogram; the bound must be one of its
	// bucket bounds.
	Latency = "latency"
)

// Comparison makes a metric a comparison with stable: a rate, the share
// of requests that are bad, measured for both revisions over the same
// time from their cumulative counters and judged sequentially
// (analysis/sequential): the canary is rolled back once it is shown worse
// than stable, and may move on once it is shown no worse than stable plus
// MaxIncrease (or, with MaxRatio, than MaxRatio times stable).
type Comparison struct {
	// MaxIncrease is how much higher the canary's rate may be than
	// stable's, in the rate's own units: 0.01 is one percentage point.
	MaxIncrease float64 `json:"maxIncrease"`
	// MaxRatio, when set, is the margin instead, relative: the canary's
	// rate may be up to MaxRatio times stable's. A stable that fails
	// nothing then leaves no room at all.
	MaxRatio float64 `json:"maxRatio,omitempty"`
	// SlowerThanMs is Latency's bound, in milliseconds.
	SlowerThanMs float64 `json:"slowerThanMs,omitempty"`
	// Requests and Bad are a custom comparison's PromQL templates: each
	// side's cumulative counts of requests and of bad requests, rendered
	// once with {{ .Workload }} the canary's and once the stable's. They
	// read counters, not rates: no range, so no {{ .Interval }}.
	Requests string `json:"requests,omitempty"`
	Bad      string `json:"bad,omitempty"`
}

// IsComparison reports whether a metric is judged against stable.
func (m Metric) IsComparison() bool {
	return m.Compare != nil || m.Name == ErrorRate || m.Name == Latency
}

// LatencyBound returns a latency comparison's bound, in milliseconds, and
// whether the metric is one. A policy comparing the latency distribution
// at several bounds has one latency comparison per bound, named
// LatencyAt(bound): a metric with a bound and no counter templates is a
// latency comparison, whatever its name.
func (m Metric) LatencyBound() (float64, bool) {
	c := m.Compare
	switch {
	case m.Name == Latency:
		if c == nil {
			return 0, true
		}
		return c.SlowerThanMs, true
	case c != nil && c.SlowerThanMs != 0 && c.Requests == "" && c.Bad == "" && m.Name != ErrorRate:
		return c.SlowerThanMs, true
	}
	return 0, false
}

// LatencyAt names the latency comparison at one of several bounds:
// "latency-250ms", "latency-1s".
func LatencyAt(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	return Latency + "-" + strings.ToLower(strings.ReplaceAll(d.String(), ".", "p"))
}

// Reading is one look at a comparison: both sides' cumulative counters at
// the same instant. Evidence is built from the increments between looks.
type Reading struct {
	Canary sequential.Counts `json:"canary"`
	Stable sequential.Counts `json:"stable"`
}

// Compared is what a comparison knows after a look, for people and
// pipelines: each side's rate with its confidence bounds, the margin, and
// the evidence that the canary is worse against the level that rolls it
// back. The decision core fills it in; the API, fledgectl, Slack and the
// engine's metrics show it.
type Compared struct {
	Canary Side `json:"canary"`
	Stable Side `json:"stable"`
	// MaxIncrease is the margin: how much higher the canary's rate may be;
	// MaxRatio, when set, the relative margin instead.
	MaxIncrease float64 `json:"maxIncrease"`
	MaxRatio    float64 `json:"maxRatio,omitempty"`
	// Evidence is the e-value that the canary is worse than stable; it is
	// rolled back once Evidence reaches RollbackAt (1/alpha, alpha being
	// the policy's shared among its comparisons).
	Evidence   float64 `json:"evidence"`
	RollbackAt float64 `json:"rollbackAt"`
	// NoWorse is the e-value that the canary is no worse than stable plus
	// the margin; it is shown so once NoWorse reaches PromoteAt.
	NoWorse   float64 `json:"noWorse,omitempty"`
	PromoteAt float64 `json:"promoteAt,omitempty"`
	// Confidence is the bounds' level: 0.99 for [Low, High] at alpha 0.01.
	Confidence float64 `json:"confidence"`
	// Looks counts the looks the evidence rests on.
	Looks int32 `json:"looks"`
	// Against names what the canary was compared with, its Stable side:
	// "baseline" for a fresh baseline (a copy of stable started with the
	// canary, given the same share), empty for stable.
	Against string `json:"against,omitempty"`
}

// AgainstName is what the canary was compared with: "stable" or
// "baseline".
func (c *Compared) AgainstName() string {
	if c.Against == "" {
		return "stable"
	}
	return c.Against
}

// Side is one side's share of bad requests since the canary's first look,
// with a confidence sequence's bounds: [Low, High] holds the true rate at
// every look at once, at the Compared's Confidence.
type Side struct {
	Requests float64 `json:"requests"`
	Bad      float64 `json:"bad"`
	Rate     float64 `json:"rate"`
	Low      float64 `json:"low"`
	High     float64 `json:"high"`
}

// The built-in comparisons' counters. Every query reads a cumulative sum,
// so that the increments between two looks count every request, the first
// ones of a new canary's series included (increase() over a range would
// lose them). No series means nothing was served: zero, explicitly.
const (
	counterRequests = `sum(istio_requests_total{` + canary + `}) or vector(0)`
	counterOK       = `sum(istio_requests_total{` + canary + `,response_code!~"5..",grpc_response_status=~"0|"}) or vector(0)`
	counterTimed    = `sum(istio_request_duration_milliseconds_count{` + canary + `}) or vector(0)`
	// counterFast has no "or vector(0)": with requests timed, a missing
	// bucket is a bound the histogram does not have, not zero fast ones.
	counterFast = `sum(istio_request_duration_milliseconds_bucket{` + canary + `,le=%q})`
)

// comparisonTemplates are a comparison's counter templates: requests, and
// either bad or good (bad = requests - good).
type comparisonTemplates struct {
	requests, bad, good *Template
}

// compileComparison validates a comparison metric and parses its counter
// templates.
func compileComparison(m Metric, add func(string, error)) comparisonTemplates {
	var t comparisonTemplates
	c := m.Compare
	if c == nil {
		c = &Comparison{}
	}
	if m.Query != "" || m.SamplesQuery != "" {
		add("query", errors.New("a comparison reads requests and bad counters, not a query"))
	}
	if m.Min != nil || m.Max != nil {
		add("min", errors.New("a comparison is judged against stable, not against min or max (give maxIncrease)"))
	}
	if m.MinSamples != 0 {
		add("minSamples", errors.New("a comparison needs no minimum: it is judged from the first request"))
	}
	if math.IsNaN(c.MaxIncrease) || c.MaxIncrease < 0 || c.MaxIncrease >= 1 {
		add("maxIncrease", fmt.Errorf("%v: must be at least 0 and below 1 (0.01 is one percentage point)", c.MaxIncrease))
	}
	switch {
	case c.MaxRatio == 0:
	case math.IsNaN(c.MaxRatio) || c.MaxRatio < 1 || c.MaxRatio > 1000:
		add("maxRatio", fmt.Errorf("%v: must be at least 1 and at most 1000 (2 lets the canary fail twice as often as stable)", c.MaxRatio))
	case c.MaxIncrease != 0:
		add("maxRatio", errors.New("give one margin: maxIncrease (absolute) or maxRatio (relative)"))
	}
	_, latency := m.LatencyBound()
	switch {
	case m.Name == ErrorRate || latency:
		if c.Requests != "" || c.Bad != "" {
			add("requests", fmt.Errorf("must be empty: %s is built in", m.Name))
		}
		if m.Name == ErrorRate {
			t.requests, t.good = mustParse(counterRequests), mustParse(counterOK)
			if c.SlowerThanMs != 0 {
				add("slowerThan", errors.New("only the latency comparison has a bound"))
			}
			break
		}
		if math.IsNaN(c.SlowerThanMs) || math.IsInf(c.SlowerThanMs, 0) || c.SlowerThanMs <= 0 {
			add("slowerThan", fmt.Errorf("required: the latency a request is bad above, a bucket bound of the histogram (got %vms)", c.SlowerThanMs))
			break
		}
		t.requests = mustParse(counterTimed)
		t.good = mustParse(fmt.Sprintf(counterFast, leLabel(c.SlowerThanMs)))
	default:
		if c.SlowerThanMs != 0 {
			add("slowerThan", errors.New("only the latency comparison has a bound"))
		}
		parse := func(field, text string) *Template {
			if text == "" {
				add(field, fmt.Errorf("required: %q is not a built-in comparison (%s, %s)", m.Name, ErrorRate, Latency))
				return nil
			}
			tmpl, err := ParseTemplate(text)
			if err != nil {
				add(field, err)
				return nil
			}
			if tmpl.Uses("Interval") {
				add(field, errors.New("a comparison reads cumulative counters: no range, so no {{ .Interval }}"))
			}
			return tmpl
		}
		t.requests, t.bad = parse("requests", c.Requests), parse("bad", c.Bad)
	}
	return t
}

// leLabel writes a bucket bound as client_golang writes the le label.
func leLabel(ms float64) string { return strconv.FormatFloat(ms, 'g', -1, 64) }

// MeasureCounters reads a comparison's counters for both sides at time at:
// the canary's (vars.Workload) and stable's (vars.StableWorkload). It never
// fails: what goes wrong is the Check's Error outcome and message, and the
// rollout holds. A measured Check has a Reading and no outcome yet: the
// decision core judges it against the evidence so far.
func MeasureCounters(ctx context.Context, q Querier, m Metric, vars Vars, at time.Time) Check {
	c := Check{Metric: m.Name, At: at}
	var errs []error
	t := compileComparison(m, func(field string, err error) { errs = append(errs, &FieldError{Field: field, Err: err}) })
	if err := errors.Join(errs...); err != nil {
		c.Outcome, c.Message = Error, fmt.Sprintf("%s: invalid comparison: %v", m.Name, err)
		return c
	}
	var r Reading
	for _, s := range []struct {
		side     string
		workload string
		into     *sequential.Counts
	}{{"canary", vars.Workload, &r.Canary}, {"stable", vars.StableWorkload, &r.Stable}} {
		v := vars
		v.Workload = s.workload
		counts, query, err := t.measure(ctx, q, v, at)
		if c.Query == "" {
			c.Query = query
		}
		if err != nil {
			c.Outcome, c.Message = Error, fmt.Sprintf("%s: cannot read the %s's counters: %v", m.Name, s.side, err)
			return c
		}
		*s.into = counts
	}
	c.Reading = &r
	return c
}

// measure reads one side's counters. It returns the requests query, for
// the decision log.
func (t comparisonTemplates) measure(ctx context.Context, q Querier, v Vars, at time.Time) (sequential.Counts, string, error) {
	var out sequential.Counts
	query, err := t.requests.Render(v)
	if err != nil {
		return out, "", err
	}
	if out.Requests, err = counter(ctx, q, query, at); err != nil {
		return out, query, err
	}
	if out.Requests == 0 {
		return out, query, nil // nothing served: nothing bad either
	}
	if t.bad != nil {
		badQuery, err := t.bad.Render(v)
		if err != nil {
			return out, query, err
		}
		out.Bad, err = counter(ctx, q, badQuery, at)
		return out, query, err
	}
	goodQuery, err := t.good.Render(v)
	if err != nil {
		return out, query, err
	}
	good, err := counter(ctx, q, goodQuery, at)
	if errors.Is(err, ErrNoData) {
		return out, query, fmt.Errorf("query %q: no series: the histogram has no bucket at this bound", goodQuery)
	}
	if err != nil {
		return out, query, err
	}
	if good > out.Requests {
		return out, query, fmt.Errorf("%g good of %g requests: the counters disagree", good, out.Requests)
	}
	out.Bad = out.Requests - good
	return out, query, nil
}

// counter runs one counter query: a finite count, zero or more.
func counter(ctx context.Context, q Querier, query string, at time.Time) (float64, error) {
	v, err := q.Query(ctx, query, at)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, fmt.Errorf("query %q: %v is not a count", query, v)
	}
	return v, nil
}
