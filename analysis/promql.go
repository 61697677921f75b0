package analysis

import (
	"errors"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// span is where one variable landed in a rendered query.
type span struct {
	part       part
	start, end int // byte offsets in the rendered query
}

// renderSample renders the template with every variable's sample value,
// recording where each variable landed and where each part starts.
func (t *Template) renderSample() (query string, spans []span, starts []int) {
	var b strings.Builder
	for _, p := range t.parts {
		starts = append(starts, b.Len())
		if p.v == nil {
			b.WriteString(p.text)
			continue
		}
		value := p.v.sample
		if !p.v.duration {
			value = quote(value)
		}
		spans = append(spans, span{part: p, start: b.Len(), end: b.Len() + len(value)})
		b.WriteString(value)
	}
	return b.String(), spans, starts
}

// templateOffset maps a byte offset of the sample rendering back to the
// template text: inside literal text exactly, inside a variable to its
// action.
func (t *Template) templateOffset(starts []int, rendered int) int {
	for i := len(t.parts) - 1; i >= 0; i-- {
		if rendered < starts[i] {
			continue
		}
		p := t.parts[i]
		if p.v != nil {
			return p.pos
		}
		return p.pos + min(rendered-starts[i], len(p.text))
	}
	return 0
}

// checkPromQL is ParseTemplate's PromQL half: the sample rendering parses
// and returns an instant vector, and every variable is one whole token in
// a place where any value of it means the same thing.
func (t *Template) checkPromQL() error {
	query, spans, starts := t.renderSample()
	expr, err := parser.ParseExpr(query)
	if err != nil {
		offset, msg := 0, err.Error()
		var perrs parser.ParseErrors
		if errors.As(err, &perrs) && len(perrs) > 0 {
			offset = t.templateOffset(starts, int(perrs[0].PositionRange.Start))
			msg = perrs[0].Err.Error()
		}
		return t.errorAt(offset, "not PromQL: %s (rendered with sample values: %s)", msg, query)
	}
	if typ := expr.Type(); typ != parser.ValueTypeVector {
		return t.errorAt(0, "the query returns a %s; a check needs an instant vector with one series (wrap a scalar in vector(...), aggregate a range with a *_over_time function)", typ)
	}
	tokens := lexQuery(query)
	for _, s := range spans {
		if err := checkSpan(tokens, s); err != nil {
			return t.errorAt(s.part.pos, "{{ .%s }}: %v", s.part.v.name, err)
		}
	}
	return nil
}

// lexQuery returns the tokens of a query that parses, without comments.
func lexQuery(query string) []parser.Item {
	var items []parser.Item
	l := parser.Lex(query)
	for {
		var it parser.Item
		l.NextItem(&it)
		if it.Typ == parser.EOF || it.Typ == parser.ERROR {
			return items
		}
		if it.Typ != parser.COMMENT {
			items = append(items, it)
		}
	}
}

// checkSpan requires the variable at s to be exactly one token: a string
// that is the value of an = or != label matcher, or a duration. Anything
// else is either a place where the value's meaning depends on its content
// (a regex matcher would read a workload name as a pattern) or a sign that
// the variable sits inside someone else's token (quoted by the author, in
// a raw string, in a comment).
func checkSpan(tokens []parser.Item, s span) error {
	for i, it := range tokens {
		if int(it.Pos) != s.start {
			continue
		}
		if int(it.Pos)+len(it.Val) != s.end {
			break
		}
		if s.part.v.duration {
			if it.Typ != parser.DURATION {
				break
			}
			return nil
		}
		if it.Typ != parser.STRING {
			break
		}
		if i == 0 || (tokens[i-1].Typ != parser.EQL && tokens[i-1].Typ != parser.NEQ) {
			return errors.New("a variable must be the value of a label matcher with = or !=, like destination_workload={{ .Workload }} (with =~ or !~ the value would be read as a regular expression)")
		}
		return nil
	}
	if s.part.v.duration {
		return errors.New("must stand alone as a duration, like rate(x[{{ .Interval }}])")
	}
	return errors.New("must stand alone as a label value, like destination_workload={{ .Workload }}, not inside a string or a comment")
}
