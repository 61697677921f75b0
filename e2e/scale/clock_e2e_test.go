//go:build e2e

package scale_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/client/informers/externalversions"
	"github.com/fledgehq/fledge/rollout/engine"
)

// clock watches every Flight and notes when each first reached a state,
// to the watch's latency (milliseconds), without LISTing thousands of
// Flights in a loop (which at 2,000 takes seconds a round, and would both
// load the API server and blur the times).
type clock struct {
	mu       sync.Mutex
	idle     map[string]time.Time // first seen Idle
	started  map[string]time.Time // first seen Progressing (the canary's start written)
	weighted map[string]time.Time // first seen with canary weight
	done     map[string]time.Time // first seen Succeeded with its canary as stable
	phases   map[string]v1alpha1.Phase
	// trail is, by key, each version of the Flight the watch showed
	// until it was first Idle: "phase: message", the take-over's writes.
	trail map[string][]string
	// stable is each Flight's stable revision as last seen, and
	// stableBefore a copy taken by again: a Flight seen Succeeded is done
	// only with another stable revision than that.
	stable, stableBefore map[string]string
}

// again starts the clock over for another round of rollouts of the same
// Flights: started, weighted and done are noted afresh.
func (c *clock) again() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started, c.weighted, c.done = map[string]time.Time{}, map[string]time.Time{}, map[string]time.Time{}
	c.stableBefore = maps.Clone(c.stable)
}

func watchFlights(b *testing.B, sb *sandbox.Sandbox) *clock {
	c := &clock{idle: map[string]time.Time{}, started: map[string]time.Time{}, weighted: map[string]time.Time{}, done: map[string]time.Time{}, phases: map[string]v1alpha1.Phase{}, trail: map[string][]string{}, stable: map[string]string{}}
	factory := externalversions.NewSharedInformerFactory(sb.Fledge, 0)
	informer := factory.Fledge().V1alpha1().Flights().Informer()
	note := func(obj any) {
		f, ok := obj.(*v1alpha1.Flight)
		if !ok {
			return
		}
		now, key := time.Now(), f.Namespace+"/"+f.Name
		c.mu.Lock()
		defer c.mu.Unlock()
		c.phases[key] = f.Status.Phase
		c.stable[key] = f.Status.StableRevision
		if _, idle := c.idle[key]; !idle {
			v := fmt.Sprintf("%q: %s", f.Status.Phase, f.Status.Message)
			if h := f.Status.Hold; h != nil {
				v += fmt.Sprintf(" (held, %s: %s)", h.Reason, h.Message)
			}
			c.trail[key] = append(c.trail[key], v)
		}
		first := func(m map[string]time.Time) {
			if _, ok := m[key]; !ok {
				m[key] = now
			}
		}
		if f.Status.Phase == v1alpha1.PhaseIdle {
			first(c.idle)
		}
		if f.Status.Phase == v1alpha1.PhaseProgressing {
			first(c.started)
		}
		if f.Status.CanaryWeight > 0 {
			first(c.started)
			first(c.weighted)
		}
		if f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision != "" && f.Status.StableRevision == f.Status.CanaryRevision && f.Status.StableRevision != c.stableBefore[key] {
			first(c.started) // stepped through between two events
			first(c.weighted)
			first(c.done)
		}
	}
	follow(b, informer, factory, note)
	return c
}

// follow calls note with every object informer adds or changes, from
// factory's start until the benchmark ends, and waits for its first sync.
func follow(b *testing.B, informer cache.SharedIndexInformer, factory interface{ Start(<-chan struct{}) }, note func(any)) {
	b.Helper()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: note, UpdateFunc: func(_, obj any) { note(obj) }}); err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	b.Cleanup(func() { close(stop) })
	factory.Start(stop)
	cache.WaitForCacheSync(stop, informer.HasSynced)
}

// wait waits until ok holds of the clock, checking every 100 ms.
func (c *clock) wait(b *testing.B, timeout time.Duration, what string, ok func(c *clock) bool) {
	b.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return ok(c), nil
	})
	if err != nil {
		c.mu.Lock()
		byPhase := map[v1alpha1.Phase]int{}
		for _, p := range c.phases {
			byPhase[p]++
		}
		c.mu.Unlock()
		b.Fatalf("%s: not within %s: %d Flights by phase %v", what, timeout, len(c.phases), byPhase)
	}
}

