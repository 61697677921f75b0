package istio_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned/fake"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

// withBaseline is t with fledge's baseline Service, "web-baseline".
func withBaseline(t traffic.Target) traffic.Target {
	t.Baseline = "web-baseline"
	return t
}

// generatedBaselineVS is generatedVS with a baseline destination, third,
// at weight baseline.
func generatedBaselineVS(stable, canary, baseline int32) *istionetv1.VirtualService {
	vs := generatedVS(stable, canary)
	vs.Spec.Http[0].Route = append(vs.Spec.Http[0].Route, weighted("web-baseline", baseline))
	return vs
}

// A baseline share is a third destination of the generated split route,
// and only of it: a cohort's and a sticky cookie's routes go to the
// canary alone, and the baseline's responses never set the canary's
// cookie. With no baseline share the destination goes.
func TestAGeneratedBaselineIsAThirdDestinationOfTheSplitRouteAlone(t *testing.T) {
	client := fake.NewSimpleClientset()
	r := istio.New(client)
	tg := withBaseline(ownedByFlight())
	pinned := traffic.Sticky{Cookie: "fledge-canary", Value: "web-7d9f", MaxAge: 3600}
	w := traffic.Weights{Stable: 80, Canary: 10, Baseline: 10, Cohort: traffic.Cohort{Name: "beta", Header: "x-tier", Exact: "beta"}, Sticky: pinned}
	if err := r.SetWeights(t.Context(), tg, w); err != nil {
		t.Fatal(err)
	}
	vs := getVS(t, client, "web")
	if n := len(vs.Spec.Http); n != 3 {
		t.Fatalf("%d http routes, want the cohort's, the sticky cookie's and the split", n)
	}
	for _, m := range vs.Spec.Http[:2] {
		if hosts := destinationHosts(m); !slices.Equal(hosts, []string{"web-canary"}) {
			t.Errorf("match route %s goes to %v, want web-canary alone", m.GetName(), hosts)
		}
	}
	canary := weighted("web-canary", 10)
	canary.Headers = &networkingv1.Headers{Response: &networkingv1.Headers_HeaderOperations{Add: map[string]string{"set-cookie": pinned.SetCookie()}}}
	want := []*networkingv1.HTTPRouteDestination{weighted("web", 80), canary, weighted("web-baseline", 10)}
	if split := vs.Spec.Http[2]; split.GetName() != istio.RouteName || !equalDests(split.Route, want) {
		t.Errorf("split route %s goes to %v, want %v", split.GetName(), split.Route, want)
	}
	if got, err := r.Weights(t.Context(), tg); err != nil || got != w {
		t.Errorf("Weights = %+v, %v; want %+v", got, err, w)
	}

	if err := r.SetWeights(t.Context(), tg, traffic.Weights{Stable: 90, Canary: 10}); err != nil {
		t.Fatal(err)
	}
	wantVS(t, generatedVS(90, 10), getVS(t, client, "web"))

	if err := r.SetWeights(t.Context(), tg, traffic.Weights{Stable: 80, Canary: 10, Baseline: 10}); err != nil {
		t.Fatal(err)
	}
	wantVS(t, generatedBaselineVS(80, 10, 10), getVS(t, client, "web"))
	if err := r.Release(t.Context(), tg); err != nil {
		t.Fatal(err)
	}
	if _, err := client.NetworkingV1().VirtualServices("shop").Get(t.Context(), "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after Release: %v, want not found", err)
	}
}

