package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout"
)

// A look's checks run side by side, at most limit at once across every
// caller: one slow check does not hold the others (they finish while it
// is still waiting), and the checks come back in the metrics' order.
func TestChecksRunSideBySideWithinTheLimit(t *testing.T) {
	release := make(chan struct{})
	var inFlight, most atomic.Int32
	q := analysis.QueryFunc(func(ctx context.Context, query string, _ time.Time) (float64, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if strings.Contains(query, "slow") {
			select {
			case <-release:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		time.Sleep(10 * time.Millisecond)
		return 1, nil
	})
	analyze := concurrentAnalysis(q, 3)
	metric := func(name string) analysis.Metric {
		one := 2.0
		return analysis.Metric{Name: name, Query: fmt.Sprintf(`sum(%s{workload={{ .Workload }}})`, name), Max: &one, Interval: time.Minute}
	}
	vars := analysis.Vars{Namespace: "demo", Workload: "shop-canary", StableWorkload: "shop", Service: "shop", Interval: "1m"}

	var wg sync.WaitGroup
	var fast []analysis.Check
	wg.Go(func() { analyze(context.Background(), []analysis.Metric{metric("slow")}, vars, time.Now()) })
	time.Sleep(20 * time.Millisecond) // the slow check holds a slot
	done := make(chan struct{})
	go func() {
		fast = analyze(context.Background(), []analysis.Metric{metric("a"), metric("b"), metric("c"), metric("d")}, vars, time.Now())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the other checks waited for the slow one")
	}
	close(release)
	wg.Wait()
	if most.Load() > 3 {
		t.Errorf("%d queries at once, want at most 3", most.Load())
	}
	for i, want := range []string{"a", "b", "c", "d"} {
		if fast[i].Metric != want || fast[i].Outcome != analysis.Pass {
			t.Errorf("check %d: %s %s (%s), want %s passed, in order", i, fast[i].Metric, fast[i].Outcome, fast[i].Message, want)
		}
	}
}

// A look asks each distinct query once: the shipped policies' checks share
// queries (a comparison's request count and a threshold check's sample
// count, say), and Prometheus is asked each of them a single time.
func TestALookAsksEachQueryOnce(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	policies, err := rollout.ParseConfig([]byte(cm.Data["policies.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	vars := analysis.Vars{Namespace: "demo", Workload: "shop-canary", StableWorkload: "shop", Service: "shop"}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	shared := 0
	for _, name := range slices.Sorted(maps.Keys(policies)) {
		p := policies[name]
		var mu sync.Mutex
		asked := map[string]int{}
		q := analysis.QueryFunc(func(_ context.Context, query string, _ time.Time) (float64, error) {
			mu.Lock()
			asked[query]++
			mu.Unlock()
			return 1, nil
		})
		concurrentAnalysis(q, 4)(context.Background(), p.Metrics, vars, at)
		for query, n := range asked {
			if n != 1 {
				t.Errorf("policy %s: %q asked %d times in one look", name, query, n)
			}
		}
		// The same checks one by one, without sharing: how many queries
		// the look saved.
		total := 0
		counting := analysis.QueryFunc(func(context.Context, string, time.Time) (float64, error) { total++; return 1, nil })
		for _, m := range p.Metrics {
			analysis.Evaluate(context.Background(), counting, m, vars, at)
		}
		t.Logf("policy %s: %d queries a look, %d without sharing", name, len(asked), total)
		shared += total - len(asked)
	}
	if shared == 0 {
		t.Error("no shipped policy shares a query between checks: this test shows nothing")
	}
}
