//go:build e2e

package sandbox_test

import (
	"context"
	"testing"

	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/e2e/sandbox"
)

// app describes one revision of a demo app: a Deployment and a Service of
// its own, both labelled app=<app>, version=<version>.
type app struct {
	name, app, version string
	replicas           int32
	annotations        map[string]string // pod template annotations: the revision's behaviour
}

func (a app) labels() map[string]string { return map[string]string{"app": a.app, "version": a.version} }

func (a app) deployment(ns string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: a.name, Namespace: ns, Labels: a.labels()},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(a.replicas),
			Selector: &metav1.LabelSelector{MatchLabels: a.labels()},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: a.labels(), Annotations: a.annotations},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "app",
					Image: "example.com/" + a.app + ":" + a.version,
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				}}},
			},
		},
	}
}

func service(ns, name string, selector map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
}

// deploy creates the revision's Deployment and Service and waits until the
// Deployment is Available.
func deploy(t *testing.T, sb *sandbox.Sandbox, ns string, a app) {
	t.Helper()
	ctx := context.Background()
	if _, err := sb.Kube.AppsV1().Deployments(ns).Create(ctx, a.deployment(ns), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment %s: %v", a.name, err)
	}
	if _, err := sb.Kube.CoreV1().Services(ns).Create(ctx, service(ns, a.name, a.labels()), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service %s: %v", a.name, err)
	}
	if _, err := sb.WaitDeploymentAvailable(ctx, ns, a.name, deployTimeout); err != nil {
		t.Fatal(err)
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
