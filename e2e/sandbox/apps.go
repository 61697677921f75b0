package sandbox

import (
	"cmp"
	"context"
	"maps"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/e2e/mesh"
)

// DeployTimeout bounds the wait for an app's Deployment to be available:
// kwok makes pods ready at once, but a busy two-core machine runs the
// controllers late.
const DeployTimeout = time.Minute

// App is one workload as the mesh and fledge see one: a Deployment whose
// pods carry Labels and behave as their annotations say, and a Service of
// the same name that selects exactly those pods.
type App struct {
	// Name is the Deployment's and the Service's.
	Name string
	// Labels are the pods' labels, which the Deployment and the Service
	// select; default app=<Name>.
	Labels map[string]string
	// Container names the pods' one container; default "app".
	Container string
	// Image is the container's image; default example.com/<Name>:v1.
	Image string
	// Replicas defaults to 1.
	Replicas int32
	// Annotations are the Deployment's (fledge's opt-in, say).
	Annotations map[string]string
	// Behaviour is the pods' annotations: how the mesh makes them answer
	// (sandbox.fledge.dev/error-rate, sandbox.fledge.dev/latency-ms, ...).
	Behaviour map[string]string
}

func (a App) labels() map[string]string {
	if a.Labels != nil {
		return maps.Clone(a.Labels)
	}
	return map[string]string{"app": a.Name}
}

// Deployment is the app's Deployment in namespace ns.
func (a App) Deployment(ns string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: a.Name, Namespace: ns, Labels: a.labels(), Annotations: maps.Clone(a.Annotations)},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(cmp.Or(a.Replicas, 1)),
			Selector: &metav1.LabelSelector{MatchLabels: a.labels()},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: a.labels(), Annotations: maps.Clone(a.Behaviour)},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  cmp.Or(a.Container, "app"),
					Image: cmp.Or(a.Image, "example.com/"+a.Name+":v1"),
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				}}},
			},
		},
	}
}

// Service is the app's Service in namespace ns: port 80, named http.
func (a App) Service(ns string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: a.Name, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: a.labels(), Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
}

// CreateApp creates the app's Deployment and Service in namespace ns and
// returns the Deployment as created. It waits for nothing: fledge, for
// one, pauses the Deployments it takes over.
func (s *Sandbox) CreateApp(t testing.TB, ns string, a App) *appsv1.Deployment {
	t.Helper()
	ctx := context.Background()
	d, err := s.Kube.AppsV1().Deployments(ns).Create(ctx, a.Deployment(ns), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create deployment %s/%s: %v", ns, a.Name, err)
	}
	if _, err := s.Kube.CoreV1().Services(ns).Create(ctx, a.Service(ns), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service %s/%s: %v", ns, a.Name, err)
	}
	return d
}

// DeployApps creates the apps in namespace ns and waits until every one of
// their Deployments is available.
func (s *Sandbox) DeployApps(t testing.TB, ns string, apps ...App) {
	t.Helper()
	for _, a := range apps {
		s.CreateApp(t, ns, a)
	}
	for _, a := range apps {
		if _, err := s.WaitDeploymentAvailable(context.Background(), ns, a.Name, DeployTimeout); err != nil {
			t.Fatal(err)
		}
	}
}

// SendTraffic adds the mesh client c, which calls its host from now on,
// and removes it when the test ends.
func (s *Sandbox) SendTraffic(t testing.TB, c mesh.Client) {
	t.Helper()
	if err := s.Mesh.AddClient(c); err != nil {
		t.Fatalf("mesh client %s: %v", c.Name, err)
	}
	t.Cleanup(func() { s.Mesh.RemoveClient(c.Name) })
}
