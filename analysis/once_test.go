package analysis

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Within one look, a query asked by several checks goes to Prometheus
// once; another query, or the same one at another time, is asked too.
func TestOnceAsksEachQueryOncePerLook(t *testing.T) {
	var asked sync.Map
	var calls atomic.Int32
	q := Once(QueryFunc(func(_ context.Context, query string, at time.Time) (float64, error) {
		calls.Add(1)
		n, _ := asked.LoadOrStore(query+at.String(), new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		time.Sleep(5 * time.Millisecond)
		return float64(len(query)), nil
	}))
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if v, err := q.Query(context.Background(), "sum(requests)", at); err != nil || v != 13 {
				t.Errorf("got %v, %v", v, err)
			}
		})
	}
	wg.Wait()
	_, _ = q.Query(context.Background(), "sum(bad)", at)
	_, _ = q.Query(context.Background(), "sum(requests)", at.Add(time.Second))
	if got := calls.Load(); got != 3 {
		t.Errorf("%d queries asked, want 3 (two queries, one of them at two times)", got)
	}
}

// A caller that gives up does not leave its cancellation as the answer
// for the next one.
func TestOnceDoesNotShareACancelledAnswer(t *testing.T) {
	var calls atomic.Int32
	q := Once(QueryFunc(func(ctx context.Context, _ string, _ time.Time) (float64, error) {
		if calls.Add(1) == 1 {
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return 1, nil
	}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.Query(ctx, "up", time.Time{}); err == nil {
		t.Fatal("a cancelled query answered")
	}
	if v, err := q.Query(context.Background(), "up", time.Time{}); err != nil || v != 1 {
		t.Errorf("after a cancelled ask: %v, %v; want 1 asked again", v, err)
	}
}
