//go:build e2e

package rollout_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

const (
	flagsConfigMap = "shop-flags"
	flagsKey       = rollout.DefaultFlagKey
)

// releaseFlagsDoc has the release flag new-checkout (off) and another
// flag fledge must never touch.
const releaseFlagsDoc = `{
  "flags": {
    "new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
    "dark-mode": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
      "targeting": {"if": [{"==": [{"var": "x-user-tier"}, "beta"]}, "off", "on"]}}
  }
}`

// flagAnnotations make the app evaluate new-checkout from shop-flags on
// every request, plus the variant behaviours given.
func flagAnnotations(variants map[string]string) map[string]string {
	out := map[string]string{
		"sandbox.fledge.dev/flag-source": flagsConfigMap + "/" + flagsKey,
		"sandbox.fledge.dev/flag":        "new-checkout",
	}
	for k, v := range variants {
		out["sandbox.fledge.dev/variant."+k] = v
	}
	return out
}

// optInReleaseFlags binds fledge-release-flags in ns, as a team does to
// let fledge write its flags, and creates the flags ConfigMap.
func optInReleaseFlags(t *testing.T, sb *sandbox.Sandbox, ns, doc string) {
	t.Helper()
	ctx := context.Background()
	_, err := sb.Kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "fledge-release-flags", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "fledge-release-flags"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "fledge", Namespace: engineNamespace}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	putConfigMap(t, sb, ns, flagsConfigMap, flagsKey, doc)
}

// putConfigMap creates or replaces a ConfigMap key, as a person would.
func putConfigMap(t *testing.T, sb *sandbox.Sandbox, ns, name, key, doc string) {
	t.Helper()
	ctx := context.Background()
	cms := sb.Kube.CoreV1().ConfigMaps(ns)
	cur, err := cms.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string]string{key: doc}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	cur.Data = map[string]string{key: doc}
	if _, err := cms.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func readConfigMap(t *testing.T, sb *sandbox.Sandbox, ns, name string) *corev1.ConfigMap {
	t.Helper()
	cm, err := sb.Kube.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// flagOf returns one flag's definition from the release flags ConfigMap.
func flagOf(t *testing.T, sb *sandbox.Sandbox, ns, flag string) map[string]any {
	t.Helper()
	var doc struct {
		Flags map[string]map[string]any `json:"flags"`
	}
	if err := json.Unmarshal([]byte(readConfigMap(t, sb, ns, flagsConfigMap).Data[flagsKey]), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Flags[flag]
}

func targetingJSON(def map[string]any) string {
	b, _ := json.Marshal(def["targeting"])
	return string(b)
}

// flagApp creates the Deployment "name" (2 replicas, opted in to policy,
// with the given pod annotations), its Service, and a client of users of
// whom share send x-user-tier: beta; it waits until fledge holds it.
func flagApp(t *testing.T, sb *sandbox.Sandbox, ns, name, policy string, annotations map[string]string, betaShare float64) {
	t.Helper()
	t.Cleanup(func() { dumpOnFailure(t, sb, ns) })
	sb.CreateApp(t, ns, appOf(name, map[string]string{rollout.AnnotationRollout: policy}, annotations))
	c := mesh.Client{Name: name + "-users-" + ns, Namespace: ns, Host: name, RPS: 200, Users: 300}
	if betaShare > 0 {
		c.Segments = []mesh.Segment{{Share: betaShare, Headers: map[string]string{"x-user-tier": "beta"}}}
	}
	sb.SendTraffic(t, c)
	waitFlight(t, sb, ns, name, 60*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
}

// seen is what the emulator served one request with.
type seen struct {
	user    string
	beta    bool
	canary  bool // served by the canary's pods
	variant string
	sticky  bool // carried fledge's sticky cookie
}

// recorder keeps the requests to one app's namespace while on.
type recorder struct {
	mu   sync.Mutex
	on   bool
	reqs []seen
}

func record(t *testing.T, sb *sandbox.Sandbox, ns string) *recorder {
	r := &recorder{}
	cancel := sb.Mesh.Observe(func(req mesh.Request, resp mesh.Response) {
		if resp.Namespace != ns || req.SourceNamespace != ns {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.on {
			r.reqs = append(r.reqs, seen{user: req.User, beta: req.Headers["x-user-tier"] == "beta", canary: resp.Workload == "shop-canary",
				variant: resp.Variant, sticky: strings.Contains(req.Headers["cookie"], rollout.DefaultStickyCookie+"=")})
		}
	})
	t.Cleanup(cancel)
	return r
}

// window records for d and returns what it saw.
func (r *recorder) window(d time.Duration) []seen {
	r.mu.Lock()
	r.on, r.reqs = true, nil
	r.mu.Unlock()
	time.Sleep(d)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = false
	return r.reqs
}

// routingOf reads shop's routing back as the router sees it.
func routingOf(t *testing.T, sb *sandbox.Sandbox, ns string) traffic.Weights {
	t.Helper()
	w, err := istio.New(sb.Istio).Weights(context.Background(), traffic.Target{Namespace: ns, Name: "shop", Host: "shop", Stable: "shop", Canary: "shop-canary"})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func flagState(f *v1alpha1.Flight, flag string) v1alpha1.FlagState {
	for _, fs := range f.Status.Flags {
		if fs.Flag == flag {
			return fs.State
		}
	}
	return ""
}
