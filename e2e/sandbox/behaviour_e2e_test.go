//go:build e2e

package sandbox_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	networkingv1 "istio.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
)

// A gRPC revision that answers 200 with a non-OK grpc-status, and a slow
// revision whose p95 the histogram must show.
func TestMeshReportsGRPCStatusAndLatencyLikeIstio(t *testing.T) {
	sb, ns := suite.Namespace(t)
	sb.DeployApps(t, ns, app{name: "rpc", app: "rpc", version: "v1", replicas: 1,
		annotations: map[string]string{"sandbox.fledge.dev/grpc-error-rate": "0.2"}}.App())
	sb.DeployApps(t, ns, app{name: "slow", app: "slow", version: "v1", replicas: 1,
		annotations: map[string]string{"sandbox.fledge.dev/latency-ms": "p50=150,p95=400"}}.App())
	sb.SendTraffic(t, mesh.Client{Name: "rpc-client", Namespace: ns, Host: "rpc", Protocol: mesh.GRPC, RPS: 200, Users: 100})
	sb.SendTraffic(t, mesh.Client{Name: "slow-client", Namespace: ns, Host: "slow", RPS: 200, Users: 100})

	sel := fmt.Sprintf(`reporter="destination",destination_workload_namespace=%q`, ns)
	// gRPC failures are HTTP 200s: only grpc_response_status tells them apart.
	pollQuery(t, sb, fmt.Sprintf(`sum by (response_code) (increase(istio_requests_total{%s,destination_workload="rpc",request_protocol="grpc"}[10s]))`, sel),
		"response_code", func(v map[string]float64) bool { return len(v) == 1 && v["200"] > 500 })
	pollQuery(t, sb, fmt.Sprintf(`sum(increase(istio_requests_total{%s,destination_workload="rpc",grpc_response_status!="0"}[10s]))
		/ sum(increase(istio_requests_total{%s,destination_workload="rpc"}[10s]))`, sel, sel),
		"", func(v map[string]float64) bool { return v[""] > 0.15 && v[""] < 0.25 })

	// With Istio's buckets (..., 100, 250, 500, ...) a p95 of 400 ms
	// interpolates inside (250, 500]; the median inside (100, 250].
	pollQuery(t, sb, fmt.Sprintf(`histogram_quantile(0.95, sum by (le) (rate(istio_request_duration_milliseconds_bucket{%s,destination_workload="slow"}[10s])))`, sel),
		"", func(v map[string]float64) bool { return v[""] > 250 && v[""] <= 500 })
	pollQuery(t, sb, fmt.Sprintf(`histogram_quantile(0.5, sum by (le) (rate(istio_request_duration_milliseconds_bucket{%s,destination_workload="slow"}[10s])))`, sel),
		"", func(v map[string]float64) bool { return v[""] > 100 && v[""] <= 250 })
}

func TestMeshAnswers503WhenNoEndpointIsReady(t *testing.T) {
	sb, ns := suite.Namespace(t)
	sb.DeployApps(t, ns, app{name: "gone", app: "gone", version: "v1", replicas: 1}.App())
	if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(context.Background(), "gone", "application/merge-patch+json",
		[]byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitNoPods(t, sb, ns, "app=gone")
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		r := sb.Mesh.Route(mesh.Request{Client: "probe", SourceNamespace: ns, Host: "gone", User: "u"})
		return r.Code == 503 && r.Flags == "UH", nil
	})
	if err != nil {
		t.Fatalf("no 503 UH for a Service without Ready endpoints: %v", err)
	}
}

func waitNoPods(t *testing.T, sb *sandbox.Sandbox, ns, selector string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, sandbox.DeployTimeout, true, func(ctx context.Context) (bool, error) {
		pods, err := sb.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		return err == nil && len(pods.Items) == 0, nil
	})
	if err != nil {
		t.Fatalf("pods %s in %s never went away: %v", selector, ns, err)
	}
}

// Bad input is reported with the object's name and never crashes the
// emulator: a malformed behaviour annotation is ignored (the pod behaves as
// healthy), and a VirtualService it cannot interpret is skipped.
func TestMeshReportsBadInputAndKeepsRouting(t *testing.T) {
	sb, ns := suite.Namespace(t)
	sb.DeployApps(t, ns, app{name: "odd", app: "odd", version: "v1", replicas: 1,
		annotations: map[string]string{
			"sandbox.fledge.dev/error-rate": "lots",
			"sandbox.fledge.dev/colour":     "blue",
		}}.App())

	bad := virtualService(ns, "odd", []string{"odd"}, weighted(map[string]int32{"odd": 100}, "odd"))
	bad.Spec.Http[0].Match = []*networkingv1.HTTPMatchRequest{{Headers: map[string]*networkingv1.StringMatch{
		"x-user-tier": {MatchType: &networkingv1.StringMatch_Regex{Regex: "(beta"}},
	}}}
	if _, err := sb.Istio.NetworkingV1().VirtualServices(ns).Create(context.Background(), bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	want := map[string]string{ // object kind/name prefix -> words the problem must contain
		"Pod/odd-:error-rate":      "sandbox.fledge.dev/error-rate",
		"Pod/odd-:colour":          "sandbox.fledge.dev/colour",
		"VirtualService/odd:regex": "(beta",
	}
	var last []mesh.Problem
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		last = sb.Mesh.Problems()
		for key, words := range want {
			kindName := strings.SplitN(key, ":", 2)[0]
			kind, name, _ := strings.Cut(kindName, "/")
			if !hasProblem(last, ns, kind, name, words) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("problems never reported as expected %v; got %+v", want, last)
	}

	// The pod behaves as healthy and the host is still served (straight
	// through its Service, as the VirtualService is skipped).
	for i := range 500 {
		r := sb.Mesh.Route(mesh.Request{Client: "probe", SourceNamespace: ns, Host: "odd", User: fmt.Sprint("u", i)})
		if r.Code != 200 || r.Workload != "odd" {
			t.Fatalf("request %d to the odd app: %+v, want 200 from workload odd", i, r)
		}
	}
}

func hasProblem(ps []mesh.Problem, ns, kind, namePrefix, words string) bool {
	for _, p := range ps {
		text := p.Field + " " + p.Message
		if p.Namespace == ns && p.Kind == kind && strings.HasPrefix(p.Name, namePrefix) && strings.Contains(text, words) {
			return true
		}
	}
	return false
}
