//go:build e2e

package ship_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/api/apitest"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// dashboardPolicy judges a canary both ways the dashboard shows: a
// comparison with stable (evidence and its rollback level) every 2 s, and
// an absolute bound (a check with a value and a threshold) at the end of
// each 4 s step. The bound is an SLO floor far below the healthy
// revisions' 99.5%: a 4 s window at 10% of 200 rps holds about 80
// requests, and at >= 97% three errors in it (0.8% of windows at 0.5%
// errors; two such windows by chance rolled a healthy canary back in a
// CI run) fail it. At >= 90% that takes three errors in a window of 20
// requests or eight in one of 80 (P <= 1.3e-4 a window), while the bad
// revision's 30% still fails it. Its alpha is 0.0001, not 0.01: a
// comparison wrongly rolls a healthy canary back with a probability below
// alpha, and a suite that rolls out many healthy canaries against a
// failing stable (0.5% each here) should not fail once in a few hundred
// runs for it; the bad revision's 30% is still pulled within seconds.
const dashboardPolicy = `
policies:
  ship:
    steps: [10, 20, 30, 50]
    interval: 4s
    minInterval: 1s
    lookInterval: 2s
    scrapeInterval: 1s  # the sandbox's Prometheus scrapes every second
    failureLimit: 2
    progressDeadline: 60s
    alpha: 0.0001
    metrics:
    - {name: error-rate, maxIncrease: 0.01}
    - {name: success-rate, min: 0.9, minSamples: 20}
`

