// The dashboard (dashboards/fledge.json) and the alerts
// (chart/fledge/files/alerts.yaml) are checked here the way Prometheus
// would read them: every expression parses, every alert has what a person
// paged needs, and every metric they name is one the engine exports. A
// renamed metric, or a panel written against a metric that never
// existed, fails here before any Grafana shows an empty panel. e2e/ship
// checks the same names against a running engine's /metrics.
package deploy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/fledgehq/fledge/rollout/api"
	"github.com/fledgehq/fledge/rollout/api/apitest"
	"github.com/fledgehq/fledge/rollout/engine"
)

const (
	dashboardFile = "dashboards/fledge.json"
	alertsFile    = "chart/fledge/files/alerts.yaml"
)

// query is one PromQL expression and where it comes from, for messages.
type query struct{ where, expr string }

func TestDashboardAndAlertExpressionsParse(t *testing.T) {
	queries := append(dashboardQueries(t, readFile(t, dashboardFile)), alertQueries(t, readFile(t, alertsFile))...)
	if len(queries) < 20 {
		t.Fatalf("found only %d expressions: is the dashboard or alerts file read right?", len(queries))
	}
	for _, q := range queries {
		if _, err := parser.ParseExpr(q.expr); err != nil {
			t.Errorf("%s: %v\n  %s", q.where, err, q.expr)
		}
	}
}

func TestDashboardAndAlertMetricsAreOnesTheEngineExports(t *testing.T) {
	exported := engineMetrics(t)
	queries := append(dashboardQueries(t, readFile(t, dashboardFile)), alertQueries(t, readFile(t, alertsFile))...)
	for _, problem := range unknownMetrics(queries, exported) {
		t.Error(problem)
	}
}

func TestEveryAlertSaysHowBadAndWhatToDo(t *testing.T) {
	var names []string
	for _, g := range readRules(t, readFile(t, alertsFile)).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			names = append(names, r.Alert)
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
		}
	}
	slices.Sort(names)
	want := []string{"FledgeManyRollbacks", "FledgeNoLeader", "FledgePolicyReloadRejected", "FledgeRepeatedRollbacks", "FledgeRevertedAfterPromotion", "FledgeRolloutHeldPastAnalysisDeadline"}
	if !slices.Equal(names, want) {
		t.Errorf("alerts %v, want %v", names, want)
	}
}

// The checks above must be able to fail: a broken expression, a Grafana
// variable the dashboard does not define, a metric nobody exports and a
// histogram suffix on a metric that is no histogram are each caught.
func TestTheChecksCatchBadExpressionsAndUnknownMetrics(t *testing.T) {
	dash := `{"templating": {"list": [{"name": "namespace", "type": "query", "query": "label_values(fledge_flight_phase, namespace)"}]},
	  "panels": [{"type": "row", "panels": [{"title": "nested", "targets": [{"expr": "sum(rate(fledge_decisions_totl[$__rate_interval]))"}]}]},
	             {"title": "broken", "targets": [{"expr": "sum by (phase (fledge_flight_phase{namespace=~\"$namespace\"})"}]},
	             {"title": "undefined", "targets": [{"expr": "fledge_flight_phase{flight=~\"$flight\"}"}]}]}`
	qs, problems, err := readDashboard([]byte(dash))
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 4 || len(problems) != 1 || !strings.Contains(problems[0], "$flight") {
		t.Errorf("queries %q, problems %q: want 4 queries, and $flight named undefined", qs, problems)
	}
	unknown := unknownMetrics(qs, map[string]bool{"fledge_flight_phase": false})
	if len(unknown) != 2 || !strings.Contains(unknown[0], "fledge_decisions_totl") || !strings.Contains(unknown[1], `"broken"`) {
		t.Errorf("problems %q, want fledge_decisions_totl named, and the broken expression", unknown)
	}
	hist := unknownMetrics([]query{{"p", `rate(fledge_leader_bucket[1m]) + rate(fledge_decision_duration_seconds_bucket[1m])`}},
		map[string]bool{"fledge_leader": false, "fledge_decision_duration_seconds": true})
	if len(hist) != 1 || !strings.Contains(hist[0], "fledge_leader_bucket") {
		t.Errorf("problems %q, want fledge_leader_bucket named (fledge_leader is no histogram)", hist)
	}
}

