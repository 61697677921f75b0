//go:build e2e

package strategies_test

import (
	"context"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// previewHostPolicies: a blue/green preview reached by a host of its own,
// shop-preview, judged after 8 s, then switched and judged 8 s more.
const previewHostPolicies = `
policies:
  by-host:
    strategy: blueGreen
    interval: 4s
    minInterval: 1s
    progressDeadline: 1m
    blueGreen:
      preview: {host: "{name}-preview"}
      prePromotion: {duration: 8s, minSamples: 20}
      postPromotion: {duration: 8s}
    metrics:
    - {name: success-rate, min: 0.95, minSamples: 10, interval: 4s}
`

// TestABlueGreenPreviewByHostReachesTheNewRevisionAloneAndGoesAfter: during
// the preview, requests to shop-preview reach the new revision alone and
// requests to shop reach the previous one alone (the emulator's ground
// truth), with no match route in the routing; the preview is judged, the
// switch and the promotion follow, and the preview's Service is gone
// afterwards.
func TestABlueGreenPreviewByHostReachesTheNewRevisionAloneAndGoesAfter(t *testing.T) {
	sb, ns := suite.Namespace(t)
	startEngine(t, sb, ns, previewHostPolicies)
	shopApp(t, sb, ns, "by-host", 20, nil)
	var mu sync.Mutex
	var on bool
	counts := map[string]map[string]int{} // host -> workload -> requests
	cancel := sb.Mesh.Observe(func(req mesh.Request, resp mesh.Response) {
		if resp.Namespace != ns || req.SourceNamespace != ns || resp.Mirrored {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if on {
			if counts[req.Host] == nil {
				counts[req.Host] = map[string]int{}
			}
			counts[req.Host][resp.Workload]++
		}
	})
	t.Cleanup(cancel)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Step == 0
	})
	if _, err := sb.Kube.CoreV1().Services(ns).Get(context.Background(), "shop-preview", metav1.GetOptions{}); err != nil {
		t.Fatalf("the preview's Service: %v", err)
	}
	if w := routingOf(t, sb, ns); w != (traffic.Weights{Stable: 100}) {
		t.Errorf("routing %+v during a preview by host, want all on stable, no match route", w)
	}
	sb.SendTraffic(t, mesh.Client{Name: "previewer-" + ns, Namespace: ns, Host: "shop-preview", RPS: 10, Users: 10})
	time.Sleep(time.Second) // the emulator's routing debounce, and some requests
	mu.Lock()
	on = true
	mu.Unlock()
	time.Sleep(2 * time.Second)
	mu.Lock()
	on = false
	preview, users := counts["shop-preview"], counts["shop"]
	mu.Unlock()
	t.Logf("preview: requests to shop-preview by workload %v, to shop %v", preview, users)
	if preview["shop-canary"] == 0 || len(preview) != 1 || users["shop"] == 0 || len(users) != 1 {
		t.Errorf("during the preview shop-preview reached %v and shop %v; want the new revision (shop-canary) alone and the previous one alone", preview, users)
	}

	f := waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Phase.Terminal()
	})
	if f.Status.Phase != v1alpha1.PhaseSucceeded || f.Status.StableRevision != rev {
		t.Fatalf("phase %s, stable %s (%s); want %s promoted", f.Status.Phase, f.Status.StableRevision, f.Status.Message, rev)
	}
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := sb.Kube.CoreV1().Services(ns).Get(ctx, "shop-preview", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Errorf("the preview's Service is still there after the promotion")
	}
	assertSettled(t, sb, ns)
}