// The dashboard and the alerts only work if the engine exports what they
// query. A real engine, with its API served, runs a rollout that is
// rolled back, then one that is paused (a hold), and answers one API
// call; its /metrics, scraped all along, must at some point hold every
// metric any panel or alert names (a labelled metric only appears once
// it has a series). Then the alerts are loaded into a real Prometheus
// that scrapes the engine: every rule evaluates without error, no alert
// fires while the engine leads, a rejected policy file makes
// FledgePolicyReloadRejected pending, and the engine gone makes
// FledgeNoLeader pending.
func TestDashboardAndAlertMetricsAreExportedByARunningEngine(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	wanted := dashboardAndAlertMetrics(t)

	installCRDs(t, sb)
	if err := sb.InstallRBAC(ctx, engineNamespace, repoFile("deploy/rbac.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := sb.ApplyRBAC(ctx, repoFile("deploy/rbac-namespace.yaml"), ns); err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(policyFile, []byte(dashboardPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	// apitest's certificate names 127.0.0.1: the engine serves the API
	// with it, so that fledge_api_* have series.
	pki := apitest.Start(t, apitest.Options{Bufconn: true})
	metricsAddr, apiAddr := freeAddr(t), freeAddr(t)
	engine, err := sb.StartProcess(ns+"-fledge", nil, buildBinary(t, "fledge"),
		"--kubeconfig="+sb.ServiceAccountKubeconfig(t, engineNamespace, "fledge"), "--policies="+policyFile, "--policy-poll=200ms",
		"--prometheus-url="+sb.PrometheusURL, "--metrics-addr="+metricsAddr, "--health-addr=0", "--namespaces="+ns,
		"--api-addr="+apiAddr, "--tls-cert-file="+pki.CertFile, "--tls-key-file="+pki.KeyFile,
		"--leader-election-namespace="+engineNamespace, "--leader-election-id=fledge-"+ns, "--identity=fledge",
		"--lease-duration=4s", "--renew-deadline=3s", "--retry-period=500ms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Stop() })
	scraped := scrapeAll(t, "http://"+metricsAddr+"/metrics")
	prom := startRulesPrometheus(t, sb, metricsAddr)

	// A Deployment taken over, a bad revision rolled back, a good one
	// paused (held), and an API call.
	sb.CreateApp(t, ns, sandbox.App{Name: "shop", Container: "shop", Replicas: 2,
		Annotations: map[string]string{rollout.AnnotationRollout: "ship"}, Behaviour: map[string]string{"sandbox.fledge.dev/error-rate": "0.005"}})
	sb.SendTraffic(t, mesh.Client{Name: "shopper-" + ns, Namespace: ns, Host: "shop", RPS: 200, Users: 300})
	sb.WaitFlight(t, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
	callAPI(t, apiAddr, pki.CAFile)
	patchDeployment(t, sb, ns, map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{"sandbox.fledge.dev/error-rate": "0.3"}},
		"spec":     map[string]any{"containers": []map[string]any{{"name": "shop", "image": "example.com/shop:v2"}}},
	}}})
	sb.WaitFlight(t, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseRolledBack })
	patchDeployment(t, sb, ns, map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{"sandbox.fledge.dev/error-rate": "0.005"}},
		"spec":     map[string]any{"containers": []map[string]any{{"name": "shop", "image": "example.com/shop:v3"}}},
	}}})
	// Paused once a step has passed its success-rate check, which the
	// bad revision, pulled by the comparison at its first look, never got
	// to.
	sb.WaitFlight(t, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		for _, d := range f.Status.Decisions {
			if d.Revision == f.Status.CanaryRevision && d.Verdict == v1alpha1.VerdictAdvance && slices.ContainsFunc(d.Checks, func(c analysis.Check) bool {
				return c.Metric == analysis.SuccessRate && c.Value != nil
			}) {
				return f.Status.Phase == v1alpha1.PhaseProgressing
			}
		}
		return false
	})
	patchDeployment(t, sb, ns, map[string]any{"metadata": map[string]any{"annotations": map[string]string{rollout.AnnotationAction: string(v1alpha1.ActionPause)}}})
	sb.WaitFlight(t, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldPaused
	})
	checkFlightColumns(t, sb, ns, "shop")

	var missing []string
	_ = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		missing = scraped.missing(wanted)
		return len(missing) == 0, nil
	})
	for _, name := range missing {
		t.Errorf("%s, used by %s, never appeared on the engine's /metrics", name, wanted[name])
	}
	t.Logf("%d metrics of the dashboard and alerts scraped from the engine", len(wanted)-len(missing))

	// The alerts, evaluated by a real Prometheus against the engine.
	waitRules(t, prom, "every rule evaluated without error, none firing while the engine leads", func(rules map[string]promv1.AlertingRule) bool {
		for _, r := range rules {
			if r.Health == promv1.RuleHealthBad {
				t.Fatalf("alert %s: %s", r.Name, r.LastError)
			}
			if r.Health != promv1.RuleHealthGood || r.State != "inactive" {
				return false
			}
		}
		return len(rules) == 6 // deploy/chart/fledge/files/alerts.yaml's
	})
	if err := os.WriteFile(policyFile, []byte("policies: {ship: {steps: [10, 50\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitRules(t, prom, "FledgePolicyReloadRejected pending after a bad policy file", func(rules map[string]promv1.AlertingRule) bool {
		return rules["FledgePolicyReloadRejected"].State == "pending"
	})
	if err := engine.Stop(); err != nil {
		t.Fatal(err)
	}
	waitRules(t, prom, "FledgeNoLeader pending once the engine is gone", func(rules map[string]promv1.AlertingRule) bool {
		return rules["FledgeNoLeader"].State == "pending"
	})
}

// dashboardAndAlertMetrics are the metric names the dashboard's queries
// and the alerts' expressions select, each with where it is used.
// (deploy/observability_test.go checks the same files more closely,
// without a sandbox.)
func dashboardAndAlertMetrics(t *testing.T) map[string]string {
	t.Helper()
	var exprs []string
	var dash any
	if err := json.Unmarshal(readRepoFile(t, "deploy/dashboards/fledge.json"), &dash); err != nil {
		t.Fatal(err)
	}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if e, ok := v["expr"].(string); ok {
				exprs = append(exprs, e)
			}
			if q, ok := v["query"].(string); ok {
				if m := labelValuesSelector.FindStringSubmatch(q); m != nil {
					exprs = append(exprs, m[1])
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string }
		}
	}
	if err := yaml.Unmarshal(readRepoFile(t, "deploy/chart/fledge/files/alerts.yaml"), &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	wanted := map[string]string{}
	for _, e := range exprs {
		e = grafanaInterval.ReplaceAllString(e, "5m")
		expr, err := parser.ParseExpr(e)
		if err != nil {
			t.Fatalf("%s: %v", e, err)
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" {
				wanted[vs.Name] = e
			}
			return nil
		})
	}
	if len(wanted) < 10 {
		t.Fatalf("only %d metrics in the dashboard and alerts: %v", len(wanted), wanted)
	}
	return wanted
}

