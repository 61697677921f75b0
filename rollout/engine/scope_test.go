package engine

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/util/workqueue"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/fledgehq/fledge/rollout"
	fledgefake "github.com/fledgehq/fledge/rollout/client/clientset/versioned/fake"
)

// optedIn is an opted-in Deployment "web" of namespace ns.
func optedIn(ns string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Annotations: map[string]string{rollout.AnnotationRollout: "standard"}}}
}

// A namespaced engine caches, reads and looks at only the namespaces it
// was given: an opted-in Deployment elsewhere is neither cached nor
// queued, and reads there answer NotFound.
func TestANamespacedEngineSeesOnlyItsNamespaces(t *testing.T) {
	kube := fake.NewClientset(optedIn("shop"), optedIn("cart"), optedIn("other"))
	c := NewController(ControllerConfig{Kube: kube, Fledge: fledgefake.NewSimpleClientset(), Namespaces: []string{"shop", "cart", "shop"}, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !c.HasSynced() {
		t.Fatal("not synced after Start")
	}
	deps, err := c.deployments.List(labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range deps {
		got = append(got, d.Namespace)
	}
	if diff := cmp.Diff([]string{"cart", "shop"}, got); diff != "" {
		t.Errorf("cached Deployments' namespaces (-want +got):\n%s", diff)
	}
	if _, err := c.deployments.In("other").Get("web"); !apierrors.IsNotFound(err) {
		t.Errorf("a Deployment of a namespace fledge does not act in: %v, want NotFound", err)
	}
	var queued []string
	for _, q := range []workqueue.TypedRateLimitingInterface[string]{c.queue, c.adoptions} {
		for q.Len() > 0 {
			key, _ := q.Get()
			queued = append(queued, key)
			q.Done(key)
		}
	}
	// (A key may be in both queues: before its namespace has synced, and
	// again for adoption once it has.)
	if diff := cmp.Diff([]string{"cart/web", "shop/web"}, slices.Compact(slices.Sorted(slices.Values(queued)))); diff != "" {
		t.Errorf("queued (-want +got):\n%s", diff)
	}
	for _, a := range kube.Actions() {
		if a.GetVerb() == "list" || a.GetVerb() == "watch" {
			if ns := a.GetNamespace(); ns != "shop" && ns != "cart" {
				t.Errorf("%s %s in namespace %q: a namespaced engine reads nothing elsewhere", a.GetVerb(), a.GetResource().Resource, ns)
			}
		}
	}
}

// A namespace fledge may not read (its RoleBinding not applied yet) does
// not stop the others: fledge acts where it may, says why it does not act
// there and what would end that, and joins it once it may read there.
func TestANamespaceFledgeMayNotReadYetIsJoinedOnceItMay(t *testing.T) {
	kube := fake.NewClientset(optedIn("shop"), optedIn("cart"))
	var forbidden atomic.Bool
	forbidden.Store(true)
	kube.PrependReactor("list", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() == "cart" && forbidden.Load() {
			return true, nil, apierrors.NewForbidden(a.GetResource().GroupResource(), "", nil)
		}
		return false, nil, nil
	})
	clock := clocktesting.NewFakeClock(t0)
	metrics := NewMetrics(nil)
	c := NewController(ControllerConfig{Kube: kube, Fledge: fledgefake.NewSimpleClientset(), Namespaces: []string{"shop", "cart"}, Clock: clock, Metrics: metrics, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !c.HasSynced() {
		t.Error("a namespace fledge may not read keeps the others from being served")
	}
	why := c.Waiting()["cart"]
	if want := "fledge may not list services in namespace cart: bind the ClusterRole fledge there (kubectl -n cart apply -f deploy/rbac-namespace.yaml)"; why != want {
		t.Errorf("why fledge does not act in cart:\n got %q\nwant %q", why, want)
	}
	if _, err := c.deployments.In("cart").Get("web"); !apierrors.IsNotFound(err) {
		t.Errorf("cart read before fledge may: %v", err)
	}
	if got := testutil.ToFloat64(metrics.namespaces.WithLabelValues("cart")); got != 0 {
		t.Errorf("fledge_namespace_watched{namespace=cart} = %v, want 0", got)
	}

	// A worker takes keys as they come, as Run's would: one taken before
	// cart's caches can be read finds nothing there, so cart/web must be
	// queued again once they can (for adoption: it has no Flight).
	lookedAtInCart := make(chan struct{}, 1)
	go func() {
		for {
			key, shut := c.adoptions.Get()
			if shut {
				return
			}
			if _, err := c.deployments.In("cart").Get("web"); err == nil && key == "cart/web" {
				select {
				case lookedAtInCart <- struct{}{}:
				default:
				}
			}
			c.adoptions.Done(key)
		}
	}()
	defer c.adoptions.ShutDown()
	forbidden.Store(false)
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		if clock.HasWaiters() {
			clock.Step(DefaultNamespaceRetry)
		}
		select {
		case <-lookedAtInCart:
			return true, nil
		default:
			return false, nil
		}
	})
	if err != nil {
		t.Fatalf("cart/web was never looked at with cart's caches readable: %v", err)
	}
	if w := c.Waiting(); len(w) != 0 {
		t.Errorf("still waiting on %v", w)
	}
	if got := testutil.ToFloat64(metrics.namespaces.WithLabelValues("cart")); got != 1 {
		t.Errorf("fledge_namespace_watched{namespace=cart} = %v, want 1", got)
	}
}

// A cluster-wide engine without its ClusterRoleBinding says so, instead of
// waiting for caches that never sync.
func TestAClusterWideEngineWithoutItsBindingSaysSo(t *testing.T) {
	kube := fake.NewClientset()
	kube.PrependReactor("list", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(a.GetResource().GroupResource(), "", nil)
	})
	c := NewController(ControllerConfig{Kube: kube, Fledge: fledgefake.NewSimpleClientset(), Clock: clocktesting.NewFakeClock(t0), Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if c.HasSynced() {
		t.Error("ready, with nothing it may read")
	}
	if why := c.Waiting()[""]; !strings.Contains(why, "cluster-wide") || !strings.Contains(why, "deploy/rbac-cluster.yaml") {
		t.Errorf("why: %q", why)
	}
}