func TestEnsureKeepsAGeneratedBaselineShareAndRepairsAroundIt(t *testing.T) {
	for _, c := range []struct {
		name   string
		stored *istionetv1.VirtualService
		target traffic.Target
		want   *istionetv1.VirtualService
		// readable is set when Weights can read the stored routing as
		// fledge's.
		readable bool
	}{{
		name:     "a three-way split as generated is left alone",
		stored:   generatedBaselineVS(80, 10, 10),
		target:   withBaseline(ownedByFlight()),
		want:     generatedBaselineVS(80, 10, 10),
		readable: true,
	}, {
		name: "retries someone added are removed and the three-way split kept",
		stored: func() *istionetv1.VirtualService {
			vs := generatedBaselineVS(50, 25, 25)
			vs.Spec.Http[0].Retries = &networkingv1.HTTPRetry{Attempts: 5}
			return vs
		}(),
		target: withBaseline(ownedByFlight()),
		want:   generatedBaselineVS(50, 25, 25),
	}, {
		name:   "a baseline destination left at weight zero is removed and the split kept",
		stored: generatedBaselineVS(90, 10, 0),
		target: withBaseline(ownedByFlight()),
		want:   generatedVS(90, 10),
	}, {
		name: "a baseline destination given a subset goes back to the copy fledge writes",
		stored: func() *istionetv1.VirtualService {
			vs := generatedBaselineVS(80, 10, 10)
			vs.Spec.Http[0].Route[2].Destination.Subset = "v1"
			return vs
		}(),
		target: withBaseline(ownedByFlight()),
		want:   generatedBaselineVS(80, 10, 10),
	}, {
		name: "three weights edited into an invalid split go back to all stable",
		stored: func() *istionetv1.VirtualService {
			vs := generatedBaselineVS(80, 10, 10)
			vs.Spec.Http[0].Route[2].Weight = 30
			return vs
		}(),
		target: withBaseline(ownedByFlight()),
		want:   generatedVS(100, 0),
	}, {
		name:   "a baseline destination of a target that names no baseline goes back to all stable",
		stored: generatedBaselineVS(80, 10, 10),
		target: ownedByFlight(),
		want:   generatedVS(100, 0),
	}} {
		t.Run(c.name, func(t *testing.T) {
			client := fake.NewSimpleClientset(c.stored)
			r := istio.New(client)
			if _, err := r.Weights(t.Context(), c.target); (err == nil) != c.readable {
				t.Errorf("Weights: %v, want an error: %v", err, !c.readable)
			}
			if err := r.Ensure(t.Context(), c.target); err != nil {
				t.Fatal(err)
			}
			wantVS(t, c.want, getVS(t, client, "web"))
			want := traffic.Weights{Stable: c.want.Spec.Http[0].Route[0].Weight, Canary: c.want.Spec.Http[0].Route[1].Weight}
			if dests := c.want.Spec.Http[0].Route; len(dests) == 3 {
				want.Baseline = dests[2].Weight
			}
			if got, err := r.Weights(t.Context(), c.target); err != nil || got != want {
				t.Errorf("Weights after Ensure = %+v, %v; want %+v", got, err, want)
			}
		})
	}
}

// A baseline share for a target that names no baseline Service is the
// caller's mistake: refused, naming the target, before anything is read or
// written.
func TestABaselineShareWithoutABaselineServiceIsRefusedAndChangesNothing(t *testing.T) {
	for name, c := range map[string]struct {
		stored *istionetv1.VirtualService
		target traffic.Target
	}{
		"generated":  {generatedVS(90, 10), ownedByFlight()},
		"user-owned": {withRoute(teamRoutes(), 1, weighted("web", 90), weighted("web-canary", 10)), ownedTarget()},
	} {
		t.Run(name, func(t *testing.T) {
			client := fake.NewSimpleClientset(c.stored)
			err := istio.New(client).SetWeights(t.Context(), c.target, traffic.Weights{Stable: 80, Canary: 10, Baseline: 10})
			want := "target shop/web: baseline 10%: the target names no baseline Service"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("SetWeights: %v, want an error saying %q", err, want)
			}
			if errors.Is(err, traffic.ErrConflict) {
				t.Errorf("SetWeights: %v; want a plain error: the call is wrong, not the routing", err)
			}
			if a := client.Actions(); len(a) > 0 {
				t.Errorf("%d calls to the API server (the first a %s), want none", len(a), a[0].GetVerb())
			}
		})
	}
}

func TestABaselineThatIsAnotherServiceOfTheTargetIsRefused(t *testing.T) {
	for name, baseline := range map[string]string{
		"the stable Service, by its full name": "web.shop.svc.cluster.local",
		"the canary Service":                   "web-canary",
	} {
		t.Run(name, func(t *testing.T) {
			client := fake.NewSimpleClientset()
			tg := ownedByFlight()
			tg.Baseline = baseline
			err := istio.New(client).Ensure(t.Context(), tg)
			if err == nil || !strings.Contains(err.Error(), "are the same Service") {
				t.Errorf("Ensure: %v, want an error saying the baseline is another Service of the target", err)
			}
			if a := client.Actions(); len(a) > 0 {
				t.Errorf("%d calls to the API server, want none", len(a))
			}
		})
	}
}

