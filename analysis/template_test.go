package analysis

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/prometheus/promql/parser"
)

func TestParseTemplateRejectsWhatCouldChangeAQuerysShape(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       string // the whole error
	}{
		{"an empty template", "  \n", "empty query"},
		{"a template that does not parse as a template", "x{a={{ .Workload }", "line 1: unexpected \"}\" in operand"},
		{"an unknown variable, with its position", "x{a=\"b\",\n  c={{ .Pod }}}",
			"line 2, col 5: {{.Pod}}: unknown variable .Pod (known: .Namespace, .Workload, .StableWorkload, .Service, .Interval, .Flag, .OnVariant, .OffVariant)"},
		{"a function", `x{a={{ printf "%s" .Workload }}}`,
			`line 1, col 5: {{printf "%s" .Workload}}: function "printf" is not allowed: values are escaped for you; write a variable alone, like {{ .Workload }}`},
		{"a pipeline", `x{a={{ .Workload | html }}}`,
			"line 1, col 5: {{.Workload | html}}: pipelines are not allowed: write a variable alone, like {{ .Workload }}"},
		{"a field of a variable", `x{a={{ .Workload.Name }}}`,
			"line 1, col 5: {{.Workload.Name}}: .Workload has no fields: write a variable alone, like {{ .Workload }}"},
		{"a template variable", `x{a={{ $w := .Workload }}}`,
			"line 1, col 5: {{$w := .Workload}}: template variables ($x) are not allowed"},
		{"the dot alone", `x{a={{ . }}}`, "line 1, col 5: {{.}}: only a variable is allowed, like {{ .Workload }}"},
		{"a constant", `x{a={{ "b" }}}`, `line 1, col 5: {{"b"}}: only a variable is allowed, like {{ .Workload }}`},
		{"a conditional", `x{a="b"}{{ if .Workload }} or y{{ end }}`,
			`line 1, col 9: {{if .Workload}} or y{{end}}: only variables are allowed, like {{ .Workload }}`},
		{"a loop", `x{{ range .Workload }}{{ end }}`,
			`line 1, col 2: {{range .Workload}}{{end}}: only variables are allowed, like {{ .Workload }}`},
		{"a nested template", `x{{ define "y" }}z{{ end }}`,
			"line 1, col 2: {{ define }} and {{ block }} are not allowed: a query template holds only variables"},
		{"a variable the author quoted", `x{a="{{ .Workload }}"}`,
			"line 1, col 6: {{ .Workload }} expands to a quoted string: write no quotes around it"},
		{"a variable in a raw string", "x{a=`{{ .Workload }}`}",
			"line 1, col 6: {{ .Workload }} expands to a quoted string: write no quotes around it"},
		{"a variable inside a longer string", `x{a="pre-{{ .Workload }}"}`,
			`line 1, col 10: not PromQL: unexpected identifier "sample" in label matching, expected "," or "}" (rendered with sample values: x{a="pre-"sample-app-canary""})`},
		{"a variable in a comment", "x{a=\"b\"} # {{ .Workload }}",
			"line 1, col 12: {{ .Workload }}: must stand alone as a label value, like destination_workload={{ .Workload }}, not inside a string or a comment"},
		{"a variable as a regular expression", `x{a=~{{ .Workload }}}`,
			"line 1, col 6: {{ .Workload }}: a variable must be the value of a label matcher with = or !=, like destination_workload={{ .Workload }} (with =~ or !~ the value would be read as a regular expression)"},
		{"a variable as a function's string argument", `label_replace(x, "a", {{ .Workload }}, "b", "c")`,
			"line 1, col 23: {{ .Workload }}: a variable must be the value of a label matcher with = or !=, like destination_workload={{ .Workload }} (with =~ or !~ the value would be read as a regular expression)"},
		{"an interval glued to a unit", `rate(x[{{ .Interval }}s])`,
			"line 1, col 8: {{ .Interval }}: must stand alone as a duration, like rate(x[{{ .Interval }}])"},
		{"an interval as a label value", `x{a={{ .Interval }}}`,
			`line 1, col 5: not PromQL: unexpected character inside braces: '1' (rendered with sample values: x{a=1m})`},
		{"a string variable as a range", `rate(x[{{ .Workload }}])`,
			`line 1, col 8: not PromQL: unexpected character in duration expression: '"' (rendered with sample values: rate(x["sample-app-canary"]))`},
		{"PromQL that does not parse, at its line and column", "sum(rate(x{a={{ .Workload }}}[{{ .Interval }}]))\n  / sum(y",
			`line 2, col 10: not PromQL: unclosed left parenthesis (rendered with sample values: sum(rate(x{a="sample-app-canary"}[1m]))` + "\n  / sum(y)"},
		{"a range vector", `x{a={{ .Workload }}}[{{ .Interval }}]`,
			"line 1, col 1: the query returns a matrix; a check needs an instant vector with one series (wrap a scalar in vector(...), aggregate a range with a *_over_time function)"},
		{"a scalar", `scalar(x)`,
			"line 1, col 1: the query returns a scalar; a check needs an instant vector with one series (wrap a scalar in vector(...), aggregate a range with a *_over_time function)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := ParseTemplate(tc.text)
			if err == nil {
				t.Fatalf("ParseTemplate(%q) accepted it: %v", tc.text, tmpl)
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("ParseTemplate(%q) error (-want +got):\n%s", tc.text, diff)
			}
		})
	}
}

