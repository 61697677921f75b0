package analysis

import (
	"errors"
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
