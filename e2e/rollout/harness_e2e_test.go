//go:build e2e

package rollout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgeengine "github.com/fledgehq/fledge/rollout/engine"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

// fastPolicies is the policy file engines run with unless a test gives its
// own: short steps, so a whole rollout takes about a dozen seconds.
const fastPolicies = `
policies:
  fast:
    steps: [20, 50]
    interval: 6s
    minInterval: 1s
    failureLimit: 2
    progressDeadline: 60s
` + healthChecks

// healthChecks is the metrics block that ends the policies here which
// judge a canary on its health alone: success rate and p95 latency, each
// over at least 50 requests; a healthy "shop" is well inside both bounds.
const healthChecks = `    metrics:
    - name: success-rate
      min: 0.97
      minSamples: 50
    - name: latency-p95
      max: 400
      minSamples: 50
`

var suite = sandbox.Suite{Options: sandbox.Options{MeshSeed: 7}}

func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }

// moduleCommand is a command of this module that tests run as a binary,
// built on first use, once per test binary.
type moduleCommand struct {
	pkg string // its import path

	once   sync.Once
	binary string
	err    error
}

// The commands the tests run.
var (
	fledgeCommand     = &moduleCommand{pkg: "github.com/fledgehq/fledge/cmd/fledge"}
	fledgectlCommand  = &moduleCommand{pkg: "github.com/fledgehq/fledge/cmd/fledgectl"}
	loadTesterCommand = &moduleCommand{pkg: "github.com/fledgehq/fledge/cmd/fledge-loadtester"}
)

// build returns the command's binary, building it the first time. A build
// that failed fails every test that needs the binary, with the compiler's
// output.
func (c *moduleCommand) build(t testing.TB) string {
	t.Helper()
	c.once.Do(func() {
		name := path.Base(c.pkg)
		dir, err := os.MkdirTemp("", "fledge-e2e-"+name+"-")
		if err != nil {
			c.err = err
			return
		}
		c.binary = filepath.Join(dir, name)
		if out, err := exec.Command("go", "build", "-o", c.binary, c.pkg).CombinedOutput(); err != nil {
			c.err = fmt.Errorf("build %s: %v\n%s", name, err, out)
		}
	})
	if c.err != nil {
		t.Fatal(c.err)
	}
	return c.binary
}

// installed is the Flight CRD and fledge's RBAC, installed once per test
// binary in the shared sandbox.
var installed struct {
	once sync.Once
	err  error
}

// engineBinary builds cmd/fledge once per test binary and installs the
// Flight CRD and fledge's RBAC in the shared sandbox.
func engineBinary(t testing.TB, sb *sandbox.Sandbox) string {
	t.Helper()
	binary := fledgeCommand.build(t)
	installed.once.Do(func() {
		if installed.err = sandbox.ApplyCRDs(context.Background(), sb.Dynamic, repoFile("deploy/crds/flights.fledge.dev.yaml")); installed.err != nil {
			return
		}
		installed.err = installRBAC(context.Background(), sb)
	})
	if installed.err != nil {
		t.Fatal(installed.err)
	}
	return binary
}

// engine is one fledge process, scoped to a test's namespace with a Lease
// of its own (named after the namespace, in fledge-system), so tests can
// kill and restart engines independently. It runs as fledge's
// ServiceAccount, with the permissions of deploy/rbac.yaml.
type engine struct {
	t           testing.TB
	sb          *sandbox.Sandbox
	binary      string
	name        string
	args        []string
	proc        *sandbox.Process
	logPath     string
	MetricsAddr string
}

type engineOptions struct {
	Policies string   // policy file content (default fastPolicies)
	Name     string   // process and identity name (default "fledge")
	Args     []string // extra flags
}

