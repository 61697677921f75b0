package flagd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/fledgehq/fledge/flags"
)

// ConfigMapGates evaluates flag gates kept in ConfigMaps of one namespace
// (fledge's own), read from an informer's lister.
//
// Each version of a ConfigMap gets a provider of its own, started with
// that version's document: an answer is therefore always from the
// document the ConfigMap holds now, never from one a moment old (a
// provider that is fed updates applies them asynchronously, and a freeze
// must hold from the first look after it is set). Versions change when
// people flip a flag, rarely; the previous provider is shut down.
type ConfigMapGates struct {
	namespace string
	lister    corelisters.ConfigMapLister
	timeout   time.Duration

	mu      sync.Mutex
	sources map[string]*versioned // by configmap/key
}

type versioned struct {
	resourceVersion string
	gates           *Gates
	err             error
}

// NewConfigMapGates returns gates reading ConfigMaps of namespace through
// lister; each evaluation is bounded by timeout (DefaultGateTimeout if 0).
func NewConfigMapGates(namespace string, lister corelisters.ConfigMapLister, timeout time.Duration) *ConfigMapGates {
	if timeout <= 0 {
		timeout = DefaultGateTimeout
	}
	return &ConfigMapGates{namespace: namespace, lister: lister, timeout: timeout, sources: map[string]*versioned{}}
}

// Evaluate evaluates flag from the document under key in ConfigMap
// configMap. It never returns Open without having read the flag as true.
func (g *ConfigMapGates) Evaluate(ctx context.Context, configMap, key, flag string, rc flags.RolloutContext) flags.GateResult {
	v := g.current(ctx, configMap, key)
	if v.err != nil {
		return flags.GateResult{Flag: flag, Verdict: flags.Unreadable, Reason: "flag source: " + v.err.Error()}
	}
	return v.gates.Evaluate(ctx, flag, rc)
}

func (g *ConfigMapGates) current(ctx context.Context, configMap, key string) *versioned {
	where := fmt.Sprintf("configmap %s/%s key %s", g.namespace, configMap, key)
	cm, err := g.lister.ConfigMaps(g.namespace).Get(configMap)
	rv := ""
	switch {
	case apierrors.IsNotFound(err):
		err = fmt.Errorf("%s: not found", where)
	case err != nil:
		err = fmt.Errorf("%s: %w", where, err)
	default:
		rv = cm.ResourceVersion
	}
	id := configMap + "/" + key
	g.mu.Lock()
	cur := g.sources[id]
	switch {
	case err != nil:
		g.replace(id, &versioned{err: err})
		v := g.sources[id]
		g.mu.Unlock()
		return v
	case cur != nil && cur.resourceVersion == rv:
		// Started already (or broken: no point starting it again).
		g.mu.Unlock()
		return cur
	}
	g.mu.Unlock()

	// Starting a provider takes a moment: not under the lock, so other
	// Flights' gates are not held up meanwhile.
	next := &versioned{resourceVersion: rv}
	src := NewSource("configmap://" + g.namespace + "/" + id + "@" + rv)
	if err := src.SetConfigMap(cm, key); err != nil {
		inner := errors.Unwrap(err)
		if inner == nil {
			inner = err
		}
		next.err = fmt.Errorf("%s: %w", where, inner)
	} else {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		next.gates, next.err = NewGates(sctx, src, g.timeout)
		cancel()
		if next.err != nil {
			next.resourceVersion = "" // try again on the next look
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if cur := g.sources[id]; cur != nil && cur.resourceVersion == rv && rv != "" {
		// Another look started the same version meanwhile: keep one.
		if next.gates != nil {
			go closeGates(next.gates)
		}
		return cur
	}
	g.replace(id, next)
	return next
}

func closeGates(old *Gates) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = old.Close(ctx)
}

// replace installs next for id and shuts the previous provider down in
// the background. Called with mu held.
func (g *ConfigMapGates) replace(id string, next *versioned) {
	if prev := g.sources[id]; prev != nil && prev.gates != nil && prev != next {
		go closeGates(prev.gates)
	}
	g.sources[id] = next
}

// Close shuts every provider down.
func (g *ConfigMapGates) Close(ctx context.Context) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, v := range g.sources {
		if v.gates != nil {
			_ = v.gates.Close(ctx)
		}
		delete(g.sources, id)
	}
}