// dashboardQueries are the dashboard's expressions (see readDashboard);
// what is wrong with its variables fails the test.
func dashboardQueries(t *testing.T, b []byte) []query {
	t.Helper()
	qs, problems, err := readDashboard(b)
	if err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	return qs
}

// readDashboard returns the dashboard's panel targets (rows' nested
// panels included) and the selectors of its label_values() variables,
// with Grafana's variables replaced by values Prometheus accepts; and,
// as problems, the variables used but not defined and the variable
// queries it cannot read.
func readDashboard(b []byte) ([]query, []string, error) {
	var d struct {
		Templating struct {
			List []struct{ Name, Type, Query string }
		}
		Panels []panel
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, nil, err
	}
	defined := map[string]bool{}
	for _, v := range d.Templating.List {
		defined[v.Name] = true
	}
	var out []query
	var problems []string
	add := func(where, expr string) {
		expr, undefined := substitute(expr, defined)
		for _, v := range undefined {
			problems = append(problems, fmt.Sprintf("%s: variable %s is not defined by the dashboard", where, v))
		}
		out = append(out, query{where, expr})
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Query)
		if m == nil {
			problems = append(problems, fmt.Sprintf("variable %s: query %q is not label_values(selector, label)", v.Name, v.Query))
			continue
		}
		add("variable "+v.Name, m[1])
	}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				add(fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out, problems, nil
}

type panel struct {
	Title   string
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string
	}
	Panels []panel
}

var (
	labelValues = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	grafanaVar  = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)
)

// substitute replaces Grafana's built-in intervals with a duration and
// the dashboard's own variables with a label value, and returns the
// variables it does not know.
func substitute(expr string, defined map[string]bool) (string, []string) {
	var undefined []string
	out := grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		name := strings.Trim(v, "${}")
		switch {
		case name == "__rate_interval" || name == "__interval" || name == "__range":
			return "5m"
		case defined[name]:
			return "shop"
		}
		undefined = append(undefined, v)
		return v
	})
	return out, undefined
}

// alertQueries are the alerting and recording rules' expressions.
func alertQueries(t *testing.T, b []byte) []query {
	t.Helper()
	var out []query
	for _, g := range readRules(t, b).Groups {
		for _, r := range g.Rules {
			out = append(out, query{"rule " + r.Alert + r.Record, r.Expr})
		}
	}
	return out
}

