package analysis

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const customQuery = `sum(rate(istio_requests_total{destination_workload={{ .Workload }}}[{{ .Interval }}]))`

func TestValidate(t *testing.T) {
	valid := Metric{Name: SuccessRate, Min: new(0.99), MinSamples: 100, Interval: time.Minute}
	for _, tc := range []struct {
		name string
		edit func(*Metric)
		want []string // one line per problem; none when valid
	}{
		{"accepts a built-in with a minimum", func(*Metric) {}, nil},
		{"accepts a built-in with both bounds equal", func(m *Metric) { m.Min, m.Max = new(1.0), new(1.0) }, nil},
		{"accepts a custom metric with a samples query", func(m *Metric) {
			m.Name, m.Query, m.SamplesQuery = "error-budget", customQuery, `sum(x{a={{ .Namespace }}}) or vector(0)`
		}, nil},
		{"accepts a custom metric counting the canary's requests", func(m *Metric) { m.Name, m.Query = "error-budget", customQuery }, nil},
		{"accepts no minimum of samples", func(m *Metric) { m.MinSamples = 0 }, nil},
		{"rejects a name that is not a Kubernetes-style name", func(m *Metric) { m.Name, m.Query = "Error Rate", customQuery },
			[]string{`name: "Error Rate" is not a name: lower-case letters, digits and '-', at most 63`}},
		{"rejects a custom metric without a query", func(m *Metric) { m.Name = "error-budget" },
			[]string{`query: required: "error-budget" is not a built-in metric (latency-p95, latency-p99, request-rate, success-rate) or comparison (error-rate, latency)`}},
		{"rejects a query for a built-in", func(m *Metric) { m.Query, m.SamplesQuery = customQuery, customQuery }, []string{
			"query: must be empty: success-rate is built in",
			"samplesQuery: must be empty: success-rate counts the canary's requests",
		}},
		{"rejects a bad template, naming the field, line and column", func(m *Metric) {
			m.Name, m.Query, m.SamplesQuery = "error-budget", customQuery, `sum(x{a={{ .Pod }}})`
		}, []string{"samplesQuery: line 1, col 9: {{.Pod}}: unknown variable .Pod (known: .Namespace, .Workload, .StableWorkload, .Service, .Interval, .Flag, .OnVariant, .OffVariant)"}},
		{"rejects a metric with neither bound", func(m *Metric) { m.Min = nil }, []string{"min: one of min and max is required"}},
		{"rejects a maximum below the minimum", func(m *Metric) { m.Max = new(0.9) }, []string{"max: must be >= min (0.99)"}},
		{"rejects a bound that is not a number", func(m *Metric) { m.Min, m.Max = new(math.NaN()), new(math.Inf(1)) }, []string{
			"min: must be a finite number, got NaN",
			"max: must be a finite number, got +Inf",
		}},
		{"rejects a negative minimum of samples", func(m *Metric) { m.MinSamples = -1 }, []string{"minSamples: must be >= 0, got -1"}},
		{"rejects no interval", func(m *Metric) { m.Interval = 0 }, []string{"interval: must be at least 1s, got 0s"}},
		{"rejects a sub-second interval", func(m *Metric) { m.Interval = 100 * time.Millisecond }, []string{"interval: must be at least 1s, got 100ms"}},
		{"rejects an interval in fractions of a second", func(m *Metric) { m.Interval = 2500 * time.Millisecond }, []string{"interval: must be a whole number of seconds, got 2.5s"}},
		{"reports every problem at once", func(m *Metric) { m.Min, m.MinSamples, m.Interval = nil, -5, 0 }, []string{
			"min: one of min and max is required",
			"minSamples: must be >= 0, got -5",
			"interval: must be at least 1s, got 0s",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := valid
			tc.edit(&m)
			err := Validate(m)
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("Validate(%+v) (-want +got):\n%s", m, diff)
			}
			if err != nil {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field == "" {
					t.Errorf("Validate's error %v holds no *FieldError", err)
				}
			}
		})
	}
}

func TestRenderQueriesRefusesAnInvalidMetric(t *testing.T) {
	_, err := RenderQueries(Metric{Name: SuccessRate, Interval: time.Minute}, Vars{Namespace: "a", Workload: "b"})
	if err == nil || err.Error() != `invalid metric "success-rate": min: one of min and max is required` {
		t.Fatalf("RenderQueries of a metric without bounds: %v", err)
	}
}

