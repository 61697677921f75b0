package sim

import (
	"fmt"
	"hash/fnv"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fledgehq/fledge/rollout"
)

// Rule is a policy under test, by name.
type Rule struct {
	Name   string
	Policy *rollout.Policy
	// MinRate: the rule is played only at this traffic level and above
	// (a reference that says nothing at lower ones); 0 is every level.
	MinRate float64
	// Why says why a rule with MinRate is not played below it, printed
	// once above the tables.
	Why string
}

// Cell is the outcome of many runs of one rule, scenario and traffic level.
type Cell struct {
	Runs                        int
	Promoted, RolledBack, Held  int
	MedianToVerdict             time.Duration // of the runs that reached the scenario's expected verdict
	MeanBad, MeanCanaryRequests float64
	MedianBad                   float64
}

// Study is a table's worth of runs: every rule in every scenario at every
// traffic level.
type Study struct {
	Rules     []Rule
	Scenarios []Scenario
	Rates     []float64 // requests per second, in all
	Runs      int       // per cell
	Horizon   time.Duration
	// Seed makes the study reproducible; each run's seed derives from it
	// and the run's cell and index.
	Seed uint64
}

// Results are a study's cells, by scenario, rule and rate index.
type Results map[string]map[string][]Cell

// Play runs the study on every core. The results do not depend on how the
// runs are scheduled.
func (s Study) Play() Results {
	type job struct {
		sc   Scenario
		rule Rule
		rate int
		run  int
	}
	type key struct {
		sc, rule string
		rate     int
	}
	results := map[key][]Result{}
	for _, sc := range s.Scenarios {
		for _, r := range s.Rules {
			for i, rate := range s.Rates {
				if rate >= r.MinRate {
					results[key{sc.Name, r.Name, i}] = make([]Result, s.Runs)
				}
			}
		}
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				seed := seedOf(s.Seed, j.sc.Name, j.rule.Name, j.rate)
				res := Run(j.rule.Policy, j.sc, s.Rates[j.rate], s.Horizon, [2]uint64{seed, uint64(j.run)})
				results[key{j.sc.Name, j.rule.Name, j.rate}][j.run] = res // each slot written once
			}
		}()
	}
	for _, sc := range s.Scenarios {
		for _, r := range s.Rules {
			for i, rate := range s.Rates {
				if rate < r.MinRate {
					continue
				}
				for run := range s.Runs {
					jobs <- job{sc, r, i, run}
				}
			}
		}
	}
	close(jobs)
	wg.Wait()

	out := Results{}
	for k, runs := range results {
		if out[k.sc] == nil {
			out[k.sc] = map[string][]Cell{}
		}
		if out[k.sc][k.rule] == nil {
			out[k.sc][k.rule] = make([]Cell, len(s.Rates))
		}
		sc := s.scenario(k.sc)
		out[k.sc][k.rule][k.rate] = summarize(runs, expected(sc))
	}
	return out
}

// judged is the first rule's policy with comparisons, nil if none.
func (s Study) judged() *rollout.Policy {
	for _, r := range s.Rules {
		if len(r.Policy.Comparisons()) > 0 {
			return r.Policy
		}
	}
	return nil
}

func (s Study) scenario(name string) Scenario {
	for _, sc := range s.Scenarios {
		if sc.Name == name {
			return sc
		}
	}
	panic("no scenario " + name)
}

// expected is the verdict a scenario's canary deserves: promotion for a
// canary as good as stable, rollback otherwise.
func expected(sc Scenario) Outcome {
	if sc.CanaryErrorFactor <= 1 && sc.Canary == sc.Stable {
		return Promoted
	}
	return RolledBack
}

func seedOf(seed uint64, parts ...any) uint64 {
	h := fnv.New64a()
	fmt.Fprint(h, seed)
	for _, p := range parts {
		fmt.Fprint(h, "/", p)
	}
	return h.Sum64()
}

func summarize(runs []Result, want Outcome) Cell {
	c := Cell{Runs: len(runs)}
	var times []time.Duration
	bad := make([]float64, 0, len(runs))
	for _, r := range runs {
		bad = append(bad, r.Bad)
		switch r.Outcome {
		case Promoted:
			c.Promoted++
		case RolledBack:
			c.RolledBack++
		default:
			c.Held++
		}
		if r.Outcome == want {
			times = append(times, r.Time)
		}
		c.MeanBad += r.Bad / float64(len(runs))
		c.MeanCanaryRequests += r.CanaryRequests / float64(len(runs))
	}
	if len(times) > 0 {
		slices.Sort(times)
		c.MedianToVerdict = times[len(times)/2]
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		c.MedianBad = bad[len(bad)/2]
	}
	return c
}

// Print writes one Markdown table per scenario: a row per rule, a column
// per traffic level; each cell is "rolled back % / promoted % / held %",
// then the median time to the verdict the scenario's canary deserves,
// then, for a canary worse than stable, the median (and mean) failed
// responses it served. Under each table: the fewest canary requests any
// test needs, on average, to reach that verdict (WaldBound).
func (s Study) Print(out io.Writer, res Results) {
	fmt.Fprintf(out, "%d runs a cell, %s horizon, seed %d. Each cell: rolled back %% / promoted %% / held %%, @ median minutes to the verdict the canary deserves; for a worse canary, the median (mean) failed responses it served.\n", s.Runs, s.Horizon, s.Seed)
	for _, r := range s.Rules {
		if r.MinRate > 0 && r.Why != "" && slices.ContainsFunc(s.Rates, func(v float64) bool { return v < r.MinRate }) {
			fmt.Fprintf(out, "\n`%s` is played from %.3g rps: %s.\n", r.Name, r.MinRate, r.Why)
		}
	}
	for _, sc := range s.Scenarios {
		fmt.Fprintf(out, "\n### %s\n\n| rule |", sc.Name)
		for _, r := range s.Rates {
			fmt.Fprintf(out, " %g rps |", r)
		}
		fmt.Fprintf(out, "\n|---|%s\n", strings.Repeat("---:|", len(s.Rates)))
		for _, rule := range s.Rules {
			fmt.Fprintf(out, "| %s |", rule.Name)
			for _, c := range res[sc.Name][rule.Name] {
				fmt.Fprintf(out, " %s |", c.format(expected(sc) == RolledBack))
			}
			fmt.Fprintln(out)
		}
		if n, what := sc.fewestRequests(s.judged()); n > 0 {
			fmt.Fprintf(out, "\nAny test needs at least %.0f canary requests on average %s (Wald's bound).\n", n, what)
		}
	}
}

func (c Cell) format(withBad bool) string {
	if c.Runs == 0 {
		return "not played"
	}
	pct := func(n int) string {
		v := 100 * float64(n) / float64(c.Runs)
		if v != 0 && v < 10 {
			return fmt.Sprintf("%.1f", v)
		}
		return fmt.Sprintf("%.0f", v)
	}
	s := fmt.Sprintf("%s / %s / %s", pct(c.RolledBack), pct(c.Promoted), pct(c.Held))
	if c.MedianToVerdict > 0 {
		s += fmt.Sprintf(" @%.1f", c.MedianToVerdict.Minutes())
	}
	if withBad {
		s += fmt.Sprintf("; %.0f (%.1f) bad", c.MedianBad, c.MeanBad)
	}
	return s
}
