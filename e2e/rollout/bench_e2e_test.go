//go:build e2e

package rollout_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/fledgehq/fledge/e2e/demo"
	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/istio"
)

// BenchmarkFaultyCanaryTimeToZero measures, with the demo's weighted steps, how long
// users are exposed to a faulty canary: from its first bad response to 0%
// canary weight in the routing, and how many bad responses were served in
// that time (the emulator's ground truth). Each iteration is one faulty
// rollout; run with -benchtime 1x or 3x (make bench does).
func BenchmarkFaultyCanaryTimeToZero(b *testing.B) {
	sb, ns := suite.Namespace(b)
	installHookSecrets(b, sb) // the demo policy sends Slack messages
	startEngine(b, sb, ns, engineOptions{Policies: demo.WeightedPolicy})
	shopApp(b, sb, ns, "demo", 300)
	router := istio.New(sb.Istio)
	target := traffic.Target{Namespace: ns, Name: "shop", Host: "shop", Stable: "shop", Canary: "shop-canary"}
	var seconds, bad float64
	i := 0
	for b.Loop() {
		i++
		var mu sync.Mutex
		var first time.Time
		var errors uint64
		stop := sb.Mesh.Observe(func(req mesh.Request, resp mesh.Response) {
			if resp.Namespace != ns || resp.Workload != "shop-canary" || resp.Code < 500 {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if first.IsZero() {
				first = time.Now()
			}
			errors++
		})
		rev := setImage(b, sb, ns, "shop", "example.com/shop:faulty-"+string(rune('a'+i)), map[string]string{"sandbox.fledge.dev/error-rate": "0.08"})
		// The moment the routing sends the canary nothing: poll the
		// VirtualService, as the mesh reads it.
		var zeroAt time.Time
		deadline := time.Now().Add(3 * time.Minute)
		for zeroAt.IsZero() && time.Now().Before(deadline) {
			mu.Lock()
			started := !first.IsZero()
			mu.Unlock()
			if started {
				if w, err := router.Weights(context.Background(), target); err == nil && w.Canary == 0 {
					zeroAt = time.Now()
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		stop()
		if zeroAt.IsZero() {
			b.Fatal("the faulty canary never went to 0%")
		}
		waitFlight(b, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.RejectedRevision == rev })
		mu.Lock()
		seconds += zeroAt.Sub(first).Seconds()
		bad += float64(errors)
		mu.Unlock()
	}
	b.ReportMetric(seconds/float64(i), "s-first-bad-to-0%")
	b.ReportMetric(bad/float64(i), "bad-responses")
}
