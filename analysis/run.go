package analysis

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
)

// Evaluate measures one metric of a canary at time at and judges it. It
// never fails: whatever goes wrong becomes the Check's outcome and message,
// so that the rollout holds and the decision log says why.
//
// It renders both queries (vars.Interval is set from m.Interval), then asks
// for the sample count first: a samples query that fails is an Error, and
// too few samples is NotEnoughData without asking for the value, which
// over too little traffic is noise or no data. Then it asks for the value
// and judges it with Judge. Both queries are evaluated at the same instant.
//
// The Check is filled in completely: the rendered value query (also when
// it was not sent), the value when one was measured, the threshold, the
// sample count (rounded down; Prometheus's increase() extrapolates), the
// outcome, the message and at.
//
// A comparison is measured by MeasureCounters instead: its Check carries
// both sides' counters, and the decision core judges them.
func Evaluate(ctx context.Context, q Querier, m Metric, vars Vars, at time.Time) Check {
	if m.IsComparison() {
		c := MeasureCounters(ctx, q, m, vars, at)
		c.Threshold = threshold(m)
		return c
	}
	c := Check{Metric: m.Name, Threshold: threshold(m), At: at}
	hold := func(format string, args ...any) Check {
		c.Outcome, c.Message = Error, fmt.Sprintf(format, args...)
		return c
	}

	compiled, err := compile(m)
	if err != nil {
		// errors.Join puts one problem a line; a message is one line.
		return hold("%s: invalid metric: %s", m.Name, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	queries, err := compiled.render(vars)
	if err != nil {
		return hold("%s: cannot render: %v", m.Name, err)
	}
	c.Query = queries.Value

	n, err := q.Query(ctx, queries.Samples, at)
	if err != nil {
		return hold("%s: cannot count samples: %v", m.Name, err)
	}
	if math.IsNaN(n) || math.IsInf(n, 0) {
		// A Querier should not return these; if one does, it is no count.
		return hold("%s: cannot count samples: query %q: the count is %v", m.Name, queries.Samples, n)
	}
	c.Samples = samplesCount(n)
	if outcome, msg, decided := judgeSamples(m, c.Samples); decided {
		c.Outcome, c.Message = outcome, msg
		return c
	}

	value, err := q.Query(ctx, queries.Value, at)
	if err != nil {
		return hold("%s: cannot measure: %v", m.Name, err)
	}
	c.Value = &value
	c.Outcome, c.Message = judgeValue(m, value)
	return c
}

// samplesCount rounds a finite sample count down. Negative counts stay
// negative for the judge to reject.
func samplesCount(n float64) int64 {
	switch {
	case n >= math.MaxInt64:
		return math.MaxInt64
	case n <= math.MinInt64:
		return math.MinInt64
	}
	return int64(math.Floor(n))
}
