package mesh

import (
	"fmt"
	"hash/fnv"
	"net/http"
	"slices"
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

// Telemetry is what Istio's Telemetry API can change of the standard
// metrics, as a platform team does at scale to keep Prometheus's load in
// bounds. The zero value is Istio's default.
type Telemetry struct {
	// DisableClientMetrics drops the metrics the client's sidecar reports
	// (reporter="source"), as a Telemetry resource with an override
	// {match: {metric: ALL_METRICS, mode: CLIENT}, disabled: true} does:
	// the server's sidecar still reports every request a pod served,
	// which is what fledge reads.
	DisableClientMetrics bool
	// RemoveTags are standard labels removed from both metrics, as
	// tagOverrides {<label>: {operation: REMOVE}} do.
	RemoveTags []string
}

// telemetry holds the emulator's Istio metrics on private registries, so
// that several emulators (or tests) in one process do not collide. They
// are split in shards by the namespace of the proxy that reports them, as
// each sidecar is a scrape target of its own in a real mesh: Prometheus
// then scrapes several smaller targets, side by side, instead of one that
// grows with every workload.
type telemetry struct {
	shards []*shard
	// keep are the positions of the labels exported (all but the removed
	// ones), and noClient drops the source reporter's series.
	keep     []int
	noClient bool
}

type shard struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// comparisons are what the comparator pods of the shard's namespaces
	// report of themselves (see comparisons.go); Istio's Telemetry
	// settings do not apply to them.
	comparisons *prometheus.CounterVec
}

func newTelemetry(shards int, cfg Telemetry) (*telemetry, error) {
	m := &telemetry{noClient: cfg.DisableClientMetrics}
	var names []string
	for i, name := range istioLabelNames() {
		if !slices.Contains(cfg.RemoveTags, name) {
			m.keep = append(m.keep, i)
			names = append(names, name)
		}
	}
	for _, tag := range cfg.RemoveTags {
		if !slices.Contains(istioLabelNames(), tag) {
			return nil, fmt.Errorf("telemetry: removeTags: %q is not one of Istio's standard labels", tag)
		}
		if slices.Contains(requiredTags, tag) {
			return nil, fmt.Errorf("telemetry: removeTags: %q is what a canary's requests are told apart by; it cannot be removed", tag)
		}
	}
	for range max(shards, 1) {
		s := &shard{
			registry: prometheus.NewRegistry(),
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "istio_requests_total",
				Help: "Requests processed by the emulated Istio proxies.",
			}, names),
			duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name:    "istio_request_duration_milliseconds",
				Help:    "Request duration as seen by the emulated Istio proxies.",
				Buckets: istioDurationBuckets(),
			}, names),
			comparisons: newComparisonsCounter(),
		}
		s.registry.MustRegister(s.requests, s.duration, s.comparisons)
		m.shards = append(m.shards, s)
	}
	return m, nil
}

// requiredTags are the labels fledge's queries select a canary by.
var requiredTags = []string{"reporter", "destination_workload", "destination_workload_namespace", "response_code", "grpc_response_status", "flag_variant"}

// handler serves the metrics in the Prometheus exposition formats: every
// shard's at /metrics, one shard's at /metrics?shard=<i>.
func (m *telemetry) handler() http.Handler {
	all := make(prometheus.Gatherers, 0, len(m.shards))
	one := make([]http.Handler, 0, len(m.shards))
	for _, s := range m.shards {
		all = append(all, s.registry)
		one = append(one, promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	}
	whole := promhttp.HandlerFor(all, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("shard")
		if q == "" {
			whole.ServeHTTP(w, r)
			return
		}
		i, err := strconv.Atoi(q)
		if err != nil || i < 0 || i >= len(one) {
			http.Error(w, fmt.Sprintf("shard %q: want 0 to %d", q, len(one)-1), http.StatusBadRequest)
			return
		}
		one[i].ServeHTTP(w, r)
	})
}

// shardOf is the shard of the series a proxy in namespace ns reports.
func (m *telemetry) shardOf(ns string) *shard {
	if len(m.shards) == 1 {
		return m.shards[0]
	}
	h := fnv.New32a()
	h.Write([]byte(ns))
	return m.shards[h.Sum32()%uint32(len(m.shards))]
}

// observe counts one request in the series of labels lv.
func (m *telemetry) observe(lv *[numLabels]string, ns string, latencyMs float64) {
	values := lv[:]
	if len(m.keep) < numLabels {
		values = make([]string, len(m.keep))
		for i, at := range m.keep {
			values[i] = lv[at]
		}
	}
	s := m.shardOf(ns)
	s.requests.WithLabelValues(values...).Inc()
	s.duration.WithLabelValues(values...).Observe(latencyMs)
}

// recordMirrored counts a mirrored copy as Istio does: the proxy of the pod
// that served it reports it (inbound, from the client's identity); the
// client's proxy makes the copy outside its filter chain, and reports
// nothing for it.
func (m *telemetry) recordMirrored(src *sourceLabels, proto Protocol, r *routed) {
	if r.ep == nil {
		return
	}
	var lv [numLabels]string
	copy(lv[firstSourceLabel:], src[:])
	copy(lv[firstDestinationLabel:], r.dst[:])
	lv[lRequestProtocol] = string(proto)
	lv[lResponseCode] = strconv.Itoa(r.resp.Code)
	lv[lGRPCResponseStatus] = r.resp.GRPCStatus
	lv[lResponseFlags] = r.resp.Flags
	lv[lFlagVariant] = r.resp.Variant
	lv[lReporter] = "destination"
	lv[lConnectionSecurityPolicy] = "mutual_tls"
	m.observe(&lv, lv[lDestinationWorkloadNamespace], r.resp.LatencyMs)
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

	if !m.noClient {
		lv[lReporter] = "source"
		lv[lConnectionSecurityPolicy] = unknown
		m.observe(&lv, lv[lSourceWorkloadNamespace], r.resp.LatencyMs)
	}
	if r.ep == nil {
		return
	}
	lv[lReporter] = "destination"
	lv[lConnectionSecurityPolicy] = "mutual_tls"
	m.observe(&lv, lv[lDestinationWorkloadNamespace], r.resp.LatencyMs)
}
