package engine

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// kubeRequests counts the engine's requests to the Kubernetes API by verb
// (get, list, watch, create, update, patch, delete) and resource: what a
// look costs the API server, and the proof that looks do not LIST.
var kubeRequestsOpts = prometheus.CounterOpts{
	Name: "fledge_kube_requests_total",
	Help: "Requests to the Kubernetes API by verb (get, list, watch, create, update, patch, delete) and resource (with its subresource).",
}

// CountKubeRequests wraps a client's transport (rest.Config.Wrap) so that
// every request it sends is counted in fledge_kube_requests_total, and
// timed (but watches) in fledge_kube_request_duration_seconds.
func (m *Metrics) CountKubeRequests(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		verb, resource := kubeVerb(r)
		m.kubeRequests.WithLabelValues(verb, resource).Inc()
		began := time.Now()
		resp, err := rt.RoundTrip(r)
		if verb != "watch" {
			m.latency.kubeRequest.WithLabelValues(verb).Observe(time.Since(began).Seconds())
		}
		return resp, err
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// kubeVerb reads the API verb and resource of a request from its method
// and path (/api/v1/... or /apis/group/version/..., optionally
// namespaces/<ns>/, then resource[/name[/subresource]]).
func kubeVerb(r *http.Request) (verb, resource string) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return strings.ToLower(r.Method), "other"
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	named := len(parts) >= 2
	if len(parts) > 0 {
		resource = parts[0]
	}
	if len(parts) >= 3 {
		resource += "/" + parts[2]
	}
	switch r.Method {
	case http.MethodGet:
		switch {
		case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
			verb = "watch"
		case named:
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
		if !named {
			verb = "deletecollection"
		}
	default:
		verb = strings.ToLower(r.Method)
	}
	return verb, resource
}
