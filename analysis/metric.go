package analysis

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
)

// FieldError is a problem with one field of a Metric, named as a policy
// writes it ("max", "samplesQuery"). The policy loader adds where the
// metric is: "metrics[2].max: must be >= min (0.99)".
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// metricName is a Kubernetes-style name: metric names end up in Flight
// status, Slack messages and log fields, where anything else needs quoting.
var metricName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Validate checks a metric as a policy is loaded, so that a bad one is
// reported then and never half-applied: a built-in name, or a custom name
// with a query; templates that ParseTemplate accepts; at least one of min
// and max, finite, with min <= max; minSamples >= 0; an interval of at
// least a second, in whole seconds; and a custom query (or a custom
// comparison's requests and bad counters) that reads the canary's own
// series, each of its vector selectors matching {{ .Workload }} (or
// {{ .Service }}) with =, so that no query judges every canary alike (see
// selectsCanary for the exact rule). It returns every problem found, each
// a *FieldError, joined.
//
// The last rule is the policy author's: Evaluate and MeasureCounters,
// which compile the metric each time, do not apply it, so that a caller of
// this package may still measure what it likes.
func Validate(m Metric) error {
	_, err := compile(m)
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else if err != nil {
		errs = []error{err}
	}
	errs = append(errs, checkSelectsCanary(m)...)
	return errors.Join(errs...)
}

// compiled is a valid metric's parsed templates.
type compiled struct {
	query, samples *Template
	interval       string // m.Interval as PromQL writes it
	// requests says the samples are the canary's requests (a built-in, or
	// a custom metric without a samples query), for messages.
	requests bool
}

// compile validates m and parses its templates. Evaluate compiles every
// time rather than trusting that Validate ran: it costs microseconds, and
// an invalid metric then becomes an Error verdict, never a wrong query.
func compile(m Metric) (compiled, error) {
	var c compiled
	var errs []error
	add := func(field string, err error) { errs = append(errs, &FieldError{Field: field, Err: err}) }

	if !metricName.MatchString(m.Name) {
		add("name", fmt.Errorf("%q is not a name: lower-case letters, digits and '-', at most 63", m.Name))
	}
	if m.IsComparison() {
		compileComparison(m, add)
		return c, errors.Join(errs...)
	}
	switch b, isBuiltin := builtins[m.Name]; {
	case isBuiltin:
		if m.Query != "" {
			add("query", fmt.Errorf("must be empty: %s is built in", m.Name))
		}
		if m.SamplesQuery != "" {
			add("samplesQuery", fmt.Errorf("must be empty: %s counts the canary's requests", m.Name))
		}
		c.query, c.samples, c.requests = b.query, b.samples, true
	case m.Query == "":
		add("query", fmt.Errorf("required: %q is not a built-in metric (%s) or comparison (%s, %s)", m.Name, strings.Join(Builtins(), ", "), ErrorRate, Latency))
	default:
		var err error
		if c.query, err = ParseTemplate(m.Query); err != nil {
			add("query", err)
		}
		c.samples, c.requests = defaultSamples, true
		if m.SamplesQuery != "" {
			c.requests = false
			if c.samples, err = ParseTemplate(m.SamplesQuery); err != nil {
				add("samplesQuery", err)
			}
		}
	}

	finite := func(field string, f *float64) bool {
		if f != nil && (math.IsNaN(*f) || math.IsInf(*f, 0)) {
			add(field, fmt.Errorf("must be a finite number, got %v", *f))
			return false
		}
		return true
	}
	minOK, maxOK := finite("min", m.Min), finite("max", m.Max)
	switch {
	case m.Min == nil && m.Max == nil:
		add("min", errors.New("one of min and max is required"))
	case m.Min != nil && m.Max != nil && minOK && maxOK && *m.Min > *m.Max:
		add("max", fmt.Errorf("must be >= min (%s)", formatFloat(*m.Min)))
	}

	if m.MinSamples < 0 {
		add("minSamples", fmt.Errorf("must be >= 0, got %d", m.MinSamples))
	}
	var err error
	if c.interval, err = FormatInterval(m.Interval); err != nil {
		add("interval", err)
	}
	return c, errors.Join(errs...)
}

// Queries are a metric's two queries rendered for one canary.
type Queries struct {
	Value, Samples string
}

// RenderQueries renders a metric's value and samples queries for one
// canary, as Evaluate sends them. vars.Interval is set from m.Interval:
// the interval is the metric's, whatever the caller passed.
func RenderQueries(m Metric, vars Vars) (Queries, error) {
	c, err := compile(m)
	if err != nil {
		return Queries{}, fmt.Errorf("invalid metric %q: %w", m.Name, err)
	}
	return c.render(vars)
}

func (c compiled) render(vars Vars) (Queries, error) {
	vars.Interval = c.interval
	var q Queries
	var err error
	if q.Value, err = c.query.Render(vars); err != nil {
		return Queries{}, fmt.Errorf("query: %w", err)
	}
	if q.Samples, err = c.samples.Render(vars); err != nil {
		return Queries{}, fmt.Errorf("samples query: %w", err)
	}
	return q, nil
}
