package istio_test

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"

	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

// teamRoutes is a VirtualService as a team writes it: gateways, a header
// match before the route fledge splits, retries, a timeout and header
// rules on it, and a redirect after it. The stable destination names a
// port and a subset and sets a response header.
func teamRoutes() *istionetv1.VirtualService {
	vs := userOwned(
		&networkingv1.HTTPRoute{
			Name: "beta",
			Match: []*networkingv1.HTTPMatchRequest{{Headers: map[string]*networkingv1.StringMatch{
				"x-user-tier": {MatchType: &networkingv1.StringMatch_Exact{Exact: "beta"}},
			}}},
			Route: []*networkingv1.HTTPRouteDestination{dest("web-beta")},
		},
		&networkingv1.HTTPRoute{
			Name:    "primary",
			Match:   []*networkingv1.HTTPMatchRequest{{Uri: &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Prefix{Prefix: "/"}}}},
			Timeout: durationpb.New(10 * time.Second),
			Retries: &networkingv1.HTTPRetry{Attempts: 3, PerTryTimeout: durationpb.New(2 * time.Second), RetryOn: "5xx,reset"},
			Headers: &networkingv1.Headers{Request: &networkingv1.Headers_HeaderOperations{Set: map[string]string{"x-via": "mesh"}}},
			Route: []*networkingv1.HTTPRouteDestination{{
				Destination: &networkingv1.Destination{Host: "web", Port: &networkingv1.PortSelector{Number: 8080}, Subset: "v1"},
				Headers:     &networkingv1.Headers{Response: &networkingv1.Headers_HeaderOperations{Add: map[string]string{"x-served-by": "web"}}},
			}},
		},
		&networkingv1.HTTPRoute{
			Name:     "legacy",
			Match:    []*networkingv1.HTTPMatchRequest{{Uri: &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Prefix{Prefix: "/v1/"}}}},
			Redirect: &networkingv1.HTTPRedirect{Uri: "/v2/"},
		},
	)
	vs.Labels = map[string]string{"team": "shop"}
	vs.Annotations = map[string]string{"argocd.argoproj.io/tracking-id": "shop:networking.istio.io/VirtualService:shop/web-routes"}
	vs.Spec.Hosts = []string{"web", "web.example.com"}
	vs.Spec.Gateways = []string{"mesh", "shop/public"}
	return vs
}

// withRoute returns a copy of vs whose http route i has the destinations
// dests: what the owner's object must look like after fledge's change.
func withRoute(vs *istionetv1.VirtualService, i int, dests ...*networkingv1.HTTPRouteDestination) *istionetv1.VirtualService {
	out := vs.DeepCopy()
	out.Spec.Http[i].Route = dests
	return out
}

