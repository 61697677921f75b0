//go:build e2e

package rollout_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// lowTrafficRPS is the app's whole organic traffic: one request every two
// seconds, split between stable and the canary.
const lowTrafficRPS = 0.5

// lowTrafficPolicies compare the error rate with stable's (margin 3
// points) every 2 s, and load both sides with the real load tester while
// the comparison cannot tell. The analysis deadline is short, and holds:
// a verdict that came from it, or from no data, would show as a hold, not
// as a promotion or a rollback. Alpha is 0.0001: comparing a healthy
// canary with a stable failing as often (1% each) wrongly rolls it back
// with a probability below alpha, which at 0.01 is a test failing once in
// a few hundred runs; the 15x worse canary is still rolled back in a
// minute or so.
func lowTrafficPolicies(tester, ns string) string {
	return fmt.Sprintf(`
webhookSecret: {name: fledge-webhooks, key: hmac}
hookNetworks: [127.0.0.0/8]  # the hooks listen on loopback
policies:
  lowtraffic:
    steps: [50]
    interval: 20s
    minInterval: 1s
    lookInterval: 2s
    scrapeInterval: 1s  # the sandbox's Prometheus scrapes every second
    progressDeadline: 60s
    alpha: 0.0001
    analysisDeadline: 5m
    onInsufficientEvidence: hold
    metrics:
    - {name: error-rate, maxIncrease: 0.03}
    webhooks:
    - name: load
      type: rollout
      when: notEnoughData
      url: %s/
      timeout: 30s
      metadata:
        url: http://shop-canary.%s.svc.cluster.local/
        stableUrl: http://shop-stable.%s.svc.cluster.local/
        rate: "25"
        duration: 12s
`, tester, ns, ns)
}

// At about 0.5 requests per second, a comparison with stable would wait
// hours for evidence. With the load tester loading the canary and stable
// alike while the comparison cannot tell, a canary as good as stable (1%
// errors each) is promoted, and then one 15 times worse (15%) rolled back,
// each in a couple of minutes and well within the analysis deadline, on
// the comparison's verdict, with evidence of stable far beyond what its
// organic traffic could give.
func TestAtLowTrafficLoadOnBothSidesLetsTheComparisonDecide(t *testing.T) {
	sb, ns := suite.Namespace(t)
	installHookSecrets(t, sb)
	tester := startLoadTester(t, sb)
	startEngine(t, sb, ns, engineOptions{Policies: lowTrafficPolicies(tester, ns)})
	t.Cleanup(func() { dumpOnFailure(t, sb, ns) })
	sb.CreateApp(t, ns, appOf("shop", map[string]string{rollout.AnnotationRollout: "lowtraffic"}, map[string]string{"sandbox.fledge.dev/error-rate": "0.01"}))
	sb.SendTraffic(t, mesh.Client{Name: "shopper-" + ns, Namespace: ns, Host: "shop", RPS: lowTrafficRPS, Users: 50})
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
	if _, err := sb.Kube.CoreV1().Services(ns).Get(context.Background(), "shop-stable", metav1.GetOptions{}); err == nil {
		t.Errorf("shop-stable exists before any canary: it should come with one")
	}

	// (a) As good as stable: promoted on the comparison.
	began := time.Now()
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", map[string]string{"sandbox.fledge.dev/error-rate": "0.01"})
	waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.CanaryRevision == rev && f.Status.Step >= 0 })
	svc, err := sb.Kube.CoreV1().Services(ns).Get(context.Background(), "shop-stable", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("shop-stable while the canary runs: %v", err)
	}
	if svc.Spec.Selector["app"] != "shop" || len(svc.OwnerReferences) != 1 || svc.OwnerReferences[0].Kind != "Flight" {
		t.Errorf("shop-stable selects %v, owned by %+v: want the user's selector, owned by the Flight", svc.Spec.Selector, svc.OwnerReferences)
	}
	f := waitFlight(t, sb, ns, "shop", 5*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && (f.Status.Phase == v1alpha1.PhaseSucceeded || f.Status.Phase == v1alpha1.PhaseRolledBack ||
			f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldInsufficientEvidence)
	})
	took := time.Since(began)
	t.Logf("healthy canary: %s in %s: %s", f.Status.Phase, took.Round(time.Second), f.Status.Message)
	if f.Status.Phase != v1alpha1.PhaseSucceeded {
		t.Fatalf("phase %s, hold %+v: want promoted", f.Status.Phase, f.Status.Hold)
	}
	judged := verdictOf(t, f, rev, v1alpha1.VerdictPromote)
	assertCompared(t, judged, analysis.Pass, "no worse than stable")
	assertLoadedStable(t, f, took)
	// The comparison may decide while the first load still runs (a look
	// mid-load is taken into evidence like any other): a load call must be
	// on record, and an answered one must report both sides.
	var loads int
	for _, c := range f.Status.Calls {
		if c.Hook == "load" {
			loads++
		}
		if c.Hook == "load" && c.Load != nil {
			if c.Load.Stable == nil || c.Load.Stable.Requests != 300 || c.Load.Requests != 300 {
				t.Errorf("load call %s: %+v, want 300 requests to each side (25/s for 12s)", c.ID, c.Load)
			} else {
				t.Logf("load call %s: canary %d requests, %.1f%% success; stable %d, %.1f%% success",
					c.ID, c.Load.Requests, 100*c.Load.Success, c.Load.Stable.Requests, 100*c.Load.Stable.Success)
			}
		}
	}
	if loads == 0 {
		t.Errorf("no load call on record: %+v", f.Status.Calls)
	}

	// (b) 15 times worse than stable: rolled back on the comparison.
	began = time.Now()
	rev = setImage(t, sb, ns, "shop", "example.com/shop:v3", map[string]string{"sandbox.fledge.dev/error-rate": "0.15"})
	f = waitFlight(t, sb, ns, "shop", 5*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && (f.Status.Phase.Terminal() ||
			f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldInsufficientEvidence)
	})
	took = time.Since(began)
	t.Logf("15x worse canary: %s in %s: %s", f.Status.Phase, took.Round(time.Second), f.Status.Message)
	if f.Status.Phase != v1alpha1.PhaseRolledBack {
		t.Fatalf("phase %s, hold %+v: want rolled back", f.Status.Phase, f.Status.Hold)
	}
	judged = verdictOf(t, f, rev, v1alpha1.VerdictRollback)
	assertCompared(t, judged, analysis.Fail, "error-rate worse")
	assertLoadedStable(t, f, took)
}

