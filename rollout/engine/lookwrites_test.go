package engine

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

// A watch look that only adds counts is written at most every 15 s, as a
// comparison's look is; anything more (a failed threshold check, a
// verdict, an action, a figure's first counters) is written at once.
func TestWatchLooksThatOnlyAddCountsAreWrittenAtMostEvery15s(t *testing.T) {
	at := func(s int) *metav1.Time { t := metav1.NewTime(start.Add(time.Duration(s) * time.Second)); return &t }
	was := v1alpha1.FlightStatus{Phase: v1alpha1.PhaseSucceeded, Step: -1, Message: "watching",
		Watch: &v1alpha1.Watch{Revision: "r2", Previous: "r1", State: v1alpha1.WatchWatching, Since: at(0), Until: at(600), LastLookAt: at(10), Window: 1, WindowStart: at(0),
			Figures: []v1alpha1.WatchFigure{{Metric: "error-rate", Before: sequential.Counts{Requests: 100}, Last: &sequential.Counts{Requests: 1000}}}}}
	look := func(s int, change func(*v1alpha1.FlightStatus)) *rollout.Decision {
		st := *was.DeepCopy()
		st.Watch.LastLookAt = at(s)
		st.Watch.Figures[0].Last = &sequential.Counts{Requests: 1000 + float64(s)}
		st.Watch.Figures[0].After = sequential.Counts{Requests: float64(s)}
		st.Watch.Message, st.Message = "watching: more", "watching: more"
		if change != nil {
			change(&st)
		}
		return &rollout.Decision{Status: st}
	}
	now := func(s int) time.Time { return start.Add(time.Duration(s) * time.Second) }
	if !evidenceOnly(&was, look(15, nil), now(15), LookWriteEvery) {
		t.Errorf("a watch look 5 s after the last written one is written")
	}
	if evidenceOnly(&was, look(25, nil), now(25), LookWriteEvery) {
		t.Errorf("a watch look 15 s after the last written one is not written")
	}
	for what, change := range map[string]func(*v1alpha1.FlightStatus){
		"a failed check": func(st *v1alpha1.FlightStatus) { st.Watch.FailedChecks = 1 },
		"a revert": func(st *v1alpha1.FlightStatus) {
			st.Watch.State, st.Phase = v1alpha1.WatchReverted, v1alpha1.PhaseRolledBack
		},
		"a threshold round": func(st *v1alpha1.FlightStatus) {
			st.Watch.LastAnalysisAt = at(15)
		},
	} {
		if evidenceOnly(&was, look(15, change), now(15), LookWriteEvery) {
			t.Errorf("%s is not written", what)
		}
	}
	d := look(15, nil)
	d.Actions = []rollout.Action{rollout.EnsurePrevious{Revision: "r1"}}
	if evidenceOnly(&was, d, now(15), LookWriteEvery) {
		t.Errorf("a look with an action is not written")
	}
	first := was.DeepCopy()
	first.Watch.Figures[0].Last = nil
	if evidenceOnly(first, look(15, nil), now(15), LookWriteEvery) {
		t.Errorf("a figure's first counters are not written")
	}
}