func TestUserOwnedKeepsEverythingButTheRouteDestinations(t *testing.T) {
	// The stable destination of teamRoutes with a weight, and its copy for
	// the canary: same port and header rule, no subset.
	stableAt := func(w int32) *networkingv1.HTTPRouteDestination {
		d := proto.Clone(teamRoutes().Spec.Http[1].Route[0]).(*networkingv1.HTTPRouteDestination)
		d.Weight = w
		return d
	}
	canaryAt := func(w int32) *networkingv1.HTTPRouteDestination {
		d := stableAt(w)
		d.Destination.Host, d.Destination.Subset = "web-canary", ""
		return d
	}
	fqdnOnly := userOwned(&networkingv1.HTTPRoute{Route: []*networkingv1.HTTPRouteDestination{dest("web.shop.svc.cluster.local")}})
	// A team that mirrors its traffic to a shadow deployment of its own:
	// the mirror stays as written through the rollout and after it.
	mirroring := teamRoutes()
	mirroring.Spec.Http[1].Mirror = &networkingv1.Destination{Host: "web-shadow", Port: &networkingv1.PortSelector{Number: 8080}}
	mirroring.Spec.Http[1].MirrorPercentage = &networkingv1.Percent{Value: 12.5}
	mirroring.Spec.Http[1].Mirrors = []*networkingv1.HTTPMirrorPolicy{{Destination: &networkingv1.Destination{Host: "web-audit"}, Percentage: &networkingv1.Percent{Value: 1}}}

	for _, c := range []struct {
		name        string
		vs          *istionetv1.VirtualService
		route       string
		index       int
		set         traffic.Weights
		afterSet    []*networkingv1.HTTPRouteDestination
		wantWeights traffic.Weights
	}{{
		name: "a named route among others gets a canary copy of its stable destination",
		vs:   teamRoutes(), route: "primary", index: 1,
		set:      traffic.Weights{Stable: 80, Canary: 20},
		afterSet: []*networkingv1.HTTPRouteDestination{stableAt(80), canaryAt(20)},
	}, {
		name: "all traffic to the canary keeps the stable destination at weight zero",
		vs:   teamRoutes(), route: "primary", index: 1,
		set:      traffic.Weights{Canary: 100},
		afterSet: []*networkingv1.HTTPRouteDestination{stableAt(0), canaryAt(100)},
	}, {
		name: "a route that mirrors to the team's shadow keeps its mirrors",
		vs:   mirroring, route: "primary", index: 1,
		set:      traffic.Weights{Stable: 70, Canary: 30},
		afterSet: []*networkingv1.HTTPRouteDestination{stableAt(70), canaryAt(30)},
	}, {
		name: "the only route, unnamed, with the stable host written in full",
		vs:   fqdnOnly, index: 0,
		set: traffic.Weights{Stable: 50, Canary: 50},
		afterSet: []*networkingv1.HTTPRouteDestination{
			weighted("web.shop.svc.cluster.local", 50), weighted("web-canary", 50),
		},
	}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			client := fake.NewSimpleClientset(c.vs)
			r := istio.New(client)
			tg := ownedTarget()
			tg.Route = c.route

			if err := r.Ensure(ctx, tg); err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if err := r.SetWeights(ctx, tg, c.set); err != nil {
				t.Fatalf("SetWeights: %v", err)
			}
			wantSpec(t, client, withRoute(c.vs, c.index, c.afterSet...))
			if got, err := r.Weights(ctx, tg); err != nil || got != c.set {
				t.Errorf("Weights = %+v, %v; want %+v", got, err, c.set)
			}

			if err := r.Release(ctx, tg); err != nil {
				t.Fatalf("Release: %v", err)
			}
			// The owner wrote no weight on the lone destination, so the
			// object is back to exactly what they wrote.
			wantSpec(t, client, c.vs)
			wantOnlyRoutePatched(t, client, c.index)
		})
	}
}

