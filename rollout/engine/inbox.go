package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// API actions reach the decision core through an inbox: Act queues the
// request for its Flight and waits; the Flight's next reconcile hands the
// oldest request to Decide (after an annotation's, if both are there) and,
// once the decision is written, answers it. So an API action is taken at
// the same point in the loop as any other input, under the same status
// fencing, and its answer is the Flight as written.
//
// The inbox is in memory. If the engine dies before answering, the caller
// sees an error and retries with the same request id; the Flight's status
// says whether it was taken.

type actResult struct {
	flight  *v1alpha1.Flight
	outcome *rollout.ActionOutcome
}

type pendingAction struct {
	req  rollout.ActionRequest
	done chan actResult
}

type inbox struct {
	mu sync.Mutex
	q  map[string][]*pendingAction
}

func (b *inbox) push(key string, p *pendingAction) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.q == nil {
		b.q = map[string][]*pendingAction{}
	}
	b.q[key] = append(b.q[key], p)
}

func (b *inbox) peek(key string) *pendingAction {
	b.mu.Lock()
	defer b.mu.Unlock()
	if q := b.q[key]; len(q) > 0 {
		return q[0]
	}
	return nil
}

// done answers p and removes it (if it is still queued).
func (b *inbox) done(key string, p *pendingAction, r actResult) {
	b.remove(key, p)
	p.done <- r // buffered: never blocks
}

func (b *inbox) remove(key string, p *pendingAction) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.q[key]
	for i, x := range q {
		if x == p {
			b.q[key] = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	if len(b.q[key]) == 0 {
		delete(b.q, key)
	}
}

// Act hands a manual action to the Flight's next decision and waits until
// that decision is written. It returns the Flight as written and what
// became of the action. A Flight that does not exist is a Kubernetes
// NotFound. Only the leader's controller runs decisions: call it there.
func (c *Controller) Act(ctx context.Context, namespace, name string, req rollout.ActionRequest) (*v1alpha1.Flight, rollout.ActionOutcome, error) {
	if _, err := c.Flight(namespace, name); err != nil {
		return nil, rollout.ActionOutcome{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	key := namespace + "/" + name
	p := &pendingAction{req: req, done: make(chan actResult, 1)}
	c.inbox.push(key, p)
	c.queue.Add(key)
	select {
	case r := <-p.done:
		return r.flight, *r.outcome, nil
	case <-ctx.Done():
		c.inbox.remove(key, p)
		return nil, rollout.ActionOutcome{}, fmt.Errorf("flight %s: waiting for the decision: %w", key, ctx.Err())
	}
}

// Flight returns a Flight from the cache (a copy), or a NotFound error.
func (c *Controller) Flight(namespace, name string) (*v1alpha1.Flight, error) {
	f, err := c.getFlight(namespace, name)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return nil, apierrors.NewNotFound(v1alpha1.FlightResource.GroupResource(), name)
	}
	return f, nil
}

// Flights lists the cached Flights of a namespace ("" for all), each with
// its Deployment (nil if not cached).
func (c *Controller) Flights(namespace string) ([]*v1alpha1.Flight, []*appsv1.Deployment, error) {
	cached, err := c.flightLister.In(namespace).List(labels.Everything())
	if namespace == "" {
		cached, err = c.flightLister.List(labels.Everything())
	}
	if err != nil {
		return nil, nil, err
	}
	var flights []*v1alpha1.Flight
	var deps []*appsv1.Deployment
	for _, f := range cached {
		d, _ := c.deployments.In(f.Namespace).Get(f.Name)
		flights = append(flights, f.DeepCopy()) // copies: the cache is never mutated
		deps = append(deps, d)
	}
	return flights, deps, nil
}

// Deployment returns the cached Deployment (not to be modified).
func (c *Controller) Deployment(namespace, name string) (*appsv1.Deployment, error) {
	return c.deployments.In(namespace).Get(name)
}
