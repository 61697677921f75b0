package istio_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stesting "k8s.io/client-go/testing"

	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

var (
	beta   = traffic.Cohort{Name: "beta", Header: "x-tier", Exact: "beta"}
	staff  = traffic.CookieCohort("staff", "role", "staff")
	pinned = traffic.Sticky{Cookie: "fledge-canary", Value: "web-7d9f", MaxAge: 3600}
)

const pinnedSetCookie = "fledge-canary=web-7d9f; Max-Age=3600; Path=/"

func exact(v string) *networkingv1.StringMatch {
	return &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Exact{Exact: v}}
}

func regex(v string) *networkingv1.StringMatch {
	return &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Regex{Regex: v}}
}

func prefix(v string) *networkingv1.StringMatch {
	return &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Prefix{Prefix: v}}
}

// twoBlocks is teamRoutes with a second match block on the route fledge
// splits, which already matches a header of its own.
func twoBlocks() *istionetv1.VirtualService {
	vs := teamRoutes()
	vs.Spec.Http[1].Match = append(vs.Spec.Http[1].Match, &networkingv1.HTTPMatchRequest{
		Uri:     prefix("/api/"),
		Headers: map[string]*networkingv1.StringMatch{"x-region": exact("eu")},
	})
	return vs
}

// teamStable is the stable destination of teamRoutes' "primary" at weight
// w, and teamCanary its canary copy: same port and header rule, no subset,
// plus the given response headers added.
func teamStable(w int32) *networkingv1.HTTPRouteDestination {
	d := proto.Clone(teamRoutes().Spec.Http[1].Route[0]).(*networkingv1.HTTPRouteDestination)
	d.Weight = w
	return d
}

func teamCanary(w int32, setCookie string) *networkingv1.HTTPRouteDestination {
	d := teamStable(w)
	d.Destination.Host, d.Destination.Subset = "web-canary", ""
	if setCookie != "" {
		d.Headers.Response.Add["set-cookie"] = setCookie
	}
	return d
}

// copyOf is route r as fledge copies it for a match route: named name,
// with match and the destination dest alone.
func copyOf(r *networkingv1.HTTPRoute, name string, match []*networkingv1.HTTPMatchRequest, dest *networkingv1.HTTPRouteDestination) *networkingv1.HTTPRoute {
	c := proto.Clone(r).(*networkingv1.HTTPRoute)
	c.Name, c.Match, c.Route = name, match, []*networkingv1.HTTPRouteDestination{dest}
	return c
}

// withRoutes returns a copy of vs with routes inserted at i.
func withRoutes(vs *istionetv1.VirtualService, i int, routes ...*networkingv1.HTTPRoute) *istionetv1.VirtualService {
	out := vs.DeepCopy()
	http := append([]*networkingv1.HTTPRoute{}, out.Spec.Http[:i]...)
	http = append(http, routes...)
	out.Spec.Http = append(http, out.Spec.Http[i:]...)
	return out
}

// patchOps lists the operations of every patch the client received, as
// "op path".
func patchOps(t *testing.T, client *fake.Clientset) [][]string {
	t.Helper()
	var out [][]string
	for _, a := range client.Actions() {
		switch a := a.(type) {
		case k8stesting.PatchAction:
			var ops []struct{ Op, Path string }
			if err := json.Unmarshal(a.GetPatch(), &ops); err != nil {
				t.Fatalf("patch %s: %v", a.GetPatch(), err)
			}
			var paths []string
			for _, op := range ops {
				paths = append(paths, op.Op+" "+op.Path)
			}
			out = append(out, paths)
		case k8stesting.CreateAction, k8stesting.UpdateAction, k8stesting.DeleteAction:
			t.Errorf("%s of a user-owned VirtualService, want only patches", a.GetVerb())
		}
	}
	return out
}

