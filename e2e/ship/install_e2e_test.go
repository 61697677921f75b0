//go:build e2e

package ship_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/api/apitest"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// The chart installed as a platform team would: helm install into the
// sandbox's API server, the engine run as the rendered Deployment says
// (its arguments and environment, its ServiceAccount's token, its
// ConfigMap and Secret as the files it mounts), a revision promoted
// through it, a helm upgrade with changed values, and helm uninstall after
// fledge --release-all, leaving only what the user owns.

const release = "fledge-chart"

// installValues are the values of this test: the sandbox's Prometheus,
// ports free on this host (the pod's, here the process's), fast leader
// election, and the dashboard test's quick policy.
func installValues(sb *sandbox.Sandbox, ns string, ports [3]string, api bool, extra string) string {
	policies := strings.ReplaceAll(strings.TrimPrefix(dashboardPolicy, "\n"), "\n", "\n  ")
	return fmt.Sprintf(`namespaces: [%s]
replicas: 1
prometheus: {url: %q}
metrics: {port: %s}
healthPort: %s
api: {enabled: %v, port: %s}
leaderElection: {leaseDuration: 4s, renewDeadline: 3s, retryPeriod: 500ms}
policies: |
  %s
%s`, ns, sb.PrometheusURL, ports[0], ports[1], api, ports[2], policies, extra)
}

