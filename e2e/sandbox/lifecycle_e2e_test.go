//go:build e2e

package sandbox_test

import (
	"context"
	"strings"
	"testing"
)

// A Prometheus outage, as issue tests of "cannot measure" need it: queries
// fail while it is down, and it comes back on the same address with its data.
func TestPrometheusCanBeStoppedAndRestarted(t *testing.T) {
	sb := suite.Get(t)
	ctx := context.Background()
	const q = `count(up{job="mesh"} == 1)`
	before, err := sb.QueryVector(ctx, q, "")
	if err != nil || before[""] != 1 {
		t.Fatalf("before the outage: %v, %v; want the mesh target up", before, err)
	}
	if err := sb.StopPrometheus(); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.QueryVector(ctx, q, ""); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("query during the outage: %v, want connection refused", err)
	}
	if err := sb.StartPrometheus(ctx); err != nil {
		t.Fatal(err)
	}
	// The samples scraped before the outage survived it.
	old, err := sb.QueryVector(ctx, `count(count_over_time(up{job="mesh"}[10m]))`, "")
	if err != nil || old[""] != 1 {
		t.Fatalf("after the outage: %v, %v; want the history of the mesh target", old, err)
	}
}

func TestStartedProcessDiesWithKill(t *testing.T) {
	sb := suite.Get(t)
	p, err := sb.StartProcess("sleeper", []string{"SLEEP_FOR=300"}, "/bin/sh", "-c", `sleep "$SLEEP_FOR" & wait`)
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if done, _ := p.Exited(); !done {
		t.Fatal("process not reaped after Kill")
	}
	if live := p.LiveMembers(); len(live) > 0 {
		t.Fatalf("processes %v of group %d survived Kill", live, p.Pid())
	}
}
