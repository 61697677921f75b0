package analysis

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Querier runs one instant PromQL query at a time and returns its single
// value. Anything but exactly one finite value is an error: a failed
// measurement, which the judge turns into an Error verdict and the
// rollout into a hold, never a zero or a pass. Errors wrap one of the Err*
// values below so that callers can tell an outage from a bad query.
type Querier interface {
	Query(ctx context.Context, query string, at time.Time) (float64, error)
}

// QueryFunc adapts a function to Querier, as http.HandlerFunc does, so that
// tests pass a closure.
type QueryFunc func(ctx context.Context, query string, at time.Time) (float64, error)

// Query calls f.
func (f QueryFunc) Query(ctx context.Context, query string, at time.Time) (float64, error) {
	return f(ctx, query, at)
}

// What can go wrong with a measurement. Each is distinct so that the
// controller can, say, count outages apart from broken queries; the
// wrapping error says which query and gives the details.
var (
	// ErrUnreachable: no answer from Prometheus (connection refused,
	// DNS, TLS, reset).
	ErrUnreachable = errors.New("prometheus cannot be reached")
	// ErrTimeout: no answer in time, ours or Prometheus's own.
	ErrTimeout = errors.New("query timed out")
	// ErrQueryFailed: Prometheus answered with an error: the query was
	// refused (bad_data), failed to execute, or the server failed.
	ErrQueryFailed = errors.New("prometheus answered with an error")
	// ErrBadResponse: the answer could not be read as Prometheus's API.
	ErrBadResponse = errors.New("unreadable answer from prometheus")
	// ErrWarnings: Prometheus answered with warnings, so the value may be
	// partial or wrong.
	ErrWarnings = errors.New("prometheus returned warnings")
	// ErrNoData: the query returned no series.
	ErrNoData = errors.New("no data: the query returned no series")
	// ErrManySeries: the query returned more than one series; a check
	// needs one value.
	ErrManySeries = errors.New("more than one series")
	// ErrWrongType: the result is not an instant vector of floats.
	ErrWrongType = errors.New("wrong result type")
	// ErrNaN: the value is NaN (a ratio of zero to zero, typically).
	ErrNaN = errors.New("the value is NaN")
	// ErrInfinite: the value is +Inf or -Inf.
	ErrInfinite = errors.New("the value is infinite")
)

// Once wraps q for one look at one Flight: each distinct query at each
// time is asked once, and callers asking it again (a comparison's request
// count that a threshold check also needs, say), at once or later, share
// its answer. An answer cancelled with its caller's context is not
// shared: the next caller asks again.
func Once(q Querier) Querier {
	return &once{q: q, asked: map[onceKey]*onceAnswer{}}
}

type onceKey struct {
	query string
	at    time.Time
}

type onceAnswer struct {
	done  chan struct{}
	value float64
	err   error
}

type once struct {
	q     Querier
	mu    sync.Mutex
	asked map[onceKey]*onceAnswer
}

func (o *once) Query(ctx context.Context, query string, at time.Time) (float64, error) {
	key := onceKey{query, at.UTC()}
	for {
		o.mu.Lock()
		a, ok := o.asked[key]
		if !ok {
			a = &onceAnswer{done: make(chan struct{})}
			o.asked[key] = a
			o.mu.Unlock()
			a.value, a.err = o.q.Query(ctx, query, at)
			if a.err != nil && ctx.Err() != nil {
				o.mu.Lock()
				delete(o.asked, key) // this caller gave up: not an answer
				o.mu.Unlock()
			}
			close(a.done)
			return a.value, a.err
		}
		o.mu.Unlock()
		select {
		case <-a.done:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		o.mu.Lock()
		cur := o.asked[key]
		o.mu.Unlock()
		if cur != a {
			continue // its asker gave up before it had an answer: ask again
		}
		return a.value, a.err
	}
}
