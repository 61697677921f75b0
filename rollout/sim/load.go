package sim

import (
	"math"
	"strconv"
	"time"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/webhooks"
)

// The load tester, as fledge-loadtester answers a policy's load hook: for
// the hook's duration it sends rate requests a second to the canary and,
// with stableUrl, as many to stable. They reach Prometheus's counters like
// any request, but no user receives them: their failures are not counted
// as bad responses served. Its answer, the run's figures, arrives when the
// run ends. Any other hook answers OK at once.

// run is one load run in progress.
type run struct {
	id              string
	from, to        int // seconds
	rate            float64
	stable          bool
	canary, stabled side // what it sent, for its answer
}

// call starts what a CallHook asks for.
func (w *world) call(a rollout.CallHook, t int) {
	md := a.Payload.Metadata
	rate, err1 := strconv.ParseFloat(md["rate"], 64)
	d, err2 := time.ParseDuration(md["duration"])
	if a.Hook.Type != "rollout" || md["url"] == "" || err1 != nil || err2 != nil {
		w.answers[a.ID] = rollout.CallResult{State: v1alpha1.CallOK, Status: 200, At: epoch.Add(time.Duration(t) * time.Second)}
		return
	}
	if _, done := w.answers[a.ID]; done {
		return
	}
	for _, r := range w.runs {
		if r.id == a.ID {
			return // asked again while it runs: one run per call
		}
	}
	w.runs = append(w.runs, &run{id: a.ID, from: t, to: t + int(d/time.Second), rate: rate, stable: md["stableUrl"] != "", canary: newSide(), stabled: newSide()})
}

// load sends the runs' requests of seconds [from, to), and answers the
// runs that end by to.
func (w *world) load(from, to int) {
	kept := w.runs[:0]
	for _, r := range w.runs {
		a, b := max(from, r.from), min(to, r.to)
		if b > a {
			n := poisson(w.rng, r.rate*float64(b-a))
			before := w.canary.errors
			w.canary.serve(w.rng, n, w.errorRate(true, a), w.canaryShares)
			w.loadBad += w.canary.errors - before
			w.loadRequests += n
			r.canary.requests += n
			r.canary.errors += w.canary.errors - before
			if r.stable {
				n := poisson(w.rng, r.rate*float64(b-a))
				before := w.stable.errors
				w.stable.serve(w.rng, n, w.errorRate(false, a), w.stableShares)
				r.stabled.requests += n
				r.stabled.errors += w.stable.errors - before
			}
		}
		if r.to > to {
			kept = append(kept, r)
			continue
		}
		res := &webhooks.LoadResult{LoadFigures: figures(r.canary, float64(r.to-r.from))}
		if r.stable {
			s := figures(r.stabled, float64(r.to-r.from))
			res.Stable = &s
		}
		w.answers[r.id] = rollout.CallResult{State: v1alpha1.CallOK, Status: 200, Load: res, Attempts: 1, At: epoch.Add(time.Duration(r.to) * time.Second)}
	}
	w.runs = kept
}

// figures are a run's answer for one side (latencies as a tester would
// measure them: the simulated canary's are not per request, so the
// answer carries the thresholds' neutral figures).
func figures(s side, seconds float64) webhooks.LoadFigures {
	success := 1.0
	if s.requests > 0 {
		success = 1 - s.errors/s.requests
	}
	return webhooks.LoadFigures{Requests: uint64(math.Max(0, s.requests)), Success: success, Duration: seconds}
}

// nextRunEnd is the earliest end of a run after t, or -1.
func (w *world) nextRunEnd(t int) int {
	next := -1
	for _, r := range w.runs {
		if r.to > t && (next < 0 || r.to < next) {
			next = r.to
		}
	}
	return next
}