// In a team's VirtualService the baseline destination is one more copy of
// the stable destination, like the canary's (port and header rules, no
// subset), after it; it goes when its share does, and with Release.
func TestUserOwnedBaselineIsACopyOfTheStableDestination(t *testing.T) {
	ctx := t.Context()
	stableAt := func(w int32) *networkingv1.HTTPRouteDestination {
		d := proto.Clone(teamRoutes().Spec.Http[1].Route[0]).(*networkingv1.HTTPRouteDestination)
		d.Weight = w
		return d
	}
	copyAt := func(host string, w int32) *networkingv1.HTTPRouteDestination {
		d := stableAt(w)
		d.Destination.Host, d.Destination.Subset = host, ""
		return d
	}
	client := fake.NewSimpleClientset(teamRoutes())
	r := istio.New(client)
	tg := withBaseline(ownedTarget())
	if err := r.Ensure(ctx, tg); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		w    traffic.Weights
		want []*networkingv1.HTTPRouteDestination
	}{
		{traffic.Weights{Stable: 80, Canary: 10, Baseline: 10}, []*networkingv1.HTTPRouteDestination{stableAt(80), copyAt("web-canary", 10), copyAt("web-baseline", 10)}},
		{traffic.Weights{Canary: 50, Baseline: 50}, []*networkingv1.HTTPRouteDestination{stableAt(0), copyAt("web-canary", 50), copyAt("web-baseline", 50)}},
		// The canary at zero stays while the baseline has a share: the
		// split's shape is the same at every step.
		{traffic.Weights{Stable: 90, Baseline: 10}, []*networkingv1.HTTPRouteDestination{stableAt(90), copyAt("web-canary", 0), copyAt("web-baseline", 10)}},
		{traffic.Weights{Stable: 90, Canary: 10}, []*networkingv1.HTTPRouteDestination{stableAt(90), copyAt("web-canary", 10)}},
		{traffic.Weights{Stable: 80, Canary: 10, Baseline: 10}, []*networkingv1.HTTPRouteDestination{stableAt(80), copyAt("web-canary", 10), copyAt("web-baseline", 10)}},
		// No canary and no baseline share: the route as the team wrote
		// it, but for the weight on its lone destination.
		{traffic.Weights{Stable: 100}, []*networkingv1.HTTPRouteDestination{stableAt(0)}},
	} {
		if err := r.SetWeights(ctx, tg, step.w); err != nil {
			t.Fatalf("SetWeights(%+v): %v", step.w, err)
		}
		wantSpec(t, client, withRoute(teamRoutes(), 1, step.want...))
		if got, err := r.Weights(ctx, tg); err != nil || got != step.w {
			t.Errorf("Weights after SetWeights(%+v) = %+v, %v", step.w, got, err)
		}
	}

	if err := r.SetWeights(ctx, tg, traffic.Weights{Stable: 80, Canary: 10, Baseline: 10}); err != nil {
		t.Fatal(err)
	}
	if err := r.Release(ctx, tg); err != nil {
		t.Fatal(err)
	}
	wantSpec(t, client, teamRoutes())
}

// A cohort's and a sticky cookie's routes in a team's VirtualService go to
// the canary alone, whatever share the baseline has.
func TestUserOwnedMatchRoutesNeverGoToTheBaseline(t *testing.T) {
	client := fake.NewSimpleClientset(teamRoutes())
	r := istio.New(client)
	tg := withBaseline(ownedTarget())
	w := traffic.Weights{Stable: 80, Canary: 10, Baseline: 10,
		Cohort: traffic.Cohort{Name: "beta", Header: "x-tier", Exact: "beta"},
		Sticky: traffic.Sticky{Cookie: "fledge-canary", Value: "web-7d9f", MaxAge: 3600}}
	if err := r.SetWeights(t.Context(), tg, w); err != nil {
		t.Fatal(err)
	}
	vs := getVS(t, client, "web-routes")
	names := []string{}
	for _, route := range vs.Spec.Http {
		names = append(names, route.GetName())
		if strings.HasPrefix(route.GetName(), "primary-fledge-") && !slices.Equal(destinationHosts(route), []string{"web-canary"}) {
			t.Errorf("match route %s goes to %v, want web-canary alone", route.GetName(), destinationHosts(route))
		}
	}
	if want := []string{"beta", "primary-fledge-cohort-beta", "primary-fledge-sticky", "primary", "legacy"}; !slices.Equal(names, want) {
		t.Fatalf("routes %v, want %v", names, want)
	}
	split := vs.Spec.Http[3]
	if hosts := destinationHosts(split); !slices.Equal(hosts, []string{"web", "web-canary", "web-baseline"}) {
		t.Errorf("the split route goes to %v, want web, web-canary and web-baseline", hosts)
	}
	if set := split.Route[2].GetHeaders().GetResponse().GetAdd()["set-cookie"]; set != "" {
		t.Errorf("the baseline's responses set the cookie %q, want only the canary's to", set)
	}
	if got, err := r.Weights(t.Context(), tg); err != nil || got != w {
		t.Errorf("Weights = %+v, %v; want %+v", got, err, w)
	}
}

