//go:build e2e

package rollout_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// shopRoutes is the VirtualService a team owns for its shop: the mesh
// and a public gateway, beta users to their own Service, a checkout route
// with retries and a timeout that also goes to the stable Service but is
// not fledge's to split, and the route "primary" that fledge splits.
func shopRoutes(ns string) *istionetv1.VirtualService {
	prefix := func(p string) *networkingv1.StringMatch {
		return &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Prefix{Prefix: p}}
	}
	shop := func() *networkingv1.Destination {
		return &networkingv1.Destination{Host: "shop", Port: &networkingv1.PortSelector{Number: 80}}
	}
	return &istionetv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{
			Name: "shop-routes", Namespace: ns,
			Labels:      map[string]string{"team": "shop"},
			Annotations: map[string]string{"example.com/owner": "shop-team"},
		},
		Spec: networkingv1.VirtualService{
			Hosts:    []string{"shop"},
			Gateways: []string{"mesh", "public-gw"},
			Http: []*networkingv1.HTTPRoute{{
				Name: "beta",
				Match: []*networkingv1.HTTPMatchRequest{{Headers: map[string]*networkingv1.StringMatch{
					"x-user-tier": {MatchType: &networkingv1.StringMatch_Exact{Exact: "beta"}},
				}}},
				Route: []*networkingv1.HTTPRouteDestination{{Destination: &networkingv1.Destination{Host: "shop-beta"}}},
			}, {
				Name:    "checkout",
				Match:   []*networkingv1.HTTPMatchRequest{{Uri: prefix("/checkout")}},
				Timeout: durationpb.New(3 * time.Second),
				Retries: &networkingv1.HTTPRetry{Attempts: 3, PerTryTimeout: durationpb.New(time.Second), RetryOn: "5xx,reset,connect-failure"},
				Route:   []*networkingv1.HTTPRouteDestination{{Destination: shop()}},
			}, {
				Name:    "primary",
				Match:   []*networkingv1.HTTPMatchRequest{{Uri: prefix("/")}},
				Timeout: durationpb.New(10 * time.Second),
				Headers: &networkingv1.Headers{Request: &networkingv1.Headers_HeaderOperations{Set: map[string]string{"x-via": "mesh"}}},
				Route: []*networkingv1.HTTPRouteDestination{{
					Destination: shop(),
					Headers:     &networkingv1.Headers{Response: &networkingv1.Headers_HeaderOperations{Add: map[string]string{"x-served-by": "shop"}}},
				}},
			}},
		},
	}
}

const primaryRoute = 2 // index of "primary" in shopRoutes

// A team that routes its host itself hands fledge one route to split; the
// rest of the object is theirs, kept in Git, and any byte fledge leaves
// changed there is drift a GitOps tool reports (or reverts mid-rollout).
func TestOnlyTheNamedRouteOfATeamsVirtualServiceChangesThroughARollout(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, engineOptions{})
	t.Cleanup(func() { dumpOnFailure(t, sb, ns) })

	// The beta route's destination exists, so that the mesh takes the
	// whole VirtualService as written.
	createAnnotatedApp(t, sb, ns, "shop-beta", nil, 0)
	written := shopRoutes(ns)
	if _, err := sb.Istio.NetworkingV1().VirtualServices(ns).Create(ctx, written, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// As the API server stores it: what every comparison is made against.
	stored := sb.StoredVirtualService(t, ns, "shop-routes")
	createAnnotatedApp(t, sb, ns, "shop", map[string]string{
		rollout.AnnotationRollout:        "fast",
		rollout.AnnotationVirtualService: "shop-routes/primary",
	}, 200)
	f := waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
	if f.Spec.VirtualService != "shop-routes" || f.Spec.Route != "primary" {
		t.Fatalf("flight spec routes through %q route %q, want shop-routes route primary", f.Spec.VirtualService, f.Spec.Route)
	}

	// unchanged checks the VirtualService after a rollout has settled.
	unchanged := func(t *testing.T) {
		t.Helper()
		// A terminal status is written just before its last effects (the
		// route's reset among them): give the route a moment to settle,
		// then compare everything.
		_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := sb.Istio.NetworkingV1().VirtualServices(ns).Get(ctx, "shop-routes", metav1.GetOptions{})
			return err == nil && cmp.Equal(written.Spec.Http[primaryRoute].Route, got.Spec.Http[primaryRoute].Route, protocmp.Transform()), nil
		})
		now := sb.StoredVirtualService(t, ns, "shop-routes")
		if diff := cmp.Diff(sandbox.WithoutHTTPRoute(t, stored, primaryRoute), sandbox.WithoutHTTPRoute(t, now, primaryRoute)); diff != "" {
			t.Errorf("outside spec.http[%d].route (-as written +now):\n%s", primaryRoute, diff)
		}
		// The split is undone: the named route is the stable destination
		// alone, as written, not a 100/0 split left behind.
		got, err := sb.Istio.NetworkingV1().VirtualServices(ns).Get(ctx, "shop-routes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(written.Spec.Http[primaryRoute].Route, got.Spec.Http[primaryRoute].Route, protocmp.Transform()); diff != "" {
			t.Errorf("spec.http[%d].route (-as written +now):\n%s", primaryRoute, diff)
		}
		// fledge routes through the team's object and never makes its own.
		if names := virtualServiceNames(t, sb, ns); !slices.Equal(names, []string{"shop-routes"}) {
			t.Errorf("VirtualServices in the namespace: %v, want only the team's shop-routes", names)
		}
	}

	t.Run("after a promotion", func(t *testing.T) {
		before := sb.Mesh.WorkloadCounts(ns, "shop-canary")
		rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
		waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
			return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == rev
		})
		// The canary served through the named route: the split happened,
		// so the comparison below is not of an object fledge never touched.
		if after := sb.Mesh.WorkloadCounts(ns, "shop-canary"); after.Requests == before.Requests {
			t.Fatal("the canary served no request during the rollout")
		}
		unchanged(t)
	})

	t.Run("after a rollback of a faulty revision", func(t *testing.T) {
		before := sb.Mesh.WorkloadCounts(ns, "shop-canary")
		rev := setImage(t, sb, ns, "shop", "example.com/shop:v3", map[string]string{"sandbox.fledge.dev/error-rate": "0.1"})
		waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
			return f.Status.Phase == v1alpha1.PhaseRolledBack && f.Status.RejectedRevision == rev
		})
		if after := sb.Mesh.WorkloadCounts(ns, "shop-canary"); after.Requests == before.Requests {
			t.Fatal("the canary served no request during the rollout")
		}
		unchanged(t)
	})
}
