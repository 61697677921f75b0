package mesh

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
)

func TestParseFlagAnnotations(t *testing.T) {
	base := defaultBehaviour()
	base.errorCode = 503
	variant := func(f func(*behaviour)) *behaviour { b := base; f(&b); return &b }
	source := map[string]string{annotationFlagSource: "flags/flags.json", annotationFlag: "new-checkout", annotationErrorCode: "503"}
	with := func(extra map[string]string) map[string]string {
		out := maps.Clone(source)
		maps.Copy(out, extra)
		return out
	}
	spec := func(variants map[string]*behaviour) *flagSpec {
		return &flagSpec{configMap: "flags", key: "flags.json", name: "new-checkout", variants: variants}
	}
	const noFlag = "ignored, the pod evaluates no flag"

	tests := []struct {
		name         string
		annotations  map[string]string
		wantFlag     *flagSpec
		wantProblems []annotationProblem
	}{
		{
			name:        "a flag without variant annotations serves every variant with the base",
			annotations: source,
			wantFlag:    spec(map[string]*behaviour{}),
		},
		{
			name: "a variant takes the base and overrides the aspects it names",
			annotations: with(map[string]string{
				annotationVariantPrefix + "on.error-rate":  "0.08",
				annotationVariantPrefix + "off.latency-ms": "30",
				annotationVariantPrefix + "on.error-code":  "502",
			}),
			wantFlag: spec(map[string]*behaviour{
				"on":  variant(func(b *behaviour) { b.errorRate, b.errorCode = 0.08, 502 }),
				"off": variant(func(b *behaviour) { b.latencyMu, b.latencySigma = math.Log(30), 0 }),
			}),
		},
		{
			name:        "a variant's name may hold dots",
			annotations: with(map[string]string{annotationVariantPrefix + "v1.2.grpc-error-rate": "1"}),
			wantFlag:    spec(map[string]*behaviour{"v1.2": variant(func(b *behaviour) { b.grpcErrorRate = 1 })}),
		},
		{
			name:        "a malformed variant value is a problem and that aspect stays the base's",
			annotations: with(map[string]string{annotationVariantPrefix + "on.error-rate": "8%", annotationVariantPrefix + "on.latency-ms": "9"}),
			wantFlag:    spec(map[string]*behaviour{"on": variant(func(b *behaviour) { b.latencyMu, b.latencySigma = math.Log(9), 0 })}),
			wantProblems: []annotationProblem{{annotationVariantPrefix + "on.error-rate",
				`"8%" is not a number in [0,1]; ignored, requests served with variant "on" take the pod's base error-rate`}},
		},
		{
			name:        "an unknown aspect of a variant is a problem",
			annotations: with(map[string]string{annotationVariantPrefix + "on.error-ratio": "1"}),
			wantFlag:    spec(map[string]*behaviour{}),
			wantProblems: []annotationProblem{{annotationVariantPrefix + "on.error-ratio",
				"not sandbox.fledge.dev/variant.<variant>.<aspect> with an aspect among error-rate, error-code, grpc-error-rate, latency-ms, body-diff-rate; ignored"}},
		},
		{
			name:        "a variant annotation without a variant is a problem",
			annotations: with(map[string]string{annotationVariantPrefix + "error-rate": "1"}),
			wantFlag:    spec(map[string]*behaviour{}),
			wantProblems: []annotationProblem{{annotationVariantPrefix + "error-rate",
				"not sandbox.fledge.dev/variant.<variant>.<aspect> with an aspect among error-rate, error-code, grpc-error-rate, latency-ms, body-diff-rate; ignored"}},
		},
		{
			name:        "variant annotations on a pod without a flag are problems",
			annotations: map[string]string{annotationVariantPrefix + "on.error-rate": "1"},
			wantProblems: []annotationProblem{{annotationVariantPrefix + "on.error-rate",
				"the pod evaluates no flag (that needs sandbox.fledge.dev/flag and sandbox.fledge.dev/flag-source); ignored"}},
		},
		{
			name:         "a flag without a source is a problem",
			annotations:  map[string]string{annotationFlag: "new-checkout"},
			wantProblems: []annotationProblem{{annotationFlag, "no sandbox.fledge.dev/flag-source says where the flag document is; " + noFlag}},
		},
		{
			name:         "a source without a flag is a problem",
			annotations:  map[string]string{annotationFlagSource: "flags/flags.json"},
			wantProblems: []annotationProblem{{annotationFlagSource, "no sandbox.fledge.dev/flag says which flag to evaluate; " + noFlag}},
		},
		{
			name:         "a source without a key is a problem",
			annotations:  map[string]string{annotationFlagSource: "flags", annotationFlag: "new-checkout"},
			wantProblems: []annotationProblem{{annotationFlagSource, `"flags": want <configmap>/<key>; ` + noFlag}},
		},
		{
			name:        "a source that is not a ConfigMap name is a problem",
			annotations: map[string]string{annotationFlagSource: "Flags/flags.json", annotationFlag: "new-checkout"},
			wantProblems: []annotationProblem{{annotationFlagSource,
				`"Flags/flags.json": configmap name "Flags": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'); ` + noFlag}},
		},
		{
			name:         "an empty flag is a problem",
			annotations:  map[string]string{annotationFlagSource: "flags/flags.json", annotationFlag: " "},
			wantProblems: []annotationProblem{{annotationFlag, "empty; " + noFlag}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := parseBehaviour(tt.annotations)
			if diff := cmp.Diff(tt.wantFlag, got.flag, cmp.AllowUnexported(behaviour{}, flagSpec{}), cmpopts.EquateApprox(0, 1e-12)); diff != "" {
				t.Errorf("flag mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantProblems, problems); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// The flag world: Deployment "shop" (two pods, revision ddd444) behind
// Service shop in namespace demo, reading flag new-checkout from
// ConfigMap flags, key flags.json.
const (
	flagsConfigMap = "flags"
	flagsKey       = "flags.json"
	checkoutFlag   = "new-checkout"
)

var shopRev = Revision{Namespace: "demo", Workload: "shop", TemplateHash: "ddd444"}

// checkoutDoc is a flagd document whose new-checkout flag has the given
// default variant and targeting ("" for none), and a string flag theme.
func checkoutDoc(defaultVariant, targeting string) string {
	if targeting != "" {
		targeting = `,"targeting":` + targeting
	}
	return `{"flags":{"` + checkoutFlag + `":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"` + defaultVariant + `"` + targeting + `},
  "theme":{"state":"ENABLED","variants":{"light":"light","dark":"dark"},"defaultVariant":"dark"}}}`
}

func flagsConfigMapWith(doc string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: meta("demo", flagsConfigMap, 0), Data: map[string]string{flagsKey: doc}}
}

// ignoreFlagdEventForwarder ignores the one goroutine per provider that
// flagd's provider (go-sdk-contrib providers/flagd v0.3.1) starts in Init
// to forward events and never ends: Shutdown does not close the channel it
// reads (open-feature/go-sdk-contrib#845). Every leak check of the package
// ignores it, since the flag tests leave such goroutines behind for the
// tests after them; everything else the emulator starts must be gone after
// Stop.
var ignoreFlagdEventForwarder = goleak.IgnoreTopFunction("github.com/open-feature/go-sdk-contrib/providers/flagd/pkg.(*Provider).Init.func1")

// startFlagWorld starts an emulator over the flag world, the shop pods
// carrying annotations (the flag ones are added unless given), and doc in
// the ConfigMap ("" for no ConfigMap). When the test ends it stops the
// emulator and checks that no goroutine, the flag providers' among them,
// is left behind.
func startFlagWorld(t *testing.T, annotations map[string]string, doc string) (*Emulator, *kubefake.Clientset) {
	t.Helper()
	// Cleanups run last in, first out: this one after Stop.
	t.Cleanup(func() { goleak.VerifyNone(t, ignoreFlagdEventForwarder) })
	a := map[string]string{annotationFlagSource: flagsConfigMap + "/" + flagsKey, annotationFlag: checkoutFlag}
	maps.Copy(a, annotations)
	objects := []runtime.Object{service("demo", "shop", map[string]string{"app": "shop"})}
	for i := range 2 {
		objects = append(objects, deploymentPod("demo", "shop", shopRev.TemplateHash, i, map[string]string{"app": "shop"}, annotated(a)))
	}
	if doc != "" {
		objects = append(objects, flagsConfigMapWith(doc))
	}
	kube := kubefake.NewClientset(objects...)
	e := New(kube, istiofake.NewSimpleClientset(), Options{
		Seed: 1, Debounce: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, nil)),
	})
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	if p := e.Problems(); len(p) > 0 {
		t.Fatalf("problems: %v", p)
	}
	return e, kube
}

// shopRequests are n requests of a client whose users are beta testers
// with the given share.
func shopRequests(t *testing.T, n, users int, betaShare float64) []Request {
	t.Helper()
	c, err := Client{Name: "web", Namespace: "demo", Host: "shop", RPS: 1, Users: users,
		Segments: []Segment{{Share: betaShare, Headers: map[string]string{"x-user-tier": "beta"}}}}.normalized()
	if err != nil {
		t.Fatal(err)
	}
	g := newGenerator(c, 1)
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = g.next()
	}
	return reqs
}

func TestFlagVariantsPickTheBehaviour(t *testing.T) {
	e, _ := startFlagWorld(t,
		map[string]string{annotationVariantPrefix + "on.error-rate": "1", annotationVariantPrefix + "on.error-code": "503"},
		checkoutDoc("off", `{"if":[{"==":[{"var":"x-user-tier"},"beta"]},"on","off"]}`))

	var beta, others uint64
	for _, req := range shopRequests(t, 400, 50, 0.3) {
		resp := e.Route(req)
		isBeta := req.Headers["x-user-tier"] == "beta"
		wantVariant, wantCode := "off", 200
		if isBeta {
			wantVariant, wantCode = "on", 503
			beta++
		} else {
			others++
		}
		if resp.Variant != wantVariant || resp.Code != wantCode {
			t.Fatalf("%s (beta=%t): variant %q code %d, want %q and %d", req.User, isBeta, resp.Variant, resp.Code, wantVariant, wantCode)
		}
	}
	if beta == 0 || others == 0 {
		t.Fatalf("beta=%d others=%d requests, want some of each", beta, others)
	}

	want := map[VariantKey]Counts{
		{Revision: shopRev, Variant: "on"}:  {Requests: beta, Errors: beta},
		{Revision: shopRev, Variant: "off"}: {Requests: others},
	}
	if diff := cmp.Diff(want, e.ServedVariants()); diff != "" {
		t.Errorf("ServedVariants mismatch (-want +got):\n%s", diff)
	}

	// Both proxies report the variant the app's response header named.
	got := map[string]float64{}
	for _, m := range scrape(t, e.MetricsAddr())["istio_requests_total"].GetMetric() {
		l := labelMap(m)
		got[fmt.Sprintf("%s %s %s", l["reporter"], l["flag_variant"], l["response_code"])] += m.GetCounter().GetValue()
	}
	wantSeries := map[string]float64{
		"source on 503": float64(beta), "destination on 503": float64(beta),
		"source off 200": float64(others), "destination off 200": float64(others),
	}
	if diff := cmp.Diff(wantSeries, got); diff != "" {
		t.Errorf("istio_requests_total by reporter, flag_variant and response_code mismatch (-want +got):\n%s", diff)
	}
}

func TestFractionalFlagIsStablePerUser(t *testing.T) {
	e, _ := startFlagWorld(t, nil, checkoutDoc("off", `{"fractional":[{"var":"targetingKey"},["on",20],["off",80]]}`))

	const users = 1000
	variantOf := map[string]string{}
	for _, req := range shopRequests(t, 5*users, users, 0) {
		v := e.Route(req).Variant
		if v != "on" && v != "off" {
			t.Fatalf("%s got variant %q, want on or off", req.User, v)
		}
		if prev, ok := variantOf[req.User]; ok && prev != v {
			t.Fatalf("%s flipped from %q to %q", req.User, prev, v)
		}
		variantOf[req.User] = v
	}
	var on int
	for _, v := range variantOf {
		if v == "on" {
			on++
		}
	}
	// The bucketing is a hash of flag and user, so the share is fixed for
	// these users; the bounds allow 4 standard deviations of a fair 20%.
	if share := float64(on) / float64(len(variantOf)); share < 0.15 || share > 0.25 {
		t.Errorf("%d of %d users (%.1f%%) got on, want about 20%%", on, len(variantOf), 100*share)
	}
}

func TestFlagDocumentChangesReachTheApps(t *testing.T) {
	ctx := context.Background()
	e, kube := startFlagWorld(t, nil, checkoutDoc("off", ""))
	req := Request{Client: "probe", SourceNamespace: "demo", Host: "shop", User: "user-1", Headers: map[string]string{"x-user-id": "user-1"}}
	variant := func() string { return e.Route(req).Variant }
	update := func(cm *corev1.ConfigMap) {
		t.Helper()
		if _, err := kube.CoreV1().ConfigMaps("demo").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	sourceErr := func() error {
		e.flags.mu.Lock()
		defer e.flags.mu.Unlock()
		return e.flags.byRef[flagSourceRef{"demo", flagsConfigMap, flagsKey}].src.Err()
	}

	if got := variant(); got != "off" {
		t.Fatalf("variant before the update = %q, want off", got)
	}
	update(flagsConfigMapWith(checkoutDoc("on", "")))
	waitFor(t, "the updated flag", func() bool { return variant() == "on" })

	t.Run("a broken document keeps the last valid flags", func(t *testing.T) {
		update(flagsConfigMapWith(`{"flags": {`))
		waitFor(t, "the broken document to be refused", func() bool { return sourceErr() != nil })
		for range 20 {
			if got := variant(); got != "on" {
				t.Fatalf("variant with a broken document = %q, want the last valid flags' on", got)
			}
		}
		update(flagsConfigMapWith(checkoutDoc("off", "")))
		waitFor(t, "the repaired flag", func() bool { return variant() == "off" })
	})

	t.Run("a deleted ConfigMap keeps the last valid flags", func(t *testing.T) {
		if err := kube.CoreV1().ConfigMaps("demo").Delete(ctx, flagsConfigMap, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the deletion to be seen", func() bool { return sourceErr() != nil })
		if got := variant(); got != "off" {
			t.Errorf("variant without the ConfigMap = %q, want the last valid flags' off", got)
		}
		if _, err := kube.CoreV1().ConfigMaps("demo").Create(ctx, flagsConfigMapWith(checkoutDoc("on", "")), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the recreated flag", func() bool { return variant() == "on" })
	})
}

func TestFlagEvaluationErrorsServeTheBase(t *testing.T) {
	failingOn := map[string]string{annotationVariantPrefix + "on.error-rate": "1", annotationVariantPrefix + "error.error-rate": "1"}
	tests := []struct {
		name        string
		flag        string
		doc         string
		wantVariant string
	}{
		{"a flag missing from the document", "old-checkout", checkoutDoc("on", ""), "error"},
		{"a missing ConfigMap", checkoutFlag, "", "error"},
		{"a string flag is evaluated as a string", "theme", checkoutDoc("off", ""), "dark"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := map[string]string{annotationFlag: tt.flag}
			maps.Copy(a, failingOn)
			e, _ := startFlagWorld(t, a, tt.doc)
			for range 10 {
				got := e.Route(Request{SourceNamespace: "demo", Host: "shop", User: "user-1"})
				if got.Variant != tt.wantVariant || got.Code != 200 {
					t.Fatalf("variant %q code %d, want %q served with the healthy base (200)", got.Variant, got.Code, tt.wantVariant)
				}
			}
			want := map[VariantKey]Counts{{Revision: shopRev, Variant: tt.wantVariant}: {Requests: 10}}
			if diff := cmp.Diff(want, e.ServedVariants()); diff != "" {
				t.Errorf("ServedVariants mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPodsWithoutAFlagReportNoVariant(t *testing.T) {
	tbl, _ := buildTable(newDemo().snapshot())
	req := request("app", nil)
	if got := tbl.route(&req, rand.New(rand.NewPCG(1, 1))).resp.Variant; got != "" {
		t.Errorf("variant = %q, want none", got)
	}
}

func TestProxyAnswersWithTheVariantHeader(t *testing.T) {
	e, _ := startFlagWorld(t, nil, checkoutDoc("on", ""))
	srv := httptest.NewServer(e.ProxyHandler("load", "demo"))
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(host string) string {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("X-User", "alice")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("X-Flag-Variant")
	}
	if got := get("shop"); got != "on" {
		t.Errorf("X-Flag-Variant from shop = %q, want on", got)
	}
	if got := get("nowhere"); got != "" {
		t.Errorf("X-Flag-Variant of a request no pod served = %q, want none", got)
	}

	// Requests routed after Stop, whose providers are shut down, must not
	// panic.
	e.Stop()
	if got := e.Route(Request{SourceNamespace: "demo", Host: "shop", User: "bob"}); got.Code != 200 {
		t.Errorf("after Stop: code %d, want 200", got.Code)
	}
}