func TestUserOwnedCohortRouteIsACopyOfTheRouteWithEachMatchBlockANDed(t *testing.T) {
	ctx := t.Context()
	written := twoBlocks()
	client := fake.NewSimpleClientset(written)
	r := istio.New(client)
	w := traffic.Weights{Stable: 90, Canary: 10, Cohort: beta}
	if err := r.SetWeights(ctx, ownedTarget(), w); err != nil {
		t.Fatal(err)
	}
	primary := written.Spec.Http[1]
	cohort := copyOf(primary, "primary-fledge-cohort-beta", []*networkingv1.HTTPMatchRequest{
		{Uri: prefix("/"), Headers: map[string]*networkingv1.StringMatch{"x-tier": exact("beta")}},
		{Uri: prefix("/api/"), Headers: map[string]*networkingv1.StringMatch{"x-region": exact("eu"), "x-tier": exact("beta")}},
	}, teamCanary(0, ""))
	want := withRoutes(withRoute(written, 1, teamStable(90), teamCanary(10, "")), 1, cohort)
	wantSpec(t, client, want)
	if got, err := r.Weights(ctx, ownedTarget()); err != nil || got != w {
		t.Errorf("Weights = %+v, %v; want %+v", got, err, w)
	}
	if diff := cmp.Diff([][]string{{
		"test /metadata/resourceVersion", "test /spec/http/1/name", "replace /spec/http/1/route", "add /spec/http/1",
	}}, patchOps(t, client)); diff != "" {
		t.Errorf("patches (-want +got):\n%s", diff)
	}
}

func TestUserOwnedStickyCookieIsSetByBothCanaryDestinations(t *testing.T) {
	ctx := t.Context()
	written := teamRoutes()
	client := fake.NewSimpleClientset(written)
	r := istio.New(client)
	w := traffic.Weights{Stable: 80, Canary: 20, Cohort: staff, Sticky: pinned}
	if err := r.SetWeights(ctx, ownedTarget(), w); err != nil {
		t.Fatal(err)
	}
	primary := written.Spec.Http[1]
	cohort := copyOf(primary, "primary-fledge-cohort-staff", []*networkingv1.HTTPMatchRequest{
		{Uri: prefix("/"), Headers: map[string]*networkingv1.StringMatch{"cookie": regex(traffic.CookieRegex("role", "staff"))}},
	}, teamCanary(0, ""))
	sticky := copyOf(primary, "primary-fledge-sticky", []*networkingv1.HTTPMatchRequest{
		{Uri: prefix("/"), Headers: map[string]*networkingv1.StringMatch{"cookie": regex(traffic.CookieRegex("fledge-canary", "web-7d9f"))}},
	}, teamCanary(0, pinnedSetCookie))
	// The owner's stable destination keeps its own header rule and gets
	// no cookie; both canary copies have the rule and the cookie.
	wantSpec(t, client, withRoutes(withRoute(written, 1, teamStable(80), teamCanary(20, pinnedSetCookie)), 1, cohort, sticky))
	if got, err := r.Weights(ctx, ownedTarget()); err != nil || got != w {
		t.Errorf("Weights = %+v, %v; want %+v", got, err, w)
	}
}

func TestUserOwnedReleaseRestoresTheVirtualServiceAsWritten(t *testing.T) {
	for _, c := range []struct {
		name string
		vs   *istionetv1.VirtualService
		tg   traffic.Target
	}{
		{"a named route among others", twoBlocks(), ownedTarget()},
		{"the only route, unnamed", userOwned(&networkingv1.HTTPRoute{Route: []*networkingv1.HTTPRouteDestination{dest("web")}}), func() traffic.Target {
			tg := ownedTarget()
			tg.Route = ""
			return tg
		}()},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			written := c.vs.DeepCopy()
			client := fake.NewSimpleClientset(c.vs)
			r := istio.New(client)
			for _, w := range []traffic.Weights{
				{Stable: 100, Cohort: beta},
				{Stable: 50, Canary: 50, Cohort: staff, Sticky: pinned},
			} {
				if err := r.SetWeights(ctx, c.tg, w); err != nil {
					t.Fatal(err)
				}
				if err := r.Ensure(ctx, c.tg); err != nil {
					t.Fatalf("Ensure with match routes: %v", err)
				}
				if got, err := r.Weights(ctx, c.tg); err != nil || got != w {
					t.Errorf("Weights = %+v, %v; want %+v", got, err, w)
				}
			}
			if err := r.Release(ctx, c.tg); err != nil {
				t.Fatal(err)
			}
			got, err := client.NetworkingV1().VirtualServices("shop").Get(ctx, "web-routes", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&written.Spec, &got.Spec) {
				t.Errorf("spec after Release is not as written")
			}
			wantSpec(t, client, written)
			if got, err := r.Weights(ctx, c.tg); err != nil || got != (traffic.Weights{Stable: 100}) {
				t.Errorf("Weights after Release = %+v, %v; want 100/0 and no match routes", got, err)
			}
		})
	}
}

