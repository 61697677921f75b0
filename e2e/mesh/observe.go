package mesh

import (
	"slices"
	"sync"
	"sync/atomic"
)

// This file holds what the emulator knows about the traffic it routed:
// ground-truth counters and per-request observers. Both are written from
// the routing goroutines, so they are atomics and copy-on-write slices
// rather than locked structures.

type observer struct {
	id uint64
	fn func(Request, Response)
}

// counter is a pair of atomic counters behind a Counts.
type counter struct {
	requests, errors atomic.Uint64
}

func (c *counter) add(isError bool) {
	c.requests.Add(1)
	if isError {
		c.errors.Add(1)
	}
}

func (c *counter) load() Counts {
	return Counts{Requests: c.requests.Load(), Errors: c.errors.Load()}
}

func (e *Emulator) servedCounter(rev Revision) *counter {
	if c, ok := e.served.Load(rev); ok {
		return c.(*counter)
	}
	c, _ := e.served.LoadOrStore(rev, new(counter))
	return c.(*counter)
}

func (e *Emulator) variantCounter(key VariantKey) *counter {
	if c, ok := e.variants.Load(key); ok {
		return c.(*counter)
	}
	c, _ := e.variants.LoadOrStore(key, new(counter))
	return c.(*counter)
}

func (e *Emulator) clientCounter(name string) *counter {
	if c, ok := e.clients.Load(name); ok {
		return c.(*counter)
	}
	c, _ := e.clients.LoadOrStore(name, new(counter))
	return c.(*counter)
}

// Served is the ground truth: requests and errors served per revision since
// the emulator was created.
func (e *Emulator) Served() map[Revision]Counts {
	out := map[Revision]Counts{}
	e.served.Range(func(k, v any) bool {
		out[k.(Revision)] = v.(*counter).load()
		return true
	})
	return out
}

// ServedVariants is the ground truth of feature flags: requests and errors
// served per revision and variant since the emulator was created, for the
// pods that evaluate a flag (Variant "error" counts failed evaluations).
// Requests served by pods without a flag appear only in Served.
func (e *Emulator) ServedVariants() map[VariantKey]Counts {
	out := map[VariantKey]Counts{}
	e.variants.Range(func(k, v any) bool {
		out[k.(VariantKey)] = v.(*counter).load()
		return true
	})
	return out
}

// WorkloadCounts sums Served over every revision of one workload (a
// Deployment), for "how many bad responses did this canary serve".
func (e *Emulator) WorkloadCounts(namespace, workload string) Counts {
	var c Counts
	for rev, n := range e.Served() {
		if rev.Namespace == namespace && rev.Workload == workload {
			c.Requests += n.Requests
			c.Errors += n.Errors
		}
	}
	return c
}

// ClientCounts is what one client's users saw: every request, and the
// errors among them, including 503s for want of an endpoint and 404s for
// want of a route.
func (e *Emulator) ClientCounts(name string) Counts {
	if c, ok := e.clients.Load(name); ok {
		return c.(*counter).load()
	}
	return Counts{}
}

// Observe registers fn to be called with every routed request, from the
// goroutine that routed it; calls from different clients are concurrent.
// fn must be quick and must not modify the request's maps. cancel
// unregisters it.
func (e *Emulator) Observe(fn func(Request, Response)) (cancel func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nextObsID++
	id := e.nextObsID
	e.setObservers(append(e.currentObservers(), observer{id: id, fn: fn}))
	var once sync.Once
	return func() {
		once.Do(func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.setObservers(slices.DeleteFunc(e.currentObservers(), func(o observer) bool { return o.id == id }))
		})
	}
}

// currentObservers returns a copy; the published slice is never modified.
func (e *Emulator) currentObservers() []observer {
	if p := e.observers.Load(); p != nil {
		return slices.Clone(*p)
	}
	return nil
}

func (e *Emulator) setObservers(obs []observer) {
	if len(obs) == 0 {
		e.observers.Store(nil)
		return
	}
	e.observers.Store(&obs)
}
