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
	"strconv"
	"strings"
	"time"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/sim"
)

// rules are the sequential comparison with stable, and today's threshold
// policies: deploy/policies.yaml's standard and the demo's (e2e/demo).
const rules = `
policies:
  compare:
    steps: [10, 25, 50]
    interval: 1m
    earlyPromotion: true
    metrics:
    - {name: error-rate, maxIncrease: 0.01}
    - {name: latency, slowerThan: 250ms, maxIncrease: 0.01}
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

func main() {
	runs := flag.Int("runs", 2000, "runs per cell")
	rates := flag.String("rates", "0.05,0.2,1,10,100", "total requests per second, comma-separated")
	seed := flag.Uint64("seed", 1, "the study's seed")
	horizon := flag.Duration("horizon", 2*time.Hour, "how long a run may last")
	profile := flag.String("cpuprofile", "", "write a CPU profile to this file")
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
	debug.SetGCPercent(400)
	if err := run(*runs, *rates, *seed, *horizon); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(1)
	}
}

func run(runs int, rates string, seed uint64, horizon time.Duration) error {
	policies, err := rollout.ParseConfig([]byte(rules))
	if err != nil {
		return err
	}
	study := sim.Study{Runs: runs, Seed: seed, Horizon: horizon, Scenarios: sim.Scenarios()}
	study.Rules = append(study.Rules, sim.Rule{Name: "sequential comparison", Policy: policies["compare"]})
	for _, name := range []string{"standard", "demo"} {
		study.Rules = append(study.Rules, sim.Rule{Name: "threshold: " + name, Policy: policies[name]})
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
