package engine

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// CallFunc makes one hook call (with the hook's own retries) and returns
// its answer. It must respect ctx, and should not panic: a panic (a bug)
// is logged and recorded as a CallError, so a rollout waiting on the call
// does not wait forever.
type CallFunc func(ctx context.Context, a rollout.CallHook) rollout.CallResult

// DeliverFunc makes one delivery attempt. A retryable error is tried
// again with backoff; any other error gives up at once, and so does a
// panic (a bug), which is logged.
type DeliverFunc func(ctx context.Context, a rollout.Deliver) (retryable bool, err error)

// Runner performs hook calls and outbox deliveries in the background, so
// that a slow hook or a Slack outage never holds a reconcile worker. It
// remembers each outcome by id until Decide has recorded it in the status
// (or for ResultTTL), and tells the controller (Wake) when one arrives.
//
// It is deliberately forgetful: after a restart it knows nothing, and the
// status says what is still pending, which Decide asks for again.
type Runner struct {
	Call    CallFunc
	Deliver DeliverFunc
	// Wake is called with the Flight's key when an outcome arrives.
	Wake  func(key string)
	Clock clock.Clock
	Log   *slog.Logger
	// Metrics, if set, counts answers and delivery attempts.
	Metrics *Metrics
	// MaxConcurrent bounds calls and delivery attempts in flight (default 32).
	MaxConcurrent int
	// Backoff between delivery attempts: First, doubling up to Max; a
	// delivery is given up MaxAge after it was queued (default 1s, 30s, 1h).
	BackoffFirst, BackoffMax, MaxAge time.Duration
	// ResultTTL is how long an unclaimed outcome is kept (default 1h).
	ResultTTL time.Duration

	once     sync.Once
	ctx      context.Context
	cancel   context.CancelFunc
	sem      chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	running  map[string]bool
	calls    map[string]rollout.CallResult
	delivery map[string]rollout.DeliveryResult
	expiry   map[string]time.Time
}

func (r *Runner) init() {
	r.once.Do(func() {
		if r.Clock == nil {
			r.Clock = clock.RealClock{}
		}
		if r.Log == nil {
			r.Log = slog.Default()
		}
		if r.MaxConcurrent <= 0 {
			r.MaxConcurrent = 32
		}
		r.BackoffFirst = cmp.Or(r.BackoffFirst, time.Second)
		r.BackoffMax = cmp.Or(r.BackoffMax, 30*time.Second)
		r.MaxAge = cmp.Or(r.MaxAge, time.Hour)
		r.ResultTTL = cmp.Or(r.ResultTTL, time.Hour)
		r.ctx, r.cancel = context.WithCancel(context.Background())
		r.sem = make(chan struct{}, r.MaxConcurrent)
		r.running = map[string]bool{}
		r.calls = map[string]rollout.CallResult{}
		r.delivery = map[string]rollout.DeliveryResult{}
		r.expiry = map[string]time.Time{}
	})
}

// Stop cancels everything in flight and waits for it.
func (r *Runner) Stop() {
	r.init()
	r.cancel()
	r.wg.Wait()
}

// claim marks id running unless it runs or has an outcome already.
func (r *Runner) claim(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gc()
	if r.running[id] {
		return false
	}
	if _, ok := r.calls[id]; ok {
		return false
	}
	if _, ok := r.delivery[id]; ok {
		return false
	}
	r.running[id] = true
	return true
}

// StartCall makes the call in the background, once per id.
func (r *Runner) StartCall(key string, a rollout.CallHook) {
	r.init()
	if !r.claim(a.ID) {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if !r.acquire() {
			r.forget(a.ID)
			return
		}
		res := r.call(key, a)
		r.release()
		if r.ctx.Err() != nil {
			r.forget(a.ID) // shutting down: the next leader calls again
			return
		}
		if res.At.IsZero() {
			res.At = r.Clock.Now()
		}
		if r.Metrics != nil {
			r.Metrics.HookAnswered(a, res)
		}
		r.Log.Info("hook answered", "flight", key, "hook", a.Hook.Name, "type", a.Hook.Type, "id", a.ID, "state", res.State, "message", res.Message)
		r.mu.Lock()
		delete(r.running, a.ID)
		r.calls[a.ID] = res
		r.expiry[a.ID] = r.Clock.Now().Add(r.ResultTTL)
		r.mu.Unlock()
		r.Wake(key)
	}()
}

// StartDelivery sends an outbox entry in the background, once per id,
// retrying retryable failures with backoff until it is MaxAge old.
func (r *Runner) StartDelivery(key string, a rollout.Deliver) {
	r.init()
	if !r.claim(a.Delivery.ID) {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		res, ok := r.deliver(key, a)
		if !ok {
			r.forget(a.Delivery.ID)
			return
		}
		r.mu.Lock()
		delete(r.running, a.Delivery.ID)
		r.delivery[a.Delivery.ID] = res
		r.expiry[a.Delivery.ID] = r.Clock.Now().Add(r.ResultTTL)
		r.mu.Unlock()
		r.Wake(key)
	}()
}

