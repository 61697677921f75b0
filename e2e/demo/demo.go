package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/engine"
)

const (
	ns  = "demo"
	app = "podinfo"
)

// Policy is the demo's rollout policy, as a platform team would write it:
// beta users first (a cohort stage), then weighted steps, with the release
// flag new-checkout following the traffic.
const Policy = policyHead + `    cohorts:
    - {name: beta, header: x-user-tier, value: beta, minDuration: 8s, minSamples: 50}
    releaseFlags:
    - {configMap: podinfo-flags, flag: new-checkout, finalVariant: "on"}
` + policySteps

// WeightedPolicy is Policy without its cohort stage and release flag: its
// weighted steps alone.
const WeightedPolicy = policyHead + policySteps

// ThresholdPolicy is the demo's policy as it was before comparisons with
// stable: the same weighted steps, judged by fixed bounds on the canary's
// success rate and p95 over each interval, with at least 50 requests. The
// rollout benchmark sets a faulty canary's exposure under it beside its
// exposure under WeightedPolicy.
const ThresholdPolicy = policyHead + `    steps: [10, 25, 50]
    interval: 8s
    minInterval: 1s
    failureLimit: 2
    progressDeadline: 2m
    metrics:
    - name: success-rate
      min: 0.97
      minSamples: 50
    - name: latency-p95
      max: 150
      minSamples: 50
`

// The parts of the demo's policy file, policy "demo", that both policies
// have: Slack, and the weighted steps with their checks: the canary's
// error rate and its latency distribution (the shares of requests slower
// than 250 ms and than 1 s) compared with stable's, looked at every 2 s.
// A comparison needs no minimum of requests, and an analysis deadline
// bounds how long a revision may go without a verdict.
const (
	policyHead = `
slack: {secret: fledge-slack}
policies:
  demo:
`
	policySteps = `    steps: [10, 25, 50]
    interval: 8s
    minInterval: 1s
    lookInterval: 2s
    scrapeInterval: 1s  # the sandbox's Prometheus scrapes every second
    progressDeadline: 2m
    analysisDeadline: 10m
    metrics:
    - {name: error-rate, maxIncrease: 0.01}
    - {name: latency, slowerThan: [250ms, 1s], maxIncrease: 0.01}
`
)

// Run plays the demo in a running sandbox: fledge (built from this
// checkout) takes a Deployment over, promotes a healthy revision and rolls
// back a faulty one, while out shows what it decides and why.
func Run(ctx context.Context, out io.Writer, sb *sandbox.Sandbox) error {
	if err := startEngine(ctx, out, sb); err != nil {
		return err
	}
	fmt.Fprintf(out, "deploying %s/%s (3 replicas) opted in with %s: demo; 300 requests/s of client traffic, 10%% of users in the beta cohort (x-user-tier: beta)\n", ns, app, rollout.AnnotationRollout)
	if err := deployApp(ctx, sb); err != nil {
		return err
	}
	if _, err := watch(ctx, out, sb, "", func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle }); err != nil {
		return err
	}

	fmt.Fprintln(out, "\n== v2: a healthy revision")
	healthyStart := time.Now()
	rev, err := setImage(ctx, out, sb, "ghcr.io/stefanprodan/podinfo:6.7.1", withFlag(map[string]string{"sandbox.fledge.dev/latency-ms": "p50=22,p95=70"}))
	if err != nil {
		return err
	}
	if _, err := watch(ctx, out, sb, rev, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase.Terminal() && f.Status.CanaryRevision == rev
	}); err != nil {
		return err
	}
	healthy := time.Since(healthyStart)

	fmt.Fprintln(out, "\n== v3: a faulty revision (8% errors, p95 up), tried on the beta cohort first")
	before := sb.Mesh.WorkloadCounts(ns, app+engine.CanarySuffix)
	faultyStart := time.Now()
	rev, err = setImage(ctx, out, sb, "ghcr.io/stefanprodan/podinfo:6.8.0", withFlag(map[string]string{
		"sandbox.fledge.dev/latency-ms": "p50=25,p95=260", "sandbox.fledge.dev/error-rate": "0.08",
	}))
	if err != nil {
		return err
	}
	f, err := watch(ctx, out, sb, rev, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase.Terminal() && f.Status.CanaryRevision == rev
	})
	if err != nil {
		return err
	}
	faulty := time.Since(faultyStart)
	after := sb.Mesh.WorkloadCounts(ns, app+engine.CanarySuffix)

	fmt.Fprintf(out, "\n== summary\n")
	fmt.Fprintf(out, "  v2 promoted in %.0fs\n", healthy.Seconds())
	fmt.Fprintf(out, "  v3 %s in %.0fs: %s\n", map[v1alpha1.Phase]string{v1alpha1.PhaseRolledBack: "rolled back", v1alpha1.PhaseSucceeded: "promoted (!)"}[f.Status.Phase], faulty.Seconds(), f.Status.Message)
	fmt.Fprintf(out, "  users got %d bad responses from v3 (of %d requests it served) before it was pulled\n",
		after.Errors-before.Errors, after.Requests-before.Requests)
	fmt.Fprintf(out, "  the Deployment is paused on v2's pods with v3 in its spec, until someone applies a fix\n")
	if cm, err := sb.Kube.CoreV1().ConfigMaps(ns).Get(ctx, flagsConfigMap, metav1.GetOptions{}); err == nil {
		fmt.Fprintf(out, "  the release flag new-checkout as the apps read it now (%s):\n    %s\n", flagsConfigMap,
			strings.ReplaceAll(strings.TrimSpace(cm.Data[rollout.DefaultFlagKey]), "\n", "\n    "))
	}
	fmt.Fprintf(out, "  every decision above, with its queries, is in the Flight's status (kubectl get flight %s -o yaml);\n", app)
	fmt.Fprintf(out, "  make sandbox keeps a sandbox up to explore it by hand\n")
	printSlack(ctx, out, sb, f)
	return nil
}