func TestUserOwnedMatchRoutesOfAnUnnamedRouteAreNamedWithoutPrefix(t *testing.T) {
	client := fake.NewSimpleClientset(userOwned(&networkingv1.HTTPRoute{Route: []*networkingv1.HTTPRouteDestination{dest("web")}}))
	tg := ownedTarget()
	tg.Route = ""
	if err := istio.New(client).SetWeights(t.Context(), tg, traffic.Weights{Stable: 100, Cohort: beta, Sticky: pinned}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, route := range getVS(t, client, "web-routes").Spec.Http {
		names = append(names, route.GetName())
	}
	if diff := cmp.Diff([]string{"fledge-cohort-beta", "fledge-sticky", ""}, names); diff != "" {
		t.Errorf("route names (-want +got):\n%s", diff)
	}
}

func TestUserOwnedMatchRoutesChangeInOneGuardedPatch(t *testing.T) {
	ctx := t.Context()
	client := fake.NewSimpleClientset(teamRoutes())
	r := istio.New(client)
	// The ops after the two guards: the resourceVersion, and the name of
	// the route fledge splits at its index as read (it moves as match
	// routes come and go).
	steps := []struct {
		w     traffic.Weights
		route int
		ops   []string
	}{{
		w:     traffic.Weights{Stable: 90, Canary: 10, Cohort: beta},
		route: 1, ops: []string{"replace /spec/http/1/route", "add /spec/http/1"},
	}, {
		w:     traffic.Weights{Stable: 90, Canary: 10, Cohort: staff},
		route: 2, ops: []string{"replace /spec/http/1"},
	}, {
		w:     traffic.Weights{Stable: 90, Canary: 10, Sticky: pinned},
		route: 2, ops: []string{"replace /spec/http/2/route", "replace /spec/http/1"},
	}, {
		w:     traffic.Weights{Stable: 100, Cohort: beta, Sticky: pinned},
		route: 2, ops: []string{"replace /spec/http/2/route", "replace /spec/http/1", "add /spec/http/2"},
	}, {
		w: traffic.Weights{Stable: 100, Cohort: beta, Sticky: pinned},
		// nothing to change, nothing written
	}, {
		w:     traffic.Weights{Stable: 100, Cohort: beta},
		route: 3, ops: []string{"remove /spec/http/2"},
	}, {
		w:     traffic.Weights{Stable: 100, Sticky: pinned},
		route: 2, ops: []string{"replace /spec/http/1"},
	}, {
		w:     traffic.Weights{Stable: 100, Cohort: staff, Sticky: pinned},
		route: 2, ops: []string{"replace /spec/http/1", "add /spec/http/2"},
	}, {
		w:     traffic.Weights{Stable: 100},
		route: 3, ops: []string{"remove /spec/http/1", "remove /spec/http/1"},
	}}
	var want [][]string
	for _, s := range steps {
		if err := r.SetWeights(ctx, ownedTarget(), s.w); err != nil {
			t.Fatalf("SetWeights(%+v): %v", s.w, err)
		}
		if got, err := r.Weights(ctx, ownedTarget()); err != nil || got != s.w {
			t.Errorf("Weights = %+v, %v; want %+v", got, err, s.w)
		}
		if s.ops != nil {
			want = append(want, append([]string{"test /metadata/resourceVersion", fmt.Sprintf("test /spec/http/%d/name", s.route)}, s.ops...))
		}
	}
	if diff := cmp.Diff(want, patchOps(t, client)); diff != "" {
		t.Errorf("patches (-want +got):\n%s", diff)
	}
	wantSpec(t, client, teamRoutes())
}

func TestUserOwnedMatchRouteConflicts(t *testing.T) {
	withHeader := func(header string) *istionetv1.VirtualService {
		vs := twoBlocks()
		vs.Spec.Http[1].Match[1].Headers[header] = exact("x")
		return vs
	}
	for _, c := range []struct {
		name    string
		vs      *istionetv1.VirtualService
		w       traffic.Weights
		wantErr string
	}{{
		name:    "a match block of the route already matches the cohort's header",
		vs:      withHeader("x-tier"),
		w:       traffic.Weights{Stable: 100, Cohort: beta},
		wantErr: `virtualservice shop/web-routes: spec.http[1] ("primary").match[1].headers.x-tier: already matches header "x-tier", so fledge cannot AND the cohort "beta"'s condition`,
	}, {
		name:    "a match block of the route already matches cookies",
		vs:      withHeader("cookie"),
		w:       traffic.Weights{Stable: 80, Canary: 20, Sticky: pinned},
		wantErr: `spec.http[1] ("primary").match[1].headers.cookie: already matches header "cookie", so fledge cannot AND the sticky cookie's condition`,
	}, {
		name: "the stable destination already adds a cookie",
		vs: func() *istionetv1.VirtualService {
			vs := teamRoutes()
			vs.Spec.Http[1].Route[0].Headers.Response.Add["Set-Cookie"] = "region=eu"
			return vs
		}(),
		w:       traffic.Weights{Stable: 80, Canary: 20, Sticky: pinned},
		wantErr: `spec.http[1] ("primary").route[0].headers.response.add.Set-Cookie: already adds a cookie`,
	}, {
		name:    "a fledge match route was moved away from the route",
		vs:      withRoutes(teamRoutes(), 3, copyOf(teamRoutes().Spec.Http[1], "primary-fledge-cohort-beta", nil, teamCanary(0, ""))),
		w:       traffic.Weights{Stable: 100, Cohort: beta},
		wantErr: `spec.http[3].name: "primary-fledge-cohort-beta" names a fledge match route of spec.http[1] ("primary"), but it is not right before it`,
	}} {
		t.Run(c.name, func(t *testing.T) {
			client := fake.NewSimpleClientset(c.vs)
			err := istio.New(client).SetWeights(t.Context(), ownedTarget(), c.w)
			if !errors.Is(err, traffic.ErrConflict) {
				t.Fatalf("SetWeights: %v, want a conflict", err)
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("SetWeights: %q\ndoes not say %q", err, c.wantErr)
			}
			if ops := patchOps(t, client); len(ops) > 0 {
				t.Errorf("patches %v despite the conflict", ops)
			}
		})
	}
}

func TestUserOwnedWeightsRefusesMatchRoutesThatRouteOtherwise(t *testing.T) {
	w := traffic.Weights{Stable: 80, Canary: 20, Cohort: beta, Sticky: pinned}
	for _, c := range []struct {
		name    string
		edit    func(vs *istionetv1.VirtualService) // http: cohort, sticky, primary
		wantErr string
	}{{
		name:    "the route was edited since fledge copied it",
		edit:    func(vs *istionetv1.VirtualService) { vs.Spec.Http[3].Timeout = durationpb.New(time.Minute) },
		wantErr: `spec.http[1] ("primary-fledge-cohort-beta").timeout: differs from the copy of spec.http[3] ("primary") that fledge writes`,
	}, {
		name:    "the sticky route sends to stable",
		edit:    func(vs *istionetv1.VirtualService) { vs.Spec.Http[2].Route[0].Destination.Host = "web" },
		wantErr: `spec.http[2] ("primary-fledge-sticky").route: differs from the copy of spec.http[3] ("primary")`,
	}, {
		name: "the sticky route lost its cookie",
		edit: func(vs *istionetv1.VirtualService) {
			delete(vs.Spec.Http[2].Route[0].Headers.Response.Add, "set-cookie")
		},
		wantErr: `spec.http[2] ("primary-fledge-sticky").route[0].headers.response.add.set-cookie: "" is not the Set-Cookie of sticky cookie fledge-canary=web-7d9f`,
	}, {
		name:    "the cohort route matches two more headers",
		edit:    func(vs *istionetv1.VirtualService) { vs.Spec.Http[1].Match[0].Headers["x-more"] = exact("1") },
		wantErr: `spec.http[1] ("primary-fledge-cohort-beta").match[0].headers: matches more than one header the split route does not`,
	}, {
		name: "the split's canary destination does not set the cookie",
		edit: func(vs *istionetv1.VirtualService) {
			vs.Spec.Http[3].Route[1].Headers.Response.Add["set-cookie"] = "x=1"
		},
		wantErr: `spec.http[3] ("primary").route[1].headers.response.add.set-cookie: does not set sticky cookie fledge-canary=web-7d9f`,
	}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			client := fake.NewSimpleClientset(teamRoutes())
			r := istio.New(client)
			if err := r.SetWeights(ctx, ownedTarget(), w); err != nil {
				t.Fatal(err)
			}
			vs := getVS(t, client, "web-routes")
			c.edit(vs)
			if _, err := client.NetworkingV1().VirtualServices("shop").Update(ctx, vs, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			_, err := r.Weights(ctx, ownedTarget())
			if err == nil || errors.Is(err, traffic.ErrConflict) || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Weights: %v; want a plain error saying %q", err, c.wantErr)
			}
			// SetWeights rewrites fledge's routes from the route as it is.
			if err := r.SetWeights(ctx, ownedTarget(), w); err != nil {
				t.Fatal(err)
			}
			if got, err := r.Weights(ctx, ownedTarget()); err != nil || got != w {
				t.Errorf("Weights after SetWeights = %+v, %v; want %+v", got, err, w)
			}
		})
	}
}

