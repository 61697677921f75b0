package engine

import (
	"errors"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/listers"
	"k8s.io/client-go/tools/cache"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

func TestARefusedRoutingChangeIsARoutingErrorForAWhile(t *testing.T) {
	var r routeConflicts
	now := t0
	set := []rollout.Action{rollout.SetWeights{Weights: traffic.Weights{Stable: 80, Canary: 20}}}
	refused := fmt.Errorf("flight shop/web: %s: %w", set[0], fmt.Errorf("virtualservice shop/routes: spec.http[0] (\"primary\").match[0].headers[x-tier]: already matched: %w", traffic.ErrConflict))

	r.record("shop/web", set, errors.New("flight shop/web: SetWeights(stable=80, canary=20): connection refused"), now)
	if got := r.get("shop/web", now); got != "" {
		t.Errorf("a transient failure became a routing error: %q", got)
	}
	r.record("shop/web", set, refused, now)
	if got := r.get("shop/web", now.Add(10*time.Second)); got != refused.Error() {
		t.Errorf("after a conflict: %q, want the router's message", got)
	}
	if got := r.get("shop/other", now); got != "" {
		t.Errorf("another Flight got %q", got)
	}
	if got := r.get("shop/web", now.Add(conflictMemory)); got != "" {
		t.Errorf("still an error after %s: the change would never be tried again", conflictMemory)
	}
	r.record("shop/web", set, refused, now)
	r.record("shop/web", []rollout.Action{rollout.RecordEvent{}}, nil, now)
	if r.get("shop/web", now) == "" {
		t.Error("a decision without SetWeights cleared the conflict")
	}
	r.record("shop/web", set, nil, now)
	if got := r.get("shop/web", now); got != "" {
		t.Errorf("a routing change that succeeded left %q", got)
	}
}

func TestStartedFirstIsATotalOrderBothFlightsAgreeOn(t *testing.T) {
	at := func(sec int) *metav1.Time {
		tm := metav1.NewTime(t0.Add(time.Duration(sec) * time.Second))
		return &tm
	}
	flight := func(name string, started *metav1.Time) *v1alpha1.Flight {
		return &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: v1alpha1.FlightStatus{RevisionStartedAt: started}}
	}
	for _, tc := range []struct {
		a, b *v1alpha1.Flight
		want bool
	}{
		{flight("shop", at(1)), flight("cart", at(2)), true},
		{flight("shop", at(2)), flight("cart", at(1)), false},
		{flight("cart", at(1)), flight("shop", at(1)), true}, // same second: by name
		{flight("shop", at(1)), flight("cart", at(1)), false},
		{flight("shop", at(1)), flight("cart", nil), true},
		{flight("shop", nil), flight("cart", at(1)), false},
	} {
		if got, other := startedFirst(tc.a, tc.b), startedFirst(tc.b, tc.a); got != tc.want || other == got {
			t.Errorf("startedFirst(%s, %s) = %v and reversed %v; want %v and its opposite", tc.a.Name, tc.b.Name, got, other, tc.want)
		}
	}
}

// Of two in-flight Flights linking one flag, the one that has set it
// keeps it, whatever their start times; otherwise the first started.
func TestFlagsInUseGoToTheFlightThatSetThemFirst(t *testing.T) {
	at := func(sec int) *metav1.Time {
		tm := metav1.NewTime(t0.Add(time.Duration(sec) * time.Second))
		return &tm
	}
	flight := func(name string, phase v1alpha1.Phase, started int, applied string) *v1alpha1.Flight {
		return &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"}, Status: v1alpha1.FlightStatus{
			Phase: phase, RevisionStartedAt: at(started),
			Flags: []v1alpha1.FlagStatus{{ConfigMap: "flags", Key: rollout.DefaultFlagKey, Flag: "new-checkout", Applied: applied}},
		}}
	}
	id := rollout.FlagID("flags", rollout.DefaultFlagKey, "new-checkout")
	for _, tc := range []struct {
		name      string
		me, other *v1alpha1.Flight
		want      string
	}{
		{"the other set it", flight("cart", v1alpha1.PhaseProgressing, 1, ""), flight("web", v1alpha1.PhaseProgressing, 1, "h1"), "shop/web"},
		{"this one set it", flight("web", v1alpha1.PhaseProgressing, 2, "h1"), flight("cart", v1alpha1.PhaseProgressing, 1, ""), ""},
		{"neither: the first started", flight("web", v1alpha1.PhaseProgressing, 2, ""), flight("cart", v1alpha1.PhaseProgressing, 1, ""), "shop/cart"},
		{"neither, same second: by name", flight("web", v1alpha1.PhaseProgressing, 1, ""), flight("cart", v1alpha1.PhaseProgressing, 1, ""), "shop/cart"},
		{"this one at rest, starting", flight("web", v1alpha1.PhaseSucceeded, 9, "h0"), flight("cart", v1alpha1.PhaseProgressing, 1, ""), "shop/cart"},
		{"the other at rest", flight("web", v1alpha1.PhaseProgressing, 2, ""), flight("cart", v1alpha1.PhaseSucceeded, 1, "h1"), ""},
	} {
		indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc, flagDocIndex: flagDocsOf})
		for _, f := range []*v1alpha1.Flight{tc.me, tc.other} {
			if err := indexer.Add(f); err != nil {
				t.Fatal(err)
			}
		}
		c := &Controller{flightLister: cachedFlights(indexer)}
		c.scopes = c.flightLister.scopes
		if got := c.flagsInUse(tc.me, nil)[id]; got != tc.want {
			t.Errorf("%s: in use by %q, want %q", tc.name, got, tc.want)
		}
	}
}

// t0 is when the tests' clocks start.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// cachedFlights reads Flights from indexer, as a cluster-wide engine's
// caches would hold them.
func cachedFlights(indexer cache.Indexer) cached[*v1alpha1.Flight] {
	s := &scopes{byNamespace: map[string]*scope{"": {flightList: listers.New[*v1alpha1.Flight](indexer, v1alpha1.FlightResource.GroupResource()), flightIndex: indexer}}}
	return cached[*v1alpha1.Flight]{s, v1alpha1.FlightResource.GroupResource(), func(s *scope) listers.ResourceIndexer[*v1alpha1.Flight] { return s.flightList }}
}

// A Flight whose policy links no release flag, and that has none in its
// status, reads no other Flight: the controller here has no caches at all
// to read.
func TestAFlightWithoutReleaseFlagsReadsNoOtherFlight(t *testing.T) {
	f := &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}
	if got := (&Controller{}).flagsInUse(f, &rollout.Policy{Name: "standard"}); got != nil {
		t.Errorf("flags in use: %v, want none", got)
	}
}