// since returns the times in m of the keys, from t.
func since(m map[string]time.Time, keys []string, t time.Time) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, k := range keys {
		if at, ok := m[k]; ok {
			out[k] = at.Sub(t)
		}
	}
	return out
}

// sinceEach is since with a start of each key's own.
func sinceEach(m map[string]time.Time, keys []string, from map[string]time.Time) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, k := range keys {
		at, ok := m[k]
		t, known := from[k]
		if ok && known {
			out[k] = at.Sub(t)
		}
	}
	return out
}

// watchPauses watches the Deployments labelled label and notes when each
// was first seen paused.
func watchPauses(b *testing.B, sb *sandbox.Sandbox, label string) func() map[string]time.Time {
	return watchDeployments(b, sb, label, func(d *appsv1.Deployment) (string, bool) {
		return d.Namespace + "/" + d.Name, d.Spec.Paused
	})
}

// watchCanaries notes when each Flight's canary Deployment (labelled with
// its Flight) first had a ready pod of another revision than before's (by
// the Flight's key; nil for canaries made from now on), by the Flight's
// key.
func watchCanaries(b *testing.B, sb *sandbox.Sandbox, before map[string]string) func() map[string]time.Time {
	return watchDeployments(b, sb, engine.LabelFlight, func(d *appsv1.Deployment) (string, bool) {
		key := d.Namespace + "/" + d.Labels[engine.LabelFlight]
		return key, d.Status.ReadyReplicas > 0 && d.Status.ObservedGeneration >= d.Generation && d.Annotations[engine.AnnotationRevision] != before[key]
	})
}

// watchCanaryPods notes when each Flight's canary (of another revision
// than before's) first has a ready pod, as its ReplicaSet says: that is
// when the pod is ready, where the Deployment's status says so only once
// the Deployment controller has synced it again (watchCanaries).
func watchCanaryPods(b *testing.B, sb *sandbox.Sandbox, before map[string]string) func() map[string]time.Time {
	var seen firsts
	factory := informers.NewSharedInformerFactoryWithOptions(sb.Kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = engine.LabelFlight }))
	follow(b, factory.Apps().V1().ReplicaSets().Informer(), factory, func(obj any) {
		rs, ok := obj.(*appsv1.ReplicaSet)
		if !ok {
			return
		}
		if owner := metav1.GetControllerOf(rs); owner == nil || !strings.HasSuffix(owner.Name, engine.CanarySuffix) {
			return
		}
		key := rs.Namespace + "/" + rs.Labels[engine.LabelFlight]
		// The Deployment controller copies the Deployment's annotations,
		// fledge's revision among them, to the ReplicaSet it makes.
		if rs.Status.ReadyReplicas > 0 && rs.Annotations[engine.AnnotationRevision] != before[key] {
			seen.note(key)
		}
	})
	return seen.all
}

// watchDeployments watches the Deployments labelled label and notes when
// each key (keyOf's) was first seen with keyOf's condition.
func watchDeployments(b *testing.B, sb *sandbox.Sandbox, label string, keyOf func(*appsv1.Deployment) (string, bool)) func() map[string]time.Time {
	var seen firsts
	factory := informers.NewSharedInformerFactoryWithOptions(sb.Kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = label }))
	follow(b, factory.Apps().V1().Deployments().Informer(), factory, func(obj any) {
		if d, ok := obj.(*appsv1.Deployment); ok {
			if key, yes := keyOf(d); yes {
				seen.note(key)
			}
		}
	})
	return seen.all
}

// firsts keeps when each key was first noted.
type firsts struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (f *firsts) note(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.at == nil {
		f.at = map[string]time.Time{}
	}
	if _, ok := f.at[key]; !ok {
		f.at[key] = time.Now()
	}
}

// all is a copy of what was noted so far.
func (f *firsts) all() map[string]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.at)
}
