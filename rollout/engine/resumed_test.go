package engine

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgefake "github.com/fledgehq/fledge/rollout/client/clientset/versioned/fake"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/traffictest"
)

// An unpaused read is fledge's own doing when its last write of the
// Deployment's spec.paused was a resume, or a pause the read predates (the
// cache trails the write); read unpaused from after a pause, someone else
// resumed it.
func TestAnUnpausedReadIsOursOnlyAsOurLastPauseWriteExplains(t *testing.T) {
	read := func(rv string) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: rv}}
	}
	written := func(rv string, paused bool) *appsv1.Deployment {
		d := read(rv)
		d.Spec.Paused = paused
		return d
	}
	var o ownPauses
	if o.explains(read("100")) {
		t.Error("no write, yet an unpaused read is explained")
	}
	o.wrote(written("105", true))
	if !o.explains(read("100")) {
		t.Error("a read at 100 is not explained by the pause written at 105")
	}
	for _, rv := range []string{"105", "110", "not-a-number"} {
		if o.explains(read(rv)) {
			t.Errorf("a read at %s is explained by the pause written at 105", rv)
		}
	}
	o.wrote(written("120", false))
	if !o.explains(read("130")) {
		t.Error("a read after fledge's own resume is not explained by it")
	}
	o.forget("shop/web")
	if o.explains(read("1")) {
		t.Error("a forgotten write still explains")
	}
}

// fledge pauses and resumes as its own field manager, so that its writes of
// spec.paused are told apart from anyone else's.
func TestThePausePatchIsFledges(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "7"}}
	kube := fake.NewClientset(d)
	x := &Executor{Kube: kube}
	if err := x.apply(context.Background(), Subject{Deployment: d, Target: traffic.Target{Namespace: "shop", Name: "web"}}, rollout.SetStablePaused{Paused: true}); err != nil {
		t.Fatal(err)
	}
	var patches int
	for _, a := range kube.Actions() {
		if p, ok := a.(k8stesting.PatchActionImpl); ok {
			patches++
			if p.PatchOptions.FieldManager != traffic.FieldManager {
				t.Errorf("the pause patch's field manager is %q, want %q", p.PatchOptions.FieldManager, traffic.FieldManager)
			}
		}
	}
	if patches != 1 {
		t.Errorf("%d patches, want 1", patches)
	}
	if !x.pauses.explains(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "6"}}) {
		t.Error("the pause written is not remembered")
	}
}

// Someone's change of the images of fledge's canary Deployment is said
// (the canary is not its revision's until it runs them again), and the
// next EnsureCanary puts its template back; a canary as fledge made it is
// left alone.
func TestAChangedCanaryIsSaidAndPutBack(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewClientset()
	x := &Executor{Kube: kube}
	s, rev := stableSubject(false)
	if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev}); err != nil {
		t.Fatal(err)
	}
	canary, err := kube.AppsV1().Deployments("demo").Get(ctx, "shop-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := Images(canary.Spec.Template)
	if got := imagesChanged(Images(canary.Spec.Template), want); got != "" {
		t.Errorf("a canary as made is said to be changed: %s", got)
	}
	kube.ClearActions()
	if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev}); err != nil {
		t.Fatal(err)
	}
	for _, v := range verbs(kube) {
		if v != "get deployments" && v != "get services" {
			t.Errorf("a look at a canary as made wrote: %s", v)
		}
	}

	canary.Spec.Template.Spec.Containers[0].Image = "shop:evil" // kubectl set image deployment/shop-canary
	if _, err := kube.AppsV1().Deployments("demo").Update(ctx, canary, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := imagesChanged(Images(canary.Spec.Template), want); !strings.Contains(got, "shop:evil, not its revision's shop:v2") {
		t.Errorf("imagesChanged = %q", got)
	}
	if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev}); err != nil {
		t.Fatal(err)
	}
	back, err := kube.AppsV1().Deployments("demo").Get(ctx, "shop-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := back.Spec.Template.Spec.Containers[0].Image; img != "shop:v2" {
		t.Errorf("the canary runs %s after EnsureCanary, want shop:v2 back", img)
	}
}

