package rollout

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/fledgehq/fledge/analysis"
)

// goodConfig holds two valid policies.
var goodConfig = func() string {
	b, err := os.ReadFile("testdata/policies.yaml")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

func TestParseConfigAppliesDefaults(t *testing.T) {
	got, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*Policy{
		"standard": {
			Name: "standard", Steps: []int32{5, 20, 50}, Interval: 2 * time.Minute, FailureLimit: 2,
			ProgressDeadline: 10 * time.Minute, MinCanaryReplicas: 1, MinInterval: 10 * time.Second, MaxWeight: 50,
			Alpha: 0.01, LookInterval: 10 * time.Second, MinStepDuration: 2 * time.Minute, AnalysisDeadline: 2 * time.Hour, OnInsufficientEvidence: "hold", ScrapeInterval: 15 * time.Second, Strategy: StrategyCanary,
			Metrics: []analysis.Metric{
				{Name: "success-rate", Min: ptr.To(0.99), MinSamples: 100, Interval: 2 * time.Minute},
				{Name: "latency-p95", Max: ptr.To(500.0), Interval: time.Minute},
			},
		},
		"linear": {
			Name: "linear", Steps: []int32{20, 40, 50}, Interval: time.Minute, FailureLimit: 1,
			ProgressDeadline: 10 * time.Minute, MinCanaryReplicas: 1, MinInterval: 10 * time.Second, MaxWeight: 50,
			Alpha: 0.01, LookInterval: 10 * time.Second, MinStepDuration: time.Minute, AnalysisDeadline: 2 * time.Hour, OnInsufficientEvidence: "hold", ScrapeInterval: 15 * time.Second, Strategy: StrategyCanary,
			Metrics: []analysis.Metric{{Name: "success-rate", Min: ptr.To(0.95), Interval: time.Minute}},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("policies (-want +got):\n%s", diff)
	}
}

func TestParseConfigNamesEveryBadField(t *testing.T) {
	tests := []struct {
		name, config string
		want         []string // each must appear in the error
	}{
		{"rejects unknown fields instead of ignoring them", "policies:\n  a:\n    stepz: [1]\n", []string{`unknown field "stepz"`}},
		{"requires at least one policy", "policies: {}\n", []string{"at least one policy"}},
		{"rejects weights that do not increase", "policies:\n  a:\n    steps: [10, 10]\n    metrics: [{name: success-rate, min: 1}]\n", []string{"policies.a.steps", "must increase"}},
		{"rejects a step of 100", "policies:\n  a:\n    steps: [50, 100]\n    metrics: [{name: success-rate, min: 1}]\n", []string{"policies.a.steps", "1..99"}},
		{"rejects steps together with stepWeight", "policies:\n  a:\n    steps: [10]\n    stepWeight: 10\n    maxWeight: 20\n    metrics: [{name: success-rate, min: 1}]\n", []string{"either steps or stepWeight"}},
		{"requires a metric", "policies:\n  a:\n    steps: [10]\n", []string{"policies.a.metrics", "at least one metric"}},
		{"requires a threshold", "policies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate}]\n", []string{"policies.a.metrics[0].min: one of min and max is required"}},
		{"rejects max below min", "policies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 2, max: 1}]\n", []string{"policies.a.metrics[0].max: must be >= min"}},
		{"rejects duplicate metrics", "policies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}, {name: success-rate, min: 1}]\n", []string{"policies.a.metrics[1].name", "twice"}},
		{"rejects a custom metric without a query", "policies:\n  a:\n    steps: [10]\n    metrics: [{name: errors, max: 1}]\n", []string{"policies.a.metrics[0].query: required"}},
		{"rejects a query template that is not PromQL", "policies:\n  a:\n    steps: [10]\n    metrics: [{name: errors, max: 1, query: 'sum(rate(x{w={{ .Workload }}}[1m])'}]\n", []string{"policies.a.metrics[0].query"}},
		{"rejects a bad policy name", "policies:\n  A_b:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n", []string{"policies.A_b", "lower-case"}},
		{"requires a signing key with webhooks", "policies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n    webhooks: [{name: g, type: confirm-promotion, url: 'http://x/'}]\n", []string{"policies.a.webhookSecret", "signed"}},
		{"rejects an unknown hook type", "webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n    webhooks: [{name: g, type: pre-flight, url: 'http://x/'}]\n", []string{"policies.a.webhooks[0].type", "unknown hook type"}},
		{"rejects a hook URL that is not http", "webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n    webhooks: [{name: g, type: rollout, url: 'file:///etc/passwd'}]\n", []string{"policies.a.webhooks[0].url", "http or https"}},
		{"rejects credentials in a hook URL", "webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n    webhooks: [{name: g, type: rollout, url: 'http://u:p@x/'}]\n", []string{"policies.a.webhooks[0].url", "credentials"}},
		{"rejects load on demand for other hooks than rollout", "webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n    webhooks: [{name: g, type: event, url: 'http://x/', when: notEnoughData}]\n", []string{"policies.a.webhooks[0].when"}},
		{"rejects a deadline on a hook that is not a gate", "webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n    webhooks: [{name: g, type: rollout, url: 'http://x/', onDeadline: rollback}]\n", []string{"policies.a.webhooks[0].deadline", "gates"}},
		{"rejects load thresholds on a gate", "webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n    webhooks: [{name: g, type: confirm-promotion, url: 'http://x/', thresholds: {minSuccess: 0.9}}]\n", []string{"policies.a.webhooks[0].thresholds"}},
		{"rejects a success ratio above 1", "webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n    webhooks: [{name: g, type: rollout, url: 'http://x/', thresholds: {minSuccess: 99}}]\n", []string{"policies.a.webhooks[0].thresholds.minSuccess"}},
		{"rejects a stableUrl that is not http, naming the field", "webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: error-rate}]\n    webhooks: [{name: load, type: rollout, url: 'http://t/', metadata: {url: 'http://a-canary.n/', stableUrl: 'ftp://a-stable.n/'}}]\n", []string{"policies.a.webhooks[0].metadata.stableUrl", "http or https"}},
		{"rejects a stableUrl without a host", "webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: error-rate}]\n    webhooks: [{name: load, type: rollout, url: 'http://t/', metadata: {url: 'http://a-canary.n/', stableUrl: 'http:///x'}}]\n", []string{"policies.a.webhooks[0].metadata.stableUrl", "no host"}},
		{"rejects a stableUrl with credentials", "webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: error-rate}]\n    webhooks: [{name: load, type: rollout, url: 'http://t/', metadata: {url: 'http://a-canary.n/', stableUrl: 'http://u:p@a-stable.n/'}}]\n", []string{"policies.a.webhooks[0].metadata.stableUrl", "credentials"}},
		{"rejects a stableUrl that is the url", "webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: error-rate}]\n    webhooks: [{name: load, type: rollout, url: 'http://t/', metadata: {url: 'http://a.n/', stableUrl: 'http://a.n/'}}]\n", []string{"policies.a.webhooks[0].metadata.stableUrl", "is the url"}},
		{"rejects a stableUrl on a hook that sends no load", "webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: error-rate}]\n    webhooks: [{name: audit, type: event, url: 'http://t/', metadata: {stableUrl: 'http://a-stable.n/'}}]\n", []string{"policies.a.webhooks[0].metadata.stableUrl", "not event"}},
		{"rejects alpha above 0.5", "policies:\n  a:\n    steps: [10]\n    alpha: 0.6\n    metrics: [{name: error-rate}]\n", []string{"policies.a.alpha: 0.6: must be above 0 and at most 0.5"}},
		{"rejects alpha of 0", "policies:\n  a:\n    steps: [10]\n    alpha: 0\n    metrics: [{name: error-rate}]\n", []string{"policies.a.alpha: 0:"}},
		{"rejects a negative margin", "policies:\n  a:\n    steps: [10]\n    metrics: [{name: error-rate, maxIncrease: -0.01}]\n", []string{"policies.a.metrics[0].maxIncrease: -0.01: must be at least 0"}},
		{"rejects a margin on a threshold check", "policies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 0.99, maxIncrease: 0.01}]\n", []string{"policies.a.metrics[0].maxIncrease: only comparisons"}},
		{"requires latency's bound", "policies:\n  a:\n    steps: [10]\n    metrics: [{name: latency}]\n", []string{"policies.a.metrics[0].slowerThan: required"}},
		{"rejects a threshold on a comparison", "policies:\n  a:\n    steps: [10]\n    metrics: [{name: error-rate, max: 0.01}]\n", []string{"policies.a.metrics[0].min: a comparison is judged against stable"}},
		{"rejects a custom comparison without its bad counter", "policies:\n  a:\n    steps: [10]\n    metrics: [{name: jobs, requests: 'sum(jobs_total{w={{ .Workload }}})'}]\n", []string{"policies.a.metrics[0].bad: required"}},
		{"rejects early promotion without a comparison", "policies:\n  a:\n    steps: [10]\n    earlyPromotion: true\n    metrics: [{name: success-rate, min: 0.99}]\n", []string{"policies.a.earlyPromotion: needs at least one comparison"}},
		{"rejects an unknown deadline action", "policies:\n  a:\n    steps: [10]\n    onInsufficientEvidence: wait\n    metrics: [{name: error-rate}]\n", []string{"policies.a.onInsufficientEvidence: \"wait\": want hold, rollback or promote"}},
		{"rejects a deadline shorter than the interval", "policies:\n  a:\n    steps: [10]\n    interval: 5m\n    analysisDeadline: 1m\n    metrics: [{name: error-rate}]\n", []string{"policies.a.analysisDeadline: 1m0s is shorter than the policy's schedule (1 steps x 5m0s)"}},
		{"rejects a look interval longer than the interval", "policies:\n  a:\n    steps: [10]\n    interval: 30s\n    lookInterval: 1m\n    metrics: [{name: error-rate}]\n", []string{"policies.a.lookInterval: 1m0s must be between 1s and the interval"}},
		{"rejects a watch of no duration", "policies:\n  a:\n    steps: [10]\n    postPromotion: {}\n    metrics: [{name: error-rate}]\n", []string{"policies.a.postPromotion.duration: 0s: required, and above 0"}},
		{"rejects a watch of two days", "policies:\n  a:\n    steps: [10]\n    postPromotion: {duration: 48h}\n    metrics: [{name: error-rate}]\n", []string{"policies.a.postPromotion.duration: 48h0m0s is longer than 24h0m0s"}},
		{"rejects a watch after a blue/green switch", "policies:\n  a:\n    strategy: blueGreen\n    blueGreen: {preview: {header: x-p, value: '1'}}\n    postPromotion: {duration: 5m}\n    metrics: [{name: error-rate}]\n", []string{"policies.a.postPromotion: strategy blueGreen judges after its switch already"}},
		{"rejects a scrape interval of an hour", "policies:\n  a:\n    steps: [10]\n    scrapeInterval: 1h\n    metrics: [{name: error-rate}]\n", []string{"policies.a.scrapeInterval: 1h0m0s must be between 1s and 5m"}},
		{"rejects duplicate hook names", "webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n    webhooks: [{name: g, type: rollout, url: 'http://x/'}, {name: g, type: event, url: 'http://x/'}]\n", []string{"policies.a.webhooks[1].name", "twice"}},
		{"rejects an unknown Slack event", "slack: {secret: fledge-slack, events: [Exploded]}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n", []string{"policies.a.slack.events[0]", "Exploded"}},
		{"rejects a Slack secret that is not a name", "slack: {secret: 'a/b'}\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n", []string{"policies.a.slack.secret"}},
		{"rejects a hookNetworks entry that is not a CIDR, naming it", "hookNetworks: [10.96.0.0/12, 10.0.0.0/33]\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n",
			[]string{`hookNetworks[1]: "10.0.0.0/33" is not a CIDR (such as 10.96.0.0/12 or fd00:10:96::/108)`}},
		{"rejects a hookNetworks entry that is a name", "hookNetworks: [cluster.local]\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n",
			[]string{`hookNetworks[0]: "cluster.local" is not a CIDR`}},
		{"rejects a hookNetworks entry with bits past its prefix, saying what was meant", "hookNetworks: [10.96.0.1/12]\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n",
			[]string{`hookNetworks[0]: "10.96.0.1/12" has bits set past its prefix length: write 10.96.0.0/12`}},
		{"rejects a hookNetworks entry that is an address", "hookNetworks: [127.0.0.1, '::1']\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: success-rate, min: 1}]\n",
			[]string{`hookNetworks[0]: "127.0.0.1" is an address, not a CIDR: write 127.0.0.1/32 for it alone`, `hookNetworks[1]: "::1" is an address, not a CIDR: write ::1/128 for it alone`}},
		{"reports an invalid hookNetworks with the invalid policies", "hookNetworks: ['']\npolicies:\n  a:\n    steps: [0]\n    metrics: [{name: success-rate, min: 1}]\n",
			[]string{`hookNetworks[0]: "" is not a CIDR`, "policies.a.steps"}},
		{"reports every invalid policy, not just the first", "policies:\n  a:\n    steps: [0]\n    metrics: [{name: success-rate, min: 1}]\n  b:\n    steps: [10]\n    failureLimit: -1\n    metrics: [{name: success-rate, min: 1}]\n", []string{"policies.a.steps", "policies.b.failureLimit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.config))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestOverridesStayWithinThePolicysBounds(t *testing.T) {
	policies, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	p := policies["standard"]
	tests := []struct {
		name        string
		annotations map[string]string
		wantSteps   []int32
		wantErr     string // the annotation the error must name
	}{
		{"keeps the policy's steps without overrides", nil, []int32{5, 20, 50}, ""},
		{"takes step weights within the largest step", map[string]string{AnnotationStepWeights: "10, 30,50"}, []int32{10, 30, 50}, ""},
		{"drops steps above a max weight", map[string]string{AnnotationMaxWeight: "20"}, []int32{5, 20}, ""},
		{"refuses a step above the policy's largest", map[string]string{AnnotationStepWeights: "10,80"}, nil, AnnotationStepWeights},
		{"refuses a malformed step list", map[string]string{AnnotationStepWeights: "10,x"}, nil, AnnotationStepWeights},
		{"refuses a max weight below the first step", map[string]string{AnnotationMaxWeight: "3"}, nil, AnnotationMaxWeight},
		{"refuses an interval below the policy's minimum", map[string]string{AnnotationInterval: "1s"}, nil, AnnotationInterval},
		{"refuses a malformed interval", map[string]string{AnnotationInterval: "soon"}, nil, AnnotationInterval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseOverrides(tt.annotations)
			var e *Policy
			if err == nil {
				e, err = p.Effective(o)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantSteps, e.Steps); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIntervalOverrideMovesMetricsThatFollowedThePolicy(t *testing.T) {
	policies, _ := ParseConfig([]byte(goodConfig))
	e, err := policies["standard"].Effective(Overrides{Interval: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	got := []time.Duration{e.Interval, e.Metrics[0].Interval, e.Metrics[1].Interval}
	if diff := cmp.Diff([]time.Duration{5 * time.Minute, 5 * time.Minute, time.Minute}, got); diff != "" {
		t.Errorf("intervals (policy, success-rate, latency-p95) (-want +got):\n%s", diff)
	}
	if policies["standard"].Metrics[0].Interval != 2*time.Minute {
		t.Error("Effective changed the shared policy")
	}
}

func TestParseVirtualService(t *testing.T) {
	for in, want := range map[string][2]string{"shop": {"shop", ""}, "shop/primary": {"shop", "primary"}} {
		name, route, err := ParseVirtualService(in)
		if err != nil || name != want[0] || route != want[1] {
			t.Errorf("%q: %q %q %v, want %q %q", in, name, route, err, want[0], want[1])
		}
	}
	for _, bad := range []string{"", "http://evil", "Shop", "shop/", "shop/a b", "../x"} {
		if _, _, err := ParseVirtualService(bad); err == nil || !strings.Contains(err.Error(), AnnotationVirtualService) {
			t.Errorf("%q: error %v, want one naming the annotation", bad, err)
		}
	}
}

func FuzzParseOverrides(f *testing.F) {
	f.Add("5,20,50", "30", "2m")
	f.Add("", "", "")
	f.Add("-1,99999999999", "0", "-5s")
	policies, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		f.Fatal(err)
	}
	p := policies["standard"]
	f.Fuzz(func(t *testing.T, steps, max, interval string) {
		o, err := ParseOverrides(map[string]string{AnnotationStepWeights: steps, AnnotationMaxWeight: max, AnnotationInterval: interval})
		if err != nil {
			return
		}
		e, err := p.Effective(o)
		if err != nil {
			return
		}
		// Whatever a team writes, the result stays within the policy.
		if len(e.Steps) == 0 || e.Steps[len(e.Steps)-1] > p.MaxWeight {
			t.Fatalf("steps %v escape the policy's largest step %d", e.Steps, p.MaxWeight)
		}
		if validateSteps(e.Steps) != nil || e.Interval < p.MinInterval || e.Interval > maxInterval {
			t.Fatalf("effective policy out of bounds: steps %v interval %s", e.Steps, e.Interval)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("policies:\n  a:\n    steps: [1]\n    metrics: [{name: success-rate, min: 1}]\n"))
	f.Add([]byte("webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [50]\n    metrics: [{name: error-rate, maxIncrease: 0.02}]\n    webhooks: [{name: load, type: rollout, when: notEnoughData, url: 'http://t/', metadata: {url: 'http://a-canary.n/', stableUrl: 'http://a-stable.n/'}}]\n"))
	f.Add([]byte("webhookSecret: {name: k, key: hmac}\npolicies:\n  a:\n    steps: [50]\n    metrics: [{name: error-rate}]\n    webhooks: [{name: load, type: rollout, url: 'http://t/', metadata: {stableUrl: 'gopher://u:p@[::1'}}]\n"))
	f.Add([]byte("webhookSecret: {name: k, key: hmac}\nhookNetworks: [10.96.0.0/12, '::1/128']\npolicies:\n  a:\n    steps: [10]\n    metrics: [{name: error-rate}]\n    webhooks: [{name: g, type: event, url: 'http://t/'}]\n"))
	f.Add([]byte("policies:\n  a:\n    steps: [10]\n    alpha: 0.05\n    earlyPromotion: true\n    metrics: [{name: error-rate, maxIncrease: 0.02}, {name: latency, slowerThan: 250ms}]\n"))
	f.Add([]byte("policies:\n  a:\n    steps: [10]\n    metrics: [{name: latency, slowerThan: [100ms, 250ms, 1s]}]\n"))
	f.Add([]byte("policies:\n  a:\n    steps: [10]\n    metrics: [{name: latency, slowerThan: [1s, 1s]}, {name: latency-1s, requests: 'sum(a)', bad: 'sum(b)'}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		policies, err := ParseConfig(data)
		if err != nil {
			return
		}
		for name, p := range policies {
			if validateSteps(p.Steps) != nil || len(p.Steps) == 0 || len(p.Metrics) == 0 || p.FailureLimit < 1 || p.Interval < time.Second {
				t.Fatalf("policy %s accepted but invalid: %+v", name, p)
			}
			if !(p.Alpha > 0 && p.Alpha <= 0.5) || p.LookInterval < time.Second || p.AnalysisDeadline < p.Interval {
				t.Fatalf("policy %s accepted with invalid judgement settings: %+v", name, p)
			}
			for _, h := range p.Hooks {
				for _, n := range h.Networks {
					if !n.IsValid() || n != n.Masked() {
						t.Fatalf("policy %s accepted hook network %v", name, n)
					}
				}
			}
			seen := map[string]bool{}
			for _, m := range p.Comparisons() {
				if c := m.Compare; c == nil || !(c.MaxIncrease >= 0 && c.MaxIncrease < 1) {
					t.Fatalf("policy %s accepted comparison %+v", name, m)
				}
				if ms, ok := m.LatencyBound(); ok && !(ms > 0) {
					t.Fatalf("policy %s accepted a latency comparison without a bound: %+v", name, m)
				}
				if seen[m.Name] {
					t.Fatalf("policy %s has two comparisons named %s", name, m.Name)
				}
				seen[m.Name] = true
			}
		}
	})
}

// The file's hookNetworks reach every hook of every policy: the hook
// client refuses private and loopback addresses outside them.
func TestParseConfigGivesEveryHookTheHookNetworks(t *testing.T) {
	const hooks = `
policies:
  a:
    steps: [10]
    metrics: [{name: success-rate, min: 1}]
    webhooks: [{name: load, type: rollout, url: 'http://fledge-loadtester.fledge-system/'}, {name: audit, type: event, url: 'https://audit.example.com/'}]
  b:
    steps: [10]
    metrics: [{name: success-rate, min: 1}]
    webhooks: [{name: gate, type: confirm-promotion, url: 'http://127.0.0.1:8080/'}]
`
	tests := []struct {
		name   string
		config string
		want   []netip.Prefix
	}{
		{"gives the networks to every hook", "webhookSecret: {name: k, key: hmac}\nhookNetworks: [10.96.0.0/12, 127.0.0.0/8, 'fd00:10:96::/108']" + hooks,
			[]netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("fd00:10:96::/108")}},
		{"gives none without hookNetworks", "webhookSecret: {name: k, key: hmac}" + hooks, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policies, err := ParseConfig([]byte(tt.config))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for name, p := range policies {
				for _, h := range p.Hooks {
					n++
					if !slices.Equal(h.Networks, tt.want) {
						t.Errorf("policy %s, hook %s: Networks = %v, want %v", name, h.Name, h.Networks, tt.want)
					}
				}
			}
			if n != 3 {
				t.Fatalf("%d hooks, want 3", n)
			}
		})
	}
}

// The example policies shipped in deploy/ must always load.
func TestExamplePoliciesInDeployAreValid(t *testing.T) {
	raw, err := os.ReadFile("../deploy/policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	policies, err := ParseConfig([]byte(cm.Data["policies.yaml"]))
	if err != nil {
		t.Fatalf("deploy/policies.yaml: %v", err)
	}
	if len(policies) < 2 {
		t.Fatalf("deploy/policies.yaml holds %d policies, want the documented ones", len(policies))
	}
	// Only the quiet and blue-green policies load stable directly, so
	// only their apps get a Service <name>-stable.
	for name, p := range policies {
		if got, want := p.NeedsStableService(), name == "quiet" || name == "blue-green"; got != want {
			t.Errorf("policy %s: NeedsStableService() = %t, want %t", name, got, want)
		}
	}
}

func TestParseConfigReadsComparisons(t *testing.T) {
	got, err := ParseConfig([]byte(`
policies:
  compare:
    steps: [10, 50]
    alpha: 0.005
    earlyPromotion: true
    minStepDuration: 30s
    analysisDeadline: 1h
    onInsufficientEvidence: rollback
    metrics:
    - {name: error-rate}
    - {name: latency, slowerThan: 500ms, maxIncrease: 0.02}
    - {name: jobs, requests: 'sum(jobs_total{workload={{ .Workload }}})', bad: 'sum(jobs_failed_total{workload={{ .Workload }}})', maxIncrease: 0.05}
    - {name: success-rate, min: 0.9}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := got["compare"]
	want := []analysis.Metric{
		{Name: "error-rate", Interval: time.Minute, Compare: &analysis.Comparison{MaxIncrease: 0.01}},
		{Name: "latency", Interval: time.Minute, Compare: &analysis.Comparison{MaxIncrease: 0.02, SlowerThanMs: 500}},
		{Name: "jobs", Interval: time.Minute, Compare: &analysis.Comparison{MaxIncrease: 0.05,
			Requests: "sum(jobs_total{workload={{ .Workload }}})", Bad: "sum(jobs_failed_total{workload={{ .Workload }}})"}},
	}
	if diff := cmp.Diff(want, p.Comparisons()); diff != "" {
		t.Errorf("comparisons (-want +got):\n%s", diff)
	}
	if p.Alpha != 0.005 || !p.EarlyPromotion || p.MinStepDuration != 30*time.Second || p.AnalysisDeadline != time.Hour ||
		p.OnInsufficientEvidence != OnInsufficientRollback || p.LookInterval != 10*time.Second {
		t.Errorf("judgement settings %+v", p)
	}
}

// The latency distribution compared at several bounds is one comparison
// per bound, each named for its bound; bounds must increase, and only the
// latency comparison has several.
func TestParseConfigSplitsTheLatencyDistributionIntoOneComparisonPerBound(t *testing.T) {
	got, err := ParseConfig([]byte(`
policies:
  tail:
    steps: [10, 50]
    metrics:
    - {name: latency, slowerThan: [100ms, 250ms, 1s], maxIncrease: 0.005}
    - {name: error-rate, slowerThan: 250ms}
`))
	if err == nil || !strings.Contains(err.Error(), "metrics[1].slowerThan: only the latency comparison has a bound") {
		t.Errorf("a bound on error-rate: %v, want refused naming metrics[1].slowerThan", err)
	}
	got, err = ParseConfig([]byte(`
policies:
  tail:
    steps: [10, 50]
    metrics:
    - {name: latency, slowerThan: [100ms, 250ms, 1s], maxIncrease: 0.005}
`))
	if err != nil {
		t.Fatal(err)
	}
	var want []analysis.Metric
	for _, b := range []struct {
		name string
		ms   float64
	}{{"latency-100ms", 100}, {"latency-250ms", 250}, {"latency-1s", 1000}} {
		want = append(want, analysis.Metric{Name: b.name, Interval: time.Minute, Compare: &analysis.Comparison{MaxIncrease: 0.005, SlowerThanMs: b.ms}})
	}
	if diff := cmp.Diff(want, got["tail"].Comparisons()); diff != "" {
		t.Errorf("comparisons (-want +got):\n%s", diff)
	}
	for _, m := range got["tail"].Comparisons() {
		if ms, ok := m.LatencyBound(); !ok || ms != m.Compare.SlowerThanMs {
			t.Errorf("%s: LatencyBound %v %v, want a latency comparison at %v", m.Name, ms, ok, m.Compare.SlowerThanMs)
		}
	}
	_, err = ParseConfig([]byte(`
policies:
  tail:
    steps: [10, 50]
    metrics:
    - {name: latency, slowerThan: [250ms, 100ms]}
`))
	if err == nil || !strings.Contains(err.Error(), "metrics[0].slowerThan[1]: 100ms: the bounds must increase") {
		t.Errorf("decreasing bounds: %v, want refused naming metrics[0].slowerThan[1]", err)
	}
	_, err = ParseConfig([]byte(`
policies:
  tail:
    steps: [10, 50]
    metrics:
    - {name: latency, slowerThan: {a: 1}}
`))
	if err == nil || !strings.Contains(err.Error(), "slowerThan") {
		t.Errorf("a map for slowerThan: %v, want refused naming slowerThan", err)
	}
}

// A relative margin: maxRatio instead of maxIncrease, never both.
func TestParseConfigReadsARelativeMargin(t *testing.T) {
	got, err := ParseConfig([]byte(`
policies:
  rel:
    steps: [10, 50]
    metrics:
    - {name: error-rate, maxRatio: 2}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []analysis.Metric{{Name: "error-rate", Interval: time.Minute, Compare: &analysis.Comparison{MaxRatio: 2}}}
	if diff := cmp.Diff(want, got["rel"].Comparisons()); diff != "" {
		t.Errorf("comparisons (-want +got):\n%s", diff)
	}
	for text, wantErr := range map[string]string{
		"{name: error-rate, maxRatio: 2, maxIncrease: 0.01}": "metrics[0].maxRatio: give one margin",
		"{name: error-rate, maxRatio: 0.5}":                  "metrics[0].maxRatio: 0.5: must be at least 1",
		"{name: success-rate, min: 0.9, maxRatio: 2}":        "metrics[0].maxIncrease: only comparisons",
	} {
		_, err := ParseConfig([]byte("policies:\n  rel:\n    steps: [10, 50]\n    metrics:\n    - " + text + "\n"))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: %v, want an error saying %q", text, err, wantErr)
		}
	}
}

// A custom check must read the canary's own series: a query that selects
// nothing by the canary's workload (vector(1), up) would judge every canary
// with the same value. Every vector selector of the query must match the
// canary's {{ .Workload }} or {{ .Service }} (or, beside them, stable's
// workload) with =; a comparison's counters are read once per side with
// {{ .Workload }} set to that side's workload, so theirs must match
// {{ .Workload }} itself.
func TestParseConfigRefusesQueriesThatSelectNoSeriesOfTheCanary(t *testing.T) {
	const selectsNothing = ": selects no series of the canary's workload (use {{ .Workload }} in a label matcher, e.g. workload={{ .Workload }})"
	policy := func(metrics string) string {
		return "policies:\n  p:\n    steps: [10, 50]\n    metrics:\n" + metrics
	}
	for _, tc := range []struct {
		name, metrics string
		want          []string // the fields refused, each with selectsNothing
	}{
		{"a constant", "    - {name: constant, query: 'vector(1)', min: 0}\n", []string{"policies.p.metrics[0].query"}},
		{"a series of every target", "    - {name: success-rate, min: 0.9}\n    - {name: up, query: 'sum(up)', min: 1}\n", []string{"policies.p.metrics[1].query"}},
		{"a bare selector", "    - {name: up, query: 'up', min: 1}\n", []string{"policies.p.metrics[0].query"}},
		{"one selector of two without the canary", "    - {name: share, query: 'sum(rate(x{w={{ .Workload }}}[1m])) / sum(rate(x[1m]))', max: 1}\n", []string{"policies.p.metrics[0].query"}},
		{"the canary excluded", "    - {name: others, query: 'sum(x{w!={{ .Workload }}})', max: 1}\n", []string{"policies.p.metrics[0].query"}},
		{"the namespace alone", "    - {name: ns, query: 'sum(x{ns={{ .Namespace }}})', max: 1}\n", []string{"policies.p.metrics[0].query"}},
		{"stable alone", "    - {name: stable, query: 'sum(x{w={{ .StableWorkload }}})', max: 1}\n", []string{"policies.p.metrics[0].query"}},
		{"a variable outside a matcher's value", "    - {name: rate, query: 'sum(rate(x{a=\"b\"}[{{ .Interval }}]))', max: 1}\n", []string{"policies.p.metrics[0].query"}},
		{"a comparison's counters without the workload", "    - {name: jobs, requests: 'sum(jobs_total)', bad: 'vector(0)'}\n",
			[]string{"policies.p.metrics[0].requests", "policies.p.metrics[0].bad"}},
		// The same service on both sides: the comparison would compare a
		// thing with itself.
		{"a comparison's counters by service", "    - {name: jobs, requests: 'sum(jobs_total{svc={{ .Service }}})', bad: 'sum(jobs_failed_total{w={{ .Workload }}})'}\n",
			[]string{"policies.p.metrics[0].requests"}},
		{"a comparison's counter reading stable", "    - {name: jobs, requests: 'sum(jobs_total{w={{ .Workload }}})', bad: 'sum(jobs_failed_total{w={{ .StableWorkload }}})'}\n",
			[]string{"policies.p.metrics[0].bad"}},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(policy(tc.metrics)))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, field := range tc.want {
				if !strings.Contains(err.Error(), field+selectsNothing) {
					t.Errorf("error does not say %q:\n%v", field+selectsNothing, err)
				}
			}
			if n := strings.Count(err.Error(), selectsNothing); n != len(tc.want) {
				t.Errorf("%d fields refused for selecting nothing of the canary, want %d (%s):\n%v", n, len(tc.want), tc.want, err)
			}
		})
	}
	for _, tc := range []struct{ name, metrics string }{
		{"the canary's workload, with a default of zero", "    - {name: errors, query: 'sum(rate(x{w={{ .Workload }},code=~\"5..\"}[{{ .Interval }}])) or vector(0)', max: 1}\n"},
		{"the canary's service", "    - {name: errors, query: 'sum(rate(x{destination_service={{ .Service }}}[{{ .Interval }}]))', max: 1}\n"},
		{"the canary's share against stable", "    - {name: share, query: 'sum(x{w={{ .Workload }}}) / (sum(x{w={{ .Workload }}}) + sum(x{w={{ .StableWorkload }}}))', max: 1}\n"},
		{"a subquery and a samples query by namespace", "    - {name: peak, query: 'max_over_time(sum(rate(x{ns={{ .Namespace }},w={{ .Workload }}}[1m]))[5m:1m])', samplesQuery: 'sum(y{ns={{ .Namespace }}})', max: 1}\n"},
		{"a comparison by workload", "    - {name: jobs, requests: 'sum(jobs_total{w={{ .Workload }}})', bad: 'sum(jobs_failed_total{w={{ .Workload }}}) or vector(0)'}\n"},
		{"built-ins", "    - {name: success-rate, min: 0.9}\n    - {name: latency-p99, max: 100}\n    - {name: request-rate, min: 1}\n    - {name: error-rate}\n    - {name: latency, slowerThan: [100ms, 1s]}\n"},
	} {
		t.Run("accepts "+tc.name, func(t *testing.T) {
			if _, err := ParseConfig([]byte(policy(tc.metrics))); err != nil {
				t.Error(err)
			}
		})
	}
}
