package mesh

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fledgehq/fledge/traffic/mirrorcmp"
)

// compareResult is a value of fledge_mirror_comparisons_total's result
// label: what became of one request a comparator received.
type compareResult uint8

// The results, as mirrorcmp's proxy counts them. The emulator compares
// every copy (it has no sample and no bound on comparisons under way), so
// it never counts skipped, and counts dropped only for a request that is
// itself a comparator's; it creates every series all the same, as the
// proxy does at start, so that its exposition has the proxy's series.
const (
	resultSame compareResult = iota
	resultStatusDiffers
	resultBodyDiffers
	resultUnanswered
	resultUnsafe
	resultSkipped
	resultDropped
	numResults
)

var resultNames = [numResults]string{
	string(mirrorcmp.Same), string(mirrorcmp.StatusDiffers), string(mirrorcmp.BodyDiffers), string(mirrorcmp.Unanswered),
	"unsafe", "skipped", "dropped",
}

// resultOf is Compare's result as a compareResult; a result mirrorcmp may
// add later counts as unanswered until the emulator knows it.
func resultOf(r mirrorcmp.Result) compareResult {
	for i, name := range resultNames[:resultUnsafe] {
		if string(r) == name {
			return compareResult(i)
		}
	}
	return resultUnanswered
}

// comparisonLabelNames are the labels of fledge_mirror_comparisons_total:
// the canary the comparator compares (its --workload and --namespace), as
// the comparator reports them of itself, and the result.
func comparisonLabelNames() []string {
	return []string{"destination_workload", "destination_workload_namespace", "result"}
}

func newComparisonsCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fledge_mirror_comparisons_total",
		Help: "Mirrored copies received by the emulated response comparators, by result: same, status_differs, body_differs (canary and stable answered; the canary differently), unanswered (an upstream failed: nothing compared), unsafe (not a safe method: forwarded to neither), skipped (not sampled), dropped (a comparator's own request).",
	}, comparisonLabelNames())
}

// comparisonKey names the counts of the comparator pods of one namespace
// that compare one canary: the pods' namespace picks the metrics shard
// (each pod is a scrape target of its namespace), the canary names the
// series.
type comparisonKey struct {
	podNamespace, namespace, workload string
}

// comparisonCounter holds the ground truth of one comparisonKey and its
// series, each created once so that counting is an atomic add.
type comparisonCounter struct {
	counts [numResults]atomic.Uint64
	series [numResults]prometheus.Counter
}

func (c *comparisonCounter) add(r compareResult) {
	c.counts[r].Add(1)
	c.series[r].Inc()
}

// comparisonCounter returns the counter of comparator pod's comparisons,
// creating its series at zero on first use.
func (e *Emulator) comparisonCounter(pod *podInfo) *comparisonCounter {
	c := pod.comparator
	key := comparisonKey{pod.namespace, c.namespace, c.workload}
	if v, ok := e.comparisons.Load(key); ok {
		return v.(*comparisonCounter)
	}
	cc := &comparisonCounter{}
	vec := e.metrics.shardOf(pod.namespace).comparisons
	for r, name := range resultNames {
		cc.series[r] = vec.WithLabelValues(c.workload, c.namespace, name)
	}
	v, _ := e.comparisons.LoadOrStore(key, cc)
	return v.(*comparisonCounter)
}

// MirrorComparisons is the ground truth of response comparisons: the
// requests the comparator pods that compare workload in namespace (their
// --workload and --namespace) received since the emulator was created,
// by result (the result label of fledge_mirror_comparisons_total), those
// with a count alone. It is empty when no comparator has compared that
// workload.
func (e *Emulator) MirrorComparisons(namespace, workload string) map[string]float64 {
	out := map[string]float64{}
	e.comparisons.Range(func(k, v any) bool {
		if key := k.(comparisonKey); key.namespace == namespace && key.workload == workload {
			for r := range numResults {
				if n := v.(*comparisonCounter).counts[r].Load(); n > 0 {
					out[resultNames[r]] += float64(n)
				}
			}
		}
		return true
	})
	return out
}

// accountComparison counts what a comparator did with a request: its two
// requests, as requests of the comparator's workload, then the result.
func (e *Emulator) accountComparison(c *comparison, obs *[]observer) {
	if c == nil {
		return
	}
	if c.made {
		client := e.clientCounter(c.pod.rev.Workload)
		for i := range c.requests {
			e.account(&c.requests[i], &c.src, &c.answers[i], client, obs)
		}
	}
	e.comparisonCounter(c.pod).add(c.result)
}