func TestAConcurrentEditOfTheRouteReachesItsMatchRoutes(t *testing.T) {
	client := fake.NewSimpleClientset(teamRoutes())
	patches := editBeforePatch(t, client, 1, func(vs *istionetv1.VirtualService) {
		vs.Spec.Http[1].Timeout = durationpb.New(3 * time.Second)
	})
	w := traffic.Weights{Stable: 100, Cohort: beta}
	if err := istio.New(client).SetWeights(t.Context(), ownedTarget(), w); err != nil {
		t.Fatal(err)
	}
	if *patches != 2 {
		t.Errorf("%d patches, want 2: the stale one, then one from a fresh read", *patches)
	}
	// The cohort route copies the route as edited meanwhile, not as first
	// read: the stale patch was refused as a whole.
	edited := teamRoutes()
	edited.ResourceVersion = "101"
	edited.Spec.Http[1].Timeout = durationpb.New(3 * time.Second)
	cohort := copyOf(edited.Spec.Http[1], "primary-fledge-cohort-beta", []*networkingv1.HTTPMatchRequest{
		{Uri: prefix("/"), Headers: map[string]*networkingv1.StringMatch{"x-tier": exact("beta")}},
	}, teamCanary(0, ""))
	wantSpec(t, client, withRoutes(edited, 1, cohort))
}

