package engine

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgefake "github.com/fledgehq/fledge/rollout/client/clientset/versioned/fake"
	"github.com/fledgehq/fledge/traffic"
)

// theirs are a team's own Deployment and Service that happen to be named
// as fledge names a canary ("shop-canary"): fledge must never scale,
// rewrite or delete them.
func theirs() (*appsv1.Deployment, *corev1.Service) {
	meta := metav1.ObjectMeta{Name: "shop-canary", Namespace: "demo", UID: "theirs", Labels: map[string]string{"app": "shop-canary", LabelManagedBy: "Helm"}}
	d := &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To(int32(3)),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop-canary"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "shop-canary"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "theirs:1"}}}},
	}}
	s := &corev1.Service{ObjectMeta: meta, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "shop-canary"},
		Ports: []corev1.ServicePort{{Name: "http", Port: 9090}}}}
	return d, s
}

// writes lists the API writes a fake clientset saw.
func writes(kube *fake.Clientset) []string {
	var out []string
	for _, a := range kube.Actions() {
		switch a.GetVerb() {
		case "get", "list", "watch":
		default:
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource+" "+name(a))
		}
	}
	return out
}

func name(a k8stesting.Action) string {
	switch a := a.(type) {
	case k8stesting.CreateAction:
		if o, ok := a.GetObject().(metav1.Object); ok {
			return o.GetName()
		}
	case k8stesting.DeleteAction:
		return a.GetName()
	case k8stesting.PatchAction:
		return a.GetName()
	case k8stesting.UpdateAction:
		if o, ok := a.GetObject().(metav1.Object); ok {
			return o.GetName()
		}
	}
	return ""
}

func TestFledgeNeverScalesRewritesOrDeletesACanaryNameItDidNotCreate(t *testing.T) {
	ctx := context.Background()
	for _, taken := range []string{"deployment and service", "service only"} {
		for _, tc := range []struct {
			name   string
			action func(rev string) rollout.Action
			// conflict: the action fails as a conflict (which holds the
			// rollout with the message) instead of doing nothing.
			conflict bool
		}{
			{"scaling the canary down (on opt-in, and at rest)", func(string) rollout.Action { return rollout.ScaleCanaryDown{} }, false},
			{"deleting the canary (on opt-out)", func(string) rollout.Action { return rollout.DeleteCanary{} }, false},
			{"starting a canary", func(rev string) rollout.Action { return rollout.EnsureCanary{Revision: rev} }, true},
		} {
			t.Run(taken+"/"+tc.name, func(t *testing.T) {
				dep, svc := theirs()
				kube := fake.NewClientset(svc)
				if taken != "service only" {
					kube = fake.NewClientset(dep, svc)
				}
				x := &Executor{Kube: kube}
				s, rev := stableSubject(false)
				err := x.apply(ctx, s, tc.action(rev))
				switch {
				case tc.conflict && !errors.Is(err, traffic.ErrConflict):
					t.Fatalf("error %v, want a conflict", err)
				case tc.conflict && !strings.Contains(err.Error(), "demo/shop-canary exists and is not fledge's"):
					t.Errorf("error %q does not name the object", err)
				case !tc.conflict && err != nil:
					t.Fatalf("error %v, want none: someone else's object is simply not fledge's to touch", err)
				}
				if w := writes(kube); len(w) > 0 {
					t.Errorf("writes %v, want none", w)
				}
			})
		}
	}
}

