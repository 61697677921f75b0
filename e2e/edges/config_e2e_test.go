//go:build e2e

package edges_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/enginetest"
	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// configPolicies judge the error rate against stable and promote early.
const configPolicies = `
policies:
  config:
    steps: [50]
    interval: 10s
    minInterval: 1s
    lookInterval: 2s
    scrapeInterval: 1s  # the sandbox's Prometheus scrapes every second
    earlyPromotion: true
    minStepDuration: 3s
    progressDeadline: 60s
    metrics:
    - {name: error-rate, maxIncrease: 0.02}
`

// configApp creates "shop" reading ConfigMap shop-config as mounted files
// (the kubelet refreshes them in running pods: the emulator's
// KubeletSync) and, when secret is set, Secret shop-creds through env;
// it sends traffic and waits until fledge holds it.
func configApp(t *testing.T, sb *sandbox.Sandbox, ns string, secret bool, data map[string]string) {
	t.Helper()
	ctx := context.Background()
	t.Cleanup(func() { enginetest.DumpOnFailure(t, sb, ns) })
	if _, err := sb.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "shop-config"}, Data: data}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	app := enginetest.AppOf("shop", map[string]string{rollout.AnnotationRollout: "config"}, nil)
	d := app.Deployment(ns)
	spec := &d.Spec.Template.Spec
	spec.Volumes = []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "shop-config"}}}}}
	spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "config", MountPath: "/etc/shop"}}
	if secret {
		if _, err := sb.Kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-creds"}, Data: map[string][]byte{"password": []byte("hunter2")}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		spec.Containers[0].Env = []corev1.EnvVar{{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "shop-creds"}, Key: "password"}}}}
	}
	if _, err := sb.Kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Kube.CoreV1().Services(ns).Create(ctx, app.Service(ns), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sb.SendTraffic(t, mesh.Client{Name: "shopper-" + ns, Namespace: ns, Host: "shop", RPS: 100, Users: 300})
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
}

// setConfig replaces shop-config's data, as a pipeline would.
func setConfig(t *testing.T, sb *sandbox.Sandbox, ns string, data map[string]string) string {
	t.Helper()
	ctx := context.Background()
	cm, err := sb.Kube.CoreV1().ConfigMaps(ns).Get(ctx, "shop-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = data
	if _, err := sb.Kube.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return mesh.ConfigDataHash(data, nil)
}

// copies lists fledge's copies of config content in ns.
func copies(t *testing.T, sb *sandbox.Sandbox, ns string) []string {
	t.Helper()
	list, err := sb.Kube.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "fledge.dev/config-copy-of"})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, cm := range list.Items {
		if cm.Immutable == nil || !*cm.Immutable || metav1.GetControllerOf(&cm) == nil {
			t.Errorf("copy %s is not immutable and owned: %+v", cm.Name, cm.ObjectMeta)
		}
		out = append(out, cm.Name)
	}
	return out
}

