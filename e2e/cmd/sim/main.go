// Command sim is what `make sim` runs: it plays thousands of seeded
// rollouts through the real decision core (package rollout/sim) for each
// rule, scenario and traffic level, and prints one table per scenario.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/sim"
)

// thresholds are the threshold policies fledge shipped before comparisons
// with stable: deploy/policies.yaml's standard and the demo's (e2e/demo),
// each judging the canary alone against fixed bounds over an interval.
const thresholds = `
policies:
  standard:
    steps: [5, 10, 25, 50]
    interval: 1m
    failureLimit: 2
    metrics:
    - {name: success-rate, min: 0.99, minSamples: 100}
    - {name: latency-p95, max: 500, minSamples: 100}
  demo:
    steps: [10, 25, 50]
    interval: 8s
    minInterval: 1s
    failureLimit: 2
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 50}
    - {name: latency-p95, max: 150, minSamples: 50}
`

// loadHook is the load tester on demand, as deploy/policies.yaml's quiet
// policy calls it, loading canary and stable alike while a comparison
// cannot tell: 10 requests a second to each side for 30 s a round.
const loadHook = `
webhookSecret: {name: fledge-webhooks, key: hmac}
policies:
  load:
    steps: [50]
    metrics: [{name: error-rate}]
    webhooks:
    - name: load
      type: rollout
      when: notEnoughData
      url: http://fledge-loadtester.fledge-system/
      timeout: 45s
      metadata: {url: "http://app-canary.sim/", stableUrl: "http://app-stable.sim/", rate: "10", duration: 30s}
`

func main() {
	runs := flag.Int("runs", 2000, "runs per cell")
	rates := flag.String("rates", "0.05,0.2,1,10,100", "total requests per second, comma-separated")
	seed := flag.Uint64("seed", 1, "the study's seed")
	horizon := flag.Duration("horizon", 2*time.Hour, "how long a run may last")
	shipped := flag.String("policies", "deploy/policies.yaml", "the shipped policies (a ConfigMap): standard is played as it is")
	profile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	only := flag.String("rules", "", "play only the rules whose names contain this")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "sim: -cpuprofile:", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	// Runs allocate little that lives long: collect less often.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(256 << 20)
	if err := run(*shipped, *runs, *rates, *seed, *horizon, *only); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(1)
	}
}

func run(shipped string, runs int, rates string, seed uint64, horizon time.Duration, only string) error {
	raw, err := os.ReadFile(shipped)
	if err != nil {
		return err
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		return fmt.Errorf("%s: %w", shipped, err)
	}
	current, err := rollout.ParseConfig([]byte(cm.Data["policies.yaml"]))
	if err != nil {
		return fmt.Errorf("%s: %w", shipped, err)
	}
	before, err := rollout.ParseConfig([]byte(thresholds))
	if err != nil {
		return err
	}
	study := sim.Study{Runs: runs, Seed: seed, Horizon: horizon, Scenarios: sim.Scenarios()}
	study.Rules = append(study.Rules, sim.Rule{Name: "comparison: standard", Policy: current["standard"]})
	// The same, walking its steps: what early promotion is measured
	// against, where its fixed schedule can end within the horizon.
	fixed := *current["standard"]
	fixed.EarlyPromotion = false
	study.Rules = append(study.Rules, sim.Rule{Name: "comparison: standard, no early promotion", Policy: &fixed, MinRate: 10,
		Why: "below it, its fixed schedule does not end within the horizon"})
	hooks, err := rollout.ParseConfig([]byte(loadHook))
	if err != nil {
		return err
	}
	loaded := *current["standard"]
	loaded.Hooks, loaded.WebhookSecret = hooks["load"].Hooks, hooks["load"].WebhookSecret
	study.Rules = append(study.Rules, sim.Rule{Name: "comparison: standard, load tester on", Policy: &loaded})
	study.Rules = append(study.Rules, sim.Rule{Name: "threshold: standard before", Policy: before["standard"]})
	// The demo's policy judges every 8 s, so a run held for two hours is
	// 900 rounds of the core: below its floor, where it can never judge
	// and the standard row above already shows what a floor costs, it is
	// not played (it was most of the study's time).
	demo := before["demo"]
	study.Rules = append(study.Rules, sim.Rule{Name: "threshold: demo before", Policy: demo, MinRate: sim.Floor(demo),
		Why: fmt.Sprintf("below that floor its first step never holds the %d samples its checks need in one %s interval, so it holds forever and judges nothing (as `threshold: standard before` does below its own floor of %.3g rps)",
			demo.Metrics[0].MinSamples, demo.Interval, sim.Floor(before["standard"]))})
	study.Rules = slices.DeleteFunc(study.Rules, func(r sim.Rule) bool { return !strings.Contains(r.Name, only) })
	if len(study.Rules) == 0 {
		return fmt.Errorf("-rules: no rule's name contains %q", only)
	}
	for _, r := range strings.Split(rates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("-rates: %q is not a positive number", r)
		}
		study.Rates = append(study.Rates, v)
	}
	began := time.Now()
	res := study.Play()
	study.Print(os.Stdout, res)
	fmt.Printf("\n(played in %.0fs)\n", time.Since(began).Seconds())
	return nil
}
