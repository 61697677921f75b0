package mesh

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
)

// testLogWriter sends the emulator's log to the test log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond; the deadline only guards against a hang, it is not a
// performance assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEmulator(t *testing.T) {
	defer goleak.VerifyNone(t, ignoreFlagdEventForwarder)

	ctx := context.Background()
	kube := kubefake.NewClientset()
	istio := istiofake.NewSimpleClientset()
	e := New(kube, istio, Options{
		Seed: 1, Debounce: 5 * time.Millisecond, Tick: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, nil)),
	})
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()

	// v2 fails every request; beta users go to v2, everyone else to v1.
	d := newDemo(annotated(map[string]string{annotationErrorRate: "1", annotationErrorCode: "503"}))
	if _, err := kube.CoreV1().Services("demo").Create(ctx, d.svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(slices.Clone(d.v1), d.v2...) {
		if _, err := kube.CoreV1().Pods("demo").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := istio.NetworkingV1().DestinationRules("demo").Create(ctx, d.rule, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vs := betaToV2(exact("beta"))
	if _, err := istio.NetworkingV1().VirtualServices("demo").Create(ctx, vs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the configuration to be applied", func() bool {
		return e.AppliedVersion("VirtualService", "demo", "app") == "1" &&
			e.AppliedVersion("DestinationRule", "demo", "app") == "1" &&
			e.AppliedVersion("Pod", "demo", v2Pod0) == "1"
	})

	var mu sync.Mutex
	var misrouted []string
	cancel := e.Observe(func(req Request, resp Response) {
		if beta := req.Headers["x-user-tier"] == "beta"; beta != (resp.Workload == "app-v2") {
			mu.Lock()
			misrouted = append(misrouted, fmt.Sprintf("%s (beta=%t) -> %s", req.User, beta, resp.Workload))
			mu.Unlock()
		}
	})
	web := Client{
		Name: "web", Namespace: "demo", Labels: map[string]string{"app": "web", "version": "v7"},
		Host: "app", RPS: 2000, Users: 40,
		Segments: []Segment{{Share: 0.25, Headers: map[string]string{"x-user-tier": "beta"}}},
	}
	if err := e.AddClient(web); err != nil {
		t.Fatal(err)
	}
	if err := e.AddClient(web); err == nil || err.Error() != `client "web": name: already in use` {
		t.Errorf("adding a client twice: error = %v, want the name to be refused", err)
	}
	waitFor(t, "traffic", func() bool { return e.ClientCounts("web").Requests >= 400 })
	e.RemoveClient("web")
	cancel()

	// The counts are stable once RemoveClient has returned.
	client := e.ClientCounts("web")
	served := e.Served()
	v1, v2 := served[v1Rev].Requests, served[v2Rev].Requests
	if v1 == 0 || v2 == 0 {
		t.Fatalf("served = %v, want traffic on both revisions", served)
	}
	if diff := cmp.Diff(map[Revision]Counts{v1Rev: {Requests: v1}, v2Rev: {Requests: v2, Errors: v2}}, served); diff != "" {
		t.Errorf("Served() mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Counts{Requests: v1 + v2, Errors: v2}, client); diff != "" {
		t.Errorf("ClientCounts(web) mismatch (-want +got):\n%s", diff)
	}
	if len(misrouted) > 0 {
		t.Errorf("%d requests went to the wrong revision, e.g. %s", len(misrouted), misrouted[0])
	}

	t.Run("metrics carry Istio's label set and agree with the ground truth", func(t *testing.T) {
		families := scrape(t, e.MetricsAddr())
		requests := families["istio_requests_total"]
		if requests == nil {
			t.Fatalf("no istio_requests_total in %v", slices.Collect(maps.Keys(families)))
		}
		wantNames := istioLabelNames()
		slices.Sort(wantNames)
		byReporter := map[string]float64{}
		var v2Errors *dto.Metric
		for _, m := range requests.GetMetric() {
			l := labelMap(m)
			if diff := cmp.Diff(wantNames, slices.Sorted(maps.Keys(l))); diff != "" {
				t.Fatalf("label names mismatch (-want +got):\n%s", diff)
			}
			byReporter[l["reporter"]] += m.GetCounter().GetValue()
			if l["reporter"] == "destination" && l["destination_workload"] == "app-v2" {
				v2Errors = m
			}
		}
		if diff := cmp.Diff(map[string]float64{"source": float64(v1 + v2), "destination": float64(v1 + v2)}, byReporter); diff != "" {
			t.Errorf("request totals by reporter mismatch (-want +got):\n%s", diff)
		}
		if v2Errors == nil {
			t.Fatal("no series for requests served by app-v2")
		}
		want := map[string]string{
			"reporter": "destination", "connection_security_policy": "mutual_tls",
			"source_workload": "web", "source_workload_namespace": "demo",
			"source_principal": "spiffe://cluster.local/ns/demo/sa/default",
			"source_app":       "web", "source_version": "v7", "source_cluster": "Kubernetes",
			"source_canonical_service": "web", "source_canonical_revision": "v7",
			"destination_workload": "app-v2", "destination_workload_namespace": "demo",
			"destination_principal": "spiffe://cluster.local/ns/demo/sa/default",
			"destination_app":       "app", "destination_version": "v2",
			"destination_service": appHost, "destination_service_name": "app", "destination_service_namespace": "demo",
			"destination_cluster": "Kubernetes", "destination_canonical_service": "app", "destination_canonical_revision": "v2",
			"request_protocol": "http", "response_code": "503", "grpc_response_status": "", "response_flags": "-",
			"flag_variant": "",
		}
		if diff := cmp.Diff(want, labelMap(v2Errors)); diff != "" {
			t.Errorf("labels of the app-v2 series mismatch (-want +got):\n%s", diff)
		}
		if got := v2Errors.GetCounter().GetValue(); got != float64(v2) {
			t.Errorf("app-v2 series = %v, want %d", got, v2)
		}

		duration := families["istio_request_duration_milliseconds"]
		if duration == nil || len(duration.GetMetric()) == 0 {
			t.Fatal("no istio_request_duration_milliseconds")
		}
		var bounds []float64
		for _, b := range duration.GetMetric()[0].GetHistogram().GetBucket() {
			if !math.IsInf(b.GetUpperBound(), 1) { // the text format spells out the implicit +Inf bucket
				bounds = append(bounds, b.GetUpperBound())
			}
		}
		if diff := cmp.Diff(istioDurationBuckets(), bounds); diff != "" {
			t.Errorf("histogram buckets mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("a configuration change is applied and AppliedVersion tells when", func(t *testing.T) {
		updated := betaToV2(exact("nobody"))
		updated.ResourceVersion = "2"
		if _, err := istio.NetworkingV1().VirtualServices("demo").Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the updated VirtualService", func() bool { return e.AppliedVersion("VirtualService", "demo", "app") == "2" })
		got := e.Route(Request{Client: "probe", SourceNamespace: "demo", Host: "app", User: "u", Headers: map[string]string{"X-User-Tier": "beta"}})
		if got.Workload != "app-v1" {
			t.Errorf("a beta request after the change reached %q, want app-v1", got.Workload)
		}
		if c := e.ClientCounts("probe"); c != (Counts{Requests: 1}) {
			t.Errorf("ClientCounts(probe) = %+v, want the one routed request", c)
		}
	})

	t.Run("a bad object is reported by Problems until it is fixed", func(t *testing.T) {
		bad := virtualService("demo", "broken", time.Hour, []string{"other"}, httpRule(nil, to("app", "v1", 101)))
		if _, err := istio.NetworkingV1().VirtualServices("demo").Create(ctx, bad, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		want := []Problem{{Kind: "VirtualService", Namespace: "demo", Name: "broken", Field: "spec.http[0].route[0].weight",
			Message: "101 is outside 0..100" + ignoredVS}}
		waitFor(t, "the problem", func() bool { return cmp.Equal(want, e.Problems()) })
		if err := istio.NetworkingV1().VirtualServices("demo").Delete(ctx, "broken", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the problem to clear", func() bool { return len(e.Problems()) == 0 })
	})

	t.Run("a pod that stops being ready leaves the endpoints", func(t *testing.T) {
		p := d.v1[0].DeepCopy()
		p.ResourceVersion = "2"
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
		if _, err := kube.CoreV1().Pods("demo").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the pod update", func() bool { return e.AppliedVersion("Pod", "demo", p.Name) == "2" })
		for range 4 {
			if got := e.Route(Request{SourceNamespace: "demo", Host: "app"}); got.Pod == p.Name {
				t.Fatalf("request reached unready pod %s", p.Name)
			}
		}
	})

	e.Stop()
	e.Stop() // idempotent
	if err := e.AddClient(web); err == nil {
		t.Error("AddClient after Stop succeeded")
	}
}

func TestStartFailsWhenTheMetricsAddressIsTaken(t *testing.T) {
	defer goleak.VerifyNone(t, ignoreFlagdEventForwarder)
	first := New(kubefake.NewClientset(), istiofake.NewSimpleClientset(), Options{})
	if err := first.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer first.Stop()
	second := New(kubefake.NewClientset(), istiofake.NewSimpleClientset(), Options{MetricsAddr: first.MetricsAddr()})
	if err := second.Start(context.Background()); err == nil {
		second.Stop()
		t.Fatal("Start succeeded on an address in use")
	}
	second.Stop()
}

func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}