// generatedWithMatches is generatedVS(stable, canary) with the cohort staff
// and the sticky cookie pinned, as the router generates it.
func generatedWithMatches(stable, canary int32) *istionetv1.VirtualService {
	vs := generatedVS(stable, canary)
	setCookie := &networkingv1.Headers{Response: &networkingv1.Headers_HeaderOperations{Add: map[string]string{"set-cookie": pinnedSetCookie}}}
	split := vs.Spec.Http[0]
	split.Route[1].Headers = setCookie
	stickyDest := dest("web-canary")
	stickyDest.Headers = proto.Clone(setCookie).(*networkingv1.Headers)
	vs.Spec.Http = []*networkingv1.HTTPRoute{{
		Name:  "fledge-cohort-staff",
		Match: []*networkingv1.HTTPMatchRequest{{Headers: map[string]*networkingv1.StringMatch{"cookie": regex(traffic.CookieRegex("role", "staff"))}}},
		Route: []*networkingv1.HTTPRouteDestination{dest("web-canary")},
	}, {
		Name:  "fledge-sticky",
		Match: []*networkingv1.HTTPMatchRequest{{Headers: map[string]*networkingv1.StringMatch{"cookie": regex(traffic.CookieRegex("fledge-canary", "web-7d9f"))}}},
		Route: []*networkingv1.HTTPRouteDestination{stickyDest},
	}, split}
	return vs
}

func TestGeneratedMatchRoutesGoBeforeTheSplit(t *testing.T) {
	ctx := t.Context()
	client := fake.NewSimpleClientset()
	r := istio.New(client)
	w := traffic.Weights{Stable: 80, Canary: 20, Cohort: staff, Sticky: pinned}
	if err := r.SetWeights(ctx, ownedByFlight(), w); err != nil {
		t.Fatal(err)
	}
	wantVS(t, generatedWithMatches(80, 20), getVS(t, client, "web"))
	if got, err := r.Weights(ctx, ownedByFlight()); err != nil || got != w {
		t.Errorf("Weights = %+v, %v; want %+v", got, err, w)
	}
	client.ClearActions()
	if err := r.Ensure(ctx, ownedByFlight()); err != nil {
		t.Fatal(err)
	}
	if err := r.SetWeights(ctx, ownedByFlight(), w); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		if v := a.GetVerb(); v != "get" && v != "list" {
			t.Errorf("unexpected %s of routing already as wanted", v)
		}
	}
}

