//go:build e2e

package rollout_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// compareOnlyPolicies judge the canary by its error rate against stable
// alone, every 2 s.
const compareOnlyPolicies = `
policies:
  compare:
    steps: [20, 50]
    interval: 30s
    minInterval: 1s
    lookInterval: 2s
    scrapeInterval: 1s  # the sandbox's Prometheus scrapes every second
    progressDeadline: 60s
    metrics:
    - {name: error-rate, maxIncrease: 0.01}
`

// A canary failing a fifth of its requests, against a healthy stable, is
// rolled back by the comparison; a pipeline reading the API's Explain gets
// the rollback's comparison whole (both sides counted, the evidence at or
// above its level), fledgectl shows it on one line, and the engine's
// /metrics exports the evidence and its level.
func TestAPIExplainsAComparisonsRollbackWithItsEvidence(t *testing.T) {
	a := startAPIEngine(t, compareOnlyPolicies)
	sb, ns := a.sb, a.ns
	shopApp(t, sb, ns, "compare", 200)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", map[string]string{"sandbox.fledge.dev/error-rate": "0.2"})
	f := waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase.Terminal() && f.Status.CanaryRevision == rev
	})
	if f.Status.Phase != v1alpha1.PhaseRolledBack {
		t.Fatalf("phase %s (%s), want rolled back by the comparison", f.Status.Phase, f.Status.Message)
	}

	resp, err := a.client(t).Explain(withToken(callCtx(t), a.reader), &rolloutpb.ExplainRequest{Namespace: ns, Name: "shop", Revision: rev})
	if err != nil {
		t.Fatalf("Explain: %v", err)
	}
	var rollback *rolloutpb.Decision
	for _, d := range resp.GetDecisions() {
		if d.GetVerdict() == rolloutpb.Verdict_VERDICT_ROLLBACK {
			rollback = d
		}
	}
	if rollback == nil {
		t.Fatalf("Explain %s has no rollback decision: %v", rev, resp.GetDecisions())
	}
	var compared *rolloutpb.Comparison
	for _, c := range rollback.GetChecks() {
		if c.GetMetric() == analysis.ErrorRate && c.GetOutcome() == rolloutpb.Outcome_OUTCOME_FAIL {
			compared = c.GetCompared()
		}
	}
	t.Logf("rollback's comparison: %v", compared)
	switch {
	case compared == nil:
		t.Fatalf("the rollback's error-rate check carries no comparison: %v", rollback.GetChecks())
	case compared.GetCanary().GetRequests() <= 0 || compared.GetStable().GetRequests() <= 0:
		t.Errorf("requests canary %v, stable %v: want both sides counted", compared.GetCanary().GetRequests(), compared.GetStable().GetRequests())
	case compared.GetRollbackAt() <= 1 || compared.GetEvidence() < compared.GetRollbackAt():
		t.Errorf("evidence %v against rollback level %v: a rollback's evidence reaches its level", compared.GetEvidence(), compared.GetRollbackAt())
	case compared.GetCanary().GetRate() <= compared.GetStable().GetRate() || compared.GetCanary().GetLow() > compared.GetCanary().GetRate() || compared.GetCanary().GetHigh() < compared.GetCanary().GetRate():
		t.Errorf("canary %v vs stable %v: want the canary's rate above stable's, within its bounds", compared.GetCanary(), compared.GetStable())
	case compared.GetMaxIncrease() != 0.01 || compared.GetConfidence() != 0.99:
		t.Errorf("margin %v, confidence %v: want the policy's 0.01 and 0.99 (alpha 0.01, one comparison)", compared.GetMaxIncrease(), compared.GetConfidence())
	}

	if r := a.fledgectl(t, a.reader).run("explain", "shop", "--revision", rev); r.code != 0 || !lineWith(r.stdout, "error-rate  worse  canary", "vs stable", "canary req", "margin +1 pt", ">= 100") {
		t.Errorf("fledgectl explain: exit %d, no comparison line:\n%s%s", r.code, r.stdout, r.stderr)
	}

	metrics := scrapeCounters(t, a.engine.MetricsAddr)
	labels := fmt.Sprintf(`{flight="shop",metric="error-rate",namespace=%q}`, ns)
	if e, at := metrics["fledge_comparison_evidence"+labels], metrics["fledge_comparison_rollback_at"+labels]; at != 100 || e < at {
		t.Errorf("/metrics: evidence %v, rollback at %v: want the evidence at or above 100", e, at)
	}
	for _, side := range []string{"canary", "stable"} {
		key := fmt.Sprintf(`fledge_comparison_requests{flight="shop",metric="error-rate",namespace=%q,side=%q}`, ns, side)
		if metrics[key] <= 0 {
			t.Errorf("/metrics: %s = %v, want the requests counted", key, metrics[key])
		}
	}
	if t.Failed() {
		var names []string
		for k := range metrics {
			if strings.HasPrefix(k, "fledge_comparison_") {
				names = append(names, k)
			}
		}
		t.Logf("/metrics comparison series: %v", names)
	}
}