// wantSpec compares the stored VirtualService with want, metadata (but
// the resourceVersion, which the fake keeps) and spec.
func wantSpec(t *testing.T, client *fake.Clientset, want *istionetv1.VirtualService) {
	t.Helper()
	got, err := client.NetworkingV1().VirtualServices(want.Namespace).Get(t.Context(), want.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.ObjectMeta, got.ObjectMeta); diff != "" {
		t.Errorf("metadata changed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&want.Spec, &got.Spec, protocmp.Transform()); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
}

// wantOnlyRoutePatched checks that every write was a JSON patch guarded by
// the resourceVersion that replaced the destinations of route i and
// nothing else: an update of the whole object could drop fields this
// client does not know.
func wantOnlyRoutePatched(t *testing.T, client *fake.Clientset, i int) {
	t.Helper()
	writes := 0
	for _, a := range client.Actions() {
		switch a := a.(type) {
		case k8stesting.PatchAction:
			writes++
			if a.GetPatchType() != types.JSONPatchType {
				t.Errorf("patch of type %s, want a JSON patch", a.GetPatchType())
			}
			var ops []struct{ Op, Path string }
			if err := json.Unmarshal(a.GetPatch(), &ops); err != nil {
				t.Fatalf("patch %s: %v", a.GetPatch(), err)
			}
			var paths []string
			for _, op := range ops {
				paths = append(paths, op.Op+" "+op.Path)
			}
			prefix := "/spec/http/" + strconv.Itoa(i)
			want := []string{"test /metadata/resourceVersion", "test " + prefix + "/name", "replace " + prefix + "/route"}
			if len(ops) == 2 { // an unnamed route: only the resourceVersion guards it
				want = []string{want[0], want[2]}
			}
			if diff := cmp.Diff(want, paths); diff != "" {
				t.Errorf("patch operations (-want +got):\n%s", diff)
			}
		case k8stesting.CreateAction, k8stesting.UpdateAction, k8stesting.DeleteAction:
			writes++
			t.Errorf("%s of a user-owned VirtualService, want only patches", a.GetVerb())
		}
	}
	if writes != 2 {
		t.Errorf("%d writes, want 2 (SetWeights and Release)", writes)
	}
}

func TestUserOwnedCallsThatChangeNothingWriteNothing(t *testing.T) {
	for _, c := range []struct {
		name string
		call func(*testing.T, *istio.Router, traffic.Target) error
		vs   *istionetv1.VirtualService
	}{{
		name: "Ensure only checks the route",
		call: func(t *testing.T, r *istio.Router, tg traffic.Target) error { return r.Ensure(t.Context(), tg) },
		vs:   teamRoutes(),
	}, {
		name: "Release of a route fledge never split leaves its weight as written",
		call: func(t *testing.T, r *istio.Router, tg traffic.Target) error { return r.Release(t.Context(), tg) },
		vs:   withRoute(teamRoutes(), 1, weighted("web", 100)),
	}, {
		name: "SetWeights with the split already set",
		call: func(t *testing.T, r *istio.Router, tg traffic.Target) error {
			return r.SetWeights(t.Context(), tg, traffic.Weights{Stable: 90, Canary: 10})
		},
		vs: withRoute(teamRoutes(), 1, weighted("web", 90), weighted("web-canary", 10)),
	}, {
		name: "Release when the VirtualService is gone",
		call: func(t *testing.T, r *istio.Router, tg traffic.Target) error { return r.Release(t.Context(), tg) },
		vs:   &istionetv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: "shop"}},
	}} {
		t.Run(c.name, func(t *testing.T) {
			client := fake.NewSimpleClientset(c.vs)
			if err := c.call(t, istio.New(client), ownedTarget()); err != nil {
				t.Fatal(err)
			}
			for _, a := range client.Actions() {
				if a.GetVerb() != "get" {
					t.Errorf("unexpected %s", a.GetVerb())
				}
			}
		})
	}
}