// verdictOf returns the decision with verdict v for revision rev, and
// checks that it came neither from the analysis deadline nor from a lack
// of data.
func verdictOf(t *testing.T, f *v1alpha1.Flight, rev string, v v1alpha1.Verdict) v1alpha1.DecisionRecord {
	t.Helper()
	for _, d := range f.Status.Decisions {
		if d.Revision == rev && d.Verdict == v {
			t.Logf("%s: %s", v, d.Message)
			for _, bad := range []string{"analysis deadline", "not enough data", "cannot judge"} {
				if strings.Contains(d.Message, bad) {
					t.Errorf("the %s says %q: want a verdict of the comparison", v, bad)
				}
			}
			return d
		}
	}
	t.Fatalf("no %s decision for %s in %+v", v, rev, f.Status.Decisions)
	return v1alpha1.DecisionRecord{}
}

// assertCompared checks that the decision's error-rate check is a
// comparison with the given outcome, both sides read.
func assertCompared(t *testing.T, d v1alpha1.DecisionRecord, want analysis.Outcome, says string) {
	t.Helper()
	if !strings.Contains(d.Message, says) {
		t.Errorf("decision message %q lacks %q", d.Message, says)
	}
	for _, c := range d.Checks {
		if c.Metric != analysis.ErrorRate {
			continue
		}
		if c.Outcome != want || c.Compared == nil || c.Compared.Stable.Requests == 0 || c.Compared.Canary.Requests == 0 {
			t.Errorf("error-rate check %s (%s), compared %+v: want %s with both sides' requests", c.Outcome, c.Message, c.Compared, want)
		}
		return
	}
	t.Errorf("the decision's checks %+v hold no error-rate comparison", d.Checks)
}

// assertLoadedStable checks that the comparison's evidence of stable is
// far beyond what the organic traffic could have sent stable in the time
// the revision took (all of it, at lowTrafficRPS).
func assertLoadedStable(t *testing.T, f *v1alpha1.Flight, took time.Duration) {
	t.Helper()
	if len(f.Status.Evidence) != 1 {
		t.Fatalf("evidence %+v, want the error-rate comparison's", f.Status.Evidence)
	}
	ev := f.Status.Evidence[0]
	organic := lowTrafficRPS * took.Seconds()
	t.Logf("evidence: canary %.0f requests (%.0f bad), stable %.0f requests (%.0f bad), %d looks; organic traffic at most %.0f requests in %s",
		ev.Canary.Requests, ev.Canary.Bad, ev.Stable.Requests, ev.Stable.Bad, ev.Looks, organic, took.Round(time.Second))
	// A verdict can come in the middle of a load (a promotion after some
	// 50 requests a side, at this margin): stable's evidence is then what
	// the load had sent by that look, about as much as the canary's, and
	// at least 3 times what organic traffic could have given it (and 20,
	// 40 s of organic traffic, when the verdict came sooner).
	if ev.Stable.Requests < max(20, 3*organic) {
		t.Errorf("stable's evidence %.0f requests: want at least 20, and 3 times the %.0f organic requests: the load tester's", ev.Stable.Requests, organic)
	}
	// Looks at their pace (every 2 s), not at every status write.
	if max := took.Seconds()/2 + 5; float64(ev.Looks) > max {
		t.Errorf("%d looks in %s: want at most %.0f (one every 2 s)", ev.Looks, took.Round(time.Second), max)
	}
}
