package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// A blue/green preview reached by a host of its own is a Service of that
// name made with the canary's, selecting the canary's pods alone; scaling
// the canary down removes it.
func TestAPreviewHostIsAServiceOfTheCanarysPodsRemovedWithThem(t *testing.T) {
	ctx := context.Background()
	s, rev := stableSubject(false)
	s.PreviewHost = "shop-preview"
	kube := fake.NewClientset()
	x := &Executor{Kube: kube}
	if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev}); err != nil {
		t.Fatal(err)
	}
	canary, err := kube.CoreV1().Services("demo").Get(ctx, "shop-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	preview, err := kube.CoreV1().Services("demo").Get(ctx, "shop-preview", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(preview.Spec.Selector, canary.Spec.Selector) || !cmp.Equal(preview.Spec.Ports, canary.Spec.Ports) || !ownedBy(preview, s.Flight) {
		t.Errorf("preview Service %+v: want the canary's selector and ports, owned by the Flight", preview)
	}
	if err := x.apply(ctx, s, rollout.ScaleCanaryDown{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Services("demo").Get(ctx, "shop-preview", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the preview Service after the canary scaled down: %v, want gone", err)
	}
}

// A preview host someone else's Service holds stops the canary before
// anything is made for it, and their Service is never written or removed.
func TestAPreviewHostTakenBySomeoneElseCreatesNothing(t *testing.T) {
	ctx := context.Background()
	s, rev := stableSubject(false)
	s.PreviewHost = "shop-preview"
	_, svc := theirs()
	svc.Name = "shop-preview"
	kube := fake.NewClientset(svc)
	x := &Executor{Kube: kube}
	err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev})
	if !errors.Is(err, traffic.ErrConflict) || !strings.Contains(err.Error(), "demo/shop-preview exists and is not fledge's") || !strings.Contains(err.Error(), "preview's host") {
		t.Errorf("starting the canary: %v, want a conflict naming the preview's host", err)
	}
	for _, a := range []rollout.Action{rollout.ScaleCanaryDown{}, rollout.DeleteCanary{}} {
		if err := x.apply(ctx, s, a); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	if w := writes(kube); len(w) > 0 {
		t.Errorf("writes %v, want none", w)
	}
}

// A preview host that names the app's own Service or one fledge makes for
// it is refused, nothing made; an earlier plan's preview host goes when a
// canary of a plan without it is ensured.
func TestAPreviewHostOfFledgesOwnNamesIsRefusedAndAStaleOneGoes(t *testing.T) {
	ctx := context.Background()
	for _, host := range []string{"shop", "shop-canary", "shop-stable", "shop-baseline", "shop-mirror"} {
		s, rev := stableSubject(false)
		s.PreviewHost = host
		kube := fake.NewClientset()
		err := (&Executor{Kube: kube}).apply(ctx, s, rollout.EnsureCanary{Revision: rev})
		if !errors.Is(err, traffic.ErrConflict) || !strings.Contains(err.Error(), "preview's host "+host) {
			t.Errorf("preview host %s: %v, want a conflict naming it", host, err)
		}
		if w := writes(kube); len(w) > 0 {
			t.Errorf("preview host %s: writes %v, want none", host, w)
		}
	}
	s, rev := stableSubject(false)
	s.PreviewHost = "shop-preview"
	kube := fake.NewClientset()
	x := &Executor{Kube: kube}
	if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev}); err != nil {
		t.Fatal(err)
	}
	s.PreviewHost, s.StalePreviewHost = "", "shop-preview"
	if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Services("demo").Get(ctx, "shop-preview", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("an earlier plan's preview Service: %v, want gone", err)
	}
}

// The routing target names fledge's baseline and comparator Services only
// while the status has them: a team's destination of such a name is
// otherwise no share of fledge's.
func TestTheTargetNamesTheBaselineAndComparatorOnlyWhileTheStatusHasThem(t *testing.T) {
	f := &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "demo"}, Spec: v1alpha1.FlightSpec{Host: "shop", StableService: "shop"}}
	if tg := targetOf(f); tg.Baseline != "" || tg.Comparator != "" {
		t.Errorf("plain canary: baseline %q, comparator %q; want neither", tg.Baseline, tg.Comparator)
	}
	next := &v1alpha1.FlightStatus{Baseline: rollout.BaselineFresh}
	if tg := targetOf(f, next); tg.Baseline != "shop-baseline" {
		t.Errorf("a decision planning a fresh baseline: baseline %q, want shop-baseline", tg.Baseline)
	}
	f.Status.Cohorts = []v1alpha1.CohortStage{{Name: "mirror", Mirror: 20, Compared: true}}
	if tg := targetOf(f); tg.Comparator != "shop-mirror" || tg.Baseline != "" {
		t.Errorf("a compared mirror: comparator %q, baseline %q; want shop-mirror alone", tg.Comparator, tg.Baseline)
	}
}
