//go:build e2e

package traffic_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/traffic"
)

var suite = sandbox.Suite{Options: sandbox.Options{MeshSeed: 7}}

func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }

const deployTimeout = time.Minute

// app is one workload: a Deployment and a Service of the same name that
// selects only its pods, as fledge's stable and "<name>-canary" are.
type app struct {
	name     string
	replicas int32
}

func (a app) labels() map[string]string { return map[string]string{"app": a.name} }

// deploy creates the apps' Deployments and Services and waits until every
// Deployment is available.
func deploy(t *testing.T, sb *sandbox.Sandbox, ns string, apps ...app) {
	t.Helper()
	ctx := t.Context()
	for _, a := range apps {
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: a.name, Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(cmp.Or(a.replicas, 1)),
				Selector: &metav1.LabelSelector{MatchLabels: a.labels()},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: a.labels()},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "app", Image: "example.com/" + a.name + ":v1",
						Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
					}}},
				},
			},
		}
		if _, err := sb.Kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create deployment %s/%s: %v", ns, a.name, err)
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: a.name, Namespace: ns},
			Spec:       corev1.ServiceSpec{Selector: a.labels(), Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		}
		if _, err := sb.Kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create service %s/%s: %v", ns, a.name, err)
		}
	}
	for _, a := range apps {
		if _, err := sb.WaitDeploymentAvailable(ctx, ns, a.name, deployTimeout); err != nil {
			t.Fatal(err)
		}
	}
}

// waitApplied waits until the mesh routes with the target's VirtualService
// as now stored, or without it when there is none.
func waitApplied(t *testing.T, sb *sandbox.Sandbox, tg traffic.Target) {
	t.Helper()
	name := cmp.Or(tg.VirtualService, tg.Name)
	want := ""
	vs, err := sb.Istio.NetworkingV1().VirtualServices(tg.Namespace).Get(t.Context(), name, metav1.GetOptions{})
	switch {
	case err == nil:
		want = vs.ResourceVersion
	case !apierrors.IsNotFound(err):
		t.Fatalf("get virtualservice %s/%s: %v", tg.Namespace, name, err)
	}
	err = wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return sb.Mesh.AppliedVersion("VirtualService", tg.Namespace, name) == want, nil
	})
	if err != nil {
		t.Fatalf("virtualservice %s/%s at version %q never reached the mesh: %v (problems: %v)", tg.Namespace, name, want, err, sb.Mesh.Problems())
	}
}

// route sends n requests for the host from a probe in the namespace,
// synchronously, and counts them by the workload that answered. Requests
// that no pod answered fail the test: a routing mistake must not pass as
// "not the canary".
func route(t *testing.T, sb *sandbox.Sandbox, ns string, n int, req mesh.Request) map[string]int {
	t.Helper()
	req.Client, req.SourceNamespace = "probe", ns
	got := map[string]int{}
	for i := range n {
		req.User = fmt.Sprint(i)
		resp := sb.Mesh.Route(req)
		if resp.Workload == "" {
			t.Fatalf("request %d for %s from %s got %d %s with no pod answering (problems: %v)", i, req.Host, ns, resp.Code, resp.Flags, sb.Mesh.Problems())
		}
		got[resp.Workload]++
	}
	return got
}

// canaryShare measures, once the mesh applies the target's routing as
// stored, the share of 2000 requests for the host that the canary serves.
func canaryShare(t *testing.T, sb *sandbox.Sandbox, tg traffic.Target) float64 {
	t.Helper()
	return requestShare(t, sb, tg, nil)
}

// requestShare is canaryShare for requests that all carry headers.
func requestShare(t *testing.T, sb *sandbox.Sandbox, tg traffic.Target, headers map[string]string) float64 {
	t.Helper()
	waitApplied(t, sb, tg)
	const n = 2000
	got := route(t, sb, tg.Namespace, n, mesh.Request{Host: tg.Host, Headers: headers})
	if got[tg.Stable]+got[tg.Canary] != n {
		t.Fatalf("requests for %s reached %v, want only %s and %s", tg.Host, got, tg.Stable, tg.Canary)
	}
	return float64(got[tg.Canary]) / n
}
