package engine

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/client-go/tools/cache"

	"github.com/fledgehq/fledge/rollout"
)

// What wakes a Flight: the informer events that queue a look at it.

// onAutoscaler looks again at the Flight of the Deployment an autoscaler
// targets, or of the app whose canary or baseline it targets (which holds
// that Flight).
func (c *Controller) onAutoscaler(obj any) {
	h, ok := object[*autoscalingv2.HorizontalPodAutoscaler](obj)
	if !ok {
		return
	}
	name, ok := targetDeployment(h)
	if !ok {
		return
	}
	c.queue.Add(h.Namespace + "/" + name)
	for _, suffix := range ownSuffixes {
		if app, cut := strings.CutSuffix(name, suffix); cut && app != "" {
			c.queue.Add(h.Namespace + "/" + app)
		}
	}
}

// onDeployment enqueues opted-in Deployments, and canaries' owners.
func (c *Controller) onDeployment(obj any) {
	d, ok := object[*appsv1.Deployment](obj)
	if !ok {
		return
	}
	if name := d.Labels[LabelFlight]; name != "" {
		c.queue.Add(d.Namespace + "/" + name)
		return
	}
	if _, opted := d.Annotations[rollout.AnnotationRollout]; opted {
		c.laneOf(d.Namespace, d.Name).Add(d.Namespace + "/" + d.Name)
	}
}

// onReplicaSet looks again at the Flight whose pods a ReplicaSet runs
// (fledge labels its own pods with their Flight) when its pod counts
// change: that is when one of fledge's Deployments becomes ready
// (ownReady). Every other ReplicaSet is ignored at the cost of one label
// lookup.
func (c *Controller) onReplicaSet(old, cur any) {
	rs, ok := object[*appsv1.ReplicaSet](cur)
	if !ok {
		return
	}
	name := rs.Labels[LabelFlight]
	if name == "" {
		return
	}
	if was, ok := old.(*appsv1.ReplicaSet); ok && sameCounts(was, rs) {
		return
	}
	c.queue.Add(rs.Namespace + "/" + name)
}

// sameCounts reports whether two versions of a ReplicaSet have the same
// spec generation and pod counts (a resync, or a change of labels or
// annotations only).
func sameCounts(a, b *appsv1.ReplicaSet) bool {
	x, y := a.Status, b.Status
	return a.Generation == b.Generation && x.ObservedGeneration == y.ObservedGeneration &&
		x.Replicas == y.Replicas && x.ReadyReplicas == y.ReadyReplicas && x.AvailableReplicas == y.AvailableReplicas
}

// replicaSetHandler is onReplicaSet for an informer: updates, and deletes
// (an older template's ReplicaSet deleted with pods). A ReplicaSet made
// has no pods yet; those it makes come as updates.
func (c *Controller) replicaSetHandler() cache.ResourceEventHandler {
	return c.recovering("replicasets", cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) {},
		UpdateFunc: c.onReplicaSet,
		DeleteFunc: func(obj any) { c.onReplicaSet(nil, obj) },
	})
}

// object is an informer event's object as T, from a delete's tombstone
// too (the last state known of an object whose delete the watch missed).
func object[T any](obj any) (T, bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	t, ok := obj.(T)
	return t, ok
}