func TestUserOwnedWeightsReadsABaselineShare(t *testing.T) {
	for _, c := range []struct {
		name    string
		dests   []*networkingv1.HTTPRouteDestination
		target  traffic.Target
		want    traffic.Weights
		wantErr string
	}{
		{name: "a baseline destination reads as its weight", dests: []*networkingv1.HTTPRouteDestination{weighted("web", 80), weighted("web-canary", 10), weighted("web-baseline", 10)},
			target: withBaseline(ownedTarget()), want: traffic.Weights{Stable: 80, Canary: 10, Baseline: 10}},
		{name: "the baseline host written in full is the same Service", dests: []*networkingv1.HTTPRouteDestination{weighted("web", 50), weighted("web-canary", 25), weighted("web-baseline.shop.svc.cluster.local", 25)},
			target: withBaseline(ownedTarget()), want: traffic.Weights{Stable: 50, Canary: 25, Baseline: 25}},
		{name: "a baseline destination at weight zero reads as no baseline share", dests: []*networkingv1.HTTPRouteDestination{weighted("web", 90), weighted("web-canary", 10), dest("web-baseline")},
			target: withBaseline(ownedTarget()), want: traffic.Weights{Stable: 90, Canary: 10}},
		{name: "three weights that do not add up to 100 are an error", dests: []*networkingv1.HTTPRouteDestination{weighted("web", 80), weighted("web-canary", 10), weighted("web-baseline", 20)},
			target: withBaseline(ownedTarget()), wantErr: `spec.http[0] ("primary").route: weights are not a split`},
		{name: "a baseline destination is another host to a target that names no baseline", dests: []*networkingv1.HTTPRouteDestination{weighted("web", 80), weighted("web-canary", 10), weighted("web-baseline", 10)},
			target: ownedTarget(), wantErr: `spec.http[0] ("primary").route[2].destination.host: "web-baseline" is neither the stable Service web nor the canary Service web-canary`},
		{name: "a host that is none of three names all three", dests: []*networkingv1.HTTPRouteDestination{weighted("web", 90), weighted("web-v2", 10)},
			target: withBaseline(ownedTarget()), wantErr: `"web-v2" is neither the stable Service web, the canary Service web-canary nor the baseline Service web-baseline`},
		{name: "two baseline destinations are a conflict", dests: []*networkingv1.HTTPRouteDestination{weighted("web", 80), weighted("web-canary", 10), weighted("web-baseline", 5), weighted("web-baseline", 5)},
			target: withBaseline(ownedTarget()), wantErr: `spec.http[0] ("primary").route[3].destination.host: a second destination for the baseline Service web-baseline`},
	} {
		t.Run(c.name, func(t *testing.T) {
			vs := userOwned(&networkingv1.HTTPRoute{Name: "primary", Route: c.dests})
			r := istio.New(fake.NewSimpleClientset(vs))
			got, err := r.Weights(t.Context(), c.target)
			if c.wantErr == "" {
				if err != nil || got != c.want {
					t.Fatalf("Weights = %+v, %v; want %+v", got, err, c.want)
				}
				return
			}
			if err == nil {
				// A split the mesh can apply may still be one fledge
				// cannot change: SetWeights says so.
				err = r.SetWeights(t.Context(), c.target, traffic.Weights{Stable: 100})
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Weights = %+v, %v; want an error saying %q", got, err, c.wantErr)
			}
		})
	}
}

func destinationHosts(r *networkingv1.HTTPRoute) []string {
	var hosts []string
	for _, d := range r.GetRoute() {
		hosts = append(hosts, d.GetDestination().GetHost())
	}
	return hosts
}

func equalDests(a, b []*networkingv1.HTTPRouteDestination) bool {
	return slices.EqualFunc(a, b, func(x, y *networkingv1.HTTPRouteDestination) bool { return proto.Equal(x, y) })
}
