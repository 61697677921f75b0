package mesh

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/open-feature/go-sdk/openfeature"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/fledgehq/fledge/flags/flagd"
)

// This file plays the apps' part in feature flags: a pod annotated with a
// flag evaluates it on every request through the OpenFeature flagd
// provider, reading the flag document from a ConfigMap as a real app would
// (fledge rewrites that document during a rollout), and the variant it gets
// picks the behaviour of the answer.

// variantError is the variant reported when an evaluation fails; the app
// then behaves as its base.
const variantError = "error"

// Bounds on the flag provider's lifecycle. Starting reads an in-memory
// document and takes milliseconds; the bounds only keep a wedged provider
// from holding a rebuild or Stop forever.
const (
	flagClientStartTimeout = 5 * time.Second
	flagClientStopTimeout  = 5 * time.Second
	// flagClientGrace is how long a flag source no ready pod reads is kept
	// before it is shut down: a request routed through the previous table
	// may still evaluate it, and a rollout that replaces every pod reads it
	// again moments later.
	flagClientGrace = 30 * time.Second
)

// flagSourceRef names a flag document: a data key of a ConfigMap.
type flagSourceRef struct {
	namespace, configMap, key string
}

func (r flagSourceRef) String() string { return r.namespace + "/" + r.configMap + "/" + r.key }

// podFlag is a ready pod's flag in a table.
type podFlag struct {
	spec   *flagSpec
	source flagSourceRef
	// client is attached by the emulator before the table is published
	// and not changed afterwards; nil when the source could not be
	// started.
	client *flagClient
}

// variant evaluates the flag for req as the app would, with the user's id
// as the targeting key and every request header as an attribute under its
// lower-case name. ok is false when the evaluation failed; variant is then
// variantError.
func (f *podFlag) variant(req *Request) (variant string, ok bool) {
	if f.client == nil {
		return variantError, false
	}
	attrs := make(map[string]any, len(req.Headers))
	for name, v := range req.Headers {
		attrs[name] = v
	}
	// Generated requests carry x-user-id; a proxied request may name its
	// user in x-user instead, which Request.User holds.
	ec := openfeature.NewEvaluationContext(cmp.Or(req.Headers[userIDHeader], req.User), attrs)
	ctx := context.Background()
	d, err := f.client.client.BooleanValueDetails(ctx, f.spec.name, false, ec)
	details := d.ResolutionDetail
	if d.ErrorCode == openfeature.TypeMismatchCode {
		// A release flag may be a string flag ("v1"/"v2"); the app asks
		// for whichever type the flag has.
		s, serr := f.client.client.StringValueDetails(ctx, f.spec.name, "", ec)
		details, err = s.ResolutionDetail, serr
	}
	if err != nil || details.ErrorCode != "" || details.Variant == "" {
		return variantError, false
	}
	return details.Variant, true
}

// flagClient is one app-side reader of a flag document: a flags.Source fed
// from the ConfigMap informer, and an OpenFeature client over flagd's
// in-process provider reading that source.
type flagClient struct {
	ref    flagSourceRef
	src    *flagd.Source
	api    *openfeature.EvaluationAPI
	client *openfeature.Client

	// refreshMu makes reading the ConfigMap and offering it to src one
	// step, so that a slow refresh cannot overwrite a newer one's
	// document with an older one.
	refreshMu sync.Mutex
	lastErr   string // the last problem logged, guarded by refreshMu

	unusedSince time.Time // guarded by flagClients.mu
}

// flagClients keeps one flagClient per flag source some ready pod reads.
type flagClients struct {
	log *slog.Logger
	// getConfigMap reads the informer cache; set before the informers
	// start.
	getConfigMap func(namespace, name string) (*corev1.ConfigMap, error)

	mu     sync.Mutex
	byRef  map[flagSourceRef]*flagClient
	closed bool
	wg     sync.WaitGroup // shutdowns in flight
}

func newFlagClients(log *slog.Logger) *flagClients {
	return &flagClients{log: log, byRef: map[flagSourceRef]*flagClient{}}
}

