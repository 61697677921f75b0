package loadtest

import (
	"fmt"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/fledgehq/fledge/webhooks"
)

func TestRecordKeepsTheLatestRunsForTheTTL(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	r := newRecord(clk, 3, time.Hour)
	d := func(i int) delivery { return delivery{"demo", "shop", fmt.Sprint(i)} }
	for i := range 5 {
		r.put(d(i), webhooks.LoadResult{LoadFigures: webhooks.LoadFigures{Requests: uint64(i)}})
		clk.SetTime(clk.Now().Add(time.Minute))
	}

	tests := []struct {
		name  string
		d     delivery
		after time.Duration // more time passed
		want  bool
	}{
		{"the oldest runs beyond the size are forgotten", d(0), 0, false},
		{"the second oldest too", d(1), 0, false},
		{"the latest size runs are kept", d(2), 0, true},
		{"the latest run is kept", d(4), 0, true},
		{"a run of another Flight with the same id is another delivery", delivery{"demo", "cart", "4"}, 0, false},
		{"a run recorded exactly the TTL ago is kept", d(4), time.Hour - time.Minute, true},
		{"a run recorded longer than the TTL ago is forgotten", d(4), time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.SetTime(clk.Now().Add(tt.after))
			res, ok := r.get(tt.d)
			if ok != tt.want {
				t.Fatalf("get(%v) found = %t, want %t", tt.d, ok, tt.want)
			}
			if ok && fmt.Sprint(res.Requests) != tt.d.id {
				t.Errorf("get(%v) = run %d, want run %s", tt.d, res.Requests, tt.d.id)
			}
		})
	}
}