// printSlack shows what Slack (the sandbox's stand-in) was told, once the
// Flight's outbox is delivered.
func printSlack(ctx context.Context, out io.Writer, sb *sandbox.Sandbox, f *v1alpha1.Flight) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if got, err := sb.Fledge.FledgeV1alpha1().Flights(ns).Get(ctx, app, metav1.GetOptions{}); err == nil {
			if f = got; !pending(f) {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintf(out, "\n== what Slack heard\n")
	for _, m := range sb.Slack.Messages() {
		fmt.Fprintf(out, "  %s\n", html.UnescapeString(m.Text)) // Slack's escaping of <, >, &
	}
}

func pending(f *v1alpha1.Flight) bool {
	for _, e := range f.Status.Outbox {
		if e.State == v1alpha1.DeliveryPending {
			return true
		}
	}
	return false
}

// watch prints the Flight's progress until done accepts it: each change
// of phase, step or weight, each decision with its checks, and holds.
func watch(ctx context.Context, out io.Writer, sb *sandbox.Sandbox, rev string, done func(*v1alpha1.Flight) bool) (*v1alpha1.Flight, error) {
	var lastLine string
	seen := 0
	deadline := time.Now().Add(5 * time.Minute)
	for {
		f, err := sb.Fledge.FledgeV1alpha1().Flights(ns).Get(ctx, app, metav1.GetOptions{})
		if err == nil {
			st := f.Status
			for ; seen < len(st.Decisions); seen++ {
				d := st.Decisions[seen]
				if rev != "" && d.Revision != rev {
					continue
				}
				fmt.Fprintf(out, "  %s %-8s %3d%%  %s\n", d.At.Format("15:04:05"), d.Verdict, d.Weight, d.Message)
				for _, c := range d.Checks {
					fmt.Fprintf(out, "             %s\n", describeCheck(c))
				}
				for _, fl := range d.Flags {
					fmt.Fprintf(out, "             flag %s\n", fl)
				}
			}
			line := fmt.Sprintf("phase=%s weight=%d%%", st.Phase, st.CanaryWeight)
			if st.Hold != nil {
				line += " held: " + st.Hold.Message
			}
			if line != lastLine {
				fmt.Fprintf(out, "  %s %s\n", time.Now().Format("15:04:05"), line)
				lastLine = line
			}
			if done(f) {
				return f, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("flight %s/%s: no end after 5 minutes (last: %s)", ns, app, lastLine)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func describeCheck(c analysis.Check) string {
	if c.Compared != nil {
		// A comparison's message says it all: both sides, the evidence.
		return fmt.Sprintf("%-13s %-12s %s", c.Metric, c.Outcome, c.Message)
	}
	value := "-"
	if c.Value != nil {
		value = fmt.Sprintf("%.4g", *c.Value)
	}
	s := fmt.Sprintf("%-13s %-15s %8s (want %s, %d requests)", c.Metric, c.Outcome, value, c.Threshold, c.Samples)
	if c.Outcome != analysis.Pass && c.Message != "" {
		s += ": " + c.Message
	}
	return s
}

// startEngine builds fledge from this checkout and runs it beside the
// sandbox, as it would run in a cluster.
func startEngine(ctx context.Context, out io.Writer, sb *sandbox.Sandbox) error {
	bin := filepath.Join(sb.Dir, "fledge")
	fmt.Fprintln(out, "building fledge and installing its CRD")
	if b, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/fledgehq/fledge/cmd/fledge").CombinedOutput(); err != nil {
		return fmt.Errorf("build fledge: %v\n%s", err, b)
	}
	root, err := filepath.Abs(".")
	if err != nil {
		return err
	}
	if err := sandbox.ApplyCRDs(ctx, sb.Dynamic, filepath.Join(root, "deploy", "crds", "flights.fledge.dev.yaml")); err != nil {
		return err
	}
	policies := filepath.Join(sb.Dir, "policies.yaml")
	if err := os.WriteFile(policies, []byte(Policy), 0o644); err != nil {
		return err
	}
	metrics, err := freeAddr()
	if err != nil {
		return err
	}
	// Slack messages go to the sandbox's stand-in.
	if _, err := sb.Kube.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "fledge-slack", Namespace: "default"},
		Data:       map[string][]byte{"webhook-url": []byte(sb.Slack.WebhookURL())},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := sb.StartProcess("fledge", nil, bin,
		"--kubeconfig="+sb.Kubeconfig, "--policies="+policies, "--prometheus-url="+sb.PrometheusURL,
		"--metrics-addr="+metrics, "--health-addr=0", "--namespaces="+ns, "--leader-election-namespace=default", "--secrets-namespace=default"); err != nil {
		return err
	}
	fmt.Fprintf(out, "fledge running (log %s, metrics http://%s/metrics)\n", filepath.Join(sb.LogDir, "fledge.log"), metrics)
	return sb.AddScrapeTarget("fledge", metrics)
}

func deployApp(ctx context.Context, sb *sandbox.Sandbox) error {
	if _, err := sb.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	labels := map[string]string{"app": app}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns, Annotations: map[string]string{rollout.AnnotationRollout: "demo"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: withFlag(map[string]string{"sandbox.fledge.dev/latency-ms": "p50=20,p95=60"})},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: app, Image: "ghcr.io/stefanprodan/podinfo:6.7.0"}}},
			},
		},
	}
	if _, err := sb.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: flagsConfigMap, Namespace: ns},
		Data:       map[string]string{rollout.DefaultFlagKey: flagsDoc},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := sb.Kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 9898}}},
	}
	if _, err := sb.Kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	return sb.Mesh.AddClient(mesh.Client{Name: "frontend", Namespace: ns, Host: app, RPS: 300, Users: 500,
		Segments: []mesh.Segment{{Share: 0.1, Headers: map[string]string{"x-user-tier": "beta"}}}})
}

