package mirrorcmp

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// The results of a copy that are not a comparison's, beside Compare's.
const (
	resultUnsafe  = "unsafe"
	resultSkipped = "skipped"
	resultDropped = "dropped"
)

// results are every value of the result label, each series created at
// start so that increase() sees a process's first count of each.
var results = []string{string(Same), string(StatusDiffers), string(BodyDiffers), string(Unanswered), resultUnsafe, resultSkipped, resultDropped}

// newComparisons creates fledge_mirror_comparisons_total, which counts
// every copy the proxy receives once, by what became of it:
//
//   - same, status_differs, body_differs, unanswered: compared, with
//     Compare's Result;
//   - unsafe: a method that is not safe, forwarded to neither upstream;
//   - skipped: not in the Sample, forwarded to neither;
//   - dropped: over a bound of the proxy (MaxInFlight comparisons under
//     way, a request body over MaxBody or unreadable, or a copy of the
//     proxy's own forwarded request, a routing loop), forwarded to
//     neither.
//
// The share of copies answered differently, which fledge's analysis
// bounds, leaves unanswered copies out of both sides of the ratio:
//
//	sum(rate(fledge_mirror_comparisons_total{result=~"status_differs|body_differs"}[5m]))
//	/ sum(rate(fledge_mirror_comparisons_total{result=~"same|status_differs|body_differs"}[5m]))
func newComparisons(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fledge_mirror_comparisons_total",
		Help: "Mirrored copies received by the comparing proxy, by result: same, status_differs, body_differs (canary and stable answered; the canary differently), unanswered (an upstream failed: nothing compared), unsafe (not a safe method: forwarded to neither), skipped (not sampled), dropped (over the proxy's bounds).",
	}, []string{"result"})
	for _, r := range results {
		c.WithLabelValues(r)
	}
	if reg != nil {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("mirrorcmp: register fledge_mirror_comparisons_total: %w", err)
		}
	}
	return c, nil
}
