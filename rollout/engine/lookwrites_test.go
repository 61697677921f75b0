package engine

import (
	"context"
	"testing"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/analysis/sequential"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// A look that only adds to the comparisons' evidence is written at most
// every LookWriteEvery, not at every look: at scale, a status write every
// few seconds per rollout in flight was most of fledge's load on the API
// server. Nothing is lost: the looks in between are counted, as one, by
// the next look written, so the evidence written at the end holds every
// request the counters show.
func TestLooksThatOnlyAddEvidenceAreWrittenAtMostEvery15s(t *testing.T) {
	w := newWorld(t, 3)
	ps, err := rollout.ParseConfig([]byte(`
policies:
  standard:
    steps: [50]
    interval: 10m
    lookInterval: 5s
    metrics:
    - {name: error-rate, maxIncrease: 0.01}
`))
	if err != nil {
		t.Fatal(err)
	}
	w.c.policies = policyMap(ps)
	// Both sides' counters grow by 10 requests a second from the epoch,
	// none failing: the comparison cannot tell yet for a long while.
	counts := func(at time.Time) sequential.Counts {
		return sequential.Counts{Requests: float64(int(at.Sub(start).Seconds()) * 10)}
	}
	w.c.analyze = func(_ context.Context, ms []analysis.Metric, _ analysis.Vars, at time.Time) []analysis.Check {
		w.looks.analyzed(ms)
		var out []analysis.Check
		for _, m := range ms {
			out = append(out, analysis.Check{Metric: m.Name, At: at, Reading: &analysis.Reading{Canary: counts(at), Stable: counts(at)}})
		}
		return out
	}
	var log lookLog
	log.record(w)
	w.addApp("ref")
	key := "ref/web"
	w.run(100, w.phaseIs(v1alpha1.PhaseIdle, ""))
	w.setImage("ref", "web:v2")
	w.run(1000, func(key string) bool {
		f := w.flight(key)
		return f != nil && f.Status.Phase == v1alpha1.PhaseProgressing && len(f.Status.Evidence) == 1 && f.Status.Evidence[0].Looks >= 1
	})
	before := *w.flight(key).Status.Evidence[0].DeepCopy()
	n := len(log.since(0))
	began := w.clock.Now()
	for w.clock.Since(began) < 2*time.Minute {
		w.runRounds(1)
	}
	looks, writes := 0, 0
	for _, l := range log.since(n) {
		if l.checks > 0 {
			looks++
		}
		for _, call := range l.api {
			if call == "patch flights/status" {
				writes++
			}
		}
	}
	f := w.flight(key)
	if f.Status.Phase != v1alpha1.PhaseProgressing || len(f.Status.Evidence) != 1 {
		t.Fatalf("phase %s, evidence %+v: the rollout did not hold as it should", f.Status.Phase, f.Status.Evidence)
	}
	if looks < 20 || writes > looks/2 || writes < looks/4 {
		t.Errorf("%d looks over two minutes at a 5 s interval wrote the status %d times; want about one in three (every 15 s)", looks, writes)
	}
	// Every request counted: the evidence written last holds all the
	// counters showed up to its look, from the baseline.
	ev := f.Status.Evidence[0]
	if want := ev.Last.Canary.Requests - before.Last.Canary.Requests + before.Canary.Requests; ev.Canary.Requests != want {
		t.Errorf("evidence holds %v canary requests, the counters say %v: looks not written were lost", ev.Canary.Requests, want)
	}
	t.Logf("%d looks, %d status writes; evidence: %d looks, %v canary requests", looks, writes, ev.Looks, ev.Canary.Requests)
}
