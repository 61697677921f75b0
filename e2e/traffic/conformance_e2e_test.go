//go:build e2e

package traffic_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
	"github.com/fledgehq/fledge/traffic/traffictest"
)

// The conformance suite against the real API server (validation, resource
// versions, JSON patch semantics) with the mesh emulator as the judge of
// what the weights written do to traffic.

func TestGeneratedVirtualServiceConforms(t *testing.T) {
	conformance(t, false, func(_ *testing.T, _ *sandbox.Sandbox, ns string) traffic.Target {
		return traffic.Target{Namespace: ns, Name: "web", Host: "web", Stable: "web", Canary: "web-canary", Baseline: "web-baseline"}
	})
}

func TestUserOwnedVirtualServiceConforms(t *testing.T) {
	// fledge changes only the route's destinations in a team's
	// VirtualService: it refuses to mirror through one.
	conformance(t, true, func(t *testing.T, sb *sandbox.Sandbox, ns string) traffic.Target {
		vs := &istionetv1.VirtualService{
			ObjectMeta: metav1.ObjectMeta{Name: "web-routes", Namespace: ns},
			Spec: networkingv1.VirtualService{
				Hosts: []string{"web"},
				Http: []*networkingv1.HTTPRoute{{
					Name:  "primary",
					Route: []*networkingv1.HTTPRouteDestination{{Destination: &networkingv1.Destination{Host: "web"}}},
				}},
			},
		}
		if _, err := sb.Istio.NetworkingV1().VirtualServices(ns).Create(t.Context(), vs, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return traffic.Target{
			Namespace: ns, Name: "web", Host: "web", Stable: "web", Canary: "web-canary", Baseline: "web-baseline",
			VirtualService: "web-routes", Route: "primary",
		}
	})
}

// A VirtualService another team creates for the host of a generated one
// is found in conflict by the router's cache of the namespace, as the
// API server's watch delivers it: fledge stops writing weights that Istio
// might not apply.
func TestAVirtualServiceCreatedLaterForTheHostIsAConflict(t *testing.T) {
	sb, ns := suite.Namespace(t)
	sb.DeployApps(t, ns, sandbox.App{Name: "web"}, sandbox.App{Name: "web-canary"})
	r := istio.New(sb.Istio, istio.WithCache(t.Context().Done()))
	tg := traffic.Target{Namespace: ns, Name: "web", Host: "web", Stable: "web", Canary: "web-canary"}
	if err := r.Ensure(t.Context(), tg); err != nil {
		t.Fatal(err)
	}
	if err := r.SetWeights(t.Context(), tg, traffic.Weights{Stable: 90, Canary: 10}); err != nil {
		t.Fatal(err)
	}
	theirs := &istionetv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: "team-routes", Namespace: ns},
		Spec: networkingv1.VirtualService{Hosts: []string{"web." + ns + ".svc.cluster.local"}, Http: []*networkingv1.HTTPRoute{{
			Route: []*networkingv1.HTTPRouteDestination{{Destination: &networkingv1.Destination{Host: "web"}}},
		}}},
	}
	if _, err := sb.Istio.NetworkingV1().VirtualServices(ns).Create(t.Context(), theirs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		last = r.SetWeights(ctx, tg, traffic.Weights{Stable: 80, Canary: 20})
		return errors.Is(last, traffic.ErrConflict), nil
	})
	if err != nil {
		t.Fatalf("team-routes, created for the same host, never read as a conflict; last SetWeights: %v", last)
	}
	if want := "virtualservice " + ns + "/team-routes: spec.hosts[0]: already routes"; !strings.Contains(last.Error(), want) {
		t.Errorf("conflict %q does not say %q", last, want)
	}
}

// conformance runs traffictest's suite on targets in a namespace of their
// own each, where the apps "web", "web-canary" and "web-baseline" run:
// target makes whatever else a target routes through, and returns it.
func conformance(t *testing.T, cannotMirror bool, target func(t *testing.T, sb *sandbox.Sandbox, ns string) traffic.Target) {
	sb := suite.Get(t)
	traffictest.Run(t, traffictest.Harness{
		New: func(t *testing.T) (traffic.Router, traffic.Target) {
			ns := sb.Namespace(t)
			sb.DeployApps(t, ns, sandbox.App{Name: "web"}, sandbox.App{Name: "web-canary"}, sandbox.App{Name: "web-baseline"})
			// As the engine runs it: the conflict check reads a cache.
			return istio.New(sb.Istio, istio.WithCache(t.Context().Done())), target(t, sb, ns)
		},
		Shares: func(t *testing.T, tg traffic.Target, headers map[string]string) map[string]float64 {
			return shares(t, sb, tg, headers)
		},
		MirrorShare:  func(t *testing.T, tg traffic.Target) float64 { return mirrorShare(t, sb, tg) },
		CannotMirror: cannotMirror,
	})
}