func TestParseTemplateAcceptsVariablesAsLabelValuesAndDurations(t *testing.T) {
	for _, text := range []string{
		`sum(rate(x{a={{ .Workload }}, b!={{ .Namespace }}}[{{ .Interval }}]))`,
		`sum(x{a={{- .Workload -}}})`,
		"sum(rate(x{a={{ .Service }}}[{{ .Interval }}:{{ .Interval }}] offset {{ .Interval }}))",
		"# a comment {{/* and a template comment */}}\nvector(1)",
		`sum(x{a={{ .StableWorkload }}}) / sum(x{a={{ .Workload }}})`,
		`up`,
	} {
		if _, err := ParseTemplate(text); err != nil {
			t.Errorf("ParseTemplate(%q): %v", text, err)
		}
	}
}

func TestRenderInsertsEscapedLiterals(t *testing.T) {
	tmpl, err := ParseTemplate(`sum(rate(x{ns={{ .Namespace }},w={{ .Workload }},s={{ .StableWorkload }},svc={{ .Service }}}[{{ .Interval }}]))`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		vars Vars
		want string
	}{
		{"plain names", Vars{Namespace: "shop", Workload: "podinfo-canary", StableWorkload: "podinfo", Service: "podinfo", Interval: "5m"},
			`sum(rate(x{ns="shop",w="podinfo-canary",s="podinfo",svc="podinfo"}[5m]))`},
		{"quotes, backslashes and a selector's end", Vars{Namespace: `a"}) or vector(1) #`, Workload: `\`, StableWorkload: "`", Service: "'", Interval: "90s"},
			`sum(rate(x{ns="a\"}) or vector(1) #",w="\\",s="` + "`" + `",svc="'"}[90s]))`},
		{"newlines and control characters", Vars{Namespace: "a\nb", Workload: "\t\x00\x7f", StableWorkload: "x", Service: "y", Interval: "1h"},
			`sum(rate(x{ns="a\nb",w="\t\x00\x7f",s="x",svc="y"}[1h]))`},
		{"non-ASCII, U+FFFD and bytes that are not UTF-8", Vars{Namespace: "é", Workload: "\uFFFD", StableWorkload: "\xff", Service: "😀", Interval: "10s"},
			`sum(rate(x{ns="\u00e9",w="\ufffd",s="\xff",svc="\U0001f600"}[10s]))`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tmpl.Render(tc.vars)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("Render (-want +got):\n%s", diff)
			}
			// And Prometheus reads back exactly the values.
			expr, err := parser.ParseExpr(got)
			if err != nil {
				t.Fatalf("rendered query does not parse: %v", err)
			}
			want := map[string]string{"ns": tc.vars.Namespace, "w": tc.vars.Workload, "s": tc.vars.StableWorkload, "svc": tc.vars.Service}
			if diff := cmp.Diff(want, matcherValues(expr)); diff != "" {
				t.Errorf("label matchers read back (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenderRefusesEmptyValuesAndBadIntervals(t *testing.T) {
	tmpl, err := ParseTemplate("sum(rate(x{a={{ .Namespace }},\n b={{ .Workload }}}[{{ .Interval }}]))")
	if err != nil {
		t.Fatal(err)
	}
	ok := Vars{Namespace: "shop", Workload: "podinfo-canary", Interval: "1m"}
	for _, tc := range []struct {
		name string
		edit func(*Vars)
		want string
	}{
		{"an empty workload", func(v *Vars) { v.Workload = "" }, "line 2, col 4: .Workload is empty"},
		{"an empty interval", func(v *Vars) { v.Interval = "" }, `line 2, col 21: .Interval: "" is not a duration like 90s, 5m or 1h`},
		{"a compound interval", func(v *Vars) { v.Interval = "1h30m" }, `line 2, col 21: .Interval: "1h30m" is not a duration like 90s, 5m or 1h`},
		{"an interval that is a query", func(v *Vars) { v.Interval = "1m]) or vector(1" }, `line 2, col 21: .Interval: "1m]) or vector(1" is not a duration like 90s, 5m or 1h`},
		{"a zero interval", func(v *Vars) { v.Interval = "0s" }, `line 2, col 21: .Interval: "0s" is not a duration like 90s, 5m or 1h`},
		{"an interval too long for a duration", func(v *Vars) { v.Interval = "99999999999y" }, `line 2, col 21: .Interval: "99999999999y": duration out of range`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := ok
			tc.edit(&v)
			got, err := tmpl.Render(v)
			if err == nil {
				t.Fatalf("Render(%+v) = %q, want an error", v, got)
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
	// Variables a template does not use are not checked.
	unused, err := ParseTemplate(`x{a={{ .Workload }}}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unused.Render(Vars{Workload: "w"}); err != nil {
		t.Errorf("render without the unused variables: %v", err)
	}
}

func TestFormatInterval(t *testing.T) {
	for _, tc := range []struct {
		d       time.Duration
		want    string
		wantErr string
	}{
		{time.Second, "1s", ""},
		{90 * time.Second, "90s", ""},
		{5 * time.Minute, "5m", ""},
		{90 * time.Minute, "90m", ""},
		{2 * time.Hour, "2h", ""},
		{0, "", "must be at least 1s, got 0s"},
		{500 * time.Millisecond, "", "must be at least 1s, got 500ms"},
		{1500 * time.Millisecond, "", "must be a whole number of seconds, got 1.5s"},
	} {
		got, err := FormatInterval(tc.d)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tc.want || gotErr != tc.wantErr {
			t.Errorf("FormatInterval(%s) = %q, %q; want %q, %q", tc.d, got, gotErr, tc.want, tc.wantErr)
		}
		if err == nil {
			if err := checkInterval(got); err != nil {
				t.Errorf("FormatInterval(%s) = %q, which Render refuses: %v", tc.d, got, err)
			}
		}
	}
}

// matcherValues returns the values of every equality label matcher of expr
// but the metric name, by label name.
func matcherValues(expr parser.Expr) map[string]string {
	got := map[string]string{}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			for _, m := range vs.LabelMatchers {
				if m.Name != "__name__" {
					got[m.Name] = m.Value
				}
			}
		}
		return nil
	})
	return got
}

func TestPositionCountsCharactersFromOne(t *testing.T) {
	text := "ab\nçd{{"
	if got := position(text, strings.Index(text, "{{")); got != "line 2, col 3" {
		t.Errorf("position = %q, want line 2, col 3", got)
	}
}
