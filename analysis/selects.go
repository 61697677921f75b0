package analysis

import (
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// errSelectsNoCanary is the policy author's error for a query that does
// not read the canary's series: one like vector(1) or up would give every
// canary the same value, and pass or fail them all alike.
var errSelectsNoCanary = errors.New("selects no series of the canary's workload (use {{ .Workload }} in a label matcher, e.g. workload={{ .Workload }})")

// sentinelPrefix starts the value each string variable is rendered with
// to see which label matchers it lands in. The NUL byte (written \x00 in
// the rendered query) keeps a literal value the author wrote from ever
// being taken for a variable.
const sentinelPrefix = "\x00fledge-variable:"

// renderSentinels renders the template with each string variable's value
// naming the variable, and returns where each part starts in the
// rendering (for templateOffset).
func (t *Template) renderSentinels() (query string, starts []int) {
	var b strings.Builder
	for _, p := range t.parts {
		starts = append(starts, b.Len())
		switch {
		case p.v == nil:
			b.WriteString(p.text)
		case p.v.duration:
			b.WriteString(p.v.sample)
		default:
			b.WriteString(quote(sentinelPrefix + p.v.name))
		}
	}
	return b.String(), starts
}

// selectsCanary checks, as a policy is loaded, that the query reads the
// canary's own series: every vector selector has an = matcher whose value
// is the canary's {{ .Workload }} or {{ .Service }}, or (to set the
// canary against it) stable's {{ .StableWorkload }}, and at least one
// selector names the canary. For a comparison's counters, read once per
// side with {{ .Workload }} set to that side's workload, every selector
// must match {{ .Workload }} itself: {{ .Service }} and
// {{ .StableWorkload }} are the same on both sides.
//
// Matchers are read from the real PromQL parse of the template rendered
// with a sentinel value for each variable, so a variable in a != matcher
// (everything but the canary), a query without selectors (vector(1)) or a
// selector without the variables (up, or the denominator of a ratio) is
// refused. ParseTemplate has already checked that every variable is a
// whole label value, so the sentinel rendering parses as the sample one.
func (t *Template) selectsCanary(comparison bool) error {
	query, starts := t.renderSentinels()
	expr, err := parser.ParseExpr(query)
	if err != nil {
		// Cannot happen after ParseTemplate; refuse rather than guess.
		return fmt.Errorf("%w: %v", errSelectsNoCanary, err)
	}
	var selectors, canary int
	var missing *parser.VectorSelector
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		selectors++
		used := equalityVariables(vs)
		switch {
		case used["Workload"] || (!comparison && used["Service"]):
			canary++
		case !comparison && used["StableWorkload"]:
		default:
			if missing == nil {
				missing = vs
			}
		}
		return nil
	})
	switch {
	case selectors == 0:
		return fmt.Errorf("%w: the query reads no series", errSelectsNoCanary)
	case missing != nil:
		pr := missing.PositionRange()
		start, end := t.templateOffset(starts, int(pr.Start)), t.templateOffset(starts, int(pr.End))
		text := strings.TrimSpace(t.text[start:max(start, end)])
		if comparison {
			return fmt.Errorf("%w: %s (%s) has no = matcher on {{ .Workload }}, which is the canary's workload on one side and stable's on the other", errSelectsNoCanary, text, position(t.text, start))
		}
		return fmt.Errorf("%w: %s (%s) has no = matcher on {{ .Workload }} or {{ .Service }}", errSelectsNoCanary, text, position(t.text, start))
	case canary == 0:
		return fmt.Errorf("%w: the query reads only stable's series", errSelectsNoCanary)
	}
	return nil
}

// equalityVariables returns the variables a selector matches with =.
func equalityVariables(vs *parser.VectorSelector) map[string]bool {
	used := map[string]bool{}
	for _, m := range vs.LabelMatchers {
		if m.Type != labels.MatchEqual {
			continue
		}
		if name, ok := strings.CutPrefix(m.Value, sentinelPrefix); ok && lookupVariable(name) != nil {
			used[name] = true
		}
	}
	return used
}

// authored is a template the policy's author wrote: the field it is
// written in, and whether it is a comparison's counter.
type authored struct {
	field, text string
	comparison  bool
}

// customQueries are a metric's authored templates. Built-ins have none.
func customQueries(m Metric) []authored {
	if m.IsComparison() {
		_, latency := m.LatencyBound()
		if m.Compare == nil || m.Name == ErrorRate || latency {
			return nil
		}
		return []authored{{"requests", m.Compare.Requests, true}, {"bad", m.Compare.Bad, true}}
	}
	if IsBuiltin(m.Name) {
		return nil
	}
	return []authored{{"query", m.Query, false}}
}

// checkSelectsCanary is Validate's half of the rule: each custom query or
// counter that parses (compile reports those that do not) must read the
// canary's series.
func checkSelectsCanary(m Metric) []error {
	var errs []error
	for _, q := range customQueries(m) {
		if q.text == "" {
			continue
		}
		t, err := ParseTemplate(q.text)
		if err != nil {
			continue
		}
		if err := t.selectsCanary(q.comparison); err != nil {
			errs = append(errs, &FieldError{Field: q.field, Err: err})
		}
	}
	return errs
}
