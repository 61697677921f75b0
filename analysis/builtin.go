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
	// ResponseDiff is the share, 0..1, of the mirrored copies whose
	// canary answer differed from stable's (status class, or a 2xx
	// body), among those compared, as fledge's mirror comparator counts
	// them (fledge_mirror_comparisons_total, labelled with the canary's
	// workload, as traffic/mirrorcmp's comparator reports it). Its samples
	// are the copies compared. A mirror stage's compareResponses judges
	// it; policies do not list it.
	ResponseDiff = "response-diff"
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

	// The comparator's counts of the copies it compared: answered by both
	// sides, and of those, differing. Copies it could not compare
	// (unanswered, skipped, dropped, unsafe) are in neither: cannot
	// measure is never a difference, nor a match.
	comparisons  = `fledge_mirror_comparisons_total{destination_workload_namespace={{ .Namespace }},destination_workload={{ .Workload }},result=~"same|status_differs|body_differs"}[{{ .Interval }}]`
	differing    = `fledge_mirror_comparisons_total{destination_workload_namespace={{ .Namespace }},destination_workload={{ .Workload }},result=~"status_differs|body_differs"}[{{ .Interval }}]`
	responseDiff = `(sum(increase(` + differing + `)) or vector(0)) / sum(increase(` + comparisons + `))`
	compared     = `sum(increase(` + comparisons + `)) or vector(0)`
)

// builtin is a built-in metric's value and samples queries.
type builtin struct {
	query, samples *Template
}

var builtins = map[string]builtin{
	SuccessRate:  {mustParse(successRate), mustParse(canaryRequests)},
	LatencyP95:   {mustParse(fmt.Sprintf(latency, "0.95")), mustParse(canaryRequests)},
	LatencyP99:   {mustParse(fmt.Sprintf(latency, "0.99")), mustParse(canaryRequests)},
	RequestRate:  {mustParse(requestRate), mustParse(canaryRequests)},
	ResponseDiff: {mustParse(responseDiff), mustParse(compared)},
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

// Builtins returns the names of the built-in metrics a policy may list,
// sorted (ResponseDiff is judged by a mirror stage, not listed).
func Builtins() []string {
	names := make([]string, 0, len(builtins))
	for name := range builtins {
		if name != ResponseDiff {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// IsBuiltin reports whether name is a built-in metric.
func IsBuiltin(name string) bool {
	_, ok := builtins[name]
	return ok
}
