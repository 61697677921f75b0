package engine

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// A take-over writes the Flight's status once, Idle, and asks the API
// server for nothing it wrote itself: the Deployment is paused in the
// first look, right after the Flight is created, and the looks on the way
// to Idle (routing being made, the pause not observed yet) are not
// written. At 2,000 opt-ins, each status write saved is 2,000 writes.
//
// The same when Kubernetes' Deployment controller has not observed the
// pause yet (its observedGeneration behind the generation the pause made):
// a Deployment paused on its one revision, all replicas available, is
// settled for a take-over, not a Deployment "still rolling out".
func TestATakeOverWritesItsStatusOnce(t *testing.T) {
	for _, lagging := range []bool{false, true} {
		t.Run(map[bool]string{false: "pause observed", true: "pause not yet observed"}[lagging], func(t *testing.T) {
			takeOverOnce(t, lagging)
		})
	}
}

func takeOverOnce(t *testing.T, lagging bool) {
	w := newWorld(t, 1)
	var log lookLog
	log.record(w)
	w.addApp("ref")
	if lagging {
		w.runRounds(1)
		w.frozen["kube-controllers"] = true
		if d := w.deployment("ref/web"); !d.Spec.Paused || d.Status.ObservedGeneration >= d.Generation {
			t.Fatalf("after the first look: paused %t, generation %d observed %d; want paused, not yet observed", d.Spec.Paused, d.Generation, d.Status.ObservedGeneration)
		}
	}
	w.run(100, w.phaseIs(v1alpha1.PhaseIdle, ""))
	if held := w.events.count("ref/web", "Held"); held > 0 {
		t.Errorf("%d Held Events on the way to Idle, want none", held)
	}
	var calls []string
	for _, l := range log.since(0) {
		calls = append(calls, l.api...)
	}
	count := func(call string) int {
		n := 0
		for _, c := range calls {
			if c == call {
				n++
			}
		}
		return n
	}
	if n := count("patch flights/status"); n != 1 {
		t.Errorf("%d status writes to take a Deployment over, want 1 (Idle): calls %q", n, calls)
	}
	if n := count("get flights"); n != 0 {
		t.Errorf("%d GETs of the Flight fledge had just written, want 0: calls %q", n, calls)
	}
	first := log.since(0)[0].api
	if i, j := slices.Index(first, "create flights"), slices.Index(first, "patch deployments"); i < 0 || j < i {
		t.Errorf("the first look's calls %q: want the Flight created, then the Deployment paused", first)
	}
}

// A set-up that takes longer than SetupQuiet (here the pause is never
// observed: the Deployments' watch is stuck) is written from then on, with
// what it waits for.
func TestASlowSetUpIsWrittenAfterSetupQuiet(t *testing.T) {
	w := newWorld(t, 1)
	w.addApp("ref")
	w.runRounds(1) // the Flight created, the Deployment paused
	w.frozen["deployments"] = true
	for w.clock.Since(start) < SetupQuiet-2*tick {
		w.runRounds(1)
		if f := w.flight("ref/web"); f == nil || f.Status.Phase != "" {
			t.Fatalf("at +%s: Flight %v, want it created with its status unwritten", w.clock.Since(start), f)
		}
	}
	for w.clock.Since(start) < SetupQuiet+2*time.Second {
		w.runRounds(1)
	}
	f := w.flight("ref/web")
	if f.Status.Phase != v1alpha1.PhaseInitializing || !strings.Contains(f.Status.Message, "pausing the Deployment") {
		t.Errorf("at +%s: phase %q, message %q; want Initializing, saying it waits for the pause", w.clock.Since(start), f.Status.Phase, f.Status.Message)
	}
}

// A Flight created here and written again before the cache shows it is
// read, on a miss, as last written: a look never decides from the empty
// status it was created with after its Idle was written.
func TestAMissReadsTheFlightAsLastWritten(t *testing.T) {
	var o ownWrites
	now := start
	f := &v1alpha1.Flight{}
	f.Namespace, f.Name, f.ResourceVersion = "ref", "web", "1"
	o.wrote(f, now)
	idle := f.DeepCopy()
	idle.ResourceVersion, idle.Status.Phase = "2", v1alpha1.PhaseIdle
	o.wrote(idle, time.Time{})
	got := o.created("ref/web", now.Add(time.Second))
	if got == nil || got.ResourceVersion != "2" || got.Status.Phase != v1alpha1.PhaseIdle {
		t.Fatalf("read on a miss: %+v, want the Flight as last written (Idle, resourceVersion 2)", got)
	}
	if !o.isLast(idle) || o.isLast(f) {
		t.Error("isLast: want the last write only")
	}
	if got := o.newer("ref/web", idle); got != nil {
		t.Error("once the cache shows it, a read is the cache's")
	}
	if got := o.created("ref/web", now.Add(2*time.Second)); got != nil {
		t.Error("the copy is dropped once the cache showed it")
	}
	if at := o.createdAt("ref/web"); !at.Equal(now) {
		t.Errorf("createdAt = %v, want %v", at, now)
	}
}

// While the cache shows an older version of a Flight than this replica
// last wrote, a read is the Flight as written; once the cache shows that
// version or a later one (another writer's), the cache's. Versions that
// are not etcd's integers do not compare: the cache is believed.
func TestAReadIsTheLastWriteWhileTheCacheIsBehind(t *testing.T) {
	flight := func(version string, phase v1alpha1.Phase) *v1alpha1.Flight {
		f := &v1alpha1.Flight{}
		f.Namespace, f.Name, f.ResourceVersion, f.Status.Phase = "ref", "web", version, phase
		return f
	}
	var o ownWrites
	o.wrote(flight("12", v1alpha1.PhaseProgressing), time.Time{})
	if got := o.newer("ref/web", flight("9", v1alpha1.PhaseIdle)); got == nil || got.ResourceVersion != "12" || got.Status.Phase != v1alpha1.PhaseProgressing {
		t.Fatalf("cache at 9, written 12: read %+v, want the write", got)
	}
	if got := o.newer("ref/web", flight("13", v1alpha1.PhasePaused)); got != nil {
		t.Errorf("cache at 13 (written after this replica's 12): read %+v, want the cache's", got)
	}
	if got := o.newer("ref/web", flight("9", v1alpha1.PhaseIdle)); got != nil {
		t.Errorf("the copy is dropped once the cache showed a later version; read %+v", got)
	}
	o.wrote(flight("a7", v1alpha1.PhaseProgressing), time.Time{})
	if got := o.newer("ref/web", flight("a3", v1alpha1.PhaseIdle)); got != nil {
		t.Errorf("versions that do not compare: read %+v, want the cache's", got)
	}
}

// A rollout goes on while the Flight's watch has not delivered the
// canary's start, written by this replica (in a burst of rollouts the API
// server's watches run seconds behind): its looks read the start as
// written, and none fails on the resourceVersion check deciding the start
// again.
func TestARolloutGoesOnWhileTheFlightCacheIsBehind(t *testing.T) {
	w := newWorld(t, 1)
	w.addApp("ref")
	key := "ref/web"
	w.run(100, w.phaseIs(v1alpha1.PhaseIdle, ""))
	w.setImage("ref", "web:v2")
	w.run(100, func(key string) bool { return w.flight(key).Status.Phase == v1alpha1.PhaseProgressing })
	w.frozen["flights"] = true
	w.run(100, func(key string) bool { return w.flight(key).Status.CanaryWeight > 0 })
	if k := w.flights[key]; k.errors > 0 {
		t.Errorf("%d looks failed while the Flight cache was behind: %q", k.errors, k.errs)
	}
}
