//go:build e2e

package traffic_test

import (
	"testing"

	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
	"github.com/fledgehq/fledge/traffic/traffictest"
)

// The conformance suite against the real API server (validation, resource
// versions, JSON patch semantics) with the mesh emulator as the judge of
// what the weights written do to traffic.

func TestGeneratedVirtualServiceConforms(t *testing.T) {
	conformance(t, func(_ *testing.T, _ *sandbox.Sandbox, ns string) traffic.Target {
		return traffic.Target{Namespace: ns, Name: "web", Host: "web", Stable: "web", Canary: "web-canary"}
	})
}

func TestUserOwnedVirtualServiceConforms(t *testing.T) {
	conformance(t, func(t *testing.T, sb *sandbox.Sandbox, ns string) traffic.Target {
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
			Namespace: ns, Name: "web", Host: "web", Stable: "web", Canary: "web-canary",
			VirtualService: "web-routes", Route: "primary",
		}
	})
}

// conformance runs traffictest's suite on targets in a namespace of their
// own each, where the apps "web" and "web-canary" run: target makes
// whatever else a target routes through, and returns it.
func conformance(t *testing.T, target func(t *testing.T, sb *sandbox.Sandbox, ns string) traffic.Target) {
	sb := suite.Get(t)
	traffictest.Run(t, traffictest.Harness{
		New: func(t *testing.T) (traffic.Router, traffic.Target) {
			ns := sb.Namespace(t)
			sb.DeployApps(t, ns, sandbox.App{Name: "web"}, sandbox.App{Name: "web-canary"})
			return istio.New(sb.Istio), target(t, sb, ns)
		},
		CanaryShare: func(t *testing.T, tg traffic.Target) float64 { return canaryShare(t, sb, tg) },
		RequestShare: func(t *testing.T, tg traffic.Target, headers map[string]string) float64 {
			return requestShare(t, sb, tg, headers)
		},
	})
}
