package analysis

import (
	"fmt"
	"slices"
)

// Names of the built-in metrics, judged from Istio's standard telemetry.
const (
	// SuccessRate is the share of the canary's requests that succeeded,
	// 0..1: not 5xx and, for gRPC, grpc-status OK.
	SuccessRate = "success-rate"
	// LatencyP95 and LatencyP99 are the canary's request duration
	// percentiles in milliseconds, interpolated in Istio's histogram buckets.
	LatencyP95 = "latency-p95"
	LatencyP99 = "latency-p99"
	// RequestRate is the canary's requests per second.
	RequestRate = "request-rate"
)

// canary selects the canary's requests as its own sidecar reported them:
// the destination reporter sees every request the pod served, and only
// those (the source reporter would add requests that never reached it).
const canary = `reporter="destination",destination_workload_namespace={{ .Namespace }},destination_workload={{ .Workload }}`

const (
	requests = `istio_requests_total{` + canary + `}[{{ .Interval }}]`

	// A request succeeded if it was not a 5xx and, for gRPC, ended with
	// grpc-status 0. gRPC failures travel as HTTP 200, and HTTP requests
	// carry an empty grpc_response_status, hence "0|".
	//
	// The numerator is "or vector(0)" because a canary that failed every
	// request has no successful series at all: without it, 100% errors
	// would read as an empty result (cannot measure) instead of 0 (fail).
	// The denominator stays empty with no traffic: that is no data, and
	// must not be judged.
	successRate = `(sum(rate(istio_requests_total{` + canary + `,response_code!~"5..",grpc_response_status=~"0|"}[{{ .Interval }}])) or vector(0))` +
		` / sum(rate(` + requests + `))`

	latency = `histogram_quantile(%s, sum by (le) (rate(istio_request_duration_milliseconds_bucket{` + canary + `}[{{ .Interval }}])))`

	requestRate = `sum(rate(` + requests + `))`

	// The canary's request count. Istio has no series for a workload that
	// served nothing, so no series means zero requests here, and the count
	// says so explicitly: NotEnoughData, not an error.
	canaryRequests = `sum(increase(` + requests + `)) or vector(0)`
)

// builtin is a built-in metric's value and samples queries.
type builtin struct {
	query, samples *Template
}

var builtins = map[string]builtin{
	SuccessRate: {mustParse(successRate), mustParse(canaryRequests)},
	LatencyP95:  {mustParse(fmt.Sprintf(latency, "0.95")), mustParse(canaryRequests)},
	LatencyP99:  {mustParse(fmt.Sprintf(latency, "0.99")), mustParse(canaryRequests)},
	RequestRate: {mustParse(requestRate), mustParse(canaryRequests)},
}

// defaultSamples counts the canary's requests: the sample count of every
// built-in, and of a custom metric that gives no samples query.
var defaultSamples = mustParse(canaryRequests)

func mustParse(text string) *Template {
	t, err := ParseTemplate(text)
	if err != nil {
		panic(fmt.Sprintf("built-in query %q: %v", text, err))
	}
	return t
}

// Builtins returns the names of the built-in metrics, sorted.
func Builtins() []string {
	names := make([]string, 0, len(builtins))
	for name := range builtins {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// IsBuiltin reports whether name is a built-in metric.
func IsBuiltin(name string) bool {
	_, ok := builtins[name]
	return ok
}