var (
	labelValuesSelector = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	grafanaInterval     = regexp.MustCompile(`\$__(rate_)?interval|\$__range`)
)

// scrapedNames are the series names seen on /metrics so far: a histogram
// by its _bucket, _sum and _count series, anything else by its name.
type scrapedNames struct {
	mu    sync.Mutex
	names map[string]bool
}

func (s *scrapedNames) missing(wanted map[string]string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name := range wanted {
		if !s.names[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// scrapeAll scrapes url every 200 ms until the test ends: some series
// (a hold, a check's value) exist only for part of a rollout.
func scrapeAll(t *testing.T, url string) *scrapedNames {
	s := &scrapedNames{names: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			families, err := scrapeOnce(ctx, url)
			if err != nil {
				return false, nil // not serving yet
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			for name, f := range families {
				if len(f.GetMetric()) == 0 {
					continue
				}
				if f.GetType() == dto.MetricType_HISTOGRAM {
					s.names[name+"_bucket"], s.names[name+"_sum"], s.names[name+"_count"] = true, true, true
				} else {
					s.names[name] = true
				}
			}
			return false, nil
		})
	}()
	return s
}

func scrapeOnce(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// callAPI makes one gRPC call to the engine's API (a health check: no
// token needed), so that the API's request metrics have a series.
func callAPI(t *testing.T, addr, caFile string) {
	t.Helper()
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("health check of the API: %v", err)
	}
}

func patchDeployment(t *testing.T, sb *sandbox.Sandbox, ns string, patch map[string]any) {
	t.Helper()
	b, err := json.Marshal(patch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(context.Background(), "shop", types.StrategicMergePatchType, b, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// startRulesPrometheus runs a Prometheus of this test's own, with
// alerts.yaml as its rule file, scraping the engine at addr every
// second. (The sandbox's Prometheus has no rule files, and its
// configuration is the sandbox's.)
func startRulesPrometheus(t *testing.T, sb *sandbox.Sandbox, addr string) promv1.API {
	t.Helper()
	bin := repoFile("bin/prometheus")
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("prometheus"); err != nil {
			t.Fatal("no Prometheus: run make tools")
		}
	}
	rules, err := filepath.Abs(repoFile("deploy/chart/fledge/files/alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	body := fmt.Sprintf("global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\nrule_files: [%q]\n"+
		"scrape_configs:\n- job_name: fledge\n  static_configs: [{targets: [%q]}]\n", rules, addr)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	p, err := sb.StartProcess("prometheus-alerts", nil, bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--log.level=warn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	client, err := promapi.NewClient(promapi.Config{Address: "http://" + listen})
	if err != nil {
		t.Fatal(err)
	}
	return promv1.NewAPI(client)
}

// waitRules polls the alerting rules (by name) until ok accepts them.
func waitRules(t *testing.T, prom promv1.API, what string, ok func(map[string]promv1.AlertingRule) bool) {
	t.Helper()
	var last map[string]promv1.AlertingRule
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		res, err := prom.Rules(ctx, nil)
		if err != nil {
			return false, nil // not ready yet
		}
		last = map[string]promv1.AlertingRule{}
		for _, g := range res.Groups {
			for _, r := range g.Rules {
				if a, isAlert := r.(promv1.AlertingRule); isAlert {
					last[a.Name] = a
				}
			}
		}
		return ok(last), nil
	})
	if err != nil {
		var states []string
		for name, r := range last {
			states = append(states, fmt.Sprintf("%s: %s, %s %s", name, r.State, r.Health, r.LastError))
		}
		slices.Sort(states)
		t.Fatalf("never %s: %v", what, states)
	}
}

func readRepoFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoFile(rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