func TestEnsureRepairsEditedMatchRoutes(t *testing.T) {
	withMatches := traffic.Weights{Stable: 70, Canary: 30, Cohort: staff, Sticky: pinned}
	for _, c := range []struct {
		name string
		edit func(*istionetv1.VirtualService) // http: cohort, sticky, split
		want traffic.Weights
	}{{
		name: "a timeout on the cohort route is removed and the cohort kept",
		edit: func(vs *istionetv1.VirtualService) { vs.Spec.Http[0].Timeout = durationpb.New(time.Second) },
		want: withMatches,
	}, {
		name: "the split route's cookie is put back",
		edit: func(vs *istionetv1.VirtualService) { vs.Spec.Http[2].Route[1].Headers = nil },
		want: withMatches,
	}, {
		name: "routes moved after the split are put back before it",
		edit: func(vs *istionetv1.VirtualService) {
			vs.Spec.Http = []*networkingv1.HTTPRoute{vs.Spec.Http[2], vs.Spec.Http[0], vs.Spec.Http[1]}
		},
		// Only match routes before the split are read: these are not.
		want: traffic.Weights{Stable: 70, Canary: 30},
	}, {
		name: "a cohort route that matches nothing fledge can read is dropped, with the sticky cookie",
		edit: func(vs *istionetv1.VirtualService) { vs.Spec.Http[0].Match = nil },
		want: traffic.Weights{Stable: 70, Canary: 30},
	}, {
		name: "an invalid split goes back to all stable, and the match routes stay",
		edit: func(vs *istionetv1.VirtualService) { vs.Spec.Http[2].Route[1].Weight = 50 },
		want: traffic.Weights{Stable: 100, Cohort: staff, Sticky: pinned},
	}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			edited := generatedWithMatches(70, 30)
			c.edit(edited)
			client := fake.NewSimpleClientset(edited)
			r := istio.New(client)
			if _, err := r.Weights(ctx, ownedByFlight()); err == nil {
				t.Error("Weights of an edited VirtualService succeeded, want an error")
			}
			if err := r.Ensure(ctx, ownedByFlight()); err != nil {
				t.Fatal(err)
			}
			if got, err := r.Weights(ctx, ownedByFlight()); err != nil || got != c.want {
				t.Errorf("Weights after repair = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

// FuzzMatchRoutesRoundTrip checks that whatever valid cohort and sticky
// cookie are set, in either mode, Weights reads back exactly those.
func FuzzMatchRoutesRoundTrip(f *testing.F) {
	f.Add("beta", "x-tier", "beta", "", "fledge-canary", "web-7d9f", int32(3600))
	f.Add("staff", "cookie", "", traffic.CookieRegex("role", "staff"), "", "", int32(0))
	f.Add("a", "x-a", "", `^(a|b)\.c$`, "c.d", "v-1_2.3", int32(1))
	f.Fuzz(func(t *testing.T, name, header, exactValue, regexValue, cookie, value string, maxAge int32) {
		w := traffic.Weights{Stable: 100, Cohort: traffic.Cohort{Name: name, Header: header, Exact: exactValue, Regex: regexValue}}
		if cookie != "" || value != "" || maxAge != 0 {
			w.Sticky = traffic.Sticky{Cookie: cookie, Value: value, MaxAge: maxAge}
		}
		if w.Cohort == (traffic.Cohort{Name: name}) {
			w.Cohort = traffic.Cohort{}
		}
		if w.Validate() != nil {
			t.Skip()
		}
		owned := userOwned(&networkingv1.HTTPRoute{Name: "primary", Route: []*networkingv1.HTTPRouteDestination{dest("web")}})
		for _, c := range []struct {
			client *fake.Clientset
			tg     traffic.Target
		}{
			{fake.NewSimpleClientset(), generatedTarget()},
			{fake.NewSimpleClientset(owned), ownedTarget()},
		} {
			r := istio.New(c.client)
			if err := r.SetWeights(t.Context(), c.tg, w); err != nil {
				t.Fatalf("SetWeights(%+v): %v", w, err)
			}
			if got, err := r.Weights(t.Context(), c.tg); err != nil || got != w {
				t.Fatalf("Weights = %+v, %v; want %+v", got, err, w)
			}
		}
	})
}
