package engine

import (
	"context"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// The controller's three queues, each with workers of its own: the
// Flights' in flight (a revision being rolled out), the Flights' at rest
// (their looks, and the start of a new revision), and the adoptions'
// (take-overs). A rollout under way is not queued behind other Flights'
// starts: when 200 Deployments change at once, each canary gets its first
// weight once it is ready, not once all 200 have started (in one queue,
// in order, the first weights all waited for the last start). Nor does a
// start wait behind the looks judging rollouts in flight.

// laneOf is the queue a Flight's look goes to: the adoptions' while it is
// being taken over (no Flight yet, or Initializing: until the Deployment
// is observed paused), the Flights' in flight while a revision is rolled
// out, else the Flights' at rest. Only a synced cache can say there is no
// Flight: before its namespace has synced (events come first), the
// Flights' queue; joining it queues everything again.
func (c *Controller) laneOf(ns, name string) workqueue.TypedRateLimitingInterface[string] {
	if c.scopes.of(ns) == nil {
		return c.queue
	}
	f, err := c.flightLister.In(ns).Get(name)
	switch {
	case apierrors.IsNotFound(err) || err == nil && takingOver(f):
		return c.adoptions
	case err == nil && !inFlight(f):
		return c.resting
	}
	return c.queue
}

// enqueue queues a look at Flight key in its lane.
func (c *Controller) enqueue(key string) {
	if ns, name, err := cache.SplitMetaNamespaceKey(key); err == nil {
		c.laneOf(ns, name).Add(key)
	}
}

// takingOver reports whether Flight f is being taken over: not yet
// Initialized (Idle comes once the Deployment is observed paused), and
// not being deleted.
func takingOver(f *v1alpha1.Flight) bool {
	return f.DeletionTimestamp == nil && (f.Status.Phase == "" || f.Status.Phase == v1alpha1.PhaseInitializing)
}

// inFlight reports whether Flight f rolls a revision out (or back), or is
// being deleted (released).
func inFlight(f *v1alpha1.Flight) bool {
	switch f.Status.Phase {
	case v1alpha1.PhaseProgressing, v1alpha1.PhasePaused, v1alpha1.PhasePromoting, v1alpha1.PhaseRollingBack:
		return true
	}
	return f.DeletionTimestamp != nil
}

func (c *Controller) enqueueObject(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	if f, ok := obj.(*v1alpha1.Flight); ok {
		switch {
		case takingOver(f):
			c.adoptions.Add(key) // being taken over: see laneOf
		case inFlight(f):
			c.queue.Add(key)
		default:
			c.resting.Add(key)
		}
		return
	}
	c.queue.Add(key)
}

// next reconciles the next key of queue q (one of the three lanes); a
// look due later is queued in the lane the Flight is in now.
func (c *Controller) next(ctx context.Context, q workqueue.TypedRateLimitingInterface[string]) bool {
	key, quit := q.Get()
	if quit {
		return false
	}
	defer q.Done(key)
	unlock := c.keys.lock(key)
	began := c.clock.Now()
	after, err := c.safeReconcile(ctx, key)
	c.metrics.reconciled(c.clock.Since(began), err)
	unlock()
	switch {
	case err != nil:
		c.log.Error("reconcile failed", "flight", key, "err", err)
		q.AddRateLimited(key)
	case after > 0:
		q.Forget(key)
		if ns, name, err := cache.SplitMetaNamespaceKey(key); err == nil {
			c.laneOf(ns, name).AddAfter(key, after)
		}
	default:
		q.Forget(key)
	}
	return true
}

// keyLocks serializes the reconciles of one key, which two queues may
// hand to two workers at once (it moved lanes while queued).
type keyLocks struct{ m sync.Map } // key -> *sync.Mutex

func (k *keyLocks) lock(key string) (unlock func()) {
	mu, _ := k.m.LoadOrStore(key, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock
}
