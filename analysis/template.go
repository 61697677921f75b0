package analysis

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/prometheus/common/model"
)

// Template is a PromQL query template, parsed and checked: see ParseTemplate.
// It is immutable and safe for concurrent use.
type Template struct {
	text  string
	parts []part
}

// part is a piece of a template: literal PromQL text, or a variable.
type part struct {
	text string    // literal text, when v is nil
	v    *variable // the variable, when set
	pos  int       // byte offset in the template text, for error positions
}

// variable is one value a template may use. String variables expand to a
// complete double-quoted PromQL string literal; the interval expands to a
// duration token. No variable ever expands to anything else, so no value
// can open or close a string, a selector or a parenthesis.
type variable struct {
	name     string // as written after the dot
	sample   string // the value ParseTemplate renders with
	duration bool
	get      func(Vars) string
}

var variables = []*variable{
	{name: "Namespace", sample: "sample-namespace", get: func(v Vars) string { return v.Namespace }},
	{name: "Workload", sample: "sample-app-canary", get: func(v Vars) string { return v.Workload }},
	{name: "StableWorkload", sample: "sample-app", get: func(v Vars) string { return v.StableWorkload }},
	{name: "Service", sample: "sample-app", get: func(v Vars) string { return v.Service }},
	{name: "Interval", sample: "1m", duration: true, get: func(v Vars) string { return v.Interval }},
	{name: "Flag", sample: "sample-flag", get: func(v Vars) string { return v.Flag }},
	{name: "OnVariant", sample: "on", get: func(v Vars) string { return v.OnVariant }},
	{name: "OffVariant", sample: "off", get: func(v Vars) string { return v.OffVariant }},
}

// Uses reports whether the template uses the variable name (without the
// dot).
func (t *Template) Uses(name string) bool {
	for _, p := range t.parts {
		if p.v != nil && p.v.name == name {
			return true
		}
	}
	return false
}

func lookupVariable(name string) *variable {
	for _, v := range variables {
		if v.name == name {
			return v
		}
	}
	return nil
}

func variableList() string {
	names := make([]string, len(variables))
	for i, v := range variables {
		names[i] = "." + v.name
	}
	return strings.Join(names, ", ")
}

// ParseTemplate parses a query template written in text/template syntax
// whose only actions are variables ({{ .Namespace }}, {{ .Workload }},
// {{ .StableWorkload }}, {{ .Service }}, {{ .Interval }}), and checks, as a
// policy is loaded, that it can only ever render one shape of query:
//
//   - no functions, pipelines, conditionals, loops, nested templates or
//     unknown variables;
//   - rendered with sample values, it parses as PromQL and returns an
//     instant vector;
//   - each string variable expands to exactly one string token that is the
//     value of an = or != label matcher, and {{ .Interval }} to exactly one
//     duration token.
//
// The last rule is what makes escaping sufficient: a variable quoted by the
// author ("{{ .Workload }}"), inside a raw string or a comment, or used as a
// regular expression is rejected here rather than trusted. Since every value
// renders as a single token of the same type, any values give the query the
// same token structure, hence the same parse, as the sample values did.
//
// A literal "{{" cannot be written: it opens an action, as in any
// text/template. Errors give the line and column in text; the caller names
// the metric and the field.
func ParseTemplate(text string) (*Template, error) {
	if strings.TrimSpace(text) == "" {
		return nil, errors.New("empty query")
	}
	tmpl, err := template.New("query").Parse(text)
	if err != nil {
		return nil, templateSyntaxError(err)
	}
	t := &Template{text: text}
	for _, other := range tmpl.Templates() {
		if other != tmpl {
			return nil, t.errorAt(actionStart(text, int(other.Root.Pos)), "{{ define }} and {{ block }} are not allowed: a query template holds only variables")
		}
	}
	if tmpl.Tree == nil {
		return nil, errors.New("empty query")
	}
	for _, n := range tmpl.Tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			t.parts = append(t.parts, part{text: string(n.Text), pos: int(n.Pos)})
		case *parse.CommentNode:
			// {{/* ... */}} renders nothing: harmless.
		case *parse.ActionNode:
			pos := actionStart(text, int(n.Pos))
			v, err := actionVariable(n)
			if err != nil {
				return nil, t.errorAt(pos, "%s: %v", n, err)
			}
			if quoted(t.parts) && !v.duration {
				return nil, t.errorAt(pos, "{{ .%s }} expands to a quoted string: write no quotes around it", v.name)
			}
			t.parts = append(t.parts, part{v: v, pos: pos})
		default:
			return nil, t.errorAt(actionStart(text, int(n.Position())), "%s: only variables are allowed, like {{ .Workload }}", n)
		}
	}
	if err := t.checkPromQL(); err != nil {
		return nil, err
	}
	return t, nil
}

