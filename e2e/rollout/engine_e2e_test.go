//go:build e2e

package rollout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

// The policy the engine runs with in these tests: short steps, so a whole
// rollout takes about half a minute.
const policies = `
policies:
  fast:
    steps: [20, 50]
    interval: 6s
    minInterval: 1s
    failureLimit: 2
    progressDeadline: 60s
    metrics:
    - name: success-rate
      min: 0.97
      minSamples: 50
    - name: latency-p95
      max: 400
      minSamples: 50
`

var (
	suite  = sandbox.Suite{Options: sandbox.Options{MeshSeed: 7}}
	engine struct {
		once    sync.Once
		binary  string
		err     error
		started bool
	}
)

func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }

// startEngine builds cmd/fledge (once), installs the Flight CRD and runs
// one engine process against the shared sandbox.
func startEngine(t *testing.T, sb *sandbox.Sandbox) {
	t.Helper()
	engine.once.Do(func() {
		dir, err := os.MkdirTemp("", "fledge-e2e-bin-")
		if err != nil {
			engine.err = err
			return
		}
		engine.binary = filepath.Join(dir, "fledge")
		out, err := exec.Command("go", "build", "-o", engine.binary, "github.com/fledgehq/fledge/cmd/fledge").CombinedOutput()
		if err != nil {
			engine.err = fmt.Errorf("build fledge: %v\n%s", err, out)
			return
		}
		if err := sandbox.ApplyCRDs(context.Background(), sb.Dynamic, repoFile("deploy/crds/flights.fledge.dev.yaml")); err != nil {
			engine.err = err
			return
		}
		policyFile := filepath.Join(sb.Dir, "policies.yaml")
		if err := os.WriteFile(policyFile, []byte(policies), 0o644); err != nil {
			engine.err = err
			return
		}
		metricsAddr := freeAddr(t)
		_, err = sb.StartProcess("fledge", nil, engine.binary,
			"--kubeconfig="+sb.Kubeconfig, "--policies="+policyFile, "--prometheus-url="+sb.PrometheusURL,
			"--metrics-addr="+metricsAddr, "--health-addr=0", "--leader-election-namespace=default", "--log-level=debug")
		if err != nil {
			engine.err = err
			return
		}
		engine.err = sb.AddScrapeTarget("fledge", metricsAddr)
	})
	if engine.err != nil {
		t.Fatal(engine.err)
	}
}

func TestHealthyRevisionIsPromotedAndFaultyOneRolledBack(t *testing.T) {
	sb := suite.Get(t)
	startEngine(t, sb)
	ns := sb.Namespace(t)
	ctx := context.Background()

	t.Cleanup(func() { dumpOnFailure(t, sb, ns) })
	shop := shopDeployment(ns)
	if _, err := sb.Kube.AppsV1().Deployments(ns).Create(ctx, shop, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "shop"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := sb.Mesh.AddClient(mesh.Client{Name: "shopper", Namespace: ns, Host: "shop", RPS: 200, Users: 300}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Mesh.RemoveClient("shopper") })

	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *rollout.Flight) bool { return f.Status.Phase == rollout.PhaseIdle })

	t.Run("a healthy revision goes through every step and is promoted", func(t *testing.T) {
		began := time.Now()
		rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
		f := waitFlight(t, sb, ns, "shop", 3*time.Minute, func(f *rollout.Flight) bool {
			return f.Status.Phase == rollout.PhaseSucceeded && f.Status.StableRevision == rev
		})
		t.Logf("promoted in %s", time.Since(began).Round(time.Second))
		var verdicts []rollout.Verdict
		for _, d := range f.Status.Decisions {
			if d.Revision == rev {
				verdicts = append(verdicts, d.Verdict)
			}
		}
		want := []rollout.Verdict{rollout.VerdictStart, rollout.VerdictAdvance, rollout.VerdictPromote, rollout.VerdictPromoted}
		if fmt.Sprint(verdicts) != fmt.Sprint(want) {
			t.Errorf("decision log for %s: %v, want %v", rev, verdicts, want)
		}
		// The user's Deployment runs the new template on every replica and
		// is held again; the canary is at zero; all traffic is on stable.
		d, err := sb.WaitDeploymentAvailable(ctx, ns, "shop", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Spec.Paused || d.Spec.Template.Spec.Containers[0].Image != "example.com/shop:v2" {
			t.Errorf("deployment after promotion: paused=%v image=%s", d.Spec.Paused, d.Spec.Template.Spec.Containers[0].Image)
		}
		assertSettled(t, sb, ns)
		if served := served(sb, ns, "shop-canary"); served.Requests == 0 {
			t.Error("the canary never served a request")
		}
	})

	t.Run("a revision with 10% errors is rolled back", func(t *testing.T) {
		before := served(sb, ns, "shop-canary")
		rev := setImage(t, sb, ns, "shop", "example.com/shop:v3", map[string]string{"sandbox.fledge.dev/error-rate": "0.1"})
		f := waitFlight(t, sb, ns, "shop", 3*time.Minute, func(f *rollout.Flight) bool {
			return f.Status.Phase == rollout.PhaseRolledBack && f.Status.RejectedRevision == rev
		})
		t.Logf("rolled back: %s", f.Status.Message)
		after := served(sb, ns, "shop-canary")
		t.Logf("bad responses users got from the faulty canary: %d of %d requests", after.Errors-before.Errors, after.Requests-before.Requests)
		// The Deployment keeps the rejected template in its spec but never
		// rolled it out: every pod still runs the promoted revision.
		d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sets, err := sb.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=shop"})
		if err != nil {
			t.Fatal(err)
		}
		var running []string
		for _, rs := range sets.Items {
			if rs.Status.Replicas > 0 {
				running = append(running, rollout.TemplateHash(rs.Spec.Template))
			}
		}
		if !d.Spec.Paused || rollout.TemplateHash(d.Spec.Template) != rev || fmt.Sprint(running) != fmt.Sprint([]string{f.Status.StableRevision}) {
			t.Errorf("after rollback: paused=%v spec template=%s, pods run %v; want paused, %s in spec, pods on %s only",
				d.Spec.Paused, rollout.TemplateHash(d.Spec.Template), running, rev, f.Status.StableRevision)
		}
		assertSettled(t, sb, ns)
	})
}