// TestAConfigMapChangeIsCanariedAndABadOneRolledBack: shop reads
// shop-config as mounted files. A good change is canaried on fledge's copy
// of it while stable's share is served by stable's template on the copy of
// the old content, promoted by restarting the Deployment's pods, and
// traffic goes back to them. A bad change (the new content makes the app
// fail half its requests) is rolled back; no request served by anything
// but the canary ever read it (the emulator's ground truth, by content
// hash), though the kubelet delivers it to the Deployment's own pods; once
// the ConfigMap is reverted, the Deployment's pods are restarted and serve
// again.
func TestAConfigMapChangeIsCanariedAndABadOneRolledBack(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, configPolicies)
	good1 := map[string]string{"greeting": "hello"}
	configApp(t, sb, ns, true, good1)
	f := waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Config != nil })
	stable1 := f.Status.StableRevision
	if !strings.Contains(stable1, "-") {
		t.Fatalf("stable revision %s: want the template's and the config's", stable1)
	}
	awaitCopies(t, sb, ns, 1)
	// The Secret the pods read through env is copied too, immutable and
	// owned; its content is nowhere in the Flight. (Its copy is written
	// after the ConfigMap's, in the same look: wait for it as well.)
	var secrets *corev1.SecretList
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		secrets, err = sb.Kube.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: "fledge.dev/config-copy-of=shop-creds"})
		return err == nil && len(secrets.Items) > 0, nil
	})
	if err != nil || len(secrets.Items) != 1 || secrets.Items[0].Immutable == nil || !*secrets.Items[0].Immutable || string(secrets.Items[0].Data["password"]) != "hunter2" {
		t.Fatalf("the Secret's copy: %v %+v", err, secrets)
	}
	if b, _ := json.Marshal(f); strings.Contains(string(b), "hunter2") || strings.Contains(string(b), "aHVudGVyMg") {
		t.Fatal("the Secret's content is in the Flight")
	}

	// A good change: canaried, pinned, promoted.
	changed := time.Now()
	setConfig(t, sb, ns, map[string]string{"greeting": "hi"})
	f = waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseProgressing && f.Status.Config != nil && f.Status.Config.Pinned && f.Status.Config.Routed
	})
	rev2 := f.Status.CanaryRevision
	t.Logf("pinned %.1f s after the change: %s", time.Since(changed).Seconds(), f.Status.Config.Message)
	if rollout.TemplateOf(rev2) != rollout.TemplateOf(stable1) || rev2 == stable1 {
		t.Fatalf("canary %s for a config change of %s: want the same template, another config", rev2, stable1)
	}
	f = waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase.Terminal() && f.Status.CanaryRevision == rev2 && f.Status.Config != nil && !f.Status.Config.Pinned
	})
	if f.Status.Phase != v1alpha1.PhaseSucceeded || f.Status.StableRevision != rev2 {
		t.Fatalf("phase %s stable %s (%s); want %s promoted", f.Status.Phase, f.Status.StableRevision, f.Status.Message, rev2)
	}
	t.Logf("promoted %.1f s after the change", time.Since(changed).Seconds())
	if w := awaitRouting(t, sb, ns, traffic.Weights{Stable: 100}); w != (traffic.Weights{Stable: 100}) {
		t.Fatalf("routing %+v after the promotion, want all on the Deployment's pods", w)
	}
	pods, err := sb.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=shop"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && strings.HasPrefix(ref.Name, "shop-") && !strings.HasPrefix(ref.Name, "shop-canary") &&
			!strings.HasPrefix(ref.Name, "shop-previous") && p.DeletionTimestamp == nil && p.CreationTimestamp.Time.Before(changed.Add(-time.Second)) {
			t.Errorf("pod %s of the Deployment was made before the change and not restarted", p.Name)
		}
	}
	awaitGone(t, sb, ns, "shop-previous")
	awaitCopies(t, sb, ns, 1)

	// A bad change: rolled back, the Deployment's pods never serving it.
	var mu sync.Mutex
	servedBy := map[string]int{}
	bad := map[string]string{"greeting": "oops", "sandbox.fledge.dev.error-rate": "0.5"}
	badHash := mesh.ConfigDataHash(bad, nil)
	cancel := sb.Mesh.Observe(func(req mesh.Request, resp mesh.Response) {
		if req.SourceNamespace == ns && !resp.Mirrored && resp.Code >= 500 {
			mu.Lock()
			servedBy[resp.Workload]++
			mu.Unlock()
		}
	})
	defer cancel()
	changed = time.Now()
	setConfig(t, sb, ns, bad)
	f = waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseRolledBack && f.Status.Config != nil && f.Status.Config.Pinned
	})
	t.Logf("rolled back %.1f s after the change: %s", time.Since(changed).Seconds(), f.Status.Message)
	if w := awaitRouting(t, sb, ns, traffic.Weights{Baseline: 100}); w != (traffic.Weights{Baseline: 100}) {
		t.Fatalf("routing %+v after the rollback, want all on stable's pinned pods", w)
	}
	// Past the kubelet's sync: the Deployment's own pods read the bad
	// content now, and serve nobody.
	time.Sleep(25 * time.Second)
	f = waitFlight(t, sb, ns, "shop", 5*time.Second, func(f *v1alpha1.Flight) bool { return true })
	if f.Status.Phase != v1alpha1.PhaseRolledBack || !f.Status.Config.Pinned {
		t.Fatalf("phase %s pinned %v: want still rolled back and pinned", f.Status.Phase, f.Status.Config.Pinned)
	}
	for _, u := range sb.Mesh.ConfigServed(ns) {
		if u.Hash == badHash && u.Requests > 0 && u.Workload != "shop-canary" {
			t.Errorf("%s's pod %s served %d requests reading the bad config", u.Workload, u.Pod, u.Requests)
		}
		if u.Hash == badHash && u.Workload == "shop" {
			t.Logf("the Deployment's pod %s reads the bad config (the kubelet delivered it) and served %d requests", u.Pod, u.Requests)
		}
	}
	mu.Lock()
	t.Logf("errors by workload while the bad config was out: %v", servedBy)
	if servedBy["shop"] > 0 || servedBy["shop-previous"] > 0 {
		t.Errorf("errors from stable's side: %v", servedBy)
	}
	mu.Unlock()

	// The ConfigMap is reverted: the Deployment's pods restart, then serve.
	reverted := time.Now()
	setConfig(t, sb, ns, map[string]string{"greeting": "hi"})
	f = waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Config != nil && !f.Status.Config.Pinned
	})
	t.Logf("unpinned %.1f s after the revert", time.Since(reverted).Seconds())
	if w := awaitRouting(t, sb, ns, traffic.Weights{Stable: 100}); w != (traffic.Weights{Stable: 100}) {
		t.Fatalf("routing %+v after the revert, want all on the Deployment's pods", w)
	}
	awaitGone(t, sb, ns, "shop-previous")
	for _, u := range sb.Mesh.ConfigServed(ns) {
		if u.Hash == badHash && u.Workload == "shop" && u.Requests > 0 {
			t.Errorf("the Deployment's pod %s served %d requests reading the bad config", u.Pod, u.Requests)
		}
	}
	assertSettled(t, sb, ns)
}