func (r *Runner) deliver(key string, a rollout.Deliver) (rollout.DeliveryResult, bool) {
	giveUp := a.Delivery.Created.Add(r.MaxAge)
	wait := r.BackoffFirst
	for attempt := 1; ; attempt++ {
		if !r.acquire() {
			return rollout.DeliveryResult{}, false
		}
		retryable, err := r.deliverOnce(key, a)
		r.release()
		if r.ctx.Err() != nil {
			return rollout.DeliveryResult{}, false
		}
		now := r.Clock.Now()
		if r.Metrics != nil {
			result := "delivered"
			switch {
			case err != nil && (!retryable || !now.Add(wait).Before(giveUp)):
				result = "failed"
			case err != nil:
				result = "retry"
			}
			r.Metrics.DeliveryAttempted(a, result)
		}
		if err == nil {
			r.Log.Info("delivered", "flight", key, "channel", a.Delivery.Channel, "event", a.Delivery.Event, "attempts", attempt)
			return rollout.DeliveryResult{Delivered: true, Attempts: attempt, At: now}, true
		}
		if !retryable || !now.Add(wait).Before(giveUp) {
			r.Log.Warn("delivery given up", "flight", key, "channel", a.Delivery.Channel, "event", a.Delivery.Event, "attempts", attempt, "err", err)
			return rollout.DeliveryResult{Attempts: attempt, Message: err.Error(), At: now}, true
		}
		r.Log.Info("delivery failed, will retry", "flight", key, "channel", a.Delivery.Channel, "event", a.Delivery.Event, "attempt", attempt, "retryIn", wait, "err", err)
		select {
		case <-r.ctx.Done():
			return rollout.DeliveryResult{}, false
		case <-r.Clock.After(wait):
		}
		wait = min(2*wait, r.BackoffMax)
	}
}

// call makes the hook call; a panic in it is logged with its stack and
// becomes a CallError that says so: the rollout waiting on the call goes
// on (a gate holds or fails, as on any error), and so do the other jobs.
func (r *Runner) call(key string, a rollout.CallHook) (res rollout.CallResult) {
	defer func() {
		if p := recover(); p != nil {
			r.Log.Error("hook call panicked", "flight", key, "hook", a.Hook.Name, "type", a.Hook.Type, "id", a.ID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			res = rollout.CallResult{State: v1alpha1.CallError, Message: fmt.Sprintf("the hook call panicked inside fledge (a bug, logged): %v", p)}
		}
	}()
	return r.Call(r.ctx, a)
}

// deliverOnce makes one delivery attempt; a panic in it is logged with its
// stack and becomes an error that is not retried: the delivery is given
// up with a message that says so.
func (r *Runner) deliverOnce(key string, a rollout.Deliver) (retryable bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.Log.Error("delivery panicked", "flight", key, "channel", a.Delivery.Channel, "event", a.Delivery.Event, "id", a.Delivery.ID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			retryable, err = false, fmt.Errorf("the delivery panicked inside fledge (a bug, logged): %v", p)
		}
	}()
	return r.Deliver(r.ctx, a)
}

func (r *Runner) acquire() bool {
	select {
	case r.sem <- struct{}{}:
		return true
	case <-r.ctx.Done():
		return false
	}
}

func (r *Runner) release() { <-r.sem }

func (r *Runner) forget(id string) {
	r.mu.Lock()
	delete(r.running, id)
	r.mu.Unlock()
}

// Outcomes returns the known outcomes of the calls and deliveries a
// status still has pending.
func (r *Runner) Outcomes(st *v1alpha1.FlightStatus) (map[string]rollout.CallResult, map[string]rollout.DeliveryResult) {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	var calls map[string]rollout.CallResult
	for _, c := range st.Calls {
		if res, ok := r.calls[c.ID]; ok && c.State == v1alpha1.CallPending {
			if calls == nil {
				calls = map[string]rollout.CallResult{}
			}
			calls[c.ID] = res
		}
	}
	var delivered map[string]rollout.DeliveryResult
	for _, e := range st.Outbox {
		if res, ok := r.delivery[e.ID]; ok && e.State == v1alpha1.DeliveryPending {
			if delivered == nil {
				delivered = map[string]rollout.DeliveryResult{}
			}
			delivered[e.ID] = res
		}
	}
	return calls, delivered
}

// gc drops outcomes nobody claimed in time. Called with mu held.
func (r *Runner) gc() {
	now := r.Clock.Now()
	for id, at := range r.expiry {
		if now.After(at) {
			delete(r.calls, id)
			delete(r.delivery, id)
			delete(r.expiry, id)
		}
	}
}

// Running reports how many calls and deliveries are in flight (for tests
// and metrics).
func (r *Runner) Running() int {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}
