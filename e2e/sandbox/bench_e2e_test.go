//go:build e2e

package sandbox_test

import (
	"context"
	"testing"

	"github.com/fledgehq/fledge/e2e/sandbox"
)

// BenchmarkColdStart measures a full start of the sandbox with its tools
// already built (target: under 30 s), reported as s/start. Stop is not timed.
func BenchmarkColdStart(b *testing.B) {
	var total float64
	n := 0
	for b.Loop() {
		sb, err := sandbox.Start(context.Background(), sandbox.Options{})
		if err != nil {
			b.Fatal(err)
		}
		total += sb.StartupTime.Seconds()
		n++
		b.StopTimer()
		if err := sb.Stop(false); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(total/float64(n), "s/start")
}