// ruleFile is Prometheus's rule-file format, as far as fledge uses it.
// (Prometheus's own loader, model/rulefmt, would bring its query engine
// and storage into fledge's module graph; e2e/ship loads the file into a
// real Prometheus instead.)
type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert         string            `json:"alert,omitempty"`
	Record        string            `json:"record,omitempty"`
	Expr          string            `json:"expr"`
	For           string            `json:"for,omitempty"`
	KeepFiringFor string            `json:"keep_firing_for,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// readRules reads a rule file strictly (an unknown or misspelt field is
// an error, as it is to Prometheus) and checks what Prometheus checks
// on load besides the expressions: a named group, one of alert and
// record, durations, label names, and annotation templates that parse
// and run with Prometheus's template variables and functions.
func readRules(t *testing.T, b []byte) ruleFile {
	t.Helper()
	var f ruleFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	for _, g := range f.Groups {
		if g.Name == "" {
			t.Errorf("a group has no name")
		}
		for _, r := range g.Rules {
			where := "rule " + r.Alert + r.Record
			if (r.Alert == "") == (r.Record == "") {
				t.Errorf("%s: give one of alert and record", where)
			}
			for _, d := range []string{g.Interval, r.For, r.KeepFiringFor} {
				if _, err := model.ParseDuration(d); d != "" && err != nil {
					t.Errorf("%s: %v", where, err)
				}
			}
			for name, tmpl := range r.Labels {
				if !model.LabelName(name).IsValidLegacy() {
					t.Errorf("%s: label name %q", where, name)
				}
				checkTemplate(t, where+" label "+name, tmpl)
			}
			for name, tmpl := range r.Annotations {
				checkTemplate(t, where+" annotation "+name, tmpl)
			}
		}
	}
	return f
}

// checkTemplate runs an annotation or label template as Prometheus
// would (its variables defined the same way, its functions stubbed), on
// an alert with a namespace and a flight.
func checkTemplate(t *testing.T, where, text string) {
	t.Helper()
	const defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	funcs := template.FuncMap{}
	for _, name := range []string{"query", "first", "label", "value", "strvalue", "args", "reReplaceAll", "safeHtml", "match",
		"title", "toUpper", "toLower", "graphLink", "tableLink", "sortByLabel", "humanize", "humanize1024", "humanizeDuration",
		"humanizePercentage", "humanizeTimestamp", "toTime", "toDuration", "pathPrefix", "externalURL", "parseDuration", "now", "urlQueryEscape"} {
		funcs[name] = func(...any) string { return "" }
	}
	tmpl, err := template.New(where).Funcs(funcs).Option("missingkey=zero").Parse(defs + text)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	data := map[string]any{"Labels": map[string]string{"namespace": "shop", "flight": "cart", "instance": "10.0.0.1:8080"},
		"ExternalLabels": map[string]string{}, "ExternalURL": "", "Value": 3.0}
	if err := tmpl.Execute(io.Discard, data); err != nil {
		t.Errorf("%s: %v", where, err)
	}
}

// unknownMetrics names each metric the queries select that is not in
// exported (name: whether it is a histogram, whose _bucket, _sum and
// _count series are then known too).
func unknownMetrics(queries []query, exported map[string]bool) []string {
	var problems []string
	for _, q := range queries {
		e, err := parser.ParseExpr(q.expr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", q.where, err))
			continue
		}
		parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			name := selectorName(vs)
			if name == "" {
				problems = append(problems, fmt.Sprintf("%s: selector %s names no metric", q.where, vs))
				return nil
			}
			if !known(name, exported) {
				problems = append(problems, fmt.Sprintf("%s: metric %s is not one the engine exports", q.where, name))
			}
			return nil
		})
	}
	return problems
}

// selectorName is the metric a selector names, by its name or by an
// equality matcher on __name__.
func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

func known(name string, exported map[string]bool) bool {
	if _, ok := exported[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && exported[base] {
			return true
		}
	}
	return false
}

// engineMetrics are the metric families cmd/fledge registers, by name
// (true for histograms), registered as cmd/fledge registers them: the
// engine's (engine.NewMetrics) and the gRPC API's (api.NewServer). Read
// from the collectors' descriptions rather than from a scrape, which
// would leave out every labelled metric with no series yet.
func engineMetrics(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recorder{names: map[string]bool{}}
	engine.NewMetrics(rec)
	pki := apitest.Start(t, apitest.Options{Bufconn: true}) // for its certificate files
	_, err := api.NewServer(api.ServerConfig{
		Backend:  apitest.NewBackend(0),
		Auth:     api.Config{Kube: fake.NewSimpleClientset()},
		CertFile: pki.CertFile, KeyFile: pki.KeyFile,
		Registerer: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Sanity: the engine's and the API's metrics were both seen.
	for _, name := range []string{"fledge_flight_phase", "fledge_api_requests_total"} {
		if _, ok := rec.names[name]; !ok {
			t.Fatalf("%s not registered; registered: %v", name, sortedKeys(rec.names))
		}
	}
	return rec.names
}

// recorder is a Registerer that notes the name of every metric family
// registered with it, and whether it is a histogram.
type recorder struct{ names map[string]bool }

var descName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	_, histogram := c.(prometheus.Histogram)
	if _, vec := c.(*prometheus.HistogramVec); vec {
		histogram = true
	}
	for d := range ch {
		// Desc keeps its name private; its String is the one way out.
		m := descName.FindStringSubmatch(d.String())
		if m == nil {
			return fmt.Errorf("no name in %s", d)
		}
		r.names[m[1]] = histogram
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recorder) Unregister(prometheus.Collector) bool { return false }

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