// TestConfigThatCannotBeReadIsSaidAndChangesNothing: a new template that
// mounts a ConfigMap that does not exist is held, naming it, until it is
// created; in a namespace where fledge may not read Secrets (the
// RoleBinding fledge-config-secrets removed), a Secret the pods read is
// not tracked, the Flight says so, and a template change rolls out as
// ever.
func TestConfigThatCannotBeReadIsSaidAndChangesNothing(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	enginetest.StartEngineWithoutSecrets(t, sb, ns, configPolicies)
	configApp(t, sb, ns, true, map[string]string{"greeting": "hello"})
	f := waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Config != nil && strings.Contains(f.Status.Config.Message, "secret "+ns+"/shop-creds")
	})
	t.Logf("config: %s", f.Status.Config.Message)
	for _, want := range []string{"is not tracked", "may not list Secrets", "fledge-config-secrets", "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.name"} {
		if !strings.Contains(f.Status.Config.Message, want) {
			t.Errorf("config message %q lacks %q", f.Status.Config.Message, want)
		}
	}
	if strings.Contains(f.Status.Config.Message, "hunter2") {
		t.Fatal("the Secret's content is in the Flight")
	}

	// A template that mounts a ConfigMap that does not exist: held.
	// A JSON patch, as kubectl patch sends it: the engine and the
	// Deployment controller write the Deployment too, so a read-modify-
	// Update could lose to their writes on the resourceVersion.
	extra := `[{"op":"add","path":"/spec/template/spec/volumes/-","value":{"name":"extra","configMap":{"name":"shop-extra"}}}]`
	if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(ctx, "shop", types.JSONPatchType, []byte(extra), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	f = waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldConfigMissing
	})
	if want := fmt.Sprintf("configmap %s/shop-extra (spec.template.spec.volumes[1].configMap.name) does not exist", ns); !strings.Contains(f.Status.Hold.Message, want) {
		t.Errorf("hold %q lacks %q", f.Status.Hold.Message, want)
	}
	if f.Status.Phase != v1alpha1.PhaseIdle {
		t.Errorf("phase %s: want still at rest", f.Status.Phase)
	}
	if _, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop-canary", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a canary was made for a revision whose ConfigMap does not exist (%v)", err)
	}
	// Created: the revision is canaried and promoted.
	if _, err := sb.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "shop-extra"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f = waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded
	})
	t.Logf("promoted: %s", f.Status.Message)
	assertSettled(t, sb, ns)
}

func awaitGone(t *testing.T, sb *sandbox.Sandbox, ns, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Errorf("%s is still there", name)
	}
}

// awaitCopies waits until fledge keeps n copies of config content in ns.
func awaitCopies(t *testing.T, sb *sandbox.Sandbox, ns string, n int) {
	t.Helper()
	var got []string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		got = copies(t, sb, ns)
		return len(got) == n, nil
	})
	if err != nil {
		t.Errorf("copies %v, want %d", got, n)
	}
}
