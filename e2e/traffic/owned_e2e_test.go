//go:build e2e

package traffic_test

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

// teamVirtualService is a VirtualService as a team writes it, for the
// gateway and for sidecars: beta users to their own revision, a legacy
// redirect, and the main route, with retries, a timeout and header rules,
// which fledge splits.
func teamVirtualService(ns string) *istionetv1.VirtualService {
	prefix := func(p string) *networkingv1.StringMatch {
		return &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Prefix{Prefix: p}}
	}
	return &istionetv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-routes", Namespace: ns,
			Labels:      map[string]string{"team": "shop"},
			Annotations: map[string]string{"example.com/owner": "shop-team"},
		},
		Spec: networkingv1.VirtualService{
			Hosts:    []string{"web"},
			Gateways: []string{"mesh", "some-gw"},
			Http: []*networkingv1.HTTPRoute{{
				Name: "beta",
				Match: []*networkingv1.HTTPMatchRequest{{Headers: map[string]*networkingv1.StringMatch{
					"x-user-tier": {MatchType: &networkingv1.StringMatch_Exact{Exact: "beta"}},
				}}},
				Timeout: durationpb.New(2 * time.Second),
				Route:   []*networkingv1.HTTPRouteDestination{{Destination: &networkingv1.Destination{Host: "web-beta"}}},
			}, {
				Name:     "legacy",
				Match:    []*networkingv1.HTTPMatchRequest{{Uri: prefix("/v1/")}},
				Redirect: &networkingv1.HTTPRedirect{Uri: "/v2/", RedirectCode: 308},
			}, {
				Name:    "primary",
				Match:   []*networkingv1.HTTPMatchRequest{{Uri: prefix("/")}},
				Timeout: durationpb.New(10 * time.Second),
				Retries: &networkingv1.HTTPRetry{Attempts: 3, PerTryTimeout: durationpb.New(2 * time.Second), RetryOn: "5xx,reset"},
				Headers: &networkingv1.Headers{Request: &networkingv1.Headers_HeaderOperations{Set: map[string]string{"x-via": "mesh"}}},
				Route: []*networkingv1.HTTPRouteDestination{{
					Destination: &networkingv1.Destination{Host: "web", Port: &networkingv1.PortSelector{Number: 80}},
					Headers:     &networkingv1.Headers{Response: &networkingv1.Headers_HeaderOperations{Add: map[string]string{"x-served-by": "web"}}},
				}},
			}},
		},
	}
}

const primary = 2 // index of the route fledge splits

