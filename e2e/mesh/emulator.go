package mesh

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/kubernetes"
)

// Options configure an Emulator. The zero value is usable.
type Options struct {
	// Logger receives problems and notable events; nil discards them.
	Logger *slog.Logger
	// MetricsAddr is where /metrics is served; default "127.0.0.1:0".
	MetricsAddr string
	// Seed makes generated traffic reproducible.
	Seed uint64
	// Debounce is how long configuration changes are batched before the
	// routing table is rebuilt, like istiod's push debounce; default 50ms.
	// DebounceMax is the longest a steady stream of changes delays a
	// rebuild; default 10 Debounce periods. (istiod's defaults,
	// PILOT_DEBOUNCE_AFTER and PILOT_DEBOUNCE_MAX, are 100ms and 10s: the
	// emulator's are shorter, so that tests see routing changes sooner.)
	Debounce, DebounceMax time.Duration
	// Tick is the traffic generators' period; default 20ms.
	Tick time.Duration
	// Shards splits the metrics into this many scrape targets,
	// /metrics?shard=0 to Shards-1, by the reporting proxy's namespace
	// (/metrics serves them all); default 1.
	Shards int
	// Telemetry changes the standard metrics as Istio's Telemetry API can.
	Telemetry Telemetry
	// KubeletSync is how long after a change of a ConfigMap or Secret a
	// pod that mounts it as a volume without subPath sees the new
	// content; default 20s. A real kubelet takes up to its sync period
	// (about a minute) plus the TTL of its object cache, and often less:
	// the default is shorter, so that a tool which must act before a
	// change reaches the running pods (copy the object for a canary,
	// say) is held to a stricter deadline than a real cluster sets.
	KubeletSync time.Duration
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MetricsAddr == "" {
		o.MetricsAddr = "127.0.0.1:0"
	}
	if o.Debounce <= 0 {
		o.Debounce = 50 * time.Millisecond
	}
	if o.DebounceMax < o.Debounce {
		o.DebounceMax = 10 * o.Debounce
	}
	if o.Tick <= 0 {
		o.Tick = 20 * time.Millisecond
	}
	o.Shards = max(o.Shards, 1)
	if o.KubeletSync <= 0 {
		o.KubeletSync = 20 * time.Second
	}
	return o
}

type state uint8

const (
	stateNew state = iota
	stateRunning
	stateStopped
)

// Emulator stands in for Istio's data plane. See the package documentation.
type Emulator struct {
	kube    kubernetes.Interface
	istio   istioclient.Interface
	opts    Options
	optsErr error // what is wrong with opts, said by Start
	log     *slog.Logger

	// The hot path reads only these, without locks.
	table     atomic.Pointer[table]
	metrics   *telemetry
	observers atomic.Pointer[[]observer]
	served    sync.Map // Revision -> *counter
	variants  sync.Map // VariantKey -> *counter
	clients   sync.Map // client name -> *counter
	// comparisons are the comparator pods' counts, by comparisonKey.
	comparisons sync.Map
	// configUses are the ConfigServed rows, by configUseKey.
	configUses sync.Map
	routeSeq   atomic.Uint64

	// dirty is signalled by informer events; the rebuild loop drains it.
	dirty chan struct{}
	// lastProblems is owned by whoever rebuilds: Start, then the rebuild
	// loop.
	lastProblems map[Problem]bool
	// flags are the flag sources the pods read, attached to each table.
	flags *flagClients
	// kubelet records what the pods' views of their config are chosen
	// from; the informers feed it.
	kubelet *kubelet

	mu          sync.Mutex
	state       state
	runners     map[string]*runner
	nextObsID   uint64
	metricsAddr string
	watch       *watcher
	server      *http.Server
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	stopped     chan struct{} // closed when Stop has finished
}

