package istio_test

import (
	"strings"
	"testing"

	networkingv1 "istio.io/api/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned/fake"

	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

// A mirror is written on the generated split route, Istio's way, and only
// there: a cohort's match route sends its requests to the canary and does
// not copy them to it as well.
func TestAGeneratedMirrorIsOnTheSplitRouteAlone(t *testing.T) {
	client := fake.NewSimpleClientset()
	r := istio.New(client)
	tg := ownedByFlight()
	w := traffic.Weights{Stable: 100, Mirror: 25, Cohort: traffic.Cohort{Name: "beta", Header: "x-tier", Exact: "beta"}}
	if err := r.SetWeights(t.Context(), tg, w); err != nil {
		t.Fatal(err)
	}
	vs := getVS(t, client, "web")
	if n := len(vs.Spec.Http); n != 2 {
		t.Fatalf("%d http routes, want the cohort's and the split", n)
	}
	cohort, split := vs.Spec.Http[0], vs.Spec.Http[1]
	if cohort.Mirror != nil || cohort.MirrorPercentage != nil {
		t.Errorf("the cohort's route mirrors to %v", cohort.Mirror)
	}
	if split.GetName() != istio.RouteName || split.GetMirror().GetHost() != "web-canary" || split.GetMirrorPercentage().GetValue() != 25 {
		t.Errorf("split route %v mirrors to %v at %v, want web-canary at 25%%", split.GetName(), split.GetMirror(), split.GetMirrorPercentage())
	}
	if got, err := r.Weights(t.Context(), tg); err != nil || got != w {
		t.Errorf("Weights = %+v, %v; want %+v", got, err, w)
	}
}

// A mirror edited to another host, or a mirrors list someone added, is not
// fledge's: the split reads as unknown, and Ensure puts back the split
// fledge knows without any mirror (the safe side: all on stable).
func TestAnEditedMirrorIsNotReadAsFledgesAndEnsureRemovesIt(t *testing.T) {
	for name, edit := range map[string]func(*networkingv1.HTTPRoute){
		"another host": func(r *networkingv1.HTTPRoute) { r.Mirror = &networkingv1.Destination{Host: "audit"} },
		"a mirrors list": func(r *networkingv1.HTTPRoute) {
			r.Mirrors = []*networkingv1.HTTPMirrorPolicy{{Destination: &networkingv1.Destination{Host: "web-canary"}}}
		},
		"a fraction": func(r *networkingv1.HTTPRoute) { r.MirrorPercentage = &networkingv1.Percent{Value: 12.5} },
	} {
		t.Run(name, func(t *testing.T) {
			vs := generatedVS(100, 0)
			vs.Spec.Http[0].Mirror = &networkingv1.Destination{Host: "web-canary"}
			vs.Spec.Http[0].MirrorPercentage = &networkingv1.Percent{Value: 40}
			edit(vs.Spec.Http[0])
			client := fake.NewSimpleClientset(vs)
			r := istio.New(client)
			tg := ownedByFlight()
			if _, err := r.Weights(t.Context(), tg); err == nil || !strings.Contains(err.Error(), "mirror") {
				t.Errorf("Weights: %v, want an error naming the mirror", err)
			}
			if err := r.Ensure(t.Context(), tg); err != nil {
				t.Fatal(err)
			}
			wantVS(t, generatedVS(100, 0), getVS(t, client, "web"))
		})
	}
}

// withComparator names the target's comparator Service, web-mirror.
func withComparator(t traffic.Target) traffic.Target {
	t.Comparator = "web-mirror"
	return t
}

// Copies whose answers are compared go to the comparator Service instead
// of the canary, and read back so; back to the canary, and then off, the
// mirror follows. A comparator as a share of the split is another host.
func TestACompareMirrorGoesToTheComparatorAndReadsBack(t *testing.T) {
	client := fake.NewSimpleClientset()
	r := istio.New(client)
	tg := withComparator(ownedByFlight())
	compared := traffic.Weights{Stable: 100, Mirror: 30, MirrorCompared: true}
	if err := r.SetWeights(t.Context(), tg, compared); err != nil {
		t.Fatal(err)
	}
	split := getVS(t, client, "web").Spec.Http[0]
	if split.GetMirror().GetHost() != "web-mirror" || split.GetMirrorPercentage().GetValue() != 30 {
		t.Errorf("split route mirrors to %v at %v, want web-mirror at 30%%", split.GetMirror(), split.GetMirrorPercentage())
	}
	if got, err := r.Weights(t.Context(), tg); err != nil || got != compared {
		t.Errorf("Weights = %+v, %v; want %+v", got, err, compared)
	}
	plain := traffic.Weights{Stable: 100, Mirror: 30}
	if err := r.SetWeights(t.Context(), tg, plain); err != nil {
		t.Fatal(err)
	}
	if got := getVS(t, client, "web").Spec.Http[0].GetMirror().GetHost(); got != "web-canary" {
		t.Errorf("an uncompared mirror goes to %q, want web-canary", got)
	}
	// Read by a target that names no comparator, the comparator is not
	// fledge's mirror.
	if err := r.SetWeights(t.Context(), tg, compared); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Weights(t.Context(), ownedByFlight()); err == nil || !strings.Contains(err.Error(), `"web-mirror" is not the canary Service web-canary`) {
		t.Errorf("Weights without a comparator: %v, want the mirror named as not fledge's", err)
	}
	vs := generatedVS(100, 0)
	vs.Spec.Http[0].Route = append(vs.Spec.Http[0].Route, &networkingv1.HTTPRouteDestination{Destination: &networkingv1.Destination{Host: "web-mirror"}, Weight: 0})
	if _, err := istio.New(fake.NewSimpleClientset(vs)).Weights(t.Context(), tg); err == nil {
		t.Errorf("a comparator destination in the split read as a share")
	}
}

// A compared mirror for a target without a comparator, or one with no
// mirror, is the caller's mistake: refused, nothing written.
func TestACompareMirrorWithNowhereToGoIsRefused(t *testing.T) {
	for name, c := range map[string]struct {
		tg   traffic.Target
		w    traffic.Weights
		want string
	}{
		"no comparator Service": {ownedByFlight(), traffic.Weights{Stable: 100, Mirror: 30, MirrorCompared: true}, "the target names no comparator Service"},
		"no mirror":             {withComparator(ownedByFlight()), traffic.Weights{Stable: 100, MirrorCompared: true}, "mirror compared with no mirror"},
	} {
		t.Run(name, func(t *testing.T) {
			client := fake.NewSimpleClientset()
			err := istio.New(client).SetWeights(t.Context(), c.tg, c.w)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("SetWeights: %v, want %q", err, c.want)
			}
			if n := len(client.Actions()); n > 0 {
				t.Errorf("%d calls made, want none", n)
			}
		})
	}
}
