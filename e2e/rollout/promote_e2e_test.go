//go:build e2e

package rollout_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgeengine "github.com/fledgehq/fledge/rollout/engine"
)

// Scenarios 1 and 2 of the engine: a healthy revision promoted through
// every step; a faulty one rolled back without ever being rolled out.
func TestHealthyRevisionIsPromotedAndFaultyOneRolledBack(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	e := startEngine(t, sb, ns, engineOptions{})
	shopApp(t, sb, ns, "fast", 200)

	t.Run("a healthy revision goes through every step and is promoted", func(t *testing.T) {
		began := time.Now()
		before := scrapeCounters(t, e.MetricsAddr)
		rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
		f := waitFlight(t, sb, ns, "shop", 3*time.Minute, func(f *v1alpha1.Flight) bool {
			return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == rev
		})
		t.Logf("promoted in %s", time.Since(began).Round(time.Second))
		// The cost of a rollout, for the benchmark figures: API writes per
		// transition (canary start, 2 steps, promotion) and PromQL queries
		// per judged step (2).
		after := scrapeCounters(t, e.MetricsAddr)
		const transitions, judged = 4, 2
		for _, kind := range []string{"flight-status", "routing-call", "canary", "deployment"} {
			key := `fledge_api_writes_total{kind="` + kind + `"}`
			t.Logf("per transition, %s: %.1f", kind, (after[key]-before[key])/transitions)
		}
		q := `fledge_prometheus_queries_total{result="ok"}`
		t.Logf("PromQL queries per judged step: %.1f", (after[q]-before[q])/judged)
		want := []v1alpha1.Verdict{v1alpha1.VerdictStart, v1alpha1.VerdictAdvance, v1alpha1.VerdictPromote, v1alpha1.VerdictPromoted}
		if got := verdicts(f, rev); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("decision log for %s: %v, want %v", rev, got, want)
		}
		// The user's Deployment runs the new template on every replica and
		// is held again; the canary is at zero; all traffic is on stable.
		d, err := sb.WaitDeploymentAvailable(ctx, ns, "shop", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !d.Spec.Paused || d.Spec.Template.Spec.Containers[0].Image != "example.com/shop:v2" {
			t.Errorf("deployment after promotion: paused=%v image=%s", d.Spec.Paused, d.Spec.Template.Spec.Containers[0].Image)
		}
		assertSettled(t, sb, ns)
		if served := sb.Mesh.WorkloadCounts(ns, "shop-canary"); served.Requests == 0 {
			t.Error("the canary never served a request")
		}
	})

	t.Run("a revision with 10% errors is rolled back", func(t *testing.T) {
		before := sb.Mesh.WorkloadCounts(ns, "shop-canary")
		rev := setImage(t, sb, ns, "shop", "example.com/shop:v3", map[string]string{"sandbox.fledge.dev/error-rate": "0.1"})
		f := waitFlight(t, sb, ns, "shop", 3*time.Minute, func(f *v1alpha1.Flight) bool {
			return f.Status.Phase == v1alpha1.PhaseRolledBack && f.Status.RejectedRevision == rev
		})
		t.Logf("rolled back: %s", f.Status.Message)
		after := sb.Mesh.WorkloadCounts(ns, "shop-canary")
		t.Logf("bad responses users got from the faulty canary: %d of %d requests", after.Errors-before.Errors, after.Requests-before.Requests)
		// The Deployment keeps the rejected template in its spec but never
		// rolled it out: every pod still runs the promoted revision.
		d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sets, err := sb.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=shop"})
		if err != nil {
			t.Fatal(err)
		}
		var running []string
		for _, rs := range sets.Items {
			if rs.Status.Replicas > 0 {
				running = append(running, fledgeengine.TemplateHash(rs.Spec.Template))
			}
		}
		if !d.Spec.Paused || fledgeengine.TemplateHash(d.Spec.Template) != rev || fmt.Sprint(running) != fmt.Sprint([]string{f.Status.StableRevision}) {
			t.Errorf("after rollback: paused=%v spec template=%s, pods run %v; want paused, %s in spec, pods on %s only",
				d.Spec.Paused, fledgeengine.TemplateHash(d.Spec.Template), running, rev, f.Status.StableRevision)
		}
		assertSettled(t, sb, ns)
	})
}

// scrapeCounters reads an engine's /metrics into a map from the sample's
// name and labels, as the exposition format writes them, to its value.
func scrapeCounters(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}