// attach gives every flag of a table about to be published its client,
// starting the sources it is the first to read, and shuts down those that
// no table has read for flagClientGrace. It is called by one goroutine at a
// time (Start, then the rebuild loop).
func (r *flagClients) attach(pods []*podFlag, now time.Time) {
	used := make(map[flagSourceRef]bool, len(pods))
	for _, pf := range pods {
		pf.client = r.acquire(pf.source)
		used[pf.source] = true
	}

	r.mu.Lock()
	var unused []*flagClient
	for ref, c := range r.byRef {
		switch {
		case used[ref]:
			c.unusedSince = time.Time{}
		case c.unusedSince.IsZero():
			c.unusedSince = now
		case now.Sub(c.unusedSince) >= flagClientGrace:
			delete(r.byRef, ref)
			unused = append(unused, c)
		}
	}
	r.wg.Add(len(unused))
	r.mu.Unlock()
	for _, c := range unused {
		go func() {
			defer r.wg.Done()
			r.shutdown(c)
		}()
	}
}

// acquire returns the client of a source, starting it if needed; nil if it
// cannot be started.
func (r *flagClients) acquire(ref flagSourceRef) *flagClient {
	r.mu.Lock()
	c, closed := r.byRef[ref], r.closed
	r.mu.Unlock()
	if c != nil || closed {
		return c
	}

	c = &flagClient{ref: ref, src: flagd.NewSource("configmap://" + ref.String())}
	// The provider starts with the current document, so that the first
	// request after the table is published sees the real flags.
	r.refresh(c)
	ctx, cancel := context.WithTimeout(context.Background(), flagClientStartTimeout)
	api, client, err := flagd.NewClient(ctx, c.src)
	cancel()
	if err != nil {
		r.log.Error("starting flag provider; the pods reading this source serve the \"error\" variant",
			"source", ref.String(), "err", err)
		return nil
	}
	c.api, c.client = api, client

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.shutdown(c)
		return nil
	}
	r.byRef[ref] = c
	r.mu.Unlock()
	// An informer event between the first refresh and now found no client
	// to feed; read the cache again.
	r.refresh(c)
	r.log.Info("flag source started", "source", ref.String())
	return c
}

// configMapChanged feeds a ConfigMap's new state to the sources that read
// it. It runs on the informer's handler goroutine and does not block.
func (r *flagClients) configMapChanged(namespace, name string) {
	r.mu.Lock()
	var readers []*flagClient
	for ref, c := range r.byRef {
		if ref.namespace == namespace && ref.configMap == name {
			readers = append(readers, c)
		}
	}
	r.mu.Unlock()
	for _, c := range readers {
		r.refresh(c)
	}
}

// refresh offers the cached ConfigMap to the source. An invalid document
// or a missing ConfigMap leaves the provider with the last valid flags, as
// an app keeps the flags it has when its flag file turns bad.
func (r *flagClients) refresh(c *flagClient) {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	cm, err := r.getConfigMap(c.ref.namespace, c.ref.configMap)
	switch {
	case apierrors.IsNotFound(err):
		err = c.src.SetConfigMap(nil, c.ref.key)
	case err != nil:
		c.src.SetError(err)
	default:
		err = c.src.SetConfigMap(cm, c.ref.key)
	}
	switch {
	case err == nil && c.lastErr != "":
		r.log.Info("flag source readable again", "source", c.ref.String())
		c.lastErr = ""
	case err != nil && err.Error() != c.lastErr:
		r.log.Warn("flag source unreadable; the apps keep the last valid flags", "source", c.ref.String(), "err", err)
		c.lastErr = err.Error()
	}
}

func (r *flagClients) shutdown(c *flagClient) {
	ctx, cancel := context.WithTimeout(context.Background(), flagClientStopTimeout)
	defer cancel()
	if err := c.api.Shutdown(ctx); err != nil {
		r.log.Warn("shutting down flag provider", "source", c.ref.String(), "err", err)
	}
}

// close shuts every source down and waits for it.
func (r *flagClients) close() {
	r.mu.Lock()
	r.closed = true
	all := r.byRef
	r.byRef = map[flagSourceRef]*flagClient{}
	r.wg.Add(len(all))
	r.mu.Unlock()
	for _, c := range all {
		go func() {
			defer r.wg.Done()
			r.shutdown(c)
		}()
	}
	r.wg.Wait()
}