// New builds an emulator over the given clients. Nothing runs until Start.
func New(kube kubernetes.Interface, istio istioclient.Interface, opts Options) *Emulator {
	opts = opts.withDefaults()
	metrics, err := newTelemetry(opts.Shards, opts.Telemetry)
	e := &Emulator{
		optsErr: err,
		kube:    kube,
		istio:   istio,
		opts:    opts,
		log:     opts.Logger,
		metrics: metrics,
		dirty:   make(chan struct{}, 1),
		flags:   newFlagClients(opts.Logger),
		kubelet: newKubelet(opts.KubeletSync),
		runners: map[string]*runner{},
		stopped: make(chan struct{}),
	}
	e.table.Store(newTable())
	return e
}

// Start starts the informers (Services, Pods, VirtualServices,
// DestinationRules, ConfigMaps and Secrets in all namespaces), waits for
// their caches to sync, builds the first routing table, and starts serving
// metrics and following configuration changes. It returns when the
// emulator is ready. ctx bounds the start-up only; the emulator runs until
// Stop.
func (e *Emulator) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != stateNew {
		return errors.New("mesh emulator: Start called more than once")
	}
	if e.optsErr != nil {
		return fmt.Errorf("mesh emulator: %w", e.optsErr)
	}

	ln, err := net.Listen("tcp", e.opts.MetricsAddr)
	if err != nil {
		return fmt.Errorf("mesh emulator: metrics listener: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	w := newWatcher(e.kube, e.istio, e.markDirty, e.flags.configMapChanged, e.kubelet)
	e.flags.getConfigMap = w.configMap
	if err := w.start(ctx, runCtx.Done()); err != nil {
		cancel()
		w.shutdown()
		ln.Close()
		return fmt.Errorf("mesh emulator: %w", err)
	}

	e.watch, e.cancel = w, cancel
	e.rebuild()

	mux := http.NewServeMux()
	mux.Handle("/metrics", e.metrics.handler())
	e.server = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	e.metricsAddr = ln.Addr().String()
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		if err := e.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.log.Error("metrics server stopped", "addr", e.metricsAddr, "err", err)
		}
	}()
	go func() {
		defer e.wg.Done()
		e.rebuildLoop(runCtx)
	}()

	e.state = stateRunning
	e.log.Info("mesh emulator started", "metricsAddr", e.metricsAddr)
	return nil
}

// Stop stops the traffic generators, the metrics server, the rebuild loop,
// the informers and the flag providers, and waits for all of their
// goroutines. It may be called more than once, and before Start.
func (e *Emulator) Stop() {
	e.mu.Lock()
	switch e.state {
	case stateNew:
		e.state = stateStopped
		close(e.stopped)
		e.mu.Unlock()
		return
	case stateStopped:
		e.mu.Unlock()
		<-e.stopped
		return
	}
	e.state = stateStopped
	runners := e.runners
	e.runners = map[string]*runner{}
	e.mu.Unlock()

	for _, r := range runners {
		r.stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.server.Shutdown(ctx); err != nil {
		e.server.Close()
	}
	e.cancel()
	e.wg.Wait()
	e.watch.shutdown()
	e.flags.close()
	e.log.Info("mesh emulator stopped")
	close(e.stopped)
}

// MetricsAddr returns the host:port the metrics server is bound to, "" before
// Start.
func (e *Emulator) MetricsAddr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.metricsAddr
}

// AddClient validates c and starts generating its traffic.
func (e *Emulator) AddClient(c Client) error {
	c, err := c.normalized()
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != stateRunning {
		return fmt.Errorf("client %q: the emulator is not running", c.Name)
	}
	if _, ok := e.runners[c.Name]; ok {
		return fmt.Errorf("client %q: name: already in use", c.Name)
	}
	r := newRunner(newGenerator(c, e.opts.Seed), e.clientCounter(c.Name))
	e.runners[c.Name] = r
	r.start(e, e.opts.Tick)
	e.log.Info("client added", "client", c.Name, "namespace", c.Namespace, "host", c.Host, "rps", c.RPS)
	return nil
}

