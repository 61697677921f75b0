//go:build e2e

package sandbox_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
)

var suite = sandbox.Suite{Options: sandbox.Options{MeshSeed: 42}}

func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }

func TestDeploymentBecomesAvailableOnFakeNodes(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	a := app{name: "web", app: "web", version: "v1", replicas: 3}
	if _, err := sb.Kube.AppsV1().Deployments(ns).Create(ctx, a.App().Deployment(ns), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.WaitDeploymentAvailable(ctx, ns, "web", sandbox.DeployTimeout); err != nil {
		t.Fatal(err)
	}
	pods, err := sb.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 3 {
		t.Fatalf("got %d pods, want 3", len(pods.Items))
	}
	for _, p := range pods.Items {
		if !strings.HasPrefix(p.Spec.NodeName, "kwok-node-") {
			t.Errorf("pod %s scheduled on %q, want a kwok node", p.Name, p.Spec.NodeName)
		}
		if p.Status.PodIP == "" {
			t.Errorf("pod %s has no IP", p.Name)
		}
	}
}

func TestPausedDeploymentMakesNoNewReplicaSetUntilResumed(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	sb.DeployApps(t, ns, app{name: "held", app: "held", version: "v1", replicas: 2}.App())
	deployments := sb.Kube.AppsV1().Deployments(ns)

	patch := func(body string) *appsv1.Deployment {
		t.Helper()
		d, err := deployments.Patch(ctx, "held", "application/merge-patch+json", []byte(body), metav1.PatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	patch(`{"spec":{"paused":true}}`)
	d := patch(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"example.com/held:v2"}]}}}}`)

	// Once the controller has observed the new generation it has decided
	// what to do with the new template: while paused, nothing.
	waitObserved(t, sb, ns, "held", d.Generation)
	if n := replicaSets(t, sb, ns, "app=held"); n != 1 {
		t.Fatalf("paused deployment has %d ReplicaSets after a template change, want 1", n)
	}

	patch(`{"spec":{"paused":false}}`)
	if _, err := sb.WaitDeploymentAvailable(ctx, ns, "held", sandbox.DeployTimeout); err != nil {
		t.Fatal(err)
	}
	if n := replicaSets(t, sb, ns, "app=held"); n != 2 {
		t.Fatalf("resumed deployment has %d ReplicaSets, want 2 (old and new)", n)
	}
}

func waitObserved(t *testing.T, sb *sandbox.Sandbox, ns, name string, generation int64) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, sandbox.DeployTimeout, true, func(ctx context.Context) (bool, error) {
		d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && d.Status.ObservedGeneration >= generation, nil
	})
	if err != nil {
		t.Fatalf("deployment %s/%s: generation %d never observed: %v", ns, name, generation, err)
	}
}

func replicaSets(t *testing.T, sb *sandbox.Sandbox, ns, selector string) int {
	t.Helper()
	list, err := sb.Kube.AppsV1().ReplicaSets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	return len(list.Items)
}

// TestMeshRoutesLikeIstioAndPrometheusSeesIt is the sandbox's main check:
// weights, error rates, a weight change and a header match, each observed
// through PromQL on the real Prometheus and checked against the emulator's
// ground truth.
func TestMeshRoutesLikeIstioAndPrometheusSeesIt(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()

	v1 := app{name: "shop-v1", app: "shop", version: "v1", replicas: 2}
	v2 := app{name: "shop-v2", app: "shop", version: "v2", replicas: 1,
		annotations: map[string]string{"sandbox.fledge.dev/error-rate": "0.1"}}
	sb.DeployApps(t, ns, v1.App())
	sb.DeployApps(t, ns, v2.App())
	// The host clients call selects both revisions; the VirtualService decides.
	if _, err := sb.Kube.CoreV1().Services(ns).Create(ctx, sandbox.App{Name: "shop", Labels: map[string]string{"app": "shop"}}.Service(ns), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vs := virtualService(ns, "shop", []string{"shop"}, weighted(map[string]int32{"shop-v1": 80, "shop-v2": 20}, "shop-v1", "shop-v2"))
	vs = applyVS(t, sb, vs)

	sb.SendTraffic(t, mesh.Client{
		Name: "shopper", Namespace: ns, Host: "shop", RPS: 400, Users: 1000,
		Segments: []mesh.Segment{{Share: 0.1, Headers: map[string]string{"x-user-tier": "beta"}}},
	})

	t.Run("80/20 split and the faulty revision's error rate", func(t *testing.T) {
		// Every sample of a 25 s window that ends 30 s after the
		// VirtualService went live was routed by it.
		waitFor(t, 30*time.Second)
		sel := fmt.Sprintf(`reporter="destination",destination_workload_namespace=%q`, ns)
		byWorkload := query(t, sb, fmt.Sprintf(`sum by (destination_workload) (increase(istio_requests_total{%s}[25s]))`, sel), "destination_workload")
		total := byWorkload["shop-v1"] + byWorkload["shop-v2"]
		if total < 5000 {
			t.Fatalf("Prometheus saw %.0f requests in 25 s, want about 10000: %v", total, byWorkload)
		}
		within(t, "share of shop-v2", byWorkload["shop-v2"]/total, 0.20, 0.03)

		errs := query(t, sb, fmt.Sprintf(`sum by (destination_workload) (increase(istio_requests_total{%s,response_code=~"5.."}[25s]))
			/ sum by (destination_workload) (increase(istio_requests_total{%s}[25s]))`, sel, sel), "destination_workload")
		within(t, "error rate of shop-v2", errs["shop-v2"], 0.10, 0.03)
		if e := errs["shop-v1"]; e != 0 {
			t.Errorf("error rate of the healthy shop-v1 is %.4f, want 0", e)
		}

		// Prometheus agrees with what the emulator served.
		served := sb.Mesh.Served()
		g1, g2 := served[revision(t, sb, ns, "shop-v1")], served[revision(t, sb, ns, "shop-v2")]
		within(t, "ground-truth share of shop-v2", float64(g2.Requests)/float64(g1.Requests+g2.Requests), 0.20, 0.03)
		within(t, "ground-truth error rate of shop-v2", float64(g2.Errors)/float64(g2.Requests), 0.10, 0.03)
		if g1.Errors != 0 {
			t.Errorf("shop-v1 served %d errors, want 0", g1.Errors)
		}
	})

	t.Run("weights 0/100 move all traffic and Prometheus follows", func(t *testing.T) {
		vs.Spec.Http = []*networkingv1.HTTPRoute{weighted(map[string]int32{"shop-v1": 0, "shop-v2": 100}, "shop-v1", "shop-v2")}
		vs = applyVS(t, sb, vs)
		got := observe(sb, "shopper", 2000)
		if n := got["shop-v1"]; n != 0 {
			t.Fatalf("%d of 2000 requests reached shop-v1 after weights 0/100: %v", n, got)
		}
		sel := fmt.Sprintf(`reporter="destination",destination_workload_namespace=%q`, ns)
		pollQuery(t, sb, fmt.Sprintf(`sum by (destination_workload) (rate(istio_requests_total{%s}[4s]))`, sel), "destination_workload",
			func(v map[string]float64) bool { return v["shop-v1"] == 0 && v["shop-v2"] > 300 })
	})

	t.Run("a header match sends every beta user, and no one else, to shop-v2", func(t *testing.T) {
		beta := weighted(map[string]int32{"shop-v2": 100}, "shop-v2")
		beta.Match = []*networkingv1.HTTPMatchRequest{{Headers: map[string]*networkingv1.StringMatch{
			"x-user-tier": {MatchType: &networkingv1.StringMatch_Exact{Exact: "beta"}},
		}}}
		vs.Spec.Http = []*networkingv1.HTTPRoute{beta, weighted(map[string]int32{"shop-v1": 100}, "shop-v1")}
		vs = applyVS(t, sb, vs)

		var mu sync.Mutex
		var betaSeen, total int
		var wrong []string
		done := make(chan struct{})
		cancel := sb.Mesh.Observe(func(req mesh.Request, resp mesh.Response) {
			if req.Client != "shopper" {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if total == 4000 {
				return
			}
			isBeta := req.Headers["x-user-tier"] == "beta"
			want := "shop-v1"
			if isBeta {
				want = "shop-v2"
				betaSeen++
			}
			if resp.Workload != want && len(wrong) < 5 {
				wrong = append(wrong, fmt.Sprintf("user %s (beta=%v) reached %q", req.User, isBeta, resp.Workload))
			}
			if total++; total == 4000 {
				close(done)
			}
		})
		<-done
		cancel()
		mu.Lock()
		defer mu.Unlock()
		if len(wrong) > 0 {
			t.Fatalf("misrouted: %v", wrong)
		}
		within(t, "share of beta requests", float64(betaSeen)/float64(total), 0.10, 0.04)

		sel := fmt.Sprintf(`reporter="destination",destination_workload_namespace=%q`, ns)
		pollQuery(t, sb, fmt.Sprintf(`sum by (destination_workload) (rate(istio_requests_total{%s}[4s]))`, sel), "destination_workload",
			func(v map[string]float64) bool {
				all := v["shop-v1"] + v["shop-v2"]
				return all > 300 && math.Abs(v["shop-v2"]/all-0.10) < 0.05
			})
	})
}

// applyVS creates or updates a VirtualService and waits until the mesh
// routes with that version of it.
func applyVS(t *testing.T, sb *sandbox.Sandbox, vs *istionetv1.VirtualService) *istionetv1.VirtualService {
	t.Helper()
	ctx := context.Background()
	vss := sb.Istio.NetworkingV1().VirtualServices(vs.Namespace)
	var out *istionetv1.VirtualService
	var err error
	if vs.ResourceVersion == "" {
		out, err = vss.Create(ctx, vs, metav1.CreateOptions{})
	} else {
		out, err = vss.Update(ctx, vs, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("apply virtualservice %s/%s: %v", vs.Namespace, vs.Name, err)
	}
	if err := sb.WaitMeshRoutes(ctx, out.Namespace, out.Name, out.ResourceVersion); err != nil {
		t.Fatal(err)
	}
	return out
}

// observe counts by workload the next n requests of a client.
func observe(sb *sandbox.Sandbox, client string, n int) map[string]int {
	var mu sync.Mutex
	got := map[string]int{}
	seen := 0
	done := make(chan struct{})
	cancel := sb.Mesh.Observe(func(req mesh.Request, resp mesh.Response) {
		if req.Client != client {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if seen >= n {
			return
		}
		got[resp.Workload]++
		if seen++; seen == n {
			close(done)
		}
	})
	<-done
	cancel()
	mu.Lock()
	defer mu.Unlock()
	return got
}

func revision(t *testing.T, sb *sandbox.Sandbox, ns, deployment string) mesh.Revision {
	t.Helper()
	ctx := context.Background()
	d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, deployment, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := sb.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.Set(d.Spec.Selector.MatchLabels).String()})
	if err != nil || len(rs.Items) != 1 {
		t.Fatalf("replicasets of %s: %v (%d found, want 1)", deployment, err, len(rs.Items))
	}
	return mesh.Revision{Namespace: ns, Workload: deployment, TemplateHash: rs.Items[0].Labels["pod-template-hash"]}
}

func query(t *testing.T, sb *sandbox.Sandbox, q, label string) map[string]float64 {
	t.Helper()
	v, err := sb.QueryVector(context.Background(), q, label)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// pollQuery re-runs a query until ok accepts its result, for changes that
// Prometheus sees a scrape or two later.
func pollQuery(t *testing.T, sb *sandbox.Sandbox, q, label string, ok func(map[string]float64) bool) {
	t.Helper()
	var last map[string]float64
	var lastErr error
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		last, lastErr = sb.QueryVector(ctx, q, label)
		return lastErr == nil && ok(last), nil
	})
	if err != nil {
		t.Fatalf("%s: never satisfied: last result %v (error %v)", q, last, lastErr)
	}
}

func within(t *testing.T, what string, got, want, tolerance float64) {
	t.Helper()
	if math.IsNaN(got) || math.Abs(got-want) > tolerance {
		t.Errorf("%s = %.4f, want %.2f ± %.2f", what, got, want, tolerance)
	} else {
		t.Logf("%s = %.4f (want %.2f ± %.2f)", what, got, want, tolerance)
	}
}

// waitFor lets traffic accumulate; it asserts nothing about time.
func waitFor(t *testing.T, d time.Duration) {
	t.Helper()
	t.Logf("letting traffic run for %s", d)
	time.Sleep(d)
}