// What fledge made, it still scales down and deletes: by UID.
func TestFledgeScalesDownAndDeletesItsOwnCanary(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewClientset()
	x := &Executor{Kube: kube}
	s, rev := stableSubject(false)
	if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev}); err != nil {
		t.Fatal(err)
	}
	if err := x.apply(ctx, s, rollout.ScaleCanaryDown{}); err != nil {
		t.Fatal(err)
	}
	got, err := kube.AppsV1().Deployments("demo").Get(ctx, "shop-canary", metav1.GetOptions{})
	if err != nil || ptr.Deref(got.Spec.Replicas, 1) != 0 {
		t.Fatalf("after scaling down: %v, %v; want 0 replicas", got, err)
	}
	if err := x.apply(ctx, s, rollout.DeleteCanary{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.AppsV1().Deployments("demo").Get(ctx, "shop-canary", metav1.GetOptions{}); err == nil {
		t.Error("the canary Deployment is still there")
	}
	if _, err := kube.CoreV1().Services("demo").Get(ctx, "shop-canary", metav1.GetOptions{}); err == nil {
		t.Error("the canary Service is still there")
	}
}

// The status write is a merge patch: it changes the fields that changed
// and keeps the rest (e2e/apis shows it conditioned on the
// resourceVersion read, and keeping fields this binary does not know,
// against a real API server; the fake one checks neither).
func TestTheStatusWriteIsConditionedOnTheFlightRead(t *testing.T) {
	ctx := context.Background()
	f := &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "demo", UID: "flight-uid"},
		Status: v1alpha1.FlightStatus{Phase: v1alpha1.PhaseIdle, StableRevision: "r1", Message: "holding"}}
	flights := fledgefake.NewSimpleClientset(f)
	x := &Executor{Kube: fake.NewClientset(), Flights: flights.FledgeV1alpha1()}
	read, err := flights.FledgeV1alpha1().Flights("demo").Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	next := read.Status
	next.Message = "changed"
	s := Subject{Flight: read, Target: traffic.Target{Namespace: "demo", Name: "shop"}}
	written, err := x.Apply(ctx, s, rollout.Decision{Status: next, Actions: []rollout.Action{rollout.ScaleCanaryDown{}}})
	if err != nil {
		t.Fatal(err)
	}
	if written.Status.Message != "changed" || written.Status.StableRevision != "r1" {
		t.Errorf("written %+v: want the message changed and the rest kept", written.Status)
	}
}

// The caches keep neither managedFields nor kubectl's copy of the whole
// object, and everything else as it was.
func TestTheCachesKeepObjectsLean(t *testing.T) {
	d, _ := theirs()
	d.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate}}
	d.Annotations = map[string]string{corev1.LastAppliedConfigAnnotation: strings.Repeat("x", 10000), "fledge.dev/rollout": "standard"}
	out, err := lean(d)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*appsv1.Deployment)
	if len(got.ManagedFields) != 0 || len(got.Annotations) != 1 || got.Annotations["fledge.dev/rollout"] != "standard" || *got.Spec.Replicas != 3 {
		t.Errorf("lean: managedFields %v, annotations %v, replicas %d; want none, only fledge.dev/rollout, 3", got.ManagedFields, got.Annotations, *got.Spec.Replicas)
	}
	if _, err := lean(cache.DeletedFinalStateUnknown{Key: "demo/shop"}); err != nil {
		t.Errorf("a tombstone: %v", err)
	}
}

// A cached ReplicaSet keeps, of its pod template, its hash and its
// containers' images; read through the cache, it is the same revision and
// the same images as the whole one. A resync's second pass changes
// nothing, and an annotation of the same name on a whole template (copied
// from a Deployment, say) is not believed.
func TestTheCachesKeepReplicaSetsLean(t *testing.T) {
	d, _ := theirs()
	d.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox:1", Command: []string{"true"}}}
	d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: strings.Repeat("x", 1000)}}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-1", Namespace: "demo", Annotations: map[string]string{annotationTemplateHash: "not-it", deploymentRevision: "2"}},
		Spec:       appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](3), Template: *d.Spec.Template.DeepCopy()},
	}
	rs.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = "abc"
	wantHash, wantImages := TemplateHash(d.Spec.Template), Images(d.Spec.Template)
	out, err := lean(rs)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*appsv1.ReplicaSet)
	if h := replicaSetTemplateHash(got); h != wantHash {
		t.Errorf("hash of the cached ReplicaSet %q, want its template's %q", h, wantHash)
	}
	if diff := cmp.Diff(wantImages, Images(got.Spec.Template)); diff != "" {
		t.Errorf("images of the cached ReplicaSet (-want +got):\n%s", diff)
	}
	if got.Spec.Template.Spec.Containers[0].Env != nil || got.Spec.Template.Labels != nil || got.Annotations[deploymentRevision] != "2" || *got.Spec.Replicas != 3 {
		t.Errorf("cached ReplicaSet %+v: want its template lean, its revision and replicas kept", got)
	}
	annotations := got.Annotations
	again, _ := lean(got)
	if again := again.(*appsv1.ReplicaSet); replicaSetTemplateHash(again) != wantHash || reflect.ValueOf(again.Annotations).UnsafePointer() != reflect.ValueOf(annotations).UnsafePointer() {
		t.Errorf("a second pass changed the cached ReplicaSet")
	}
}
