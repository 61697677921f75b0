package engine

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// What a look costs the API server, the router and Prometheus: an idle
// Flight must cost near nothing (no LIST, no write), and a judged step a
// fixed number of calls, whatever else the cluster holds (issue 14).

// look is what one look at a Flight asked for.
type look struct {
	key    string
	phase  v1alpha1.Phase
	step   int32
	api    []string // "verb resource[/subresource]"
	router []string // Router methods
	checks int      // metrics measured
}

// lookLog records looks; nil records nothing.
type lookLog struct {
	mu        sync.Mutex
	recording bool
	cur       look
	looks     []look
	mark      int
}

// record installs the recorder on the world's clients: from then on every
// look is logged.
func (l *lookLog) record(w *world) {
	w.looks = l
	rec := func(a k8stesting.Action) (bool, runtime.Object, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.recording {
			r := a.GetResource().Resource
			if s := a.GetSubresource(); s != "" {
				r += "/" + s
			}
			l.cur.api = append(l.cur.api, a.GetVerb()+" "+r)
		}
		return false, nil, nil
	}
	w.kube.PrependReactor("*", "*", rec)
	w.fledge.PrependReactor("*", "*", rec)
}

func (l *lookLog) begin(w *world, key string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recording, l.cur, l.mark = true, look{key: key}, len(w.router.Calls())
}

func (l *lookLog) end(w *world) {
	if l == nil {
		return
	}
	for _, c := range w.router.Calls()[l.mark:] {
		l.cur.router = append(l.cur.router, c.Method)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := w.flight(l.cur.key); f != nil {
		l.cur.phase, l.cur.step = f.Status.Phase, f.Status.Step
	}
	l.recording = false
	l.looks = append(l.looks, l.cur)
}

func (l *lookLog) analyzed(ms []analysis.Metric) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cur.checks += len(ms)
}

func (l *lookLog) since(i int) []look {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.looks[i:])
}

// An idle Flight's look reads the caches and the routing, and asks the
// API server nothing; a progressing look that takes no step asks nothing
// either; a step is one status write and one routing write. None LISTs:
// the cost of a look does not grow with the cluster.
func TestALookCostsAFixedNumberOfCalls(t *testing.T) {
	w := newWorld(t, 1)
	var log lookLog
	log.record(w)
	w.addApp("ref")
	key := "ref/web"
	w.run(100, w.phaseIs(v1alpha1.PhaseIdle, ""))

	// Idle: looked at again (a resync, a policy reload).
	n := len(log.since(0))
	w.refresh(key)
	w.reconcile(w.flights[key], w.clock.Now(), false)
	idle := log.since(n)
	if diff := cmp.Diff([]look{{key: key, phase: v1alpha1.PhaseIdle, step: -1, router: []string{"Weights"}}}, idle, cmp.AllowUnexported(look{})); diff != "" {
		t.Errorf("an idle look (-want +got):\n%s", diff)
	}

	n = len(log.since(0))
	w.setImage("ref", "web:v2")
	rev := TemplateHash(w.deployment(key).Spec.Template)
	w.run(1000, w.phaseIs(v1alpha1.PhaseSucceeded, rev))
	var judged, steps int
	for _, l := range log.since(n) {
		for _, call := range l.api {
			if strings.HasPrefix(call, "list ") || strings.HasPrefix(call, "watch ") {
				t.Errorf("a look at %s (step %d) asked %q", l.phase, l.step, call)
			}
		}
		if l.phase != v1alpha1.PhaseProgressing || l.step < 0 {
			continue // starting the canary, promoting: counted below
		}
		if l.checks > 0 {
			judged++
			if l.checks != 1 {
				t.Errorf("step %d: %d checks measured in one look, want the policy's 1", l.step, l.checks)
			}
		}
		switch {
		case slices.Contains(l.router, "SetWeights"):
			steps++
			if want := []string{"patch flights/status"}; !slices.Equal(l.api, want) {
				t.Errorf("step %d taken with API calls %q, want %q", l.step, l.api, want)
			}
			if want := []string{"Weights", "SetWeights"}; !slices.Equal(l.router, want) {
				t.Errorf("step %d taken with router calls %q, want %q", l.step, l.router, want)
			}
		case len(l.api) > 0 && !(len(l.api) == 1 && l.api[0] == "patch flights/status"):
			t.Errorf("a look in step %d without a new step asked %q", l.step, l.api)
		}
	}
	if steps != 3 || judged == 0 { // 10, 20 and 50%
		t.Errorf("%d steps taken and %d looks judged: the rollout was not followed", steps, judged)
	}
	measured := 0
	for _, l := range log.since(0) {
		if l.checks > 0 {
			measured++
		}
	}
	if got := testutil.ToFloat64(w.c.metrics.judged); got != float64(measured) {
		t.Errorf("fledge_judged_looks_total = %v, want the %d looks that measured checks", got, measured)
	}
	t.Logf("%d looks from the new template to Succeeded, %d of them judged, %d steps", len(log.since(n)), judged, steps)
}

// stuckRouter's reads hang until their context ends, as a call to an API
// server that accepted the connection and never answers would.
type stuckRouter struct{ traffic.Router }

func (stuckRouter) Weights(ctx context.Context, _ traffic.Target) (traffic.Weights, error) {
	<-ctx.Done()
	return traffic.Weights{}, ctx.Err()
}

// A look that hangs (an API call that never answers) ends at the
// reconcile deadline with an error that says so, and frees its worker:
// the look is retried with backoff instead of holding one of the few
// workers forever.
func TestALookThatHangsEndsAtTheReconcileDeadline(t *testing.T) {
	w := newWorld(t, 1)
	w.addApp("ref")
	key := "ref/web"
	w.run(100, w.phaseIs(v1alpha1.PhaseIdle, ""))
	w.refresh(key)
	w.c.router = stuckRouter{w.c.router}
	w.c.reconcileTimeout = 50 * time.Millisecond
	done := make(chan error, 1)
	go func() {
		_, err := w.c.safeReconcile(context.Background(), key)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "look at ref/web took longer than 50ms") {
			t.Errorf("a hung look: %v, want the reconcile deadline's error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a hung look still holds its worker 30 s after the 50 ms reconcile deadline")
	}
}
