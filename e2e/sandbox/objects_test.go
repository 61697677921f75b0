//go:build e2e

package sandbox_test

import (
	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/e2e/sandbox"
)

// app describes one revision of a demo app: a Deployment and a Service of
// its own, both labelled app=<app>, version=<version>.
type app struct {
	name, app, version string
	replicas           int32
	annotations        map[string]string // pod template annotations: the revision's behaviour
}

// App is the revision as the sandbox deploys it.
func (a app) App() sandbox.App {
	return sandbox.App{
		Name:      a.name,
		Labels:    map[string]string{"app": a.app, "version": a.version},
		Image:     "example.com/" + a.app + ":" + a.version,
		Replicas:  a.replicas,
		Behaviour: a.annotations,
	}
}

// weighted is an http route splitting traffic between Services by weight.
func weighted(weights map[string]int32, order ...string) *networkingv1.HTTPRoute {
	r := &networkingv1.HTTPRoute{}
	for _, host := range order {
		r.Route = append(r.Route, &networkingv1.HTTPRouteDestination{
			Destination: &networkingv1.Destination{Host: host},
			Weight:      weights[host],
		})
	}
	return r
}

func virtualService(ns, name string, hosts []string, routes ...*networkingv1.HTTPRoute) *istionetv1.VirtualService {
	return &istionetv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       networkingv1.VirtualService{Hosts: hosts, Http: routes},
	}
}
