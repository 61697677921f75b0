//go:build e2e

package rollout_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/fledgehq/fledge/e2e/sandbox"
)

// weightHistory is the sequence of canary weights one VirtualService went
// through, as the API server stored them: the ground truth of what the mesh
// was told, whatever the engine believed or logged.
//
// It keeps the distinct weights in order: a version that leaves the
// canary's weight as it was (the router repairing something else in the
// object) is counted in writes but adds no entry, and re-asserting a
// weight the VirtualService already has stores no version at all. So the
// history shows every change of weight and its order, and thereby any
// step skipped (10 then 30) or gone back to (20, 30, 20); it cannot show
// a step "repeated" in place, which is harmless with absolute weights and
// which the decision log and the Events reveal instead.
type weightHistory struct {
	mu      sync.Mutex
	weights []int32
	writes  int             // every stored version seen, same weight or not
	seen    map[string]bool // resource versions seen, for sync
	err     error
	done    chan struct{}
}

// recordCanaryWeights watches the VirtualService name in ns until the test
// ends and records the weight of its destination canaryHost (0 when the
// VirtualService is absent: plain routing sends everything to stable). It
// lists first and watches from the list's resourceVersion, so no version
// stored after the list can be missed, whatever the timing.
func recordCanaryWeights(t *testing.T, sb *sandbox.Sandbox, ns, name, canaryHost string) *weightHistory {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	vss := sb.Istio.NetworkingV1().VirtualServices(ns)
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	list, err := vss.List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		cancel()
		t.Fatalf("virtualservice %s/%s: list: %v", ns, name, err)
	}
	h := &weightHistory{seen: map[string]bool{}, done: make(chan struct{})}
	if len(list.Items) == 1 {
		h.observe(canaryWeightOf(list.Items[0], canaryHost), list.Items[0].ResourceVersion)
	} else {
		h.weights = []int32{0} // no VirtualService yet: plain routing
	}
	go h.follow(ctx, vss.Watch, sel, list.ResourceVersion, canaryHost)
	t.Cleanup(func() {
		cancel()
		<-h.done
	})
	return h
}

func (h *weightHistory) follow(ctx context.Context, watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error), sel, rv, canaryHost string) {
	defer close(h.done)
	// The API server ends watches after a while; carrying on from the last
	// version seen keeps the history gapless.
	for ctx.Err() == nil {
		w, err := watchFn(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if ctx.Err() == nil {
				h.fail(fmt.Errorf("watch virtualservices from %s: %w", rv, err))
			}
			return
		}
		for ev := range w.ResultChan() {
			switch ev.Type {
			case watch.Added, watch.Modified:
				vs := ev.Object.(*istionetv1.VirtualService)
				rv = vs.ResourceVersion
				h.observe(canaryWeightOf(vs, canaryHost), rv)
			case watch.Deleted:
				vs := ev.Object.(*istionetv1.VirtualService)
				rv = vs.ResourceVersion
				h.observe(0, rv)
			case watch.Bookmark:
				// Only a newer version to resume from; nothing changed.
				if vs, ok := ev.Object.(*istionetv1.VirtualService); ok {
					rv = vs.ResourceVersion
				}
			case watch.Error:
				// A gap (410 Gone, say) would make the history a lie:
				// report it rather than re-list and paper over it.
				h.fail(fmt.Errorf("watch virtualservices: %w", apierrors.FromObject(ev.Object)))
				w.Stop()
				return
			}
		}
		w.Stop()
	}
}

func (h *weightHistory) observe(w int32, rv string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.writes++
	if rv != "" {
		h.seen[rv] = true
	}
	if n := len(h.weights); n == 0 || h.weights[n-1] != w {
		h.weights = append(h.weights, w)
	}
}

func (h *weightHistory) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		h.err = err
	}
}

// Weights returns the distinct weights so far, the number of versions seen
// and the watch's error, if it broke.
func (h *weightHistory) Weights() ([]int32, int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int32(nil), h.weights...), h.writes, h.err
}

// Sync waits until the history includes the VirtualService's current
// version: a watch event may trail the write a test already saw the
// effect of (a Flight that says Succeeded, say).
func (h *weightHistory) Sync(t *testing.T, sb *sandbox.Sandbox, ns, name string) {
	t.Helper()
	vs, err := sb.Istio.NetworkingV1().VirtualServices(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("virtualservice %s/%s: %v", ns, name, err)
	}
	err = wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.seen[vs.ResourceVersion] || h.err != nil, nil
	})
	if err != nil {
		t.Fatalf("virtualservice %s/%s: version %s never reached the watch", ns, name, vs.ResourceVersion)
	}
}

// Want waits until the history includes the current version of the
// VirtualService ns/name (Sync), then checks that its distinct weights are
// want, in order.
func (h *weightHistory) Want(t *testing.T, sb *sandbox.Sandbox, ns, name string, want ...int32) {
	t.Helper()
	h.Sync(t, sb, ns, name)
	weights, writes, err := h.Weights()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(weights, want) {
		t.Errorf("canary weights %v over %d VirtualService versions, want %v", weights, writes, want)
	} else {
		t.Logf("canary weights %v over %d VirtualService versions", weights, writes)
	}
}

// canaryWeightOf is the weight of the destination canaryHost, summed over
// the http routes (fledge generates one; a weight elsewhere would be a
// bug worth seeing in the history).
func canaryWeightOf(vs *istionetv1.VirtualService, canaryHost string) int32 {
	var w int32
	for _, route := range vs.Spec.GetHttp() {
		for _, dst := range route.GetRoute() {
			if dst.GetDestination().GetHost() == canaryHost {
				w += dst.GetWeight()
			}
		}
	}
	return w
}
