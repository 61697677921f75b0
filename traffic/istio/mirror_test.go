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