func TestUserOwnedConflicts(t *testing.T) {
	for _, c := range []struct {
		name  string
		vs    *istionetv1.VirtualService
		route string
		// wantErr is a part of the message: the object and the field.
		wantErr string
		// readable is set when Weights can read the split all the same.
		readable bool
	}{{
		name:    "the VirtualService does not exist",
		vs:      &istionetv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "unrelated", Namespace: "shop"}},
		route:   "primary",
		wantErr: "virtualservice shop/web-routes: named by the target but not found",
	}, {
		name:    "no route has the name",
		vs:      teamRoutes(),
		route:   "main",
		wantErr: `virtualservice shop/web-routes: spec.http: no route named "main"`,
	}, {
		name:    "no route is named and there are several",
		vs:      teamRoutes(),
		wantErr: "virtualservice shop/web-routes: spec.http: 3 routes; the target must name",
	}, {
		name:    "two routes have the name",
		vs:      userOwned(&networkingv1.HTTPRoute{Name: "primary", Route: []*networkingv1.HTTPRouteDestination{dest("web")}}, &networkingv1.HTTPRoute{Name: "primary", Route: []*networkingv1.HTTPRouteDestination{dest("web")}}),
		route:   "primary",
		wantErr: `spec.http[1].name: "primary" also names spec.http[0]`,
	}, {
		name:    "the route has no stable destination",
		vs:      withRoute(teamRoutes(), 1, dest("web-v2")),
		route:   "primary",
		wantErr: `spec.http[1] ("primary").route[0].destination.host: "web-v2" is neither the stable Service web nor the canary Service web-canary`,
	}, {
		name:    "the route also sends traffic to a third host",
		vs:      withRoute(teamRoutes(), 1, weighted("web", 90), weighted("web-shadow", 10)),
		route:   "primary",
		wantErr: `spec.http[1] ("primary").route[1].destination.host: "web-shadow"`,
	}, {
		name:    "the route has two destinations for the stable host",
		vs:      withRoute(teamRoutes(), 1, weighted("web", 50), weighted("web.shop.svc.cluster.local", 50)),
		route:   "primary",
		wantErr: `spec.http[1] ("primary").route[1].destination.host: a second destination for the stable Service web`,
		// Weights can still say what the mesh does: all to stable.
		readable: true,
	}, {
		name:    "the route redirects",
		vs:      teamRoutes(),
		route:   "legacy",
		wantErr: `spec.http[2] ("legacy").route: has no destinations`,
	}} {
		t.Run(c.name, func(t *testing.T) {
			client := fake.NewSimpleClientset(c.vs)
			r := istio.New(client)
			tg := ownedTarget()
			tg.Route = c.route
			calls := map[string]func() error{
				"Ensure":     func() error { return r.Ensure(t.Context(), tg) },
				"SetWeights": func() error { return r.SetWeights(t.Context(), tg, traffic.Weights{Stable: 50, Canary: 50}) },
				"Weights":    func() error { _, err := r.Weights(t.Context(), tg); return err },
			}
			if c.readable {
				delete(calls, "Weights")
			}
			for name, call := range calls {
				err := call()
				if !errors.Is(err, traffic.ErrConflict) {
					t.Errorf("%s: %v, want a conflict", name, err)
					continue
				}
				if !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("%s: %q\ndoes not say %q", name, err, c.wantErr)
				}
			}
			for _, a := range client.Actions() {
				if a.GetVerb() != "get" {
					t.Errorf("unexpected %s", a.GetVerb())
				}
			}
		})
	}
}

func TestUserOwnedWeightsReadsWhatTheMeshApplies(t *testing.T) {
	for _, c := range []struct {
		name    string
		dests   []*networkingv1.HTTPRouteDestination
		want    traffic.Weights
		wantErr string
	}{
		{name: "the stable destination alone takes everything", dests: []*networkingv1.HTTPRouteDestination{dest("web")}, want: traffic.Weights{Stable: 100}},
		{name: "a lone destination's weight is ignored, as in Istio", dests: []*networkingv1.HTTPRouteDestination{weighted("web", 30)}, want: traffic.Weights{Stable: 100}},
		{name: "short and full host names are the same Service", dests: []*networkingv1.HTTPRouteDestination{weighted("web.shop.svc.cluster.local", 75), weighted("web-canary", 25)}, want: traffic.Weights{Stable: 75, Canary: 25}},
		{name: "a zero weight may be left out", dests: []*networkingv1.HTTPRouteDestination{dest("web"), weighted("web-canary.shop.svc.cluster.local", 100)}, want: traffic.Weights{Canary: 100}},
		{name: "weights that do not add up to 100 are an error", dests: []*networkingv1.HTTPRouteDestination{weighted("web", 70), weighted("web-canary", 20)}, wantErr: `spec.http[0] ("primary").route: weights are not a split`},
		{name: "a namespace-qualified short name is another host, as in Istio", dests: []*networkingv1.HTTPRouteDestination{weighted("web", 50), weighted("web-canary.shop", 50)}, wantErr: `spec.http[0] ("primary").route[1].destination.host: "web-canary.shop" is neither`},
	} {
		t.Run(c.name, func(t *testing.T) {
			vs := userOwned(&networkingv1.HTTPRoute{Name: "primary", Route: c.dests})
			got, err := istio.New(fake.NewSimpleClientset(vs)).Weights(t.Context(), ownedTarget())
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("Weights = %+v, %v; want an error saying %q", got, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Weights = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}