// actionVariable returns the variable an action names, or why the action is
// not a lone variable.
func actionVariable(n *parse.ActionNode) (*variable, error) {
	p := n.Pipe
	if len(p.Decl) > 0 {
		return nil, errors.New("template variables ($x) are not allowed")
	}
	if len(p.Cmds) != 1 {
		return nil, errors.New("pipelines are not allowed: write a variable alone, like {{ .Workload }}")
	}
	args := p.Cmds[0].Args
	if fn, ok := args[0].(*parse.IdentifierNode); ok {
		return nil, fmt.Errorf("function %q is not allowed: values are escaped for you; write a variable alone, like {{ .Workload }}", fn.Ident)
	}
	field, ok := args[0].(*parse.FieldNode)
	if !ok || len(args) != 1 {
		return nil, errors.New("only a variable is allowed, like {{ .Workload }}")
	}
	if len(field.Ident) != 1 {
		return nil, fmt.Errorf("%s has no fields: write a variable alone, like {{ .Workload }}", "."+field.Ident[0])
	}
	v := lookupVariable(field.Ident[0])
	if v == nil {
		return nil, fmt.Errorf("unknown variable .%s (known: %s)", field.Ident[0], variableList())
	}
	return v, nil
}

// actionStart is the offset of the "{{" that opens the action whose node
// text/template placed at pos (its nodes point past the delimiter), so
// that errors point where a person looks.
func actionStart(text string, pos int) int {
	if i := strings.LastIndex(text[:max(0, min(pos, len(text)))], "{{"); i >= 0 {
		return i
	}
	return pos
}

// quoted reports whether the text so far ends in a quote: the author
// quoted a variable, which already expands to a quoted string. The PromQL
// check would refuse it too, but less helpfully.
func quoted(parts []part) bool {
	if len(parts) == 0 || parts[len(parts)-1].v != nil {
		return false
	}
	text := parts[len(parts)-1].text
	return strings.HasSuffix(text, `"`) || strings.HasSuffix(text, "'") || strings.HasSuffix(text, "`")
}

var templateErrorPrefix = regexp.MustCompile(`^template: query:(\d+): `)

// templateSyntaxError rewrites text/template's "template: query:3: msg" as
// "line 3: msg", the way the other errors here say where.
func templateSyntaxError(err error) error {
	msg := err.Error()
	if m := templateErrorPrefix.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("line %s: %s", m[1], msg[len(m[0]):])
	}
	return err
}

// errorAt formats an error at a byte offset of the template text.
func (t *Template) errorAt(offset int, format string, args ...any) error {
	return fmt.Errorf("%s: %s", position(t.text, offset), fmt.Sprintf(format, args...))
}

// position is "line L, col C" (both from 1, columns in characters) for a
// byte offset of text.
func position(text string, offset int) string {
	offset = max(0, min(offset, len(text)))
	before := text[:offset]
	line := strings.Count(before, "\n") + 1
	col := len([]rune(before[strings.LastIndexByte(before, '\n')+1:])) + 1
	return fmt.Sprintf("line %d, col %d", line, col)
}

// String returns the template's text as written.
func (t *Template) String() string { return t.text }

// Render expands the template with v. String values are inserted as
// escaped PromQL string literals and must not be empty (an empty value
// would select series without the label: almost surely a caller's bug);
// v.Interval must be a positive duration with a single unit, like "90s",
// "5m" or "1h". Variables the template does not use are not checked.
func (t *Template) Render(v Vars) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.v == nil {
			b.WriteString(p.text)
			continue
		}
		value := p.v.get(v)
		switch {
		case p.v.duration:
			if err := checkInterval(value); err != nil {
				return "", t.errorAt(p.pos, ".%s: %v", p.v.name, err)
			}
			b.WriteString(value)
		case value == "":
			return "", t.errorAt(p.pos, ".%s is empty", p.v.name)
		default:
			b.WriteString(quote(value))
		}
	}
	return b.String(), nil
}

// quote returns s as a double-quoted PromQL string literal that evaluates
// to exactly s, whatever its bytes: backslash, double quote and control
// characters are escaped, and so is everything outside printable ASCII, as
// \u, \U or (for bytes that are not UTF-8) \x escapes. PromQL strings
// follow Go's escape rules, and this is strconv.QuoteToASCII: ASCII-only
// output also sidesteps PromQL's lexer, which refuses a literal U+FFFD, and
// keeps look-alike characters out of the decision log.
func quote(s string) string { return strconv.QuoteToASCII(s) }

// intervalPattern is a PromQL duration with a single unit and no leading
// zero: "90s", "5m", "1h". Compound durations ("1h30m") are valid PromQL
// too, but FormatInterval never writes them and one unit is easier to check.
var intervalPattern = regexp.MustCompile(`^[1-9][0-9]*(ms|s|m|h|d|w|y)$`)

func checkInterval(s string) error {
	if !intervalPattern.MatchString(s) {
		return fmt.Errorf("%q is not a duration like 90s, 5m or 1h", s)
	}
	// The pattern admits numbers too large for a duration, which PromQL
	// would refuse.
	if _, err := model.ParseDuration(s); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	return nil
}

// FormatInterval writes d as PromQL does in a range, with the largest unit
// that divides it: 5m, 90s, 2h. An interval must be at least a second and a
// whole number of seconds: Prometheus's samples are no finer than the
// scrape interval, and a fraction would only be rounded somewhere less
// visible.
func FormatInterval(d time.Duration) (string, error) {
	switch {
	case d < time.Second:
		return "", fmt.Errorf("must be at least 1s, got %s", d)
	case d%time.Second != 0:
		return "", fmt.Errorf("must be a whole number of seconds, got %s", d)
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h", nil
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m", nil
	default:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s", nil
	}
}
