package mesh

import (
	"context"
	"math"
	"time"
)

// runner drives one client's generator from its own goroutine.
type runner struct {
	gen    *generator
	counts *counter
	cancel context.CancelFunc
	done   chan struct{}
}

func newRunner(gen *generator, counts *counter) *runner {
	return &runner{gen: gen, counts: counts, done: make(chan struct{})}
}

func (r *runner) start(e *Emulator, tick time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		r.run(ctx, e, tick)
	}()
}

// stop ends the goroutine and waits for it, so that no request of this
// client is routed after stop returns.
func (r *runner) stop() {
	r.cancel()
	<-r.done
}

// run sends RPS requests per second: at each tick, the requests due since
// the previous one, carrying the fraction over so that low rates are met
// on average.
func (r *runner) run(ctx context.Context, e *Emulator, tick time.Duration) {
	rps := r.gen.c.RPS
	// A slow client wakes less often: a quarter of the time between its
	// requests, at most 250 ms, so that thousands of clients at a request
	// a second do not cost thousands of wake-ups every tick.
	if rps > 0 {
		tick = max(tick, min(time.Duration(float64(time.Second)/(4*rps)), 250*time.Millisecond))
	}
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	// A goroutine that was not scheduled for a while (a loaded CI machine,
	// the race detector) must not catch up with a burst no real client
	// would send: at most one second's worth is sent at once.
	maxBurst := math.Max(1, rps)
	last := time.Now()
	var due float64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			due += rps * now.Sub(last).Seconds()
			last = now
			if due > maxBurst {
				due = maxBurst
			}
			for ; due >= 1; due-- {
				if ctx.Err() != nil {
					return
				}
				r.send(e)
			}
		}
	}
}

func (r *runner) send(e *Emulator) {
	req := r.gen.next()
	out := e.serve(&req, r.gen.rng, &r.gen.src, r.counts)
	r.gen.remember(&req, &out.resp)
}
