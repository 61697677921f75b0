package analysis

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// fuzzQuery uses every variable, twice for the interval.
const fuzzQuery = `sum(rate(m{ns={{ .Namespace }},w={{ .Workload }},s!={{ .StableWorkload }},svc={{ .Service }}}[{{ .Interval }}] offset {{ .Interval }}))`

// FuzzRender checks that no value can change a query's shape: whatever the
// values, the rendered query parses to the same tree as with the sample
// values, and its label matchers hold exactly the values given.
func FuzzRender(f *testing.F) {
	f.Add("shop", "podinfo-canary", "podinfo", "podinfo", "5m")
	f.Add(`a"}) or vector(1) #`, `\`, "`", "'", "1m]) or vector(1")
	f.Add("a\nb", "\uFFFD", "\xff", "😀", "99999999999y")
	f.Add("", "x", "y", "z", "0s")
	f.Add(`\"`, `\u0022`, "}", "{{ .Namespace }}", "1ms")
	templates := []*Template{mustParse(fuzzQuery)}
	for _, name := range Builtins() {
		templates = append(templates, builtins[name].query, builtins[name].samples)
	}
	f.Fuzz(func(t *testing.T, namespace, workload, stable, service, interval string) {
		vars := Vars{Namespace: namespace, Workload: workload, StableWorkload: stable, Service: service, Interval: interval}
		empty := namespace == "" || workload == "" || stable == "" || service == ""
		intervalErr := checkInterval(interval)
		for _, tmpl := range templates {
			query, err := tmpl.Render(vars)
			// The built-ins use only the namespace and the workload.
			wantErr := intervalErr != nil || namespace == "" || workload == "" || (tmpl.text == fuzzQuery && empty)
			if wantErr != (err != nil) {
				t.Fatalf("%s: Render(%+v) error %v, want an error: %v", tmpl, vars, err, wantErr)
			}
			if err != nil {
				continue
			}
			expr, err := parser.ParseExpr(query)
			if err != nil {
				t.Fatalf("Render(%+v) = %q, which does not parse: %v", vars, query, err)
			}
			sample, _, _ := tmpl.renderSample()
			if diff := cmp.Diff(sampleShape(t, sample), shape(expr)); diff != "" {
				t.Fatalf("Render(%+v) = %q changed the query's shape (-sample +got):\n%s", vars, query, diff)
			}
			got := matchers(expr)
			want := []string{`ns="` + namespace + `"`, `w="` + workload + `"`, `s!="` + stable + `"`, `svc="` + service + `"`}
			if tmpl.text != fuzzQuery {
				want = []string{`destination_workload_namespace="` + namespace + `"`, `destination_workload="` + workload + `"`}
			}
			for _, w := range want {
				if !slices.Contains(got, w) {
					t.Fatalf("Render(%+v) = %q: no matcher %s among %q", vars, query, w, got)
				}
			}
			d, _ := model.ParseDuration(interval)
			for _, r := range ranges(expr) {
				if r != time.Duration(d) {
					t.Fatalf("Render(%+v) = %q: a range or offset of %s, want %s", vars, query, r, time.Duration(d))
				}
			}
		}
	})
}

// FuzzParseTemplate checks that ParseTemplate never panics, and that a
// template it accepts renders, with any values, to PromQL of the shape it
// had with the sample values.
func FuzzParseTemplate(f *testing.F) {
	for _, name := range Builtins() {
		f.Add(builtins[name].query.text, "v")
	}
	for _, text := range []string{
		fuzzQuery,
		`x{a="{{ .Workload }}"}`,
		"x{a=`{{ .Workload }}`}",
		`x{a=~{{ .Workload }}}`,
		`x # {{ .Workload }}`,
		`{{ if .Workload }}x{{ end }}`,
		`x{{ define "y" }}z{{ end }}`,
		`x{a={{ .Workload }}}[{{ .Interval }}]`,
		`label_replace(x, "a", {{ .Workload }}, "b", "c")`,
		`x{a={{- .Workload -}}}`,
		`{a={{ .Workload }}}`,
		`x{{{ .Workload }}}`,
	} {
		f.Add(text, `"}) or vector(1)`)
	}
	f.Fuzz(func(t *testing.T, text, value string) {
		tmpl, err := ParseTemplate(text)
		if err != nil {
			return
		}
		// The rule for a comparison's counters is the stricter one.
		if tmpl.selectsCanary(true) == nil {
			if err := tmpl.selectsCanary(false); err != nil {
				t.Errorf("%q reads the canary's series as a comparison's counter, not as a query: %v", text, err)
			}
		}
		if value == "" {
			value = "v"
		}
		query, err := tmpl.Render(Vars{Namespace: value, Workload: value, StableWorkload: value, Service: value, Interval: "5m"})
		if err != nil {
			t.Fatalf("ParseTemplate(%q) accepted it, but Render with %q: %v", text, value, err)
		}
		expr, err := parser.ParseExpr(query)
		if err != nil {
			t.Fatalf("ParseTemplate(%q) accepted it, but with %q it renders %q, which does not parse: %v", text, value, query, err)
		}
		if expr.Type() != parser.ValueTypeVector {
			t.Fatalf("ParseTemplate(%q) accepted it, but with %q it renders a %s", text, value, expr.Type())
		}
		sample, _, _ := tmpl.renderSample()
		if diff := cmp.Diff(sampleShape(t, sample), shape(expr)); diff != "" {
			t.Fatalf("ParseTemplate(%q) accepted it, but %q changes its shape (-sample +got):\n%s", text, value, diff)
		}
	})
}

func sampleShape(t *testing.T, sample string) []string {
	t.Helper()
	expr, err := parser.ParseExpr(sample)
	if err != nil {
		t.Fatalf("the sample rendering %q does not parse: %v", sample, err)
	}
	return shape(expr)
}

// shape lists a query's nodes, in order, by type and with whatever in them
// is not a variable's value: what must not depend on the values.
func shape(expr parser.Expr) []string {
	var out []string
	parser.Inspect(expr, func(n parser.Node, path []parser.Node) error {
		s := fmt.Sprintf("%d %T", len(path), n)
		switch n := n.(type) {
		case *parser.VectorSelector:
			names := make([]string, 0, len(n.LabelMatchers))
			for _, m := range n.LabelMatchers {
				names = append(names, m.Name+m.Type.String())
			}
			s += " " + strings.Join(names, ",")
		case *parser.BinaryExpr:
			s += " " + n.Op.String()
		case *parser.AggregateExpr:
			s += " " + n.Op.String()
		case *parser.Call:
			s += " " + n.Func.Name
		case *parser.NumberLiteral:
			s += fmt.Sprint(" ", n.Val)
		case *parser.StringLiteral:
			s += " " + n.Val
		}
		out = append(out, s)
		return nil
	})
	return out
}

// matchers lists every label matcher of a query as PromQL writes it,
// with the value unescaped: name="value".
func matchers(expr parser.Expr) []string {
	var out []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			for _, m := range vs.LabelMatchers {
				out = append(out, m.Name+m.Type.String()+`"`+m.Value+`"`)
			}
		}
		return nil
	})
	return out
}

// ranges lists every range and offset of a query.
func ranges(expr parser.Expr) []time.Duration {
	var out []time.Duration
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.MatrixSelector:
			out = append(out, n.Range)
		case *parser.VectorSelector:
			if n.OriginalOffset != 0 {
				out = append(out, n.OriginalOffset)
			}
		case *parser.SubqueryExpr:
			out = append(out, n.Range)
		}
		return nil
	})
	return out
}