func shopDeployment(ns string) *appsv1.Deployment {
	labels := map[string]string{"app": "shop"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: ns, Annotations: map[string]string{rollout.AnnotationRollout: "fast"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"sandbox.fledge.dev/latency-ms": "p50=20,p95=60"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "shop", Image: "example.com/shop:v1"}}},
			},
		},
	}
}

// setImage applies a new template, as a pipeline would, and returns its revision.
func setImage(t *testing.T, sb *sandbox.Sandbox, ns, name, image string, behaviour map[string]string) string {
	t.Helper()
	ctx := context.Background()
	d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Template.Spec.Containers[0].Image = image
	d.Spec.Template.Annotations = map[string]string{"sandbox.fledge.dev/latency-ms": "p50=20,p95=60"}
	for k, v := range behaviour {
		d.Spec.Template.Annotations[k] = v
	}
	d, err = sb.Kube.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rollout.TemplateHash(d.Spec.Template)
}

// assertSettled checks the end state of any rollout: canary at zero
// replicas, all traffic on stable.
func assertSettled(t *testing.T, sb *sandbox.Sandbox, ns string) {
	t.Helper()
	ctx := context.Background()
	canary, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *canary.Spec.Replicas != 0 {
		t.Errorf("canary has %d replicas, want 0", *canary.Spec.Replicas)
	}
	w, err := istio.New(sb.Istio).Weights(ctx, traffic.Target{Namespace: ns, Name: "shop", Host: "shop", Stable: "shop", Canary: "shop-canary"})
	if err != nil || w != (traffic.Weights{Stable: 100}) {
		t.Errorf("weights %+v (%v), want all on stable", w, err)
	}
}

func served(sb *sandbox.Sandbox, ns, workload string) mesh.Counts {
	var c mesh.Counts
	for rev, n := range sb.Mesh.Served() {
		if rev.Namespace == ns && rev.Workload == workload {
			c.Requests += n.Requests
			c.Errors += n.Errors
		}
	}
	return c
}

func waitFlight(t *testing.T, sb *sandbox.Sandbox, ns, name string, timeout time.Duration, ok func(*rollout.Flight) bool) *rollout.Flight {
	t.Helper()
	var last *rollout.Flight
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		u, err := sb.Dynamic.Resource(rollout.FlightResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		f, err := rollout.FlightFrom(u)
		if err != nil {
			return false, err
		}
		last = f
		return ok(f), nil
	})
	if err != nil {
		if last != nil {
			t.Fatalf("flight %s/%s: %v; last status: phase=%s step=%d weight=%d hold=%+v message=%q", ns, name, err, last.Status.Phase, last.Status.Step, last.Status.CanaryWeight, last.Status.Hold, last.Status.Message)
		}
		t.Fatalf("flight %s/%s never appeared: %v", ns, name, err)
	}
	return last
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// repoFile finds a file of the repository from this package's directory.
func repoFile(rel string) string { return filepath.Join("..", "..", rel) }

// dumpOnFailure logs the namespace's Deployments and ReplicaSets (templates
// and status) when the test failed, to see what the engine left behind.
func dumpOnFailure(t *testing.T, sb *sandbox.Sandbox, ns string) {
	if !t.Failed() {
		return
	}
	ctx := context.Background()
	if list, err := sb.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, d := range list.Items {
			b, _ := json.MarshalIndent(map[string]any{"meta": d.ObjectMeta.Annotations, "spec": d.Spec, "status": d.Status}, "", " ")
			t.Logf("deployment %s:\n%s", d.Name, b)
		}
	}
	shop, _ := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{})
	if list, err := sb.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, rs := range list.Items {
			b, _ := json.MarshalIndent(rs.Spec.Template, "", " ")
			t.Logf("replicaset %s (replicas %d/%d, revision %s, template %s): %s", rs.Name, rs.Status.ReadyReplicas, *rs.Spec.Replicas,
				rs.Annotations["deployment.kubernetes.io/revision"], rollout.TemplateHash(rs.Spec.Template), b)
			if shop != nil && rs.Labels["app"] == "shop" {
				t.Logf("deployment shop template %s vs %s: %s", rollout.TemplateHash(shop.Spec.Template), rs.Name, cmp.Diff(shop.Spec.Template, rs.Spec.Template))
			}
		}
	}
}
