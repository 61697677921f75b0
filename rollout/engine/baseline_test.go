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
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// stableReplicaSet is shop's ReplicaSet of the stable template (image
// shop:v1), as the Deployment controller made it: the template carries
// the pod-template-hash label.
func stableReplicaSet(d *appsv1.Deployment) (*appsv1.ReplicaSet, string) {
	tmpl := *d.Spec.Template.DeepCopy()
	tmpl.Spec.Containers[0].Image = "shop:v1"
	tmpl.Annotations = map[string]string{"sandbox.fledge.dev/latency-ms": "p50=20"}
	rev := TemplateHash(tmpl)
	tmpl.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = "abc123"
	d.UID = "deployment-uid"
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-abc123", Namespace: d.Namespace, Labels: tmpl.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(2)), Selector: d.Spec.Selector, Template: tmpl},
	}, rev
}

// A fresh baseline runs stable's template (read from its ReplicaSet, not
// the Deployment's new template) at the canary's size, and its pods are
// selected by neither the stable Service nor the canary's Deployment and
// Service; a second look changes nothing; deleting the canary deletes it.
func TestAFreshBaselineRunsStablesTemplateApartFromStableAndCanary(t *testing.T) {
	ctx := context.Background()
	s, canaryRev := stableSubject(false)
	rs, stableRev := stableReplicaSet(s.Deployment)
	kube := fake.NewClientset(rs)
	x := &Executor{Kube: kube}
	if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: canaryRev}); err != nil {
		t.Fatal(err)
	}
	if err := x.apply(ctx, s, rollout.EnsureBaseline{Revision: stableRev}); err != nil {
		t.Fatal(err)
	}
	b, err := kube.AppsV1().Deployments("demo").Get(ctx, "shop-baseline", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	canary, err := kube.AppsV1().Deployments("demo").Get(ctx, "shop-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := TemplateHash(b.Spec.Template); got == canaryRev {
		t.Errorf("the baseline runs the canary's template")
	}
	if img := b.Spec.Template.Spec.Containers[0].Image; img != "shop:v1" || b.Annotations[AnnotationRevision] != stableRev {
		t.Errorf("baseline image %s, revision %s; want stable's shop:v1, %s", img, b.Annotations[AnnotationRevision], stableRev)
	}
	if b.Spec.Template.Annotations["sandbox.fledge.dev/latency-ms"] != "p50=20" {
		t.Errorf("baseline template annotations %v, want stable's", b.Spec.Template.Annotations)
	}
	if _, ok := b.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; ok {
		t.Errorf("the baseline's template kept stable's ReplicaSet's pod-template-hash: %v", b.Spec.Template.Labels)
	}
	if ptr.Deref(b.Spec.Replicas, 0) != ptr.Deref(canary.Spec.Replicas, 0) {
		t.Errorf("baseline %d replicas, canary %d: want the same size", ptr.Deref(b.Spec.Replicas, 0), ptr.Deref(canary.Spec.Replicas, 0))
	}
	pods := labels.Set(b.Spec.Template.Labels)
	canarySel, _ := metav1.LabelSelectorAsSelector(canary.Spec.Selector)
	for what, sel := range map[string]labels.Selector{
		"the stable Service": labels.SelectorFromSet(s.Stable.Spec.Selector),
		"the canary":         canarySel,
	} {
		if sel.Matches(pods) {
			t.Errorf("%s (%s) selects the baseline's pods %v", what, sel, pods)
		}
	}
	own, _ := metav1.LabelSelectorAsSelector(b.Spec.Selector)
	if !own.Matches(pods) || own.Matches(labels.Set(canary.Spec.Template.Labels)) {
		t.Errorf("the baseline's selector %s: want its own pods and not the canary's", own)
	}
	svc, err := kube.CoreV1().Services("demo").Get(ctx, "shop-baseline", metav1.GetOptions{})
	if err != nil || !labels.SelectorFromSet(svc.Spec.Selector).Matches(pods) || len(svc.Spec.Ports) != 1 {
		t.Errorf("baseline Service %+v (%v): want one selecting its pods, with stable's ports", svc, err)
	}
	kube.ClearActions()
	if err := x.apply(ctx, s, rollout.EnsureBaseline{Revision: stableRev}); err != nil {
		t.Fatal(err)
	}
	if w := writes(kube); len(w) > 0 {
		t.Errorf("a second look wrote %v, want nothing", w)
	}
	if err := x.apply(ctx, s, rollout.DeleteCanary{}); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		func() error {
			_, err := kube.AppsV1().Deployments("demo").Get(ctx, "shop-baseline", metav1.GetOptions{})
			return err
		}(),
		func() error {
			_, err := kube.CoreV1().Services("demo").Get(ctx, "shop-baseline", metav1.GetOptions{})
			return err
		}(),
	} {
		if !apierrors.IsNotFound(err) {
			t.Errorf("the baseline after DeleteCanary: %v, want gone", err)
		}
	}
}