// A custom query that does not read the canary's series would judge every
// canary alike: Validate refuses it, naming the field and the selector.
// The queries fledge ships and documents all read the canary's.
func TestValidateRefusesQueriesThatSelectNoSeriesOfTheCanary(t *testing.T) {
	const nothing = "selects no series of the canary's workload (use {{ .Workload }} in a label matcher, e.g. workload={{ .Workload }})"
	custom := func(query string) Metric {
		return Metric{Name: "custom", Query: query, Max: new(1.0), Interval: time.Minute}
	}
	comparison := func(requests, bad string) Metric {
		return Metric{Name: "jobs", Compare: &Comparison{Requests: requests, Bad: bad}, Interval: time.Minute}
	}
	for _, tc := range []struct {
		name string
		m    Metric
		want []string // the whole error, one line per field
	}{
		{"a constant", custom(`vector(1)`), []string{"query: " + nothing + ": the query reads no series"}},
		{"a selector of every target", custom(`sum(up)`), []string{"query: " + nothing + ": up (line 1, col 5) has no = matcher on {{ .Workload }} or {{ .Service }}"}},
		{"a ratio over everything", custom("sum(rate(e{w={{ .Workload }}}[1m]))\n/ sum(rate(r{ns={{ .Namespace }}}[1m]))"),
			[]string{"query: " + nothing + ": r{ns={{ .Namespace }}} (line 2, col 12) has no = matcher on {{ .Workload }} or {{ .Service }}"}},
		{"the canary excluded", custom(`sum(x{w!={{ .Workload }}})`), []string{"query: " + nothing + ": x{w!={{ .Workload }}} (line 1, col 5) has no = matcher on {{ .Workload }} or {{ .Service }}"}},
		{"a literal that looks like the sample", custom(`sum(x{w="sample-app-canary"})`), []string{"query: " + nothing + `: x{w="sample-app-canary"} (line 1, col 5) has no = matcher on {{ .Workload }} or {{ .Service }}`}},
		{"stable alone", custom(`sum(x{w={{ .StableWorkload }}})`), []string{"query: " + nothing + ": the query reads only stable's series"}},
		{"counters without the workload", comparison(`sum(jobs_total{svc={{ .Service }}})`, `sum(jobs_failed_total{w={{ .StableWorkload }}})`), []string{
			"requests: " + nothing + ": jobs_total{svc={{ .Service }}} (line 1, col 5) has no = matcher on {{ .Workload }}, which is the canary's workload on one side and stable's on the other",
			"bad: " + nothing + ": jobs_failed_total{w={{ .StableWorkload }}} (line 1, col 5) has no = matcher on {{ .Workload }}, which is the canary's workload on one side and stable's on the other",
		}},
		{"with the metric's other problems", Metric{Name: "custom", Query: `vector(1)`}, []string{
			"min: one of min and max is required",
			"interval: must be at least 1s, got 0s",
			"query: " + nothing + ": the query reads no series",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.m)
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
			var fe *FieldError
			if err != nil && !errors.As(err, &fe) {
				t.Errorf("Validate's error %v holds no *FieldError", err)
			}
		})
	}

	// Evaluate measures what it is given: the rule is the policy's.
	if _, err := RenderQueries(custom(`vector(1)`), Vars{Namespace: "n", Workload: "w"}); err != nil {
		t.Errorf("RenderQueries of a query that selects no canary: %v", err)
	}

	for _, q := range []string{
		customQuery,
		// README.md and deploy/policies.yaml
		`sum(rate(app_log_messages_total{level="error",namespace={{ .Namespace }},workload={{ .Workload }}}[{{ .Interval }}]))`,
		`(sum(rate(istio_requests_total{reporter="destination",destination_workload={{ .Workload }},flag_variant={{ .OnVariant }},response_code=~"5.."}[{{ .Interval }}])) or vector(0))
            / sum(rate(istio_requests_total{reporter="destination",destination_workload={{ .Workload }},flag_variant={{ .OnVariant }}}[{{ .Interval }}]))`,
		// The canary's share of the host's requests (e2e/analysis).
		`sum(rate(r{w={{ .Workload }}}[{{ .Interval }}])) / (sum(rate(r{w={{ .Workload }}}[{{ .Interval }}])) + sum(rate(r{w={{ .StableWorkload }}}[{{ .Interval }}])))`,
		`sum(rate(r{destination_service={{ .Service }}}[{{ .Interval }}]))`,
		`max_over_time(sum(rate(r{w={{ .Workload }}}[1m]))[5m:1m]) or vector(0)`,
	} {
		if err := Validate(custom(q)); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
	if err := Validate(comparison(`sum(jobs_total{namespace={{ .Namespace }},workload={{ .Workload }}})`, `sum(jobs_failed_total{workload={{ .Workload }}}) or vector(0)`)); err != nil {
		t.Errorf("a custom comparison by workload: %v", err)
	}
	for name, b := range builtins {
		for _, tmpl := range []*Template{b.query, b.samples} {
			if err := tmpl.selectsCanary(false); err != nil {
				t.Errorf("built-in %s: %s: %v", name, tmpl, err)
			}
		}
	}
	for _, text := range []string{counterRequests, counterOK, counterTimed, fmt.Sprintf(counterFast, "250")} {
		if err := mustParse(text).selectsCanary(true); err != nil {
			t.Errorf("built-in counter %s: %v", text, err)
		}
	}
}
