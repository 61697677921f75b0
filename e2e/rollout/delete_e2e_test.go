//go:build e2e

package rollout_test

import (
	"context"
	"testing"
	"time"

	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// Deleting an opted-in Deployment mid-rollout must not leave a team's own
// VirtualService sending a share of traffic to a canary that the garbage
// collector is about to remove: the Flight's finalizer holds it until
// fledge has put the route back to stable alone, even when fledge is down
// at the moment of the deletion (with fledge up, it usually wins the race
// against the garbage collector anyway, which proves nothing).
func TestDeletingTheDeploymentMidRolloutRestoresTheTeamsRoute(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	e := startEngine(t, sb, ns, engineOptions{Policies: `
policies:
  slow:
    steps: [30, 60]
    interval: 60s
    minInterval: 1s
    metrics:
    - {name: success-rate, min: 0.9, minSamples: 10}
`})
	vs := &istionetv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: "shop-routes", Namespace: ns},
		Spec: networkingv1.VirtualService{Hosts: []string{"shop"}, Http: []*networkingv1.HTTPRoute{{
			Name:  "primary",
			Route: []*networkingv1.HTTPRouteDestination{{Destination: &networkingv1.Destination{Host: "shop"}}},
		}}},
	}
	if _, err := sb.Istio.NetworkingV1().VirtualServices(ns).Create(ctx, vs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sb.CreateApp(t, ns, appOf("shop", map[string]string{
		rollout.AnnotationRollout:        "slow",
		rollout.AnnotationVirtualService: "shop-routes/primary",
	}, nil))
	waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
	setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.CanaryWeight == 30 })

	e.Kill()
	if err := sb.Kube.AppsV1().Deployments(ns).Delete(ctx, "shop", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Let the garbage collector act on the Flight before fledge is back:
	// it is then either held by the finalizer or gone.
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		f, err := getFlight(ctx, sb, ns, "shop")
		return apierrors.IsNotFound(err) || err == nil && f.DeletionTimestamp != nil, nil
	})
	if err != nil {
		t.Fatalf("the garbage collector never got to the Flight: %v", err)
	}
	e.Start()
	// The Flight goes only after the release; then the route sends all of
	// the host's traffic to the stable Service again, no canary is left.
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := getFlight(ctx, sb, ns, "shop")
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("flight never went away: %v", err)
	}
	got, err := sb.Istio.NetworkingV1().VirtualServices(ns).Get(ctx, "shop-routes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	route := got.Spec.Http[0].Route
	if len(route) != 1 || route[0].Destination.Host != "shop" {
		t.Fatalf("route %q after the Deployment's deletion: %v, want the stable destination alone", got.Spec.Http[0].Name, route)
	}
	for _, name := range []string{"shop-canary"} {
		if _, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("deployment %s still there (%v)", name, err)
		}
		if _, err := sb.Kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("service %s still there (%v)", name, err)
		}
	}
	// The mesh agrees: nothing is routed to a canary any more.
	if err := sb.WaitMeshRoutes(ctx, ns, "shop-routes", got.ResourceVersion); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if r := sb.Mesh.Route(mesh.Request{Client: "probe", SourceNamespace: ns, Host: "shop", User: string(rune('a' + i%26))}); r.Service == "shop-canary."+ns+".svc.cluster.local" {
			t.Fatalf("request %d routed to the canary after release: %+v", i, r)
		}
	}
}
