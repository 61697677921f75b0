//go:build e2e

package rollout_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// Another writer keeps putting the routing back to all-stable (a GitOps
// tool re-applying a manifest, as the field manager "gitops-sim"): fledge
// sets its weights back a bounded number of times, then holds naming the
// writer instead of restarting the step forever; once the writer stops,
// the rollout goes on by itself to promotion.
func TestAnotherWriterOfTheRoutingIsNamedAndOutlasted(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, engineOptions{})
	shopApp(t, sb, ns, "fast", 100)
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseProgressing && f.Status.CanaryWeight > 0
	})

	var stop atomic.Bool
	done := make(chan struct{})
	var writes atomic.Int32
	go func() {
		defer close(done)
		vss := sb.Istio.NetworkingV1().VirtualServices(ns)
		for !stop.Load() {
			if vs, err := vss.Get(ctx, "shop", metav1.GetOptions{}); err == nil && len(vs.Spec.Http) > 0 {
				route := vs.Spec.GetHttp()[len(vs.Spec.Http)-1].GetRoute()
				if len(route) == 2 && route[1].GetWeight() != 0 {
					route[0].Weight, route[1].Weight = 100, 0
					if _, err := vss.Update(ctx, vs, metav1.UpdateOptions{FieldManager: "gitops-sim"}); err == nil {
						writes.Add(1)
					}
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { stop.Store(true); <-done })

	began := time.Now()
	f := waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldOtherWriter
	})
	t.Logf("held %s after the other writer started (%d of its writes), %d reasserts: %s", time.Since(began).Round(time.Second), writes.Load(), f.Status.Reasserts, f.Status.Hold.Message)
	if !strings.Contains(f.Status.Hold.Message, `"gitops-sim"`) || f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.Step != 0 {
		t.Errorf("hold %q at phase %s step %d: want the writer named, still at the first step", f.Status.Hold.Message, f.Status.Phase, f.Status.Step)
	}
	// Bounded: no more than a few set-backs while it is held.
	before := f.Status.Reasserts
	time.Sleep(10 * time.Second)
	if f = mustFlight(t, sb, ns); f.Status.Reasserts > before+1 {
		t.Errorf("set back %d times in 10 s while held, want at most once (it stopped fighting)", f.Status.Reasserts-before)
	}

	stop.Store(true)
	<-done
	stopped := time.Now()
	waitFlight(t, sb, ns, "shop", 3*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == rev
	})
	t.Logf("promoted %s after the other writer stopped", time.Since(stopped).Round(time.Second))
}
