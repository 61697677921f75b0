package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/traffic"
)

// The comparator runs the image's mirror-compare mode with exactly the
// canary and stable alone (on the app's port) and the canary's workload
// to label its counts; its pods are selected by neither the canary nor
// stable, have no sidecar, and its Service takes the app's port; deleting
// the canary deletes it.
func TestTheComparatorCallsCanaryAndStableAloneAndGoesWithTheCanary(t *testing.T) {
	ctx := context.Background()
	s, rev := stableSubject(true)
	kube := fake.NewClientset()
	x := &Executor{Kube: kube, ComparatorImage: "example.com/fledge-loadtester:1"}
	if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev}); err != nil {
		t.Fatal(err)
	}
	if err := x.apply(ctx, s, rollout.EnsureComparator{}); err != nil {
		t.Fatal(err)
	}
	d, err := kube.AppsV1().Deployments("demo").Get(ctx, "shop-mirror", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Spec.Template.Spec.Containers[0]
	wantArgs := []string{"mirror-compare", "--canary=http://shop-canary.demo.svc.cluster.local:80", "--stable=http://shop-stable.demo.svc.cluster.local:80", "--workload=shop-canary", "--namespace=demo"}
	if c.Image != "example.com/fledge-loadtester:1" || !cmp.Equal(c.Args, wantArgs) {
		t.Errorf("comparator %s %v, want the image's %v", c.Image, c.Args, wantArgs)
	}
	if d.Spec.Template.Annotations["sidecar.istio.io/inject"] != "false" {
		t.Error("the comparator's pods get a sidecar: their calls would follow the app's VirtualService, mirror included")
	}
	canary, err := kube.AppsV1().Deployments("demo").Get(ctx, "shop-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods := labels.Set(d.Spec.Template.Labels)
	canarySel, _ := metav1.LabelSelectorAsSelector(canary.Spec.Selector)
	if canarySel.Matches(pods) || labels.SelectorFromSet(s.Stable.Spec.Selector).Matches(pods) {
		t.Errorf("the comparator's pods %v are selected by the canary or stable", pods)
	}
	svc, err := kube.CoreV1().Services("demo").Get(ctx, "shop-mirror", metav1.GetOptions{})
	if err != nil || svc.Spec.Ports[0].Port != 80 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(pods) {
		t.Errorf("comparator Service %+v (%v): want the app's port, selecting the comparator", svc, err)
	}
	kube.ClearActions()
	if err := x.apply(ctx, s, rollout.EnsureComparator{}); err != nil {
		t.Fatal(err)
	}
	if w := writes(kube); len(w) > 0 {
		t.Errorf("a second look wrote %v", w)
	}
	if err := x.apply(ctx, s, rollout.DeleteCanary{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.AppsV1().Deployments("demo").Get(ctx, "shop-mirror", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the comparator after DeleteCanary: %v, want gone", err)
	}
}

// Without an image there is nothing to run: a clear error, nothing made. A
// comparator's name someone else holds is a conflict, never written.
func TestAComparatorWithoutAnImageOrWhoseNameIsTakenMakesNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := stableSubject(true)
	kube := fake.NewClientset()
	err := (&Executor{Kube: kube}).apply(ctx, s, rollout.EnsureComparator{})
	if err == nil || !strings.Contains(err.Error(), "--mirror-compare-image") {
		t.Errorf("no image: %v, want an error naming the flag", err)
	}
	dep, svc := theirs()
	dep.Name, svc.Name = "shop-mirror", "shop-mirror"
	for _, obj := range []string{"deployment", "service"} {
		kube := fake.NewClientset()
		if obj == "deployment" {
			_, _ = kube.AppsV1().Deployments("demo").Create(ctx, dep, metav1.CreateOptions{})
		} else {
			_, _ = kube.CoreV1().Services("demo").Create(ctx, svc, metav1.CreateOptions{})
		}
		kube.ClearActions()
		x := &Executor{Kube: kube, ComparatorImage: "img"}
		err := x.apply(ctx, s, rollout.EnsureComparator{})
		if !errors.Is(err, traffic.ErrConflict) || !strings.Contains(err.Error(), "demo/shop-mirror exists and is not fledge's") {
			t.Errorf("%s taken: %v, want a conflict naming it", obj, err)
		}
		if err := x.apply(ctx, s, rollout.DeleteComparator{}); err != nil {
			t.Error(err)
		}
		if w := writes(kube); len(w) > 0 {
			t.Errorf("%s taken: writes %v, want none", obj, w)
		}
	}
}