// RemoveClient stops a client's traffic and waits for its goroutine. Its
// counts remain available.
func (e *Emulator) RemoveClient(name string) {
	e.mu.Lock()
	r := e.runners[name]
	delete(e.runners, name)
	e.mu.Unlock()
	if r != nil {
		r.stop()
		e.log.Info("client removed", "client", name)
	}
}

// Route routes one request now, synchronously, and counts it like generated
// traffic: in metrics, in Served, in ClientCounts(req.Client) and for
// observers. req.SourceNamespace resolves short hosts as a client's
// Namespace does; before Start no host is known and every request gets
// 503 NC. Random choices come from a stream derived from Options.Seed, so a
// sequence of Route calls is reproducible.
func (e *Emulator) Route(req Request) Response {
	normalizeRequest(&req)
	rng := rand.New(rand.NewPCG(e.opts.Seed, mix64(e.routeSeq.Add(1))))
	src := peerSourceLabels(newPeerLabels(cmp.Or(req.Client, unknown), cmp.Or(req.SourceNamespace, unknown), "", req.SourceLabels))
	var client *counter
	if req.Client != "" {
		client = e.clientCounter(req.Client)
	}
	out := e.serve(&req, rng, &src, client)
	return out.resp
}

// serve is the hot path shared by Route and the traffic generators.
func (e *Emulator) serve(req *Request, rng *rand.Rand, src *sourceLabels, client *counter) routed {
	out := e.table.Load().route(req, rng)
	e.account(req, src, &out, client, e.observers.Load())
	return out
}

// account counts a routed request from src in the counters, the metrics
// and for observers, then what it led to: a comparator's requests, and its
// mirrored copies. client is nil for a copy: the client neither waits for
// it nor sees it.
func (e *Emulator) account(req *Request, src *sourceLabels, out *routed, client *counter, obs *[]observer) {
	isError := out.resp.isError(req.Protocol)
	if client != nil {
		client.add(isError)
	}
	if out.ep != nil {
		e.servedCounter(out.ep.pod.rev).add(isError)
		countConfigUses(out.ep.pod)
		if out.resp.Variant != "" {
			e.variantCounter(VariantKey{Revision: out.ep.pod.rev, Variant: out.resp.Variant}).add(isError)
		}
	}
	if out.resp.Mirrored {
		// The pod that answered a copy counts it (its proxy reports it).
		e.metrics.recordMirrored(src, req.Protocol, out)
	} else {
		e.metrics.record(src, req.Protocol, out)
	}
	if obs != nil {
		for _, o := range *obs {
			o.fn(*req, out.resp)
		}
	}
	e.accountComparison(out.compared, obs)
	for i := range out.shadows {
		s := &out.shadows[i]
		e.account(s.mirrored, src, s, nil, obs)
	}
}

func normalizeRequest(req *Request) {
	req.Path = cmp.Or(req.Path, defaultPath)
	req.Method = cmp.Or(req.Method, defaultMethod)
	if req.Protocol == "" {
		req.Protocol = HTTP
	}
	for name := range req.Headers {
		if name != strings.ToLower(name) {
			lower := make(map[string]string, len(req.Headers))
			for k, v := range req.Headers {
				lower[strings.ToLower(k)] = v
			}
			req.Headers = lower
			break
		}
	}
}

// Problems returns the problems found when the routing table now in use was
// built.
func (e *Emulator) Problems() []Problem {
	return slices.Clone(e.table.Load().problems)
}

// AppliedVersion returns the resourceVersion of the named VirtualService,
// DestinationRule, Service or Pod in the routing table now in use, "" if the
// table does not include it. A test that changed an object waits until this
// returns the version it wrote.
func (e *Emulator) AppliedVersion(kind, namespace, name string) string {
	return e.table.Load().versions[objectRef{lowerKind(kind), namespace, name}]
}

func lowerKind(kind string) string { return strings.ToLower(kind) }
