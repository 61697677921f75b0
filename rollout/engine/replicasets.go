package engine

import (
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