// startEngine runs a fledge process for namespace ns; it is stopped when
// the test ends.
func startEngine(t testing.TB, sb *sandbox.Sandbox, ns string, o engineOptions) *engine {
	t.Helper()
	bin := engineBinary(t, sb)
	if o.Policies == "" {
		o.Policies = fastPolicies
	}
	if o.Name == "" {
		o.Name = "fledge"
	}
	policyFile := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(policyFile, []byte(o.Policies), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := bindNamespace(sb, ns); err != nil {
		t.Fatal(err)
	}
	e := &engine{t: t, sb: sb, binary: bin, name: ns + "-" + o.Name, MetricsAddr: freeAddr(t)}
	e.args = append([]string{
		"--kubeconfig=" + serviceAccountKubeconfig(t, sb), "--policies=" + policyFile, "--prometheus-url=" + sb.PrometheusURL,
		"--metrics-addr=" + e.MetricsAddr, "--health-addr=0", "--namespaces=" + ns,
		"--leader-election-namespace=" + engineNamespace, "--leader-election-id=" + LeaseName(ns), "--identity=" + o.Name, "--log-level=debug",
		// Short leases, so that a killed leader is replaced within seconds.
		"--lease-duration=4s", "--renew-deadline=3s", "--retry-period=500ms",
	}, o.Args...)
	e.Start()
	t.Cleanup(func() {
		if e.proc != nil {
			_ = e.proc.Stop()
		}
	})
	return e
}

// LeaseName is the Lease the engines of namespace ns share (in fledge-system).
func LeaseName(ns string) string { return "fledge-" + ns }

// Start (re)starts the engine process, after Kill say.
func (e *engine) Start() {
	e.t.Helper()
	p, err := e.sb.StartProcess(e.name, nil, e.binary, e.args...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.proc = p
	e.logPath = p.LogPath()
}

// Kill ends the engine with SIGKILL: no clean shutdown, no Lease release.
func (e *engine) Kill() {
	e.proc.Kill()
	e.proc = nil
}

// LogPath is where the engine's log is (appended to across restarts, and
// still readable after Kill).
func (e *engine) LogPath() string { return e.logPath }

// shopApp creates the Deployment "shop" (2 replicas, opted in to policy)
// with its Service, sends it client traffic, and waits until fledge holds
// it. It returns the stable revision.
func shopApp(t testing.TB, sb *sandbox.Sandbox, ns, policy string, rps float64) string {
	t.Helper()
	t.Cleanup(func() { dumpOnFailure(t, sb, ns) })
	sb.CreateApp(t, ns, appOf("shop", map[string]string{rollout.AnnotationRollout: policy}, nil))
	if rps > 0 {
		sb.SendTraffic(t, mesh.Client{Name: "shopper-" + ns, Namespace: ns, Host: "shop", RPS: rps, Users: 300})
	}
	f := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
	return f.Status.StableRevision
}

// appOf is the app "name" as this suite deploys it: 2 replicas of
// example.com/<name>:v1 in a container of that name (fledge's API and
// fledgectl address containers by name), whose pods answer with the
// latency of a healthy stable revision unless behaviour says otherwise.
// annotations are the Deployment's: fledge's opt-in and a team's overrides.
func appOf(name string, annotations, behaviour map[string]string) sandbox.App {
	pod := map[string]string{"sandbox.fledge.dev/latency-ms": "p50=20,p95=60"}
	maps.Copy(pod, behaviour)
	return sandbox.App{Name: name, Container: name, Replicas: 2, Annotations: annotations, Behaviour: pod}
}

// createAnnotatedApp creates a Deployment (2 replicas, pods labelled
// app=<name>) with the given annotations and a Service of the same name,
// and sends it client traffic when rps > 0. Unlike shopApp it waits for
// nothing (the caller knows what the annotations should lead to) and
// leaves dumpOnFailure to the test, which registers it once.
func createAnnotatedApp(t *testing.T, sb *sandbox.Sandbox, ns, name string, annotations map[string]string, rps float64) *appsv1.Deployment {
	t.Helper()
	d := sb.CreateApp(t, ns, appOf(name, annotations, nil))
	if rps > 0 {
		sb.SendTraffic(t, mesh.Client{Name: name + "-client-" + ns, Namespace: ns, Host: name, RPS: rps, Users: 300})
	}
	return d
}

// setImage applies a new template as a pipeline would (a patch, like
// kubectl set image, so it never conflicts with fledge's writes), with the
// given behaviour annotations replacing the previous ones, and returns its
// revision.
func setImage(t testing.TB, sb *sandbox.Sandbox, ns, name, image string, behaviour map[string]string) string {
	t.Helper()
	ctx := context.Background()
	cur, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	annotations := map[string]any{}
	for k := range cur.Spec.Template.Annotations {
		annotations[k] = nil
	}
	annotations["sandbox.fledge.dev/latency-ms"] = "p50=20,p95=60"
	for k, v := range behaviour {
		annotations[k] = v
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": annotations},
		"spec":     map[string]any{"containers": []map[string]any{{"name": cur.Spec.Template.Spec.Containers[0].Name, "image": image}}},
	}}})
	d, err := sb.Kube.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return fledgeengine.TemplateHash(d.Spec.Template)
}