// A Deployment is mixed while a ReplicaSet other than its newest has or is
// to have pods; a paused one whose newest ReplicaSet has all its replicas,
// available, is settled on it even with a template not rolled out yet.
func TestMixedAndSettledOnTheNewestReplicaSet(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "d1"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(2)), Paused: true}}
	rs := func(name string, spec, status, available int32) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop",
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
			Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(spec)}, Status: appsv1.ReplicaSetStatus{Replicas: status, AvailableReplicas: available}}
	}
	newest := rs("web-1", 2, 2, 2)
	someoneElses := rs("other", 3, 3, 3)
	someoneElses.OwnerReferences = nil
	for _, c := range []struct {
		name string
		sets []*appsv1.ReplicaSet
		want bool
	}{
		{"the newest alone", []*appsv1.ReplicaSet{newest}, false},
		{"an older one scaled to zero", []*appsv1.ReplicaSet{rs("web-0", 0, 0, 0), newest}, false},
		{"an older one to be scaled up", []*appsv1.ReplicaSet{rs("web-0", 1, 0, 0), newest}, true},
		{"an older one whose pods are going", []*appsv1.ReplicaSet{rs("web-0", 0, 1, 1), newest}, true},
		{"a ReplicaSet of another owner", []*appsv1.ReplicaSet{someoneElses, newest}, false},
	} {
		if got := mixed(d, newest, c.sets); got != c.want {
			t.Errorf("%s: mixed = %t, want %t", c.name, got, c.want)
		}
	}
	if !replicaSetSettled(d, newest) {
		t.Error("the newest ReplicaSet with 2 of 2 available is not settled")
	}
	if replicaSetSettled(d, rs("web-1", 2, 2, 1)) || replicaSetSettled(d, rs("web-1", 1, 1, 1)) {
		t.Error("a ReplicaSet short of available pods, or of replicas, is settled")
	}
}

// A canary someone changed is observed not ready however ready its pods
// are: they are not its revision's. As made, the same canary is ready.
func TestAChangedCanaryIsNotReadyHoweverReadyItsPods(t *testing.T) {
	s, rev := stableSubject(false)
	owner := metav1.NewControllerRef(s.Flight, v1alpha1.FlightResource.GroupVersion().WithKind("Flight"))
	canary := CanaryDeployment(s.Deployment, s.Stable.Spec.Selector, rev, *owner)
	canary.Spec.Template.Spec.Containers[0].Image = "shop:evil" // kubectl set image deployment/shop-canary
	canary.Generation = 2
	canary.Status = appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2, AvailableReplicas: 2}
	c := startedController(t, s.Deployment, canary, CanaryService(s.Stable, canary, *owner))
	target := s.Target
	target.Owner = owner
	for _, images := range [][]v1alpha1.ContainerImage{{{Container: "shop", Image: "shop:v2"}}, {{Container: "shop", Image: "shop:evil"}}} {
		st := &v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing, CanaryRevision: rev, CanaryImages: images}
		o := c.observe(t.Context(), s.Deployment, target, st, &rollout.Policy{})
		if changed := images[0].Image != "shop:evil"; o.CanaryReady == changed || (o.CanaryChanged != "") != changed {
			t.Errorf("the revision's image %s, the canary's shop:evil, its pods ready: observed ready %t, changed %q", images[0].Image, o.CanaryReady, o.CanaryChanged)
		}
	}
}

