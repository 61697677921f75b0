package loadtest

import (
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/fledgehq/fledge/webhooks"
)

// delivery identifies one run: fledge keeps a delivery id per hook call in
// the Flight's status and sends it again when it retries the call.
type delivery struct {
	namespace, name, id string
}

// String is the singleflight key; NUL cannot occur in Kubernetes names.
func (d delivery) String() string { return d.namespace + "\x00" + d.name + "\x00" + d.id }

// record remembers the results of completed runs, so that a delivery sent
// again after it completed gets its result instead of a second load. It is
// bounded both ways: the latest size entries, none older than ttl.
type record struct {
	clock clock.PassiveClock
	size  int
	ttl   time.Duration

	mu      sync.Mutex
	results map[delivery]recorded
	order   []delivery // insertion order, a ring of len size once full
	next    int        // the oldest entry of order once it is full
}

type recorded struct {
	result webhooks.LoadResult
	at     time.Time
}

func newRecord(c clock.PassiveClock, size int, ttl time.Duration) *record {
	return &record{clock: c, size: size, ttl: ttl, results: make(map[delivery]recorded, size)}
}

// get returns the result recorded for d, if it is recent enough.
func (r *record) get(d delivery) (webhooks.LoadResult, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.results[d]
	if !ok || r.clock.Since(e.at) > r.ttl {
		return webhooks.LoadResult{}, false
	}
	return e.result, true
}

// put records d's result, forgetting the oldest entry when full. A
// delivery runs at most once at a time (singleflight) and is looked up
// before it runs, so put is not called twice for one live entry.
func (r *record) put(d delivery, result webhooks.LoadResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.results[d]; !ok {
		if len(r.order) < r.size {
			r.order = append(r.order, d)
		} else {
			delete(r.results, r.order[r.next])
			r.order[r.next] = d
			r.next = (r.next + 1) % r.size
		}
	}
	r.results[d] = recorded{result: result, at: r.clock.Now()}
}