// assertSettled checks the end state of any rollout of "shop": canary at
// zero replicas, all traffic on stable. The Flight's terminal status is
// written before its last effects are applied (milliseconds later; only
// Succeeded and Idle wait for theirs, since a pipeline acts on them), so
// the end state is awaited briefly rather than read once.
func assertSettled(t testing.TB, sb *sandbox.Sandbox, ns string) {
	t.Helper()
	var replicas int32 = -1
	var w traffic.Weights
	var lastErr error
	router := istio.New(sb.Istio)
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		canary, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop-canary", metav1.GetOptions{})
		if err != nil {
			lastErr = err
			return false, nil
		}
		replicas = ptr.Deref(canary.Spec.Replicas, 1)
		w, lastErr = router.Weights(ctx, traffic.Target{Namespace: ns, Name: "shop", Host: "shop", Stable: "shop", Canary: "shop-canary"})
		return lastErr == nil && replicas == 0 && w == (traffic.Weights{Stable: 100}), nil
	})
	if err != nil {
		t.Errorf("not settled: canary replicas %d, weights %+v (%v); want 0 replicas, all on stable", replicas, w, lastErr)
	}
}

// virtualServiceNames lists the VirtualServices of a namespace, sorted.
func virtualServiceNames(t testing.TB, sb *sandbox.Sandbox, ns string) []string {
	t.Helper()
	list, err := sb.Istio.NetworkingV1().VirtualServices(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, vs := range list.Items {
		names = append(names, vs.Name)
	}
	sort.Strings(names)
	return names
}

// getFlight reads a Flight from the API server.
func getFlight(ctx context.Context, sb *sandbox.Sandbox, ns, name string) (*v1alpha1.Flight, error) {
	return sb.Fledge.FledgeV1alpha1().Flights(ns).Get(ctx, name, metav1.GetOptions{})
}

// waitFlight polls the Flight until ok accepts it.
func waitFlight(t testing.TB, sb *sandbox.Sandbox, ns, name string, timeout time.Duration, ok func(*v1alpha1.Flight) bool) *v1alpha1.Flight {
	t.Helper()
	return sb.WaitFlight(t, ns, name, timeout, ok)
}

// verdicts lists a revision's decisions, in order.
func verdicts(f *v1alpha1.Flight, rev string) []v1alpha1.Verdict {
	var out []v1alpha1.Verdict
	for _, d := range f.Status.Decisions {
		if d.Revision == rev {
			out = append(out, d.Verdict)
		}
	}
	return out
}

// dumpOnFailure logs the namespace's Deployments and ReplicaSets when the
// test failed, to see what the engine left behind.
func dumpOnFailure(t testing.TB, sb *sandbox.Sandbox, ns string) {
	if !t.Failed() {
		return
	}
	ctx := context.Background()
	if list, err := sb.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, d := range list.Items {
			b, _ := json.MarshalIndent(map[string]any{"annotations": d.Annotations, "spec": d.Spec, "status": d.Status}, "", " ")
			t.Logf("deployment %s:\n%s", d.Name, b)
		}
	}
	shop, _ := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{})
	if list, err := sb.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, rs := range list.Items {
			t.Logf("replicaset %s (ready %d of %d, revision %s, template %s)", rs.Name, rs.Status.ReadyReplicas, *rs.Spec.Replicas,
				rs.Annotations["deployment.kubernetes.io/revision"], fledgeengine.TemplateHash(rs.Spec.Template))
			if shop != nil && rs.Labels["app"] == "shop" && fledgeengine.TemplateHash(rs.Spec.Template) != fledgeengine.TemplateHash(shop.Spec.Template) {
				t.Logf("  differs from the Deployment's template: %s", cmp.Diff(shop.Spec.Template, rs.Spec.Template))
			}
		}
	}
	if f, err := getFlight(ctx, sb, ns, "shop"); err == nil {
		b, _ := json.MarshalIndent(f.Status, "", " ")
		t.Logf("flight status:\n%s", b)
	}
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// repoFile finds a file of the repository from this package's directory.
func repoFile(rel string) string { return filepath.Join("..", "..", rel) }