func TestOnlyTheNamedRouteOfATeamsVirtualServiceChanges(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := t.Context()
	sb.DeployApps(t, ns, sandbox.App{Name: "web", Replicas: 2}, sandbox.App{Name: "web-canary"}, sandbox.App{Name: "web-baseline"}, sandbox.App{Name: "web-beta"})
	written := teamVirtualService(ns)
	if _, err := sb.Istio.NetworkingV1().VirtualServices(ns).Create(ctx, written, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tg := traffic.Target{
		Namespace: ns, Name: "web", Host: "web", Stable: "web", Canary: "web-canary", Baseline: "web-baseline",
		VirtualService: "web-routes", Route: "primary",
	}
	r := istio.New(sb.Istio)
	// The object as the API server stores it: the JSON every comparison
	// below is made on, so that nothing this client cannot see escapes.
	stored := sb.StoredVirtualService(t, ns, "web-routes")

	if err := r.Ensure(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(stored, sb.StoredVirtualService(t, ns, "web-routes")); diff != "" {
		t.Fatalf("Ensure wrote to the team's VirtualService (-before +after):\n%s", diff)
	}

	t.Run("SetWeights changes the destinations of the named route and nothing else", func(t *testing.T) {
		if err := r.SetWeights(ctx, tg, traffic.Weights{Stable: 80, Canary: 20}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(sandbox.WithoutHTTPRoute(t, stored, primary), sandbox.WithoutHTTPRoute(t, sb.StoredVirtualService(t, ns, "web-routes"), primary)); diff != "" {
			t.Errorf("outside spec.http[%d].route (-before +after):\n%s", primary, diff)
		}
		stable := proto.Clone(written.Spec.Http[primary].Route[0]).(*networkingv1.HTTPRouteDestination)
		stable.Weight = 80
		canary := proto.Clone(stable).(*networkingv1.HTTPRouteDestination)
		canary.Destination.Host, canary.Weight = "web-canary", 20
		want := written.DeepCopy()
		want.Spec.Http[primary].Route = []*networkingv1.HTTPRouteDestination{stable, canary}
		wantSpec(t, sb, want)
	})

	t.Run("the mesh splits the main route 80/20 and routes the others as written", func(t *testing.T) {
		waitApplied(t, sb, tg)
		const n = 2000
		got := route(t, sb, ns, n, mesh.Request{Host: "web"})
		if got["web"]+got["web-canary"] != n {
			t.Fatalf("main route reached %v, want only web and web-canary", got)
		}
		share := float64(got["web-canary"]) / n
		if math.Abs(share-0.20) > 0.04 {
			t.Errorf("canary share of the main route = %.3f, want 0.20 ± 0.04", share)
		}
		wantOtherRoutes(t, sb, ns)
	})

	t.Run("a baseline gets one more copy of the stable destination, and the mesh splits the main route three ways", func(t *testing.T) {
		if err := r.SetWeights(ctx, tg, traffic.Weights{Stable: 80, Canary: 10, Baseline: 10}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(sandbox.WithoutHTTPRoute(t, stored, primary), sandbox.WithoutHTTPRoute(t, sb.StoredVirtualService(t, ns, "web-routes"), primary)); diff != "" {
			t.Errorf("outside spec.http[%d].route (-before +after):\n%s", primary, diff)
		}
		stable := proto.Clone(written.Spec.Http[primary].Route[0]).(*networkingv1.HTTPRouteDestination)
		stable.Weight = 80
		canary := proto.Clone(stable).(*networkingv1.HTTPRouteDestination)
		canary.Destination.Host, canary.Weight = "web-canary", 10
		baseline := proto.Clone(stable).(*networkingv1.HTTPRouteDestination)
		baseline.Destination.Host, baseline.Weight = "web-baseline", 10
		want := written.DeepCopy()
		want.Spec.Http[primary].Route = []*networkingv1.HTTPRouteDestination{stable, canary, baseline}
		wantSpec(t, sb, want)

		waitApplied(t, sb, tg)
		const n = 2000
		got := route(t, sb, ns, n, mesh.Request{Host: "web"})
		if got["web"]+got["web-canary"]+got["web-baseline"] != n {
			t.Fatalf("main route reached %v, want only web, web-canary and web-baseline", got)
		}
		for svc, want := range map[string]float64{"web": 0.8, "web-canary": 0.1, "web-baseline": 0.1} {
			if share := float64(got[svc]) / n; math.Abs(share-want) > 0.04 {
				t.Errorf("%s's share of the main route = %.3f, want %.2f ± 0.04", svc, share, want)
			}
		}
		wantOtherRoutes(t, sb, ns)
	})

	t.Run("a cohort and a sticky cookie get copies of the main route before it", func(t *testing.T) {
		cohort := traffic.Cohort{Name: "staff", Header: "x-staff", Exact: "1"}
		sticky := traffic.Sticky{Cookie: "fledge-canary", Value: "web-2", MaxAge: 60}
		if err := r.SetWeights(ctx, tg, traffic.Weights{Stable: 80, Canary: 20, Cohort: cohort, Sticky: sticky}); err != nil {
			t.Fatal(err)
		}
		// The canary copy of the main route's stable destination, as
		// SetWeights writes it (weight w, the sticky cookie or not).
		main := written.Spec.Http[primary]
		canary := func(w int32, setCookie bool) *networkingv1.HTTPRouteDestination {
			d := proto.Clone(main.Route[0]).(*networkingv1.HTTPRouteDestination)
			d.Destination.Host, d.Weight = "web-canary", w
			if setCookie {
				d.Headers.Response.Add["set-cookie"] = sticky.SetCookie()
			}
			return d
		}
		// A match route: the main route, matching one more header, to
		// the canary alone.
		matchRoute := func(name, header string, m *networkingv1.StringMatch, dest *networkingv1.HTTPRouteDestination) *networkingv1.HTTPRoute {
			c := proto.Clone(main).(*networkingv1.HTTPRoute)
			c.Name, c.Route = name, []*networkingv1.HTTPRouteDestination{dest}
			c.Match[0].Headers = map[string]*networkingv1.StringMatch{header: m}
			return c
		}
		stable := proto.Clone(main.Route[0]).(*networkingv1.HTTPRouteDestination)
		stable.Weight = 80
		want := written.DeepCopy()
		// No baseline share: the baseline's destination is gone.
		want.Spec.Http[primary].Route = []*networkingv1.HTTPRouteDestination{stable, canary(20, true)}
		want.Spec.Http = slices.Insert(want.Spec.Http, primary,
			matchRoute("primary-fledge-cohort-staff", "x-staff", &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Exact{Exact: "1"}}, canary(0, false)),
			matchRoute("primary-fledge-sticky", "cookie", &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Regex{Regex: traffic.CookieRegex("fledge-canary", "web-2")}}, canary(0, true)))
		wantSpec(t, sb, want)

		waitApplied(t, sb, tg)
		if got := route(t, sb, ns, 200, mesh.Request{Host: "web", Headers: map[string]string{"x-staff": "1"}}); got["web-canary"] != 200 {
			t.Errorf("the cohort reached %v, want only web-canary", got)
		}
		if got := route(t, sb, ns, 200, mesh.Request{Host: "web", Headers: map[string]string{"cookie": "fledge-canary=web-2"}}); got["web-canary"] != 200 {
			t.Errorf("requests with the sticky cookie reached %v, want only web-canary", got)
		}
		wantOtherRoutes(t, sb, ns)
	})

	t.Run("Release puts the team's VirtualService back exactly as written", func(t *testing.T) {
		if err := r.Release(ctx, tg); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(sandbox.ComparableObject(stored), sandbox.ComparableObject(sb.StoredVirtualService(t, ns, "web-routes"))); diff != "" {
			t.Errorf("after Release (-as written +now):\n%s", diff)
		}
		wantSpec(t, sb, written)
		waitApplied(t, sb, tg)
		if got := route(t, sb, ns, 500, mesh.Request{Host: "web"}); got["web"] != 500 {
			t.Errorf("main route reached %v after Release, want only web", got)
		}
		wantOtherRoutes(t, sb, ns)
	})
}

// wantOtherRoutes checks that the routes before the split one still work:
// beta users reach their revision, legacy paths are redirected.
func wantOtherRoutes(t *testing.T, sb *sandbox.Sandbox, ns string) {
	t.Helper()
	beta := route(t, sb, ns, 200, mesh.Request{Host: "web", Headers: map[string]string{"x-user-tier": "beta"}})
	if beta["web-beta"] != 200 {
		t.Errorf("beta users reached %v, want only web-beta", beta)
	}
	if resp := sb.Mesh.Route(mesh.Request{Client: "probe", SourceNamespace: ns, Host: "web", Path: "/v1/cart"}); resp.Code != 308 {
		t.Errorf("a legacy path got %d %s, want the 308 redirect", resp.Code, resp.Flags)
	}
}

// wantSpec compares the stored spec, decoded, with want's.
func wantSpec(t *testing.T, sb *sandbox.Sandbox, want *istionetv1.VirtualService) {
	t.Helper()
	got, err := sb.Istio.NetworkingV1().VirtualServices(want.Namespace).Get(t.Context(), want.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&want.Spec, &got.Spec, protocmp.Transform()); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
}
