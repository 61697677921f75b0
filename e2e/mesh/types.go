package mesh

import (
	"fmt"
	"strings"
)

// Revision identifies one version of a workload as Istio telemetry and
// fledge see it: the pods of one ReplicaSet of a Deployment.
type Revision struct {
	Namespace string
	Workload  string
	// TemplateHash is the pod's pod-template-hash label ("" for pods not
	// created by a Deployment).
	TemplateHash string
}

// VariantKey names the requests a revision served with one variant of its
// flag, in ServedVariants.
type VariantKey struct {
	Revision
	Variant string
}

// Counts is a pair of request counters.
//
// A request is an error when its HTTP status is 5xx, when it is a gRPC
// request that ended with a non-OK gRPC status, or when the mesh found no
// route for it (404 with response flag NR). Other 4xx statuses and redirects
// are answers the configuration asked for, not failures.
type Counts struct {
	Requests, Errors uint64
}

// Problem is a piece of configuration the emulator could not take as it is.
// It names the object and the field so that a test failure points at the
// YAML to fix.
type Problem struct {
	Kind      string // VirtualService, DestinationRule, Service, Pod, ConfigMap or Secret
	Namespace string
	Name      string
	Field     string // e.g. spec.http[0].match[1].port
	Message   string
}

// String formats the problem the way errors in this package name things:
// "virtualservice demo/app: spec.http[1].route[0].weight: 150 is outside 0..100; ...".
func (p Problem) String() string {
	return fmt.Sprintf("%s %s/%s: %s: %s", strings.ToLower(p.Kind), p.Namespace, p.Name, p.Field, p.Message)
}

// Protocol is the application protocol a client speaks.
type Protocol string

// Protocols the emulator generates; they are also the values of the
// request_protocol metric label.
const (
	HTTP Protocol = "http"
	GRPC Protocol = "grpc"
)

// Request is one request as the client's sidecar sees it.
type Request struct {
	// Client is the source workload name; it is also the key of
	// ClientCounts.
	Client          string
	SourceNamespace string
	SourceLabels    map[string]string
	// Host is the authority the client called: a short name ("app"), a
	// name with a namespace ("app.other"), or a fully qualified name. An
	// optional ":port" is ignored for routing.
	Host     string
	Path     string // path and optional query, default "/"
	Method   string // default "GET"
	Protocol Protocol
	User     string
	// Headers have lower-case names. Cookies travel in "cookie" as
	// "a=1; b=2". Observers must not modify the map.
	Headers map[string]string
}

// Response is what the client's sidecar returned, with the emulator's
// knowledge of which pod (if any) answered.
type Response struct {
	Code int
	// GRPCStatus is "" for HTTP requests and the decimal gRPC status code
	// ("0" for OK) for gRPC requests.
	GRPCStatus string
	// Flags are Envoy's response flags: "-" when none, "NR" no route,
	// "UH" no healthy upstream, "NC" no cluster (unknown host or subset).
	Flags string
	// Namespace, Workload, Pod and TemplateHash describe the pod that
	// served the request; all are "" when no pod did.
	Namespace, Workload, Pod, TemplateHash string
	// Service is the fully qualified host of the destination the request
	// was routed to, "" when no route was found.
	Service   string
	LatencyMs float64
	// Mirrored is true for a copy of a request that a route mirrored (its
	// Host carries "-shadow"): its answer went nowhere, and no client saw
	// it. Observers see both the request and its copies.
	Mirrored bool
	// SetCookies holds the cookies the route asked to set, name to value.
	SetCookies map[string]string
	// Variant is the variant of its flag the serving pod evaluated for
	// this request (the app's x-flag-variant response header): "" when no
	// pod served it or the pod evaluates no flag, "error" when the
	// evaluation failed and the pod answered with its base behaviour.
	Variant string
	// BodyHash and BodyLen are the answer's body as a response comparison
	// (fledge's mirrorcmp) sees it: the SHA-256 of its bytes and their
	// number. No bytes are made. A pod's successful answer is a function
	// of the request (method, host without "-shadow", path, user), the
	// same from every revision unless the pod's body-diff-rate makes it
	// differ; an error answer is an error page naming the pod; an answer
	// to HEAD has no body. See body.go.
	BodyHash [32]byte
	BodyLen  int64
}

// Revision returns the revision that served the response, and false when no
// pod did.
func (r Response) Revision() (Revision, bool) {
	if r.Pod == "" {
		return Revision{}, false
	}
	return Revision{Namespace: r.Namespace, Workload: r.Workload, TemplateHash: r.TemplateHash}, true
}

// isError reports whether the response counts as an error in Counts.
func (r Response) isError(p Protocol) bool {
	if r.Code >= 500 || r.Flags == flagNoRoute {
		return true
	}
	return p == GRPC && r.GRPCStatus != grpcOK
}
