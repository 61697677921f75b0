package engine

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
)

// A canary is ready by its ReplicaSets when the one of its template has
// all its replicas available, observed by the ReplicaSet controller, and
// no other template has pods (those would serve the canary's Service too).
func TestReplicaSetsSayACanaryIsReady(t *testing.T) {
	template := func(image string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web-canary"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: image}}},
		}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web-canary", Namespace: "shop", UID: "c1", Generation: 4},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(int32(2)), Template: template("web:v2")},
	}
	other := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "d1"}}
	type counts struct{ spec, replicas, available int32 }
	rs := func(owner *appsv1.Deployment, image string, c counts, observed bool) *appsv1.ReplicaSet {
		tpl := template(image)
		tpl.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = "h-" + image // as the Deployment controller adds it
		gen := int64(3)
		obs := gen
		if !observed {
			obs = gen - 1
		}
		return &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "rs-" + image, Namespace: "shop", Generation: gen,
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(owner, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
			Spec:   appsv1.ReplicaSetSpec{Replicas: ptr.To(c.spec), Template: tpl},
			Status: appsv1.ReplicaSetStatus{Replicas: c.replicas, ReadyReplicas: c.available, AvailableReplicas: c.available, ObservedGeneration: obs},
		}
	}
	full := counts{2, 2, 2}
	for _, c := range []struct {
		name          string
		sets          []*appsv1.ReplicaSet
		ready         bool
		wantAvailable int32
	}{
		{"all of its template available", []*appsv1.ReplicaSet{rs(d, "web:v2", full, true)}, true, 2},
		{"beside an older one at zero", []*appsv1.ReplicaSet{rs(d, "web:v1", counts{}, true), rs(d, "web:v2", full, true)}, true, 2},
		{"one of two available", []*appsv1.ReplicaSet{rs(d, "web:v2", counts{2, 2, 1}, true)}, false, 1},
		{"an older template still has pods", []*appsv1.ReplicaSet{rs(d, "web:v1", counts{0, 1, 1}, true), rs(d, "web:v2", full, true)}, false, 0},
		{"an older template still to scale down", []*appsv1.ReplicaSet{rs(d, "web:v1", counts{1, 0, 0}, true), rs(d, "web:v2", full, true)}, false, 0},
		{"its spec not yet observed", []*appsv1.ReplicaSet{rs(d, "web:v2", full, false)}, false, 0},
		{"sized for another replica count", []*appsv1.ReplicaSet{rs(d, "web:v2", counts{3, 3, 3}, true)}, false, 3},
		{"no ReplicaSet of its template yet", []*appsv1.ReplicaSet{rs(d, "web:v1", full, true)}, false, 0},
		{"its template's, but another Deployment's", []*appsv1.ReplicaSet{rs(other, "web:v2", full, true)}, false, 0},
		{"none", nil, false, 0},
	} {
		// The cache keeps ReplicaSets lean; the answer is the same.
		for _, lean := range []bool{false, true} {
			sets := make([]*appsv1.ReplicaSet, len(c.sets))
			for i, s := range c.sets {
				sets[i] = s.DeepCopy()
				if lean {
					leanReplicaSet(sets[i])
				}
			}
			ready, available := replicaSetsReady(d, sets)
			if ready != c.ready || available != c.wantAvailable {
				t.Errorf("%s (lean %t): replicaSetsReady = %t, %d; want %t, %d", c.name, lean, ready, available, c.ready, c.wantAvailable)
			}
		}
	}
}

// A ReplicaSet's change looks again at its pods' Flight only when its pod
// counts or spec change, and only for pods fledge made.
func TestReplicaSetCountsWakeTheirFlight(t *testing.T) {
	c := &Controller{queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
	defer c.queue.ShutDown()
	base := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-canary-abc", Namespace: "shop", Generation: 2,
		Labels: map[string]string{LabelFlight: "web"}}, Status: appsv1.ReplicaSetStatus{Replicas: 1, ObservedGeneration: 2}}
	with := func(f func(*appsv1.ReplicaSet)) *appsv1.ReplicaSet { r := base.DeepCopy(); f(r); return r }
	for _, c2 := range []struct {
		name string
		cur  *appsv1.ReplicaSet
		want int
	}{
		{"a resync", base.DeepCopy(), 0},
		{"an annotation", with(func(r *appsv1.ReplicaSet) { r.Annotations = map[string]string{"x": "y"} }), 0},
		{"a pod ready", with(func(r *appsv1.ReplicaSet) { r.Status.ReadyReplicas = 1 }), 1},
		{"a pod available", with(func(r *appsv1.ReplicaSet) { r.Status.AvailableReplicas = 1 }), 1},
		{"rescaled", with(func(r *appsv1.ReplicaSet) { r.Generation = 3 }), 1},
		{"not fledge's", with(func(r *appsv1.ReplicaSet) { r.Labels = nil; r.Status.ReadyReplicas = 1 }), 0},
	} {
		c.onReplicaSet(base, c2.cur)
		if got := c.queue.Len(); got != c2.want {
			t.Errorf("%s: %d Flights queued, want %d", c2.name, got, c2.want)
		}
		for c.queue.Len() > 0 {
			k, _ := c.queue.Get()
			if k != "shop/web" {
				t.Errorf("%s: queued %q, want shop/web", c2.name, k)
			}
			c.queue.Done(k)
		}
	}
	// A delete wakes its Flight, from the object or a tombstone of it
	// (the watch missed the delete); a tombstone of something else does
	// not.
	for _, c2 := range []struct {
		name string
		obj  any
		want int
	}{
		{"deleted", base.DeepCopy(), 1},
		{"a tombstone", cache.DeletedFinalStateUnknown{Key: "shop/web-canary-abc", Obj: base.DeepCopy()}, 1},
		{"a tombstone of a Deployment", cache.DeletedFinalStateUnknown{Key: "shop/web", Obj: &appsv1.Deployment{}}, 0},
	} {
		c.onReplicaSet(nil, c2.obj)
		if got := c.queue.Len(); got != c2.want {
			t.Errorf("%s: %d Flights queued, want %d", c2.name, got, c2.want)
		}
		for c.queue.Len() > 0 {
			k, _ := c.queue.Get()
			c.queue.Done(k)
		}
	}
}
