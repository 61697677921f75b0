package engine

import (
	"context"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"
)

// Where a look's time goes, for an operator asking why reconciles are slow
// (and for make bench-scale): waiting in a queue, waiting for the client's
// own rate limit, the API server, and Prometheus.
type latencyMetrics struct {
	queue           *prometheus.HistogramVec // fledge_workqueue_queue_duration_seconds
	work            *prometheus.HistogramVec
	depth           *prometheus.GaugeVec
	adds, retries   *prometheus.CounterVec
	unfinished      *prometheus.GaugeVec
	longest         *prometheus.GaugeVec
	kubeRequest     *prometheus.HistogramVec // by verb
	kubeThrottle    prometheus.Histogram
	prometheusQuery prometheus.Histogram
}

// latencyBuckets run from 1 ms to about 65 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 17)

func newLatencyMetrics() latencyMetrics {
	h := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBuckets}, labels)
	}
	return latencyMetrics{
		queue: h("fledge_workqueue_queue_duration_seconds", "Time a key waits in a work queue (flights: looks at Flights; adoptions: opted-in Deployments without a Flight) before a worker takes it.", "name"),
		work:  h("fledge_workqueue_work_duration_seconds", "Time a worker takes over one key.", "name"),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fledge_workqueue_depth", Help: "Keys waiting in a work queue."}, []string{"name"}),
		adds:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fledge_workqueue_adds_total", Help: "Keys added to a work queue."}, []string{"name"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fledge_workqueue_retries_total",
			Help: "Keys queued again after a failed look (with backoff)."}, []string{"name"}),
		unfinished: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fledge_workqueue_unfinished_work_seconds",
			Help: "Seconds of work in progress not yet done; a value that keeps growing is a stuck worker."}, []string{"name"}),
		longest: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fledge_workqueue_longest_running_processor_seconds",
			Help: "Seconds the longest look in progress has run."}, []string{"name"}),
		kubeRequest: h("fledge_kube_request_duration_seconds", "Time of one request to the Kubernetes API, sent to answered, by verb.", "verb"),
		kubeThrottle: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fledge_kube_client_throttle_seconds",
			Help: "Time a request to the Kubernetes API waited for the client's own rate limit (--kube-api-qps, --kube-api-burst).", Buckets: latencyBuckets}),
		prometheusQuery: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fledge_prometheus_query_duration_seconds",
			Help: "Time of one PromQL query for analysis.", Buckets: latencyBuckets}),
	}
}

func (l latencyMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{l.queue, l.work, l.depth, l.adds, l.retries, l.unfinished, l.longest, l.kubeRequest, l.kubeThrottle, l.prometheusQuery}
}

// The work queues' metrics (client-go's workqueue.MetricsProvider).
func (l latencyMetrics) NewDepthMetric(name string) workqueue.GaugeMetric {
	return l.depth.WithLabelValues(name)
}
func (l latencyMetrics) NewAddsMetric(name string) workqueue.CounterMetric {
	return l.adds.WithLabelValues(name)
}
func (l latencyMetrics) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return l.queue.WithLabelValues(name)
}
func (l latencyMetrics) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return l.work.WithLabelValues(name)
}
func (l latencyMetrics) NewUnfinishedWorkSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return l.unfinished.WithLabelValues(name)
}
func (l latencyMetrics) NewLongestRunningProcessorSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return l.longest.WithLabelValues(name)
}
func (l latencyMetrics) NewRetriesMetric(name string) workqueue.CounterMetric {
	return l.retries.WithLabelValues(name)
}

// ThrottleLatency is client-go's rate limiter latency hook
// (k8s.io/client-go/tools/metrics RegisterOpts.RateLimiterLatency): the
// process registers it once.
func (m *Metrics) ThrottleLatency() throttleLatency { return throttleLatency{m.latency.kubeThrottle} }

type throttleLatency struct{ h prometheus.Histogram }

func (t throttleLatency) Observe(_ context.Context, _ string, _ url.URL, latency time.Duration) {
	t.h.Observe(latency.Seconds())
}
