package engine

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// A Deployment is paused on its first look only when that stops nothing
// half-way: it runs its own template alone (just created, say, its one
// ReplicaSet still scaling up), never while it rolls between two, and
// never before its first ReplicaSet exists.
func TestOneRevisionIsTheDeploymentsOwnTemplateAlone(t *testing.T) {
	template := func(image string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: image}}}}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "d1", Annotations: map[string]string{deploymentRevision: "2"}},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(int32(3)), Template: template("web:v2")},
	}
	rs := func(image, revision string, replicas int32) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "web-" + revision, Namespace: "shop", Annotations: map[string]string{deploymentRevision: revision},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
			Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(replicas), Template: template(image)},
		}
	}
	for _, c := range []struct {
		name string
		sets []*appsv1.ReplicaSet
		want bool
	}{
		{"its template alone, scaling up", []*appsv1.ReplicaSet{rs("web:v2", "2", 3)}, true},
		{"an older one scaled to zero beside it", []*appsv1.ReplicaSet{rs("web:v1", "1", 0), rs("web:v2", "2", 3)}, true},
		{"rolling from the older one", []*appsv1.ReplicaSet{rs("web:v1", "1", 2), rs("web:v2", "2", 1)}, false},
		{"no ReplicaSet yet", nil, false},
		{"the ReplicaSets' cache behind the Deployment", []*appsv1.ReplicaSet{rs("web:v1", "1", 3)}, false},
		{"a newest ReplicaSet of another template", []*appsv1.ReplicaSet{rs("web:v3", "2", 3)}, false},
	} {
		newest := NewestReplicaSet(d, c.sets)
		if got := oneRevision(d, newest, c.sets, TemplateHash(d.Spec.Template)); got != c.want {
			t.Errorf("%s: oneRevision = %t, want %t", c.name, got, c.want)
		}
	}
}
