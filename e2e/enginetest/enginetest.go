// Package enginetest runs fledge as the sandbox suites do (its binary,
// built once per test binary, as its ServiceAccount, with the install's
// RBAC) beside the app "shop", and reads what it did. It serves the
// suites of e2e/compare and e2e/strategies; e2e/rollout has a harness of
// its own, with more engine options.
package enginetest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// EngineNamespace is fledge's own namespace, where deploy/rbac.yaml puts
// its ServiceAccount and the Secrets its policies name.
const EngineNamespace = "fledge-system"

// The engine's binary, built once per test binary, and the CRD, RBAC and
// Slack Secret it needs, installed once in the shared sandbox.
var (
	buildOnce   sync.Once
	binary      string
	buildErr    error
	installOnce sync.Once
	installErr  error
)

// EngineBinary builds cmd/fledge once per test binary and installs the
// Flight CRD, fledge's RBAC and the Slack Secret the demo's policy names.
func EngineBinary(t testing.TB, sb *sandbox.Sandbox) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fledge-e2e-fledge-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "fledge")
		if out, err := exec.Command("go", "build", "-o", binary, "github.com/fledgehq/fledge/cmd/fledge").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build fledge: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	installOnce.Do(func() {
		ctx := context.Background()
		if installErr = sandbox.ApplyCRDs(ctx, sb.Dynamic, RepoFile("deploy/crds/flights.fledge.dev.yaml")); installErr != nil {
			return
		}
		if installErr = installRBAC(ctx, sb); installErr != nil {
			return
		}
		_, err := sb.Kube.CoreV1().Secrets(EngineNamespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "fledge-slack", Namespace: EngineNamespace},
			Data:       map[string][]byte{"webhook-url": []byte(sb.Slack.WebhookURL())},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			installErr = err
		}
	})
	if installErr != nil {
		t.Fatal(installErr)
	}
	return binary
}

// StartEngine runs a fledge process for namespace ns with the given policy
// file, as fledge's ServiceAccount, with a Lease of its own; it is stopped
// when the test ends.
func StartEngine(t testing.TB, sb *sandbox.Sandbox, ns, policies string) {
	t.Helper()
	startEngine(t, sb, ns, policies, true)
}

// StartEngineWithoutSecrets is StartEngine in a namespace whose install
// does not let fledge read Secrets (the chart's rbac.configSecrets off:
// the RoleBinding fledge-config-secrets removed).
func StartEngineWithoutSecrets(t testing.TB, sb *sandbox.Sandbox, ns, policies string) {
	t.Helper()
	startEngine(t, sb, ns, policies, false)
}

