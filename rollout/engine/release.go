package engine

// Giving a Deployment back: on opt-out, on deletion, and for every
// Flight before an uninstall.

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// FinalizerRelease holds a Flight until fledge has released what it
// routes: without it, deleting a Deployment would let the garbage collector
// remove the Flight and its canary while a team's VirtualService still
// sent the canary a share of the traffic.
const FinalizerRelease = "fledge.dev/release"

// release gives an opted-out (or deleted) Deployment its plain routing
// back, then lets the Flight go. reset says the Flight was deleted while
// its Deployment stays opted in (rollout.Observed.Reset).
func (c *Controller) release(ctx context.Context, f *v1alpha1.Flight, d *appsv1.Deployment, reset bool) (time.Duration, error) {
	in := rollout.Input{Now: c.clock.Now(), Status: f.Status, Observed: rollout.Observed{OptedOut: true, Reset: reset}, Policy: &rollout.Policy{}}
	s := Subject{Flight: f, Deployment: d, Target: targetOf(f), PreviewHost: previewHost(&f.Status)}
	if d != nil && d.DeletionTimestamp != nil {
		s.Deployment = nil // being deleted: nothing to unpause
	}
	if _, err := c.exec.Apply(ctx, s, rollout.Decide(in)); err != nil {
		return 0, err
	}
	if err := c.dropFinalizer(ctx, f); err != nil {
		return 0, err
	}
	c.metrics.forget(f.Namespace, f.Name)
	c.exec.own.forget(f.Namespace + "/" + f.Name)
	c.exec.pauses.forget(f.Namespace + "/" + f.Name)
	c.log.Info("released", "flight", f.Namespace+"/"+f.Name)
	return 0, nil
}

// ReleaseAll gives every Deployment with a Flight back, as opting out
// does (plain routing, canary deleted, Deployment unpaused, Flight and its
// finalizer gone): the way out before fledge is uninstalled, so that no
// Deployment stays paused and no Flight blocks its namespace's deletion.
// The Deployments keep their opt-in annotation: an engine started again
// takes them over again. It needs the caches (Start), and should run with
// no other engine acting (hold the Lease). It returns every Flight it could
// not release, with why.
func (c *Controller) ReleaseAll(ctx context.Context) error {
	flights, err := c.flightLister.List(labels.Everything())
	if err != nil {
		return err
	}
	var errs []error
	for _, cached := range flights {
		f := cached.DeepCopy()
		d, err := c.deployments.In(f.Namespace).Get(f.Name)
		if err != nil {
			d = nil // gone: nothing to unpause
		}
		if _, err := c.release(ctx, f, d, false); err != nil {
			errs = append(errs, fmt.Errorf("flight %s/%s: %w", f.Namespace, f.Name, err))
		}
	}
	c.log.Info("released every Flight", "flights", len(flights), "failed", len(errs))
	return errors.Join(errs...)
}

// dropFinalizer removes FinalizerRelease, guarded by a test operation so
// that a concurrent change of the list is not overwritten.
func (c *Controller) dropFinalizer(ctx context.Context, f *v1alpha1.Flight) error {
	for i, name := range f.Finalizers {
		if name != FinalizerRelease {
			continue
		}
		path := fmt.Sprintf("/metadata/finalizers/%d", i)
		patch := fmt.Sprintf(`[{"op":"test","path":%q,"value":%q},{"op":"remove","path":%q}]`, path, FinalizerRelease, path)
		_, err := c.flights.Flights(f.Namespace).Patch(ctx, f.Name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("flight %s/%s: remove finalizer: %w", f.Namespace, f.Name, err)
		}
	}
	return nil
}
