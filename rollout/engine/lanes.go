package engine

import (
	"context"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// The controller's two queues: the Flights' (looks at Flights in flight
// and idle ones), and the adoptions' (take-overs), each with workers of
// its own.

// laneOf is the queue a Flight's look goes to: the adoptions' while it is
// being taken over (no Flight yet, or Initializing: until the Deployment
// is observed paused), else the Flights'. Only a synced cache can say
// there is no Flight: before its namespace has synced (events come
// first), the Flights' queue; joining it queues everything again.
func (c *Controller) laneOf(ns, name string) workqueue.TypedRateLimitingInterface[string] {
	if c.scopes.of(ns) == nil {
		return c.queue
	}
	f, err := c.flightLister.In(ns).Get(name)
	if apierrors.IsNotFound(err) || err == nil && takingOver(f) {
		return c.adoptions
	}
	return c.queue
}

// takingOver reports whether Flight f is being taken over: not yet
// Initialized (Idle comes once the Deployment is observed paused), and
// not being deleted.
func takingOver(f *v1alpha1.Flight) bool {
	return f.DeletionTimestamp == nil && (f.Status.Phase == "" || f.Status.Phase == v1alpha1.PhaseInitializing)
}

func (c *Controller) enqueueObject(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	if f, ok := obj.(*v1alpha1.Flight); ok && takingOver(f) {
		c.adoptions.Add(key) // being taken over: see laneOf
		return
	}
	c.queue.Add(key)
}

// next reconciles the next key of queue q (the Flights' queue or the
// adoptions'); a look due later is queued in the lane the Flight is in
// now.
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
// hand to two workers at once.
type keyLocks struct{ m sync.Map } // key -> *sync.Mutex

func (k *keyLocks) lock(key string) (unlock func()) {
	mu, _ := k.m.LoadOrStore(key, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock
}
