package engine

import (
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// ownReady reports whether one of fledge's own Deployments (a canary, a
// baseline, the previous revision's pods, a comparator) runs its
// template on all its replicas, all available, and how many of its pods
// are available and of its template (none while another template still
// has pods).
//
// The Deployment's status says so once the Deployment controller has
// written it. Its ReplicaSets say so sooner: the ReplicaSet controller
// writes a ReplicaSet's ready and available counts as its pods come up,
// while the Deployment controller copies them into the Deployment only on
// its next sync of it. Under a burst that sync waits in its rate-limited
// queue: the Deployment controller's first update of a Deployment it has
// just started rolling conflicts, and is retried at 10 a second after a
// burst of 100 (measured at 200 rollouts at once: every canary retried
// once, their readiness spread over 12-23 s). So either source is taken,
// whichever says it first; neither is trusted beyond what it has observed.
func (c *Controller) ownReady(d *appsv1.Deployment) (ready bool, available int32) {
	ready, available = DeploymentSettled(d), availableOfTemplate(d)
	if ready {
		return ready, available
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return ready, available
	}
	sets, _ := c.replicaSets.In(d.Namespace).List(sel)
	rsReady, rsAvailable := replicaSetsReady(d, sets)
	return rsReady, max(available, rsAvailable)
}

// replicaSetsReady reads from Deployment d's ReplicaSets (any of the
// namespace's, in any order) whether the one of d's template has all of
// d's replicas, all available, with every other ReplicaSet of d at no
// pods; and how many of its pods are available when no other template has
// pods. A ReplicaSet whose controller has not observed its spec says
// nothing.
func replicaSetsReady(d *appsv1.Deployment, sets []*appsv1.ReplicaSet) (bool, int32) {
	want := ptr.Deref(d.Spec.Replicas, 1)
	hash := TemplateHash(d.Spec.Template)
	var current *appsv1.ReplicaSet
	for _, rs := range sets {
		if !metav1.IsControlledBy(rs, d) {
			continue
		}
		if current == nil && replicaSetTemplateHash(rs) == hash {
			current = rs
			continue
		}
		if rs.Status.Replicas > 0 || ptr.Deref(rs.Spec.Replicas, 1) > 0 {
			return false, 0 // another template still has pods, or is to
		}
	}
	if current == nil || current.Status.ObservedGeneration < current.Generation {
		return false, 0
	}
	s := current.Status
	ready := want > 0 && ptr.Deref(current.Spec.Replicas, 1) == want && s.Replicas == want && s.AvailableReplicas == want
	return ready, s.AvailableReplicas
}

// onReplicaSet looks again at the Flight whose pods a ReplicaSet runs
// (fledge labels its own pods with their Flight) when its pod counts
// change: that is when one of fledge's Deployments becomes ready
// (ownReady). Every other ReplicaSet is ignored at the cost of one label
// lookup.
func (c *Controller) onReplicaSet(old, cur any) {
	rs, ok := cur.(*appsv1.ReplicaSet)
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
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			c.onReplicaSet(nil, obj)
		},
	})
}