// The release flag the app reads (through flagd's provider, in the mesh
// emulator) from the ConfigMap fledge rewrites.
const (
	flagsConfigMap = "podinfo-flags"
	flagsDoc       = `{"flags": {"new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}`
)

// withFlag adds the annotations that make the app evaluate new-checkout.
func withFlag(behaviour map[string]string) map[string]string {
	behaviour["sandbox.fledge.dev/flag-source"] = flagsConfigMap + "/" + rollout.DefaultFlagKey
	behaviour["sandbox.fledge.dev/flag"] = "new-checkout"
	return behaviour
}

// setImage applies a new template as a pipeline would (kubectl set image)
// and returns its revision.
func setImage(ctx context.Context, out io.Writer, sb *sandbox.Sandbox, image string, behaviour map[string]string) (string, error) {
	cur, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	annotations := map[string]any{}
	for k := range cur.Spec.Template.Annotations {
		annotations[k] = nil
	}
	for k, v := range behaviour {
		annotations[k] = v
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": annotations},
		"spec":     map[string]any{"containers": []map[string]any{{"name": app, "image": image}}},
	}}})
	d, err := sb.Kube.AppsV1().Deployments(ns).Patch(ctx, app, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return "", err
	}
	rev := engine.TemplateHash(d.Spec.Template)
	fmt.Fprintf(out, "applied %s (revision %s)\n", image, rev)
	return rev, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
