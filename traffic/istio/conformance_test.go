package istio_test

import (
	"testing"

	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
	"github.com/fledgehq/fledge/traffic/traffictest"
)

// The fake clientset applies JSON patches (including their test
// operations) but keeps no resourceVersions and checks none on update:
// races are exercised in this package's own tests and in e2e/traffic.

func TestGeneratedConforms(t *testing.T) {
	traffictest.Run(t, traffictest.Harness{
		New: func(t *testing.T) (traffic.Router, traffic.Target) {
			return istio.New(fake.NewSimpleClientset()), withBaseline(generatedTarget())
		},
	})
}

func TestGeneratedWithACacheConforms(t *testing.T) {
	traffictest.Run(t, traffictest.Harness{
		New: func(t *testing.T) (traffic.Router, traffic.Target) {
			return istio.New(fake.NewSimpleClientset(), istio.WithCache(t.Context().Done())), withBaseline(generatedTarget())
		},
	})
}

func TestUserOwnedConforms(t *testing.T) {
	traffictest.Run(t, traffictest.Harness{
		New: func(t *testing.T) (traffic.Router, traffic.Target) {
			vs := userOwned(&networkingv1.HTTPRoute{Name: "primary", Route: []*networkingv1.HTTPRouteDestination{dest("web")}})
			return istio.New(fake.NewSimpleClientset(vs)), withBaseline(ownedTarget())
		},
		CannotMirror: true,
	})
}

func generatedTarget() traffic.Target {
	return traffic.Target{Namespace: "shop", Name: "web", Host: "web", Stable: "web", Canary: "web-canary"}
}

func ownedTarget() traffic.Target {
	t := generatedTarget()
	t.VirtualService, t.Route = "web-routes", "primary"
	return t
}

// userOwned is the team's VirtualService "web-routes" with the given http
// routes, as stored (the fake clientset keeps the resourceVersion given).
func userOwned(routes ...*networkingv1.HTTPRoute) *istionetv1.VirtualService {
	return &istionetv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: "web-routes", Namespace: "shop", ResourceVersion: "7"},
		Spec:       networkingv1.VirtualService{Hosts: []string{"web"}, Http: routes},
	}
}

func dest(host string) *networkingv1.HTTPRouteDestination {
	return &networkingv1.HTTPRouteDestination{Destination: &networkingv1.Destination{Host: host}}
}

func weighted(host string, weight int32) *networkingv1.HTTPRouteDestination {
	d := dest(host)
	d.Weight = weight
	return d
}