func helmKube(t *testing.T, sb *sandbox.Sandbox, args ...string) string {
	t.Helper()
	out, errOut, err := helm(t, append(args, "--kubeconfig", sb.Kubeconfig)...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func TestHelmInstallPromoteUpgradeUninstall(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	relNS := ns + "-fledge"
	var ports [3]string
	for i := range ports {
		_, ports[i], _ = net.SplitHostPort(freeAddr(t))
	}
	adoptCRD(t, sb, relNS)
	// The API's certificate, as cert-manager or the admin would put it.
	pki := apitest.Start(t, apitest.Options{Bufconn: true})
	if _, err := sb.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: relNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Kube.CoreV1().Namespaces().Delete(context.Background(), relNS, metav1.DeleteOptions{}) })
	createTLSSecret(t, sb, relNS, "fledge-api-tls", pki.CertFile, pki.KeyFile)

	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(installValues(sb, ns, ports, true, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	helmKube(t, sb, "install", release, repoFile(chartDir), "--namespace", relNS, "-f", values)

	// What the user owns: an app, opted in.
	sb.CreateApp(t, ns, sandbox.App{Name: "shop", Container: "shop", Replicas: 2,
		Annotations: map[string]string{rollout.AnnotationRollout: "ship"}, Behaviour: map[string]string{"sandbox.fledge.dev/error-rate": "0.005"}})
	sb.SendTraffic(t, mesh.Client{Name: "shopper-" + ns, Namespace: ns, Host: "shop", RPS: 200, Users: 300})

	engine := runRendered(t, sb, relNS, ports[1], nil)
	// The leader labels its pod, and the API's Service reaches it alone.
	leaderServed(t, sb, relNS)
	// Which build runs, for dashboards and upgrades.
	if _, metrics := probe(t, "http://127.0.0.1:"+ports[0]+"/metrics"); !regexp.MustCompile(`(?m)^fledge_build_info\{.*version="[^"]+".*\} 1$`).MatchString(metrics) {
		t.Errorf("the engine's /metrics has no fledge_build_info with its version")
	}
	sb.WaitFlight(t, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
	patchDeployment(t, sb, ns, map[string]any{"spec": map[string]any{"template": map[string]any{
		"spec": map[string]any{"containers": []map[string]any{{"name": "shop", "image": "example.com/shop:v2"}}},
	}}})
	sb.WaitFlight(t, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableImages[0].Image == "example.com/shop:v2"
	})

	// helm upgrade: the API off, another log level. The rendered engine
	// changes (no TLS flags, no API Service or review permissions), and
	// runs on from the Flights.
	if err := os.WriteFile(values, []byte(installValues(sb, ns, ports, false, "logLevel: debug\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	helmKube(t, sb, "upgrade", release, repoFile(chartDir), "--namespace", relNS, "-f", values)
	_ = engine.Stop()
	d := renderedDeployment(t, sb, relNS)
	args := d.Spec.Template.Spec.Containers[0].Args
	if !slices.Contains(args, "--log-level=debug") || slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--tls-cert-file") }) {
		t.Errorf("after the upgrade the engine's args are %v: want --log-level=debug and no API", args)
	}
	if _, err := sb.Kube.CoreV1().Services(relNS).Get(ctx, release+"-api", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the API Service after the upgrade turned it off: %v", err)
	}
	if _, err := sb.Kube.RbacV1().ClusterRoles().Get(ctx, release+"-api", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the API's ClusterRole after the upgrade turned it off: %v", err)
	}
	engine = runRendered(t, sb, relNS, ports[1], nil)
	patchDeployment(t, sb, ns, map[string]any{"spec": map[string]any{"template": map[string]any{
		"spec": map[string]any{"containers": []map[string]any{{"name": "shop", "image": "example.com/shop:v3"}}},
	}}})
	sb.WaitFlight(t, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableImages[0].Image == "example.com/shop:v3"
	})
	_ = engine.Stop()

	// Uninstall as deploy/README.md says: fledge --release-all with the
	// engine's own arguments, then helm uninstall.
	releaser := runRendered(t, sb, relNS, ports[1], []string{"--release-all"})
	select {
	case <-releaser.Done():
	case <-time.After(time.Minute):
		t.Fatalf("fledge --release-all did not end; log %s", releaser.LogPath())
	}
	if exited, err := releaser.Exited(); !exited || err != nil {
		t.Fatalf("fledge --release-all: %v; log %s", err, releaser.LogPath())
	}
	helmKube(t, sb, "uninstall", release, "--namespace", relNS, "--wait", "--timeout", "60s")

	// Only what the user owns is left: the app's Deployment (running its
	// own template, unpaused) and Service; no canary, no routing of
	// fledge's, no Flight, no binding, and nothing of the release's.
	app, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{})
	if err != nil || app.Spec.Paused {
		t.Errorf("shop after uninstall: %v, paused %v", err, app != nil && app.Spec.Paused)
	}
	deps, _ := sb.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	svcs, _ := sb.Kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	var left []string
	for _, d := range deps.Items {
		left = append(left, "Deployment/"+d.Name)
	}
	for _, s := range svcs.Items {
		left = append(left, "Service/"+s.Name)
	}
	if vss, err := sb.Istio.NetworkingV1().VirtualServices(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, v := range vss.Items {
			left = append(left, "VirtualService/"+v.Name)
		}
	}
	if fs, err := sb.Fledge.FledgeV1alpha1().Flights(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, f := range fs.Items {
			left = append(left, "Flight/"+f.Name)
		}
	}
	if rbs, err := sb.Kube.RbacV1().RoleBindings(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, rb := range rbs.Items {
			left = append(left, "RoleBinding/"+rb.Name)
		}
	}
	slices.Sort(left)
	if want := []string{"Deployment/shop", "Service/shop"}; !slices.Equal(left, want) {
		t.Errorf("after uninstall the app's namespace holds %v, want only the user's %v", left, want)
	}
	crs, _ := sb.Kube.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
	if len(crs.Items) > 0 {
		t.Errorf("ClusterRoles of the release left after uninstall: %d", len(crs.Items))
	}
	for _, kind := range []string{"deployments", "configmaps", "serviceaccounts"} {
		n := 0
		switch kind {
		case "deployments":
			l, _ := sb.Kube.AppsV1().Deployments(relNS).List(ctx, metav1.ListOptions{})
			n = len(l.Items)
		case "configmaps":
			l, _ := sb.Kube.CoreV1().ConfigMaps(relNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
			n = len(l.Items)
		case "serviceaccounts":
			_, err := sb.Kube.CoreV1().ServiceAccounts(relNS).Get(ctx, release, metav1.GetOptions{})
			if err == nil {
				n = 1
			}
		}
		if n > 0 {
			t.Errorf("%d %s of the release left in %s after uninstall", n, kind, relNS)
		}
	}
	if _, err := sb.Dynamic.Resource(crdResource).Get(ctx, "flights.fledge.dev", metav1.GetOptions{}); err != nil {
		t.Errorf("the Flight CRD after uninstall: %v; want it kept (helm.sh/resource-policy: keep)", err)
	}
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// adoptCRD lets the release take over the Flight CRD if another suite's
// test installed it first, as Helm adopts an object that carries its
// release's ownership metadata (how plain-manifest installs move to Helm).
func adoptCRD(t *testing.T, sb *sandbox.Sandbox, relNS string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":"Helm"},"annotations":{"meta.helm.sh/release-name":%q,"meta.helm.sh/release-namespace":%q}}}`, release, relNS)
	_, err := sb.Dynamic.Resource(crdResource).Patch(context.Background(), "flights.fledge.dev", types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

func createTLSSecret(t *testing.T, sb *sandbox.Sandbox, ns, name, certFile, keyFile string) {
	t.Helper()
	cert, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sb.Kube.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// enginePod is a pod of the installed Deployment (kwok runs it, as far as
// the API server can tell): the process stands in for its container.
func enginePod(t *testing.T, sb *sandbox.Sandbox, relNS string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := sb.Kube.CoreV1().Pods(relNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=engine"})
		if err != nil || len(pods.Items) == 0 {
			return false, nil
		}
		pod = &pods.Items[0]
		return pod.Status.PodIP != "", nil
	})
	if err != nil {
		t.Fatalf("no pod of the engine's Deployment with an IP in %s", relNS)
	}
	return pod
}

// leaderServed waits until the engine's pod is labelled leader and is the
// one pod the API's Service selects (the sandbox runs no endpoint
// controllers: the Service's selector is evaluated as they would).
func leaderServed(t *testing.T, sb *sandbox.Sandbox, relNS string) {
	t.Helper()
	var got []string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pod := enginePod(t, sb, relNS)
		svc, err := sb.Kube.CoreV1().Services(relNS).Get(ctx, release+"-api", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pods, err := sb.Kube.CoreV1().Pods(relNS).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
		if err != nil {
			return false, nil
		}
		got = nil
		for _, p := range pods.Items {
			got = append(got, p.Name)
		}
		return len(got) == 1 && got[0] == pod.Name && pod.Labels["fledge.dev/leader"] == "true", nil
	})
	if err != nil {
		t.Fatalf("the API Service never selected the leader's pod alone: it selects %v", got)
	}
}

func renderedDeployment(t *testing.T, sb *sandbox.Sandbox, relNS string) *appsv1.Deployment {
	t.Helper()
	d, err := sb.Kube.AppsV1().Deployments(relNS).Get(context.Background(), release, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// runRendered runs the engine as the installed Deployment's pod would:
// its container's arguments (and extra), its environment (the downward
// API's fields filled as the kubelet would), its volumes' ConfigMaps and
// Secrets as files at the paths it mounts them (mapped under a temporary
// directory), and its ServiceAccount's token (a kubeconfig stands in for
// the in-cluster configuration, which needs a pod). It waits until the
// engine's /readyz answers on healthPort.
func runRendered(t *testing.T, sb *sandbox.Sandbox, relNS, healthPort string, extra []string) *sandbox.Process {
	t.Helper()
	ctx := context.Background()
	d := renderedDeployment(t, sb, relNS)
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	root := t.TempDir()
	mounts := map[string]string{} // mount path → local directory
	for _, m := range c.VolumeMounts {
		local := filepath.Join(root, filepath.FromSlash(m.MountPath))
		if err := os.MkdirAll(local, 0o700); err != nil {
			t.Fatal(err)
		}
		mounts[m.MountPath] = local
		for _, v := range spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			var data map[string][]byte
			switch {
			case v.ConfigMap != nil:
				cm, err := sb.Kube.CoreV1().ConfigMaps(relNS).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				data = map[string][]byte{}
				for k, s := range cm.Data {
					data[k] = []byte(s)
				}
			case v.Secret != nil:
				s, err := sb.Kube.CoreV1().Secrets(relNS).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
				if err != nil {
					t.Fatalf("the pod mounts Secret %s: %v", v.Secret.SecretName, err)
				}
				data = s.Data
			}
			for k, b := range data {
				if err := os.WriteFile(filepath.Join(local, k), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	args := []string{"--kubeconfig=" + sb.ServiceAccountKubeconfig(t, relNS, spec.ServiceAccountName)}
	for _, a := range append(slices.Clone(c.Args), extra...) {
		for path, local := range mounts {
			a = strings.ReplaceAll(a, "="+path+"/", "="+local+"/")
		}
		args = append(args, a)
	}
	pod := enginePod(t, sb, relNS).Name
	var env []string
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				v = pod
			case "metadata.namespace":
				v = relNS
			default:
				t.Fatalf("env %s: field %s is not filled by this test", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		}
		env = append(env, e.Name+"="+v)
	}
	p, err := sb.StartProcess(relNS+"-engine", env, buildBinary(t, "fledge"), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	if slices.Contains(extra, "--release-all") {
		return p
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		code, _ := probe(t, "http://127.0.0.1:"+healthPort+"/readyz")
		return code == 200, nil
	})
	if err != nil {
		t.Fatalf("the engine run as rendered never became ready; log %s", p.LogPath())
	}
	return p
}
