package mesh

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Positions of Istio's standard metric labels. Label values are assembled
// in a fixed array in this order, the source half from the client and the
// destination half precomputed per endpoint when the table is built.
const (
	lReporter = iota
	lSourceWorkload
	lSourceWorkloadNamespace
	lSourcePrincipal
	lSourceApp
	lSourceVersion
	lSourceCluster
	lSourceCanonicalService
	lSourceCanonicalRevision
	lDestinationWorkload
	lDestinationWorkloadNamespace
	lDestinationPrincipal
	lDestinationApp
	lDestinationVersion
	lDestinationService
	lDestinationServiceName
	lDestinationServiceNamespace
	lDestinationCluster
	lDestinationCanonicalService
	lDestinationCanonicalRevision
	lRequestProtocol
	lResponseCode
	lGRPCResponseStatus
	lResponseFlags
	lConnectionSecurityPolicy
	lFlagVariant
	numLabels

	firstSourceLabel      = lSourceWorkload
	firstDestinationLabel = lDestinationWorkload
	numSourceLabels       = lDestinationWorkload - lSourceWorkload
	numDestinationLabels  = lRequestProtocol - lDestinationWorkload
)

// istioLabelNames returns the label names of istio_requests_total and
// istio_request_duration_milliseconds, in the order of the l* constants.
//
// flag_variant is not one of Istio's standard labels: it is what a mesh
// adds with a Telemetry resource whose tag override copies the app's
// x-flag-variant response header into the metrics of both reporters. It is
// empty when the serving pod evaluates no flag, and Prometheus then treats
// it as absent.
func istioLabelNames() []string {
	return []string{
		"reporter",
		"source_workload", "source_workload_namespace", "source_principal",
		"source_app", "source_version", "source_cluster",
		"source_canonical_service", "source_canonical_revision",
		"destination_workload", "destination_workload_namespace", "destination_principal",
		"destination_app", "destination_version",
		"destination_service", "destination_service_name", "destination_service_namespace",
		"destination_cluster", "destination_canonical_service", "destination_canonical_revision",
		"request_protocol", "response_code", "grpc_response_status", "response_flags",
		"connection_security_policy", "flag_variant",
	}
}

// istioDurationBuckets are the default buckets of Istio's
// istio_request_duration_milliseconds.
func istioDurationBuckets() []float64 {
	return []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
		30000, 60000, 300000, 600000, 1800000, 3600000}
}

const (
	clusterName = "Kubernetes"
	unknown     = "unknown"
)

type (
	sourceLabels [numSourceLabels]string
	destLabels   [numDestinationLabels]string
)

func peerSourceLabels(p peerLabels) sourceLabels {
	return sourceLabels{
		p.workload, p.namespace, p.principal, p.app, p.version,
		clusterName, p.canonicalService, p.canonicalRevision,
	}
}

// endpointLabels are the destination labels of a request served by pod
// through svc.
func endpointLabels(svc *serviceEntry, pod *podInfo) destLabels {
	p := pod.peer
	return destLabels{
		p.workload, p.namespace, p.principal, p.app, p.version,
		svc.host, svc.name, svc.namespace,
		clusterName, p.canonicalService, p.canonicalRevision,
	}
}

// noPodLabels are the destination labels of a request that reached no pod:
// the service is known from the route (or only its host is), the workload
// is not.
func noPodLabels(host string, svc *serviceEntry) destLabels {
	name, namespace := host, unknown
	if svc != nil {
		name, namespace = svc.name, svc.namespace
	}
	return destLabels{
		unknown, unknown, unknown, unknown, unknown,
		host, name, namespace,
		unknown, unknown, unknown,
	}
}

// telemetry holds the emulator's Istio metrics on a private registry, so
// that several emulators (or tests) in one process do not collide.
type telemetry struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newTelemetry() *telemetry {
	m := &telemetry{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istio_requests_total",
			Help: "Requests processed by the emulated Istio proxies.",
		}, istioLabelNames()),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "istio_request_duration_milliseconds",
			Help:    "Request duration as seen by the emulated Istio proxies.",
			Buckets: istioDurationBuckets(),
		}, istioLabelNames()),
	}
	m.registry.MustRegister(m.requests, m.duration)
	return m
}

// handler serves the registry in the Prometheus exposition formats.
func (m *telemetry) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// record counts one request: once as reported by the client's proxy and,
// when a pod served it, once more as reported by the server's proxy, as a
// mesh with sidecars on both ends does.
func (m *telemetry) record(src *sourceLabels, proto Protocol, r *routed) {
	var lv [numLabels]string
	copy(lv[firstSourceLabel:], src[:])
	dst := r.dst
	if dst == nil {
		d := noPodLabels(r.host, nil)
		dst = &d
	}
	copy(lv[firstDestinationLabel:], dst[:])
	lv[lRequestProtocol] = string(proto)
	lv[lResponseCode] = strconv.Itoa(r.resp.Code)
	lv[lGRPCResponseStatus] = r.resp.GRPCStatus
	lv[lResponseFlags] = r.resp.Flags
	lv[lFlagVariant] = r.resp.Variant

	lv[lReporter] = "source"
	lv[lConnectionSecurityPolicy] = unknown
	m.requests.WithLabelValues(lv[:]...).Inc()
	m.duration.WithLabelValues(lv[:]...).Observe(r.resp.LatencyMs)

	if r.ep == nil {
		return
	}
	lv[lReporter] = "destination"
	lv[lConnectionSecurityPolicy] = "mutual_tls"
	m.requests.WithLabelValues(lv[:]...).Inc()
	m.duration.WithLabelValues(lv[:]...).Observe(r.resp.LatencyMs)
}