func startEngine(t testing.TB, sb *sandbox.Sandbox, ns, policies string, secrets bool) {
	t.Helper()
	bin := EngineBinary(t, sb)
	policyFile := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(policyFile, []byte(policies), 0o644); err != nil {
		t.Fatal(err)
	}
	// fledge acts in ns as the install lets it: deploy/rbac-namespace.yaml
	// applied there.
	if err := sb.ApplyRBAC(context.Background(), RepoFile("deploy/rbac-namespace.yaml"), ns); err != nil {
		t.Fatal(err)
	}
	if !secrets {
		if err := sb.Kube.RbacV1().RoleBindings(ns).Delete(context.Background(), "fledge-config-secrets", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := sb.StartProcess(ns+"-fledge", nil, bin,
		"--kubeconfig="+ServiceAccountKubeconfig(t, sb), "--policies="+policyFile, "--prometheus-url="+sb.PrometheusURL,
		"--metrics-addr="+FreeAddr(t), "--health-addr=0", "--namespaces="+ns,
		"--leader-election-namespace="+EngineNamespace, "--leader-election-id=fledge-"+ns, "--identity=fledge", "--log-level=debug",
		"--lease-duration=4s", "--renew-deadline=3s", "--retry-period=500ms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
}

// ShopApp creates the Deployment "shop" (2 replicas, opted in to policy,
// pods behaving as behaviour says over AppOf's defaults) with its Service,
// sends it rps requests a second from 300 users (segments of them with
// extra headers), and waits until fledge holds it. It returns the stable
// revision.
func ShopApp(t testing.TB, sb *sandbox.Sandbox, ns, policy string, rps float64, behaviour map[string]string, segments ...mesh.Segment) string {
	t.Helper()
	t.Cleanup(func() { DumpOnFailure(t, sb, ns) })
	sb.CreateApp(t, ns, AppOf("shop", map[string]string{rollout.AnnotationRollout: policy}, behaviour))
	sb.SendTraffic(t, mesh.Client{Name: "shopper-" + ns, Namespace: ns, Host: "shop", RPS: rps, Users: 300, Segments: segments})
	f := WaitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
	return f.Status.StableRevision
}

// DefaultLatency is how every revision here answers unless told otherwise:
// a p50 of 20 ms and a p95 of 60 ms (so a p99 of about 95 ms).
const DefaultLatency = "p50=20,p95=60"

// AppOf is the app "name" as this suite deploys it: 2 replicas of
// example.com/<name>:v1 in a container of that name, whose pods answer
// with DefaultLatency unless behaviour says otherwise.
func AppOf(name string, annotations, behaviour map[string]string) sandbox.App {
	pod := map[string]string{"sandbox.fledge.dev/latency-ms": DefaultLatency}
	maps.Copy(pod, behaviour)
	return sandbox.App{Name: name, Container: name, Replicas: 2, Annotations: annotations, Behaviour: pod}
}

// SetImage applies a new template as a pipeline would (a patch, like
// kubectl set image), with the given behaviour annotations replacing the
// previous ones over DefaultLatency, and returns its revision.
func SetImage(t testing.TB, sb *sandbox.Sandbox, ns, name, image string, behaviour map[string]string) string {
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
	annotations["sandbox.fledge.dev/latency-ms"] = DefaultLatency
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

// ShopTarget is "shop"'s routing as fledge manages it.
func ShopTarget(ns string) traffic.Target {
	return traffic.Target{Namespace: ns, Name: "shop", Host: "shop", Stable: "shop", Canary: "shop-canary", Baseline: "shop-baseline", Comparator: "shop-mirror"}
}

// AssertSettled checks the end state of a rollout of "shop": canary at
// zero replicas, all traffic on stable (awaited briefly: the terminal
// status is written just before its last effects are applied).
func AssertSettled(t testing.TB, sb *sandbox.Sandbox, ns string) {
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
		w, lastErr = router.Weights(ctx, ShopTarget(ns))
		return lastErr == nil && replicas == 0 && w == (traffic.Weights{Stable: 100}), nil
	})
	if err != nil {
		t.Errorf("not settled: canary replicas %d, weights %+v (%v); want 0 replicas, all on stable", replicas, w, lastErr)
	}
}

// GetFlight reads a Flight from the API server.
func GetFlight(ctx context.Context, sb *sandbox.Sandbox, ns, name string) (*v1alpha1.Flight, error) {
	return sb.Fledge.FledgeV1alpha1().Flights(ns).Get(ctx, name, metav1.GetOptions{})
}

// WaitFlight polls the Flight until ok accepts it.
func WaitFlight(t testing.TB, sb *sandbox.Sandbox, ns, name string, timeout time.Duration, ok func(*v1alpha1.Flight) bool) *v1alpha1.Flight {
	t.Helper()
	return sb.WaitFlight(t, ns, name, timeout, ok)
}

// DecisionsOf lists a revision's decisions with the given verdict, in order.
func DecisionsOf(f *v1alpha1.Flight, rev string, v v1alpha1.Verdict) []v1alpha1.DecisionRecord {
	var out []v1alpha1.DecisionRecord
	for _, d := range f.Status.Decisions {
		if d.Revision == rev && d.Verdict == v {
			out = append(out, d)
		}
	}
	return out
}

// EvidenceOf is the Flight's evidence for a comparison, nil if none.
func EvidenceOf(f *v1alpha1.Flight, metric string) *v1alpha1.Evidence {
	for i := range f.Status.Evidence {
		if f.Status.Evidence[i].Metric == metric {
			return &f.Status.Evidence[i]
		}
	}
	return nil
}

// DumpOnFailure logs the namespace's Deployments and the Flight's status
// when the test failed, to see what the engine left behind.
func DumpOnFailure(t testing.TB, sb *sandbox.Sandbox, ns string) {
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
	if f, err := GetFlight(ctx, sb, ns, "shop"); err == nil {
		b, _ := json.MarshalIndent(f.Status, "", " ")
		t.Logf("flight status:\n%s", b)
	}
}

// installRBAC creates fledge's namespace and applies deploy/rbac.yaml: the
// engines run with exactly its permissions (bound in each test's namespace
// by deploy/rbac-namespace.yaml), never as admin.
func installRBAC(ctx context.Context, sb *sandbox.Sandbox) error {
	return sb.InstallRBAC(ctx, EngineNamespace, RepoFile("deploy/rbac.yaml"))
}

// ServiceAccountKubeconfig writes a kubeconfig that authenticates as
// fledge's ServiceAccount.
func ServiceAccountKubeconfig(t testing.TB, sb *sandbox.Sandbox) string {
	t.Helper()
	return sb.ServiceAccountKubeconfig(t, EngineNamespace, "fledge")
}

func FreeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// RepoFile finds a file of the repository, whatever the calling test's
// directory.
func RepoFile(rel string) string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(self), "..", "..", rel)
}
