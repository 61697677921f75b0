//go:build e2e

package strategies_test

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fledgehq/fledge/e2e/enginetest"
	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

var suite = sandbox.Suite{Options: sandbox.Options{MeshSeed: 13}}

func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }

// The engine and the app "shop" as e2e/enginetest runs them, under the
// names these tests use.
const (
	engineNamespace = enginetest.EngineNamespace
	defaultLatency  = enginetest.DefaultLatency
)

var (
	engineBinary             = enginetest.EngineBinary
	startEngine              = enginetest.StartEngine
	shopApp                  = enginetest.ShopApp
	appOf                    = enginetest.AppOf
	setImage                 = enginetest.SetImage
	shopTarget               = enginetest.ShopTarget
	assertSettled            = enginetest.AssertSettled
	getFlight                = enginetest.GetFlight
	waitFlight               = enginetest.WaitFlight
	decisionsOf              = enginetest.DecisionsOf
	evidenceOf               = enginetest.EvidenceOf
	dumpOnFailure            = enginetest.DumpOnFailure
	serviceAccountKubeconfig = enginetest.ServiceAccountKubeconfig
	freeAddr                 = enginetest.FreeAddr
	repoFile                 = enginetest.RepoFile
)

// seen is one request as the mesh routed it.
type seen struct {
	preview  bool // it carried the preview header
	canary   bool // shop-canary's pods answered it
	baseline bool // shop-baseline's pods answered it
	failed   bool
	mirrored bool // a copy the mesh mirrored, whose answer went nowhere
}

// recorder keeps what the mesh routes to ns's pods from ns's clients,
// while a window is open.
type recorder struct {
	mu   sync.Mutex
	on   bool
	reqs []seen
}

func record(t *testing.T, sb *sandbox.Sandbox, ns, previewHeader string) *recorder {
	r := &recorder{}
	cancel := sb.Mesh.Observe(func(req mesh.Request, resp mesh.Response) {
		if resp.Namespace != ns || req.SourceNamespace != ns {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.on {
			r.reqs = append(r.reqs, seen{preview: req.Headers[previewHeader] != "", canary: resp.Workload == "shop-canary", baseline: resp.Workload == "shop-baseline", failed: resp.Code >= 500, mirrored: resp.Mirrored})
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

// annotate merges annotations into shop's Deployment, as a person would.
func annotate(t testing.TB, sb *sandbox.Sandbox, ns string, annotations map[string]string) {
	t.Helper()
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(context.Background(), "shop", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// routingOf reads shop's routing back as the router sees it.
func routingOf(t *testing.T, sb *sandbox.Sandbox, ns string) traffic.Weights {
	t.Helper()
	w, err := istio.New(sb.Istio).Weights(context.Background(), shopTarget(ns))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// awaitRouting reads shop's routing until it is one of want, for a few
// seconds (a decision's status is written before its routing), and
// returns the last read.
func awaitRouting(t *testing.T, sb *sandbox.Sandbox, ns string, want ...traffic.Weights) traffic.Weights {
	t.Helper()
	var w traffic.Weights
	deadline := time.Now().Add(5 * time.Second)
	for {
		w = routingOf(t, sb, ns)
		if slices.Contains(want, w) || time.Now().After(deadline) {
			return w
		}
		time.Sleep(50 * time.Millisecond)
	}
}
