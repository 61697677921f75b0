package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/traffic"
)

// objectCache is an informer cache as a test sets it: what it holds, by
// namespace/name, however far behind the API server.
type objectCache struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
}

func (c *objectCache) reads() *CachedReads {
	return &CachedReads{
		Deployment: func(ns, name string) (*appsv1.Deployment, error) {
			if d, ok := c.deployments[ns+"/"+name]; ok {
				return d, nil
			}
			return nil, apierrors.NewNotFound(appsv1.Resource("deployment"), name)
		},
		Service: func(ns, name string) (*corev1.Service, error) {
			if s, ok := c.services[ns+"/"+name]; ok {
				return s, nil
			}
			return nil, apierrors.NewNotFound(corev1.Resource("service"), name)
		},
	}
}

// fill makes the cache show what the API server holds now.
func (c *objectCache) fill(t *testing.T, kube *fake.Clientset) {
	t.Helper()
	c.deployments, c.services = map[string]*appsv1.Deployment{}, map[string]*corev1.Service{}
	ds, err := kube.AppsV1().Deployments("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range ds.Items {
		c.deployments[ds.Items[i].Namespace+"/"+ds.Items[i].Name] = &ds.Items[i]
	}
	ss, err := kube.CoreV1().Services("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range ss.Items {
		c.services[ss.Items[i].Namespace+"/"+ss.Items[i].Name] = &ss.Items[i]
	}
}

// verbs lists a fake clientset's calls as "verb resource", the cache fill's
// lists left out.
func verbs(kube *fake.Clientset) []string {
	var out []string
	for _, a := range kube.Actions() {
		if a.GetVerb() != "list" {
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
		}
	}
	return out
}

// A rollout's start reads its canary's objects from the cache: it creates
// them without a GET, and once the cache shows them, a look makes no call.
func TestACanaryStartsFromTheCacheWithoutAGet(t *testing.T) {
	ctx := context.Background()
	for _, direct := range []bool{false, true} {
		kube := fake.NewClientset()
		cache := &objectCache{}
		x := &Executor{Kube: kube, Cached: cache.reads()}
		s, rev := stableSubject(direct)
		if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev}); err != nil {
			t.Fatal(err)
		}
		want := []string{"create deployments", "create services"}
		if direct {
			want = append(want, "create services")
		}
		if diff := cmp.Diff(want, verbs(kube), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
			t.Errorf("direct=%v: starting the canary (-want +got):\n%s", direct, diff)
		}
		cache.fill(t, kube)
		kube.ClearActions()
		if err := x.apply(ctx, s, rollout.EnsureCanary{Revision: rev}); err != nil {
			t.Fatal(err)
		}
		if got := verbs(kube); len(got) > 0 {
			t.Errorf("direct=%v: a look at a canary the cache shows made calls %v, want none", direct, got)
		}
	}
}

// A cache behind the API server (it has not seen a team's objects named as
// the canary's yet) costs a failed create and a live read, never a write
// to their objects; and a cache that missed fledge's own canary still
// scales it down and deletes it.
func TestACacheBehindNeverWritesSomeoneElsesObject(t *testing.T) {
	ctx := context.Background()
	for _, taken := range []string{"deployment and service", "service only", "deployment only"} {
		dep, svc := theirs()
		var objs []any
		if taken != "service only" {
			objs = append(objs, dep)
		}
		if taken != "deployment only" {
			objs = append(objs, svc)
		}
		kube := fake.NewClientset()
		for _, o := range objs {
			switch o := o.(type) {
			case *appsv1.Deployment:
				_, _ = kube.AppsV1().Deployments(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *corev1.Service:
				_, _ = kube.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			}
		}
		s, rev := stableSubject(false)
		// A cache that shows their objects: nothing is even tried.
		shows := &objectCache{}
		shows.fill(t, kube)
		kube.ClearActions()
		err := (&Executor{Kube: kube, Cached: shows.reads()}).apply(ctx, s, rollout.EnsureCanary{Revision: rev})
		if !errors.Is(err, traffic.ErrConflict) {
			t.Errorf("%s taken, as the cache shows: starting the canary: %v, want a conflict", taken, err)
		}
		if w := writes(kube); len(w) > 0 {
			t.Errorf("%s taken, as the cache shows: writes %v, want none", taken, w)
		}
		x := &Executor{Kube: kube, Cached: (&objectCache{}).reads()} // an empty cache: behind
		err = x.apply(ctx, s, rollout.EnsureCanary{Revision: rev})
		if !errors.Is(err, traffic.ErrConflict) || !strings.Contains(err.Error(), "demo/shop-canary exists and is not fledge's") {
			t.Errorf("%s taken: starting the canary: %v, want a conflict naming the object", taken, err)
		}
		for _, a := range []rollout.Action{rollout.ScaleCanaryDown{}, rollout.DeleteCanary{}} {
			if err := x.apply(ctx, s, a); err != nil {
				t.Errorf("%s taken: %s: %v, want nothing done", taken, a, err)
			}
		}
		if taken != "service only" {
			got, err := kube.AppsV1().Deployments("demo").Get(ctx, dep.Name, metav1.GetOptions{})
			if err != nil || !cmp.Equal(got.Spec, dep.Spec) || got.UID != dep.UID {
				t.Errorf("%s taken: their Deployment is now %v (%v)", taken, got, err)
			}
		}
		if taken != "deployment only" {
			got, err := kube.CoreV1().Services("demo").Get(ctx, svc.Name, metav1.GetOptions{})
			if err != nil || !cmp.Equal(got.Spec, svc.Spec) || got.UID != svc.UID {
				t.Errorf("%s taken: their Service is now %v (%v)", taken, got, err)
			}
		}
	}

	// fledge's own canary, made behind the cache's back: scaled down and
	// deleted all the same.
	kube := fake.NewClientset()
	s, rev := stableSubject(false)
	if err := (&Executor{Kube: kube}).apply(ctx, s, rollout.EnsureCanary{Revision: rev}); err != nil {
		t.Fatal(err)
	}
	x := &Executor{Kube: kube, Cached: (&objectCache{}).reads()}
	if err := x.apply(ctx, s, rollout.ScaleCanaryDown{}); err != nil {
		t.Fatal(err)
	}
	got, err := kube.AppsV1().Deployments("demo").Get(ctx, "shop-canary", metav1.GetOptions{})
	if err != nil || ptr.Deref(got.Spec.Replicas, 1) != 0 {
		t.Fatalf("scaled down from an empty cache: %v, %v; want 0 replicas", got, err)
	}
	if err := x.apply(ctx, s, rollout.DeleteCanary{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.AppsV1().Deployments("demo").Get(ctx, "shop-canary", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the canary Deployment after its deletion from an empty cache: %v, want gone", err)
	}
	if _, err := kube.CoreV1().Services("demo").Get(ctx, "shop-canary", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the canary Service after its deletion from an empty cache: %v, want gone", err)
	}
}
