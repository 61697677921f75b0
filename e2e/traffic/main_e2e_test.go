//go:build e2e

package traffic_test

import (
	"cmp"
	"fmt"
	"os"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/traffic"
)

var suite = sandbox.Suite{Options: sandbox.Options{MeshSeed: 7}}

func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }

// waitApplied waits until the mesh routes with the target's VirtualService
// as now stored, or without it when there is none.
func waitApplied(t *testing.T, sb *sandbox.Sandbox, tg traffic.Target) {
	t.Helper()
	name := cmp.Or(tg.VirtualService, tg.Name)
	want := ""
	vs, err := sb.Istio.NetworkingV1().VirtualServices(tg.Namespace).Get(t.Context(), name, metav1.GetOptions{})
	switch {
	case err == nil:
		want = vs.ResourceVersion
	case !apierrors.IsNotFound(err):
		t.Fatalf("get virtualservice %s/%s: %v", tg.Namespace, name, err)
	}
	if err := sb.WaitMeshRoutes(t.Context(), tg.Namespace, name, want); err != nil {
		t.Fatal(err)
	}
}

// route sends n requests for the host from a probe in the namespace,
// synchronously, and counts them by the workload that answered. Requests
// that no pod answered fail the test: a routing mistake must not pass as
// "not the canary".
func route(t *testing.T, sb *sandbox.Sandbox, ns string, n int, req mesh.Request) map[string]int {
	t.Helper()
	req.Client, req.SourceNamespace = "probe", ns
	got := map[string]int{}
	for i := range n {
		req.User = fmt.Sprint(i)
		resp := sb.Mesh.Route(req)
		if resp.Workload == "" {
			t.Fatalf("request %d for %s from %s got %d %s with no pod answering (problems: %v)", i, req.Host, ns, resp.Code, resp.Flags, sb.Mesh.Problems())
		}
		got[resp.Workload]++
	}
	return got
}

// shares measures, once the mesh applies the target's routing as stored,
// where 2000 requests for the host that all carry headers go: the share
// each workload served. In the sandbox a Service's pods are its own
// Deployment's, named like it, so a workload's share is its Service's.
func shares(t *testing.T, sb *sandbox.Sandbox, tg traffic.Target, headers map[string]string) map[string]float64 {
	t.Helper()
	waitApplied(t, sb, tg)
	const n = 2000
	out := map[string]float64{}
	for workload, count := range route(t, sb, tg.Namespace, n, mesh.Request{Host: tg.Host, Headers: headers}) {
		out[workload] = float64(count) / n
	}
	return out
}

// mirrorShare measures, once the mesh applies the target's routing as
// stored, the share of 2000 requests for the host that the mesh copies to
// the canary (each copy answered by a canary pod, with "-shadow" in its
// host, and seen by no client).
func mirrorShare(t *testing.T, sb *sandbox.Sandbox, tg traffic.Target) float64 {
	t.Helper()
	waitApplied(t, sb, tg)
	const n = 2000
	var mu sync.Mutex
	mirrored, wrong := 0, ""
	cancel := sb.Mesh.Observe(func(req mesh.Request, resp mesh.Response) {
		if !resp.Mirrored || req.Client != "probe" || req.SourceNamespace != tg.Namespace {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		mirrored++
		if resp.Workload != tg.Canary || req.Host != mesh.ShadowHost(tg.Host) {
			wrong = fmt.Sprintf("a copy for %s answered by %q", req.Host, resp.Workload)
		}
	})
	defer cancel()
	route(t, sb, tg.Namespace, n, mesh.Request{Host: tg.Host})
	mu.Lock()
	defer mu.Unlock()
	if wrong != "" {
		t.Fatal(wrong)
	}
	return float64(mirrored) / n
}