// A canary that serves or is ready to, whose Service is missing (deleted,
// or its create failed) or points elsewhere, is observed not ready however
// ready its pods: the mesh cannot reach them. While its pods come up (its
// Deployment and Service made at once, the cache seeing one first) a
// missing Service is not a change.
func TestACanaryWhoseServiceIsGoneOrChangedIsNotReady(t *testing.T) {
	s, rev := stableSubject(false)
	owner := metav1.NewControllerRef(s.Flight, v1alpha1.FlightResource.GroupVersion().WithKind("Flight"))
	canary := CanaryDeployment(s.Deployment, s.Stable.Spec.Selector, rev, *owner)
	canary.Generation = 1
	canary.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2, AvailableReplicas: 2}
	svc := CanaryService(s.Stable, canary, *owner)
	elsewhere := svc.DeepCopy()
	elsewhere.Spec.Selector = map[string]string{"app": "shop"} // stable's pods
	images := Images(canary.Spec.Template)
	for _, tc := range []struct {
		name    string
		svc     *corev1.Service
		step    int32
		changed string
	}{
		{"as made", svc, 0, ""},
		{"deleted", nil, 0, "its Service demo/shop-canary is missing"},
		{"pointed at stable's pods", elsewhere, 0, "someone changed the selector of its Service demo/shop-canary to app=shop, not its pods' "},
		{"never made, the canary's pods ready", nil, -1, "its Service demo/shop-canary is missing"},
		{"not yet made, while the canary's pods come up", nil, -1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			canary := canary.DeepCopy()
			if tc.name == "not yet made, while the canary's pods come up" {
				canary.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2}
			}
			objs := []runtime.Object{s.Deployment, canary}
			if tc.svc != nil {
				objs = append(objs, tc.svc)
			}
			c := startedController(t, objs...)
			target := s.Target
			target.Owner = owner
			st := &v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing, Step: tc.step, CanaryRevision: rev, CanaryImages: images}
			o := c.observe(t.Context(), s.Deployment, target, st, &rollout.Policy{})
			if tc.changed == "" {
				// Ready as its pods are (those coming up are not).
				if ready := canary.Status.AvailableReplicas == 2; o.CanaryChanged != "" || o.CanaryReady != ready {
					t.Errorf("changed %q, ready %t: want unchanged and ready %t", o.CanaryChanged, o.CanaryReady, ready)
				}
				return
			}
			if !strings.Contains(o.CanaryChanged, tc.changed) || o.CanaryReady || o.CanaryAvailable != 0 {
				t.Errorf("changed %q, ready %t, %d available: want %q, not ready, none available", o.CanaryChanged, o.CanaryReady, o.CanaryAvailable, tc.changed)
			}
		})
	}
}

// A fresh baseline's Service is part of its readiness too: missing, the
// baseline is not ready, and its trouble says why.
func TestABaselineWhoseServiceIsMissingIsNotReady(t *testing.T) {
	s, rev := stableSubject(false)
	owner := metav1.NewControllerRef(s.Flight, v1alpha1.FlightResource.GroupVersion().WithKind("Flight"))
	canary := CanaryDeployment(s.Deployment, s.Stable.Spec.Selector, rev, *owner)
	baseline, err := BaselineDeployment(s.Deployment, s.Deployment.Spec.Template, s.Stable.Spec.Selector, "stable-rev", *owner)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*appsv1.Deployment{canary, baseline} {
		d.Generation = 1
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2, AvailableReplicas: 2}
	}
	for _, withService := range []bool{true, false} {
		objs := []runtime.Object{s.Deployment, canary, CanaryService(s.Stable, canary, *owner), baseline}
		if withService {
			objs = append(objs, CanaryService(s.Stable, baseline, *owner))
		}
		c := startedController(t, objs...)
		target := s.Target
		target.Owner = owner
		st := &v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing, Step: 0, Baseline: rollout.BaselineFresh, CanaryRevision: rev, StableRevision: "stable-rev", CanaryImages: Images(canary.Spec.Template)}
		o := c.observe(t.Context(), s.Deployment, target, st, &rollout.Policy{Baseline: rollout.BaselineFresh})
		missing := strings.Contains(o.BaselineTrouble, "its Service demo/shop-baseline is missing")
		if o.BaselineReady != withService || o.BaselineAvailable == 0 == withService || missing == withService || !o.CanaryReady {
			t.Errorf("baseline Service made %t: baseline ready %t, %d available, trouble %q; canary ready %t", withService, o.BaselineReady, o.BaselineAvailable, o.BaselineTrouble, o.CanaryReady)
		}
	}
}

// startedController is an engine over namespace demo holding objs, its
// caches filled.
func startedController(t *testing.T, objs ...runtime.Object) *Controller {
	t.Helper()
	c := NewController(ControllerConfig{Kube: fake.NewClientset(objs...), Fledge: fledgefake.NewSimpleClientset(), Router: traffictest.NewRouter(), Policies: policyMap(nil),
		Namespaces: []string{"demo"}, Logger: slog.New(slog.DiscardHandler), Metrics: NewMetrics(prometheus.NewRegistry())})
	if err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return c
}
