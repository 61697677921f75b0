package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// stableSubject is the Flight "shop" of namespace demo, its Deployment at
// revision hash of its template, and the user's Service "shop".
func stableSubject(direct bool) (Subject, string) {
	f := &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "demo", UID: types.UID("flight-uid")}}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "demo"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "shop", "tier": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "shop", Image: "shop:v2"}}},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "demo"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "shop"},
			Ports:    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	s := Subject{Flight: f, Deployment: d, Stable: svc, StableDirect: direct,
		Target: traffic.Target{Namespace: "demo", Name: "shop", Host: "shop", Stable: "shop", Canary: "shop-canary"}}
	return s, TemplateHash(d.Spec.Template)
}

func TestACanaryComesWithAStableServiceOnlyWhenTheLoadAsksForIt(t *testing.T) {
	ctx := context.Background()
	for _, direct := range []bool{false, true} {
		kube := fake.NewClientset()
		x := &Executor{Kube: kube}
		s, rev := stableSubject(direct)
		if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev}); err != nil {
			t.Fatal(err)
		}
		got, err := kube.CoreV1().Services("demo").Get(ctx, "shop-stable", metav1.GetOptions{})
		if !direct {
			if !apierrors.IsNotFound(err) {
				t.Errorf("without stableUrl: shop-stable %v, %v; want none (an idle app costs no ClusterIP)", got, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("with stableUrl: %v", err)
		}
		if got.Spec.Selector["app"] != "shop" || len(got.Spec.Selector) != 1 {
			t.Errorf("selector %v, want exactly the user's Service's (app=shop)", got.Spec.Selector)
		}
		if len(got.Spec.Ports) != 1 || got.Spec.Ports[0].Port != 80 || got.Spec.Ports[0].TargetPort.IntValue() != 8080 {
			t.Errorf("ports %+v, want the user's Service's", got.Spec.Ports)
		}
		if !ownedBy(got, s.Flight) {
			t.Errorf("labels %v, owners %+v: want fledge's label and a controller reference to the Flight", got.Labels, got.OwnerReferences)
		}
		// The canary's pods are relabelled away from that selector.
		canary, err := kube.AppsV1().Deployments("demo").Get(ctx, "shop-canary", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if canary.Spec.Template.Labels["app"] == "shop" {
			t.Errorf("canary pod labels %v: the stable Service would select them", canary.Spec.Template.Labels)
		}
		// Idempotent: asked again, nothing changes.
		if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev}); err != nil {
			t.Fatalf("again: %v", err)
		}

		// It goes with the canary.
		if err := x.apply(ctx, s, rollout.DeleteCanary{}); err != nil {
			t.Fatal(err)
		}
		if _, err := kube.CoreV1().Services("demo").Get(ctx, "shop-stable", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("after DeleteCanary: %v, want shop-stable deleted", err)
		}
	}
}

func TestAStableServiceNameTakenBySomeoneElseHoldsAndChangesNothing(t *testing.T) {
	ctx := context.Background()
	theirs := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-stable", Namespace: "demo", Labels: map[string]string{"team": "payments"}},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "other"}, Ports: []corev1.ServicePort{{Port: 9090}}},
	}
	kube := fake.NewClientset(theirs)
	x := &Executor{Kube: kube}
	s, rev := stableSubject(true)

	err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev})
	if !errors.Is(err, traffic.ErrConflict) || !strings.Contains(err.Error(), "demo/shop-stable exists and is not fledge's") || !strings.Contains(err.Error(), "stableUrl") {
		t.Fatalf("error %v: want a conflict naming the Service and why it is needed", err)
	}
	// A conflict from EnsureCanary holds the Flight with that message
	// (the controller feeds it to Decide as a routing error).
	var r routeConflicts
	wrapped := errors.Join(errors.New("flight demo/shop: EnsureCanary("+rev+")"), err)
	r.record("demo/shop", []rollout.Action{rollout.EnsureCanary{Revision: rev}}, wrapped, t0)
	if got := r.get("demo/shop", t0); !strings.Contains(got, "not fledge's") {
		t.Errorf("routing error %q, want the conflict's message", got)
	}
	got, _ := kube.CoreV1().Services("demo").Get(ctx, "shop-stable", metav1.GetOptions{})
	if got.Spec.Selector["app"] != "other" || got.Spec.Ports[0].Port != 9090 {
		t.Errorf("their Service was changed: %+v", got.Spec)
	}
	if _, err := kube.AppsV1().Deployments("demo").Get(ctx, "shop-canary", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("canary Deployment: %v, want none created while the name is taken", err)
	}
	// Nor is it deleted with the canary.
	if err := x.apply(ctx, s, rollout.DeleteCanary{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Services("demo").Get(ctx, "shop-stable", metav1.GetOptions{}); err != nil {
		t.Errorf("their Service after DeleteCanary: %v, want it kept", err)
	}
}
