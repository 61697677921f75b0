package traffictest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/traffictest"
)

func target(name string) traffic.Target {
	return traffic.Target{Namespace: "shop", Name: name, Host: name, Stable: name, Canary: name + "-canary"}
}

func TestFakeConforms(t *testing.T) {
	traffictest.Run(t, traffictest.Harness{
		New: func(t *testing.T) (traffic.Router, traffic.Target) {
			tg := target("web")
			tg.Baseline = "web-baseline"
			return traffictest.NewRouter(), tg
		},
	})
}

func TestFakeRecordsTheHistoryOfEachTarget(t *testing.T) {
	ctx := t.Context()
	r := traffictest.NewRouter()
	web, api := target("web"), target("api")
	steps := []traffic.Weights{{Stable: 90, Canary: 10}, {Stable: 50, Canary: 50}, {Stable: 50, Canary: 50}, {Stable: 100}}
	for _, w := range steps {
		if err := r.SetWeights(ctx, web, w); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.SetWeights(ctx, api, traffic.Weights{Canary: 100}); err != nil {
		t.Fatal(err)
	}
	// Failed calls, invalid weights and releases leave no step behind, and
	// the history outlives a release.
	r.FailNext(errors.New("boom"))
	_ = r.SetWeights(ctx, web, traffic.Weights{Stable: 1, Canary: 99})
	_ = r.SetWeights(ctx, web, traffic.Weights{Stable: 1, Canary: 1})
	if err := r.Release(ctx, web); err != nil {
		t.Fatal(err)
	}

	if diff := cmp.Diff(steps, r.History(web)); diff != "" {
		t.Errorf("history of web (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]traffic.Weights{{Canary: 100}}, r.History(api)); diff != "" {
		t.Errorf("history of api (-want +got):\n%s", diff)
	}
	if _, routed := r.Routed(web); routed {
		t.Error("web is still routed after Release")
	}
	if w, routed := r.Routed(api); !routed || w != (traffic.Weights{Canary: 100}) {
		t.Errorf("Routed(api) = %+v, %v; want 0/100, true", w, routed)
	}
}

func TestFakeFailsTheNextCallsInOrderWithoutEffect(t *testing.T) {
	ctx := t.Context()
	r := traffictest.NewRouter()
	web := target("web")
	conflict := fmt.Errorf("virtualservice shop/web: spec.hosts[0]: taken: %w", traffic.ErrConflict)
	flaky := errors.New("connection refused")
	r.FailNext(conflict, flaky)

	if err := r.Ensure(ctx, web); !errors.Is(err, traffic.ErrConflict) {
		t.Errorf("first call: %v, want the conflict", err)
	}
	if err := r.SetWeights(ctx, web, traffic.Weights{Stable: 50, Canary: 50}); !errors.Is(err, flaky) {
		t.Errorf("second call: %v, want %v", err, flaky)
	}
	if _, routed := r.Routed(web); routed {
		t.Error("a failed call routed the target")
	}
	if err := r.Ensure(ctx, web); err != nil {
		t.Errorf("third call: %v, want success once the failures are used up", err)
	}

	want := []traffictest.Call{
		{Method: "Ensure", Target: web, Err: conflict},
		{Method: "SetWeights", Target: web, Weights: traffic.Weights{Stable: 50, Canary: 50}, Err: flaky},
		{Method: "Ensure", Target: web},
	}
	if diff := cmp.Diff(want, r.Calls(), cmpopts.EquateErrors()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestFakeHonoursCancelledContexts(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := traffictest.NewRouter()
	if err := r.SetWeights(ctx, target("web"), traffic.Weights{Stable: 50, Canary: 50}); !errors.Is(err, context.Canceled) {
		t.Errorf("SetWeights with a cancelled context: %v, want context.Canceled", err)
	}
	if h := r.History(target("web")); len(h) != 0 {
		t.Errorf("history %+v after a cancelled call, want none", h)
	}
}
