package mesh

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
)

func TestKubeletHistory(t *testing.T) {
	const sync = 20 * time.Second
	now := epoch
	k := newKubelet(sync)
	k.now = func() time.Time { return now }
	ref := cmRef("app-config")
	content := func(mode string) configVersion {
		return configMapVersion(&corev1.ConfigMap{Data: map[string]string{"mode": mode}})
	}
	hashes := func() []string {
		var out []string
		for _, v := range k.snapshot(nil, now).history[ref] {
			out = append(out, v.hash)
		}
		return out
	}

	if !k.saw(ref, content("one"), false, true) {
		t.Fatal("the initial list's content is not a change")
	}
	if got := k.history[ref][0].observed; !got.IsZero() {
		t.Errorf("the initial list's content was observed at %v, want before anything (the zero time)", got)
	}
	now = now.Add(time.Second)
	if k.saw(ref, content("one"), false, false) {
		t.Error("an update that keeps the content is a change")
	}
	// A pod that starts now sees "one" for as long as it runs.
	k.sawPod(deploymentPod("demo", "app", "aaa111", 0, nil), false)
	now = now.Add(time.Second)
	if !k.saw(ref, content("two"), false, false) {
		t.Error("new content is not a change")
	}
	now = now.Add(time.Second)
	k.saw(ref, content("three"), false, false)
	now = now.Add(time.Hour)
	k.saw(ref, content("four"), false, false)
	want := []string{content("one").hash, content("three").hash, content("four").hash}
	if diff := cmp.Diff(want, hashes()); diff != "" {
		t.Errorf("history mismatch (-want +got): only what no pod can see any more goes:\n%s", diff)
	}

	k.forgetPod("demo", deploymentPod("demo", "app", "aaa111", 0, nil).Name)
	if !k.saw(ref, configVersion{}, true, false) {
		t.Error("a deletion is not a change")
	}
	if k.saw(ref, configVersion{}, true, false) {
		t.Error("a second deletion is a change")
	}
	now = now.Add(sync)
	if got := hashes(); len(got) != 0 {
		t.Errorf("history %v, want it forgotten once it is missing to every pod", got)
	}
}

// TestPodsReadTheirConfigAsTheKubeletDelivers runs the emulator over
// informers: a pod that reads a ConfigMap through envFrom keeps what it
// read at start, one that mounts it follows it after KubeletSync, and
// ConfigServed counts what each served with which content.
func TestPodsReadTheirConfigAsTheKubeletDelivers(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, ignoreFlagdEventForwarder) })
	ctx := context.Background()
	const sync = 300 * time.Millisecond
	healthy := map[string]string{configKeyPrefix + aspectErrorRate: "0"}
	failing := map[string]string{configKeyPrefix + aspectErrorRate: "1"}
	configMap := func(data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: meta("demo", "app-config", 0), Data: data}
	}
	secret := &corev1.Secret{ObjectMeta: meta("demo", "app-secret", 0),
		Data: map[string][]byte{configKeyPrefix + aspectErrorCode: []byte("503")}}
	shop := map[string]string{"app": "shop"}
	envPod := deploymentPod("demo", "shop-env", "e", 0, shop, envFrom(refConfigMap, "app-config"), envFrom(refSecret, "app-secret"))
	livePod := deploymentPod("demo", "shop-live", "l", 0, shop, mounted(refConfigMap, "app-config", false))
	kube := kubefake.NewClientset([]runtime.Object{
		service("demo", "shop", shop), configMap(healthy), secret, envPod, livePod,
	}...)
	e := New(kube, istiofake.NewSimpleClientset(), Options{
		Seed: 1, Debounce: 5 * time.Millisecond, KubeletSync: sync,
		Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, nil)),
	})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)

	// codes tallies the answers of each pod per content hash of
	// app-config it saw, as ConfigServed should count them.
	type seen struct {
		pod  string
		code int
	}
	codes := map[seen]int{}
	route := func(n int) {
		for range n {
			r := e.Route(Request{SourceNamespace: "demo", Host: "shop"})
			codes[seen{r.Pod, r.Code}]++
		}
	}
	v1, v2 := ConfigDataHash(healthy, nil), ConfigDataHash(failing, nil)
	secretHash := ConfigDataHash(nil, secret.Data)

	route(20)
	began := time.Now()
	if _, err := kube.CoreV1().ConfigMaps("demo").Update(ctx, configMap(failing), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the mounted pod to fail", func() bool {
		route(4)
		return codes[seen{livePod.Name, 500}] > 0
	})
	if took := time.Since(began); took < sync {
		t.Errorf("the mounted pod saw the update after %v, before KubeletSync (%v) had passed", took, sync)
	}
	route(20)
	if n := codes[seen{envPod.Name, 503}] + codes[seen{envPod.Name, 500}]; n > 0 {
		t.Errorf("the pod that read app-config at start failed %d requests after the update", n)
	}

	// A pod started after the update reads the new content at once.
	latePod := deploymentPod("demo", "shop-late", "n", 0, shop, envFrom(refConfigMap, "app-config"))
	if _, err := kube.CoreV1().Pods("demo").Create(ctx, latePod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new pod", func() bool { return e.AppliedVersion("Pod", "demo", latePod.Name) == "1" })
	route(30)

	want := []ConfigUse{
		{Workload: "shop-env", Pod: envPod.Name, Object: "configmap/app-config", Hash: v1,
			Requests: int64(codes[seen{envPod.Name, 200}])},
		{Workload: "shop-env", Pod: envPod.Name, Object: "secret/app-secret", Hash: secretHash,
			Requests: int64(codes[seen{envPod.Name, 200}])},
		{Workload: "shop-late", Pod: latePod.Name, Object: "configmap/app-config", Hash: v2,
			Requests: int64(codes[seen{latePod.Name, 500}])},
		{Workload: "shop-live", Pod: livePod.Name, Object: "configmap/app-config", Hash: v1,
			Requests: int64(codes[seen{livePod.Name, 200}])},
		{Workload: "shop-live", Pod: livePod.Name, Object: "configmap/app-config", Hash: v2,
			Requests: int64(codes[seen{livePod.Name, 500}])},
	}
	if diff := cmp.Diff(want, e.ConfigServed("demo")); diff != "" {
		t.Errorf("ConfigServed mismatch (-want +got):\n%s\nanswers: %v", diff, codes)
	}
	if codes[seen{latePod.Name, 500}] == 0 || codes[seen{latePod.Name, 200}] > 0 {
		t.Errorf("the pod started after the update answered %v, want every request failed", codes)
	}
	if got := e.ConfigServed("other"); len(got) > 0 {
		t.Errorf("ConfigServed(other) = %v, want nothing", got)
	}

	t.Run("a deleted object is missing to a live volume after KubeletSync, and changes nothing", func(t *testing.T) {
		if err := kube.CoreV1().ConfigMaps("demo").Delete(ctx, "app-config", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		before := codes[seen{livePod.Name, 200}]
		waitFor(t, "the mounted pod to answer without the object", func() bool {
			route(4)
			return codes[seen{livePod.Name, 200}] > before
		})
		var missing int64
		for _, u := range e.ConfigServed("demo") {
			if u.Pod == livePod.Name && u.Hash == "" {
				missing = u.Requests
			}
		}
		if want := int64(codes[seen{livePod.Name, 200}] - before); missing != want {
			t.Errorf("ConfigServed counts %d requests of the mounted pod without the object, want %d", missing, want)
		}
	})
}