// Without a ReplicaSet of the stable revision there is nothing to copy:
// a clear error, and nothing created. A baseline's name taken by someone
// else is a conflict: their objects are never written.
func TestABaselineWithNothingToCopyOrWhoseNameIsTakenCreatesNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := stableSubject(false)
	kube := fake.NewClientset()
	err := (&Executor{Kube: kube}).apply(ctx, s, rollout.EnsureBaseline{Revision: "gone123"})
	if err == nil || !strings.Contains(err.Error(), "demo/shop has no ReplicaSet of the stable revision gone123") {
		t.Errorf("a baseline of a revision with no ReplicaSet: %v, want an error naming both", err)
	}
	if w := writes(kube); len(w) > 0 {
		t.Errorf("writes %v, want none", w)
	}

	dep, svc := theirs()
	dep.Name, svc.Name = "shop-baseline", "shop-baseline"
	for _, obj := range []string{"deployment", "service"} {
		s, _ := stableSubject(false)
		rs, rev := stableReplicaSet(s.Deployment)
		kube := fake.NewClientset(rs)
		if obj == "deployment" {
			_, _ = kube.AppsV1().Deployments("demo").Create(ctx, dep, metav1.CreateOptions{})
		} else {
			_, _ = kube.CoreV1().Services("demo").Create(ctx, svc, metav1.CreateOptions{})
		}
		kube.ClearActions()
		err := (&Executor{Kube: kube}).apply(ctx, s, rollout.EnsureBaseline{Revision: rev})
		if !errors.Is(err, traffic.ErrConflict) || !strings.Contains(err.Error(), "demo/shop-baseline exists and is not fledge's") {
			t.Errorf("%s taken: %v, want a conflict naming it", obj, err)
		}
		if w := writes(kube); len(w) > 0 {
			t.Errorf("%s taken: writes %v, want none", obj, w)
		}
		for _, a := range []rollout.Action{rollout.DeleteBaseline{}, rollout.DeleteCanary{}} {
			if err := (&Executor{Kube: kube}).apply(ctx, s, a); err != nil {
				t.Errorf("%s taken: %s: %v", obj, a, err)
			}
		}
		if w := writes(kube); len(w) > 0 {
			t.Errorf("%s taken: deleting fledge's baseline wrote %v, want their object left alone", obj, w)
		}
	}
}

// A template whose labels hold none of the keys the stable Service selects
// on gives no way to tell a baseline's pods from the canary's: refused.
func TestABaselineThatCouldNotBeToldFromTheCanaryIsRefused(t *testing.T) {
	s, _ := stableSubject(false)
	owner := *metav1.NewControllerRef(s.Flight, appsv1.SchemeGroupVersion.WithKind("Deployment"))
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"tier": "web"}}}
	if _, err := BaselineDeployment(s.Deployment, tmpl, s.Stable.Spec.Selector, "r1", owner); err == nil || !strings.Contains(err.Error(), "could not be told from the canary's") {
		t.Errorf("error %v, want a refusal", err)
	}
}

// The comparisons of a revision with a fresh baseline read the baseline's
// workload where they would read stable's; the canary's stays the canary's.
func TestComparisonsReadTheFreshBaselineWhereTheyWouldReadStable(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "demo"}}
	plain := analysisVars(d, "shop", &v1alpha1.FlightStatus{}, &v1alpha1.FlightStatus{})
	fresh := analysisVars(d, "shop", &v1alpha1.FlightStatus{}, &v1alpha1.FlightStatus{Baseline: rollout.BaselineFresh})
	if plain.StableWorkload != "shop" || fresh.StableWorkload != "shop-baseline" || fresh.Workload != "shop-canary" || plain.Workload != "shop-canary" {
		t.Errorf("against stable %+v, against a fresh baseline %+v; want shop and shop-baseline, the canary shop-canary in both", plain, fresh)
	}
}

// A watch after a promotion judges the Deployment's own pods (the promoted
// revision); after a revert, the previous revision's pods are what a
// fix's canary is compared with; and the routing names them in the
// baseline's place while a watch wants them.
func TestAWatchReadsThePromotedPodsAndARevertThePreviousOnes(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "demo"}}
	watching := &v1alpha1.FlightStatus{Watch: &v1alpha1.Watch{State: v1alpha1.WatchWatching}}
	reverted := &v1alpha1.FlightStatus{Watch: &v1alpha1.Watch{State: v1alpha1.WatchReverted}}
	passed := &v1alpha1.FlightStatus{Watch: &v1alpha1.Watch{State: v1alpha1.WatchPassed}}
	if v := analysisVars(d, "shop", watching, watching); v.Workload != "shop" || v.StableWorkload != "shop" {
		t.Errorf("watching: %+v, want the Deployment's workload judged", v)
	}
	if v := analysisVars(d, "shop", reverted, reverted); v.Workload != "shop-canary" || v.StableWorkload != "shop-previous" {
		t.Errorf("reverted: %+v, want a canary compared with shop-previous", v)
	}
	f := &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "demo"}}
	for _, c := range []struct {
		st   *v1alpha1.FlightStatus
		want string
	}{{watching, "shop-previous"}, {reverted, "shop-previous"}, {passed, ""}} {
		f.Status = *c.st
		if got := targetOf(f).Baseline; got != c.want {
			t.Errorf("watch %s: the routing's baseline is %q, want %q", c.st.Watch.State, got, c.want)
		}
	}
}

// Stable's pods pinned to its config take the baseline's slot in the
// routing, but not in the decision that starts a pin while a fresh
// baseline serves: that decision's routing is written with the baseline's
// name (the route has it), the next one's with the pinned pods'.
func TestAConfigPinTakesTheBaselinesSlotOnceTheFreshBaselineIsGone(t *testing.T) {
	f := &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "demo"}}
	pinned := &v1alpha1.FlightStatus{Config: &v1alpha1.ConfigStatus{Pinned: true}}
	f.Status = v1alpha1.FlightStatus{Baseline: rollout.BaselineFresh}
	if got := targetOf(f, pinned).Baseline; got != "shop-baseline" {
		t.Errorf("the decision that pins beside a fresh baseline writes to %q, want shop-baseline", got)
	}
	f.Status = *pinned
	if got := targetOf(f).Baseline; got != "shop-previous" {
		t.Errorf("pinned: the routing's baseline is %q, want shop-previous", got)
	}
	f.Status = v1alpha1.FlightStatus{}
	if got := targetOf(f, pinned).Baseline; got != "shop-previous" {
		t.Errorf("a pin starting without a fresh baseline: %q, want shop-previous", got)
	}
}
