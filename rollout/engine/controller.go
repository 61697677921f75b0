package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/listers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/client/clientset/versioned"
	fledgeclient "github.com/fledgehq/fledge/rollout/client/clientset/versioned/typed/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// Analyze runs a policy's checks for one look-in. The controller calls it
// only when Decide asks for checks.
type Analyze func(ctx context.Context, metrics []analysis.Metric, vars analysis.Vars, at time.Time) []analysis.Check

// Policies returns the current policies (reloaded as the file changes).
type Policies interface {
	Get(name string) (*rollout.Policy, error)
}

// Controller reconciles opted-in Deployments into Flights. It is
// level-triggered: every look re-reads the world and decides from scratch;
// RequeueAfter brings it back when a step is due, without a goroutine per
// rollout.
type Controller struct {
	kube     kubernetes.Interface
	flights  fledgeclient.FlightsGetter
	router   traffic.Router
	analyze  Analyze
	policies Policies
	clock    clock.Clock
	log      *slog.Logger
	exec     *Executor
	metrics  *Metrics

	// scopes are the informer caches of the namespaces fledge acts in,
	// read through deployments, replicaSets, services and flightLister.
	scopes         *scopes
	namespaces     []string
	namespaceRetry time.Duration
	deployments    cached[*appsv1.Deployment]
	replicaSets    cached[*appsv1.ReplicaSet]
	services       cached[*corev1.Service]
	flightLister   cached[*v1alpha1.Flight]
	// reconcileTimeout bounds one reconcile (ControllerConfig).
	reconcileTimeout time.Duration
	queue            workqueue.TypedRateLimitingInterface[string]
	// adoptions is a lane of its own for take-overs (opted-in
	// Deployments without a Flight, or with one still Initializing; see
	// laneOf), with workers of its own: a Deployment opted in is taken
	// over (and paused) at once, not behind a queue full of looks at
	// Flights in flight (after a failover, every Flight is queued at
	// once). A key may sit in both queues; keys serializes its
	// reconciles.
	adoptions workqueue.TypedRateLimitingInterface[string]
	keys      keyLocks
	onFlight  func(event string, f *v1alpha1.Flight, d *appsv1.Deployment)

	gates GateEvaluator

	startOnce sync.Once
	startErr  error
	inbox     inbox
	conflicts routeConflicts
}

// ControllerConfig wires a Controller.
type ControllerConfig struct {
	Kube kubernetes.Interface
	// Fledge is the Flight API's typed clientset.
	Fledge   versioned.Interface
	Router   traffic.Router
	Analyze  Analyze
	Policies Policies
	Recorder record.EventRecorder // default: none (no Events)
	Clock    clock.Clock          // default: the real clock
	Logger   *slog.Logger         // default: slog.Default()
	Metrics  *Metrics             // default: unregistered metrics
	Resync   time.Duration
	// Namespaces are the namespaces the controller acts in (nil or
	// AllNamespaces: every namespace). It watches each one it may list
	// Deployments, ReplicaSets, Services and Flights in, and tries the
	// others again every 30 seconds, saying why it cannot act there yet
	// (the log, fledge_namespace_watched, Waiting).
	Namespaces []string
	// NamespaceRetry is how often a namespace the controller may not read
	// yet is tried again; default 30s.
	NamespaceRetry time.Duration
	// Runner makes hook calls and deliveries; its Wake is set to look at
	// the Flight again. Default: one whose calls all fail (no hooks).
	Runner *Runner
	// OnFlight, if set, is told of every Flight the cache adds, changes
	// or deletes (ADDED, MODIFIED, DELETED), with its Deployment if known:
	// the API's watch streams come from here.
	OnFlight func(event string, f *v1alpha1.Flight, d *appsv1.Deployment)
	// Gates evaluates flag gates; nil: every gate is unreadable (and
	// holds).
	Gates GateEvaluator
	// Fence, if set, is asked before every write (see Executor.Fence): a
	// replica that may have lost the leader Lease writes nothing.
	Fence func() error
	// ReconcileTimeout bounds one look at a Flight, API calls and queries
	// included: a stuck call fails the look (retried with backoff) instead
	// of holding a worker. Default DefaultReconcileTimeout.
	ReconcileTimeout time.Duration
	// ComparatorImage is the image of mirror stages' response comparators
	// (fledge-loadtester's mirror-compare mode); empty: a policy that
	// compares responses holds, saying so.
	ComparatorImage string
}

// DefaultReconcileTimeout is ControllerConfig.ReconcileTimeout's default:
// far more than a look takes (its queries have their own, shorter
// timeout), far less than a step.
const DefaultReconcileTimeout = time.Minute

// NewController builds a controller; Run starts it.
func NewController(cfg ControllerConfig) *Controller {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.ReconcileTimeout <= 0 {
		cfg.ReconcileTimeout = DefaultReconcileTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Recorder == nil {
		cfg.Recorder = &record.FakeRecorder{} // no Events
	}
	if cfg.NamespaceRetry <= 0 {
		cfg.NamespaceRetry = DefaultNamespaceRetry
	}
	if cfg.Resync == 0 {
		cfg.Resync = 10 * time.Minute
	}
	c := &Controller{
		kube: cfg.Kube, flights: cfg.Fledge.FledgeV1alpha1(), router: cfg.Router,
		namespaceRetry: cfg.NamespaceRetry, analyze: cfg.Analyze, policies: cfg.Policies, clock: cfg.Clock, log: cfg.Logger, metrics: cfg.Metrics, onFlight: cfg.OnFlight, gates: cfg.Gates, reconcileTimeout: cfg.ReconcileTimeout,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(retries(),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "flights", MetricsProvider: cfg.Metrics.latency}),
		adoptions: workqueue.NewTypedRateLimitingQueueWithConfig(retries(),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "adoptions", MetricsProvider: cfg.Metrics.latency}),
	}
	if cfg.Runner == nil {
		cfg.Runner = &Runner{
			Call: func(context.Context, rollout.CallHook) rollout.CallResult {
				return rollout.CallResult{State: v1alpha1.CallError, Message: "this fledge has no webhook client configured"}
			},
			Deliver: func(context.Context, rollout.Deliver) (bool, error) {
				return false, errors.New("this fledge has no notification sender configured")
			},
		}
	}
	cfg.Runner.Wake = func(key string) { c.queue.Add(key) }
	c.exec = &Executor{Kube: cfg.Kube, Flights: c.flights, Router: cfg.Router, Recorder: cfg.Recorder, Runner: cfg.Runner, Counter: cfg.Metrics.countWrite, Fence: cfg.Fence, ComparatorImage: cfg.ComparatorImage}
	c.namespaces = slices.Compact(slices.Sorted(slices.Values(cfg.Namespaces)))
	if len(c.namespaces) == 0 || slices.Contains(c.namespaces, metav1.NamespaceAll) {
		c.namespaces = AllNamespaces
	}
	c.scopes = &scopes{
		kube: cfg.Kube, fledge: cfg.Fledge, resync: cfg.Resync,
		onDeployment: c.recovering("deployments", cache.ResourceEventHandlerFuncs{
			AddFunc:    c.onDeployment,
			UpdateFunc: func(old, cur any) { c.onDeployment(old); c.onDeployment(cur) },
			DeleteFunc: c.onDeployment,
		}),
		onReplicaSet: c.replicaSetHandler(),
		onAutoscaler: c.recovering("horizontalpodautoscalers", cache.ResourceEventHandlerFuncs{
			AddFunc:    c.onAutoscaler,
			UpdateFunc: func(old, cur any) { c.onAutoscaler(old); c.onAutoscaler(cur) },
			DeleteFunc: c.onAutoscaler,
		}),
		onConfig: c.recovering("config", cache.ResourceEventHandlerFuncs{
			AddFunc:    c.onConfig,
			UpdateFunc: func(_, cur any) { c.onConfig(cur) },
			DeleteFunc: c.onConfig,
		}),
		onFlight: c.recovering("flights", cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { c.enqueueObject(obj); c.publish("ADDED", obj) },
			UpdateFunc: func(_, cur any) { c.enqueueObject(cur); c.publish("MODIFIED", cur) },
			DeleteFunc: func(obj any) { c.enqueueObject(obj); c.publish("DELETED", obj) },
		}),
		byNamespace: map[string]*scope{}, waiting: map[string]string{},
	}
	c.deployments = cached[*appsv1.Deployment]{c.scopes, appsv1.Resource("deployments"), func(s *scope) listers.ResourceIndexer[*appsv1.Deployment] { return s.deployments }}
	c.replicaSets = cached[*appsv1.ReplicaSet]{c.scopes, appsv1.Resource("replicasets"), func(s *scope) listers.ResourceIndexer[*appsv1.ReplicaSet] { return s.replicaSets }}
	c.services = cached[*corev1.Service]{c.scopes, corev1.Resource("services"), func(s *scope) listers.ResourceIndexer[*corev1.Service] { return s.services }}
	c.flightLister = cached[*v1alpha1.Flight]{c.scopes, v1alpha1.FlightResource.GroupResource(), func(s *scope) listers.ResourceIndexer[*v1alpha1.Flight] { return s.flightList }}
	c.exec.PodsOf = c.deploymentPods
	c.exec.Cached = &CachedReads{
		Deployment: func(ns, name string) (*appsv1.Deployment, error) { return c.deployments.In(ns).Get(name) },
		Service:    func(ns, name string) (*corev1.Service, error) { return c.services.In(ns).Get(name) },
	}
	return c
}

// A failed look is retried after retryBase, doubling with each failure of
// the same Flight up to retryMax: a Flight is never left unlooked-at longer.
const (
	retryBase = 5 * time.Millisecond
	retryMax  = time.Minute
)

// retries is the queues' rate limiter: per Flight only. client-go's
// default adds an overall limit of 10 failed looks a second (bursts of
// 100) shared by every Flight: after a failure common to many (an API
// server restarting, a burst of rollouts), thousands of Flights would wait
// minutes for their turn, each in a line of the others. The API server is
// protected by the client's own limit (--kube-api-qps) instead.
func retries() workqueue.TypedRateLimiter[string] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[string](retryBase, retryMax)
}

// recovering wraps an informer's handlers so that a panic in one (a bug,
// or one in OnFlight) is logged with its stack and contained: client-go
// runs handlers under utilruntime.HandleCrash, which would end the process,
// and every other Flight's rollout with it. The event is lost; the
// informer's resync delivers the object again.
func (c *Controller) recovering(informer string, h cache.ResourceEventHandlerFuncs) cache.ResourceEventHandlerFuncs {
	guard := func(event string, obj any) {
		if p := recover(); p != nil {
			key, _ := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
			c.log.Error("informer event handler panicked", "informer", informer, "event", event, "object", key, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { defer guard("add", obj); h.AddFunc(obj) },
		UpdateFunc: func(old, cur any) { defer guard("update", cur); h.UpdateFunc(old, cur) },
		DeleteFunc: func(obj any) { defer guard("delete", obj); h.DeleteFunc(obj) },
	}
}

// publish tells OnFlight of a cache change.
func (c *Controller) publish(event string, obj any) {
	if c.onFlight == nil {
		return
	}
	f, ok := object[*v1alpha1.Flight](obj)
	if !ok {
		return
	}
	d, _ := c.deployments.In(f.Namespace).Get(f.Name)
	c.onFlight(event, f.DeepCopy(), d) // a copy: the cache is never mutated
}

// Run starts the informers (if Start has not) and the workers, and
// blocks until ctx is done.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	defer c.adoptions.ShutDown()
	if err := c.Start(ctx); err != nil {
		return err
	}
	c.log.Info("controller started", "workers", workers)
	for range workers {
		go wait.UntilWithContext(ctx, func(ctx context.Context) {
			for c.next(ctx, c.queue) {
			}
		}, time.Second)
		go wait.UntilWithContext(ctx, func(ctx context.Context) {
			for c.next(ctx, c.adoptions) {
			}
		}, time.Second)
	}
	<-ctx.Done()
	c.scopes.shutdown()
	return nil
}

// safeReconcile turns a panic (a bug) into an error, so the Flight is
// retried with backoff instead of being dropped from the queue, and the
// other Flights are not affected.
func (c *Controller) safeReconcile(ctx context.Context, key string) (after time.Duration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in reconcile: %v\n%s", r, debug.Stack())
		}
	}()
	if c.reconcileTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.reconcileTimeout)
		defer cancel()
	}
	after, err = c.reconcile(ctx, key)
	if err != nil && ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("look at %s took longer than %s: %w", key, c.reconcileTimeout, err)
	}
	return after, err
}

// reconcile looks at one Flight: reads the world, decides, applies.
func (c *Controller) reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil // not ours to retry
	}
	if err := c.exec.fenced(); err != nil {
		return 0, err // nothing read, decided or written (the Flight, its spec, its finalizer)
	}
	d, err := c.deployments.In(ns).Get(name)
	if apierrors.IsNotFound(err) {
		d = nil
	} else if err != nil {
		return 0, err
	}
	flight, err := c.getFlight(ns, name)
	if err != nil {
		return 0, err
	}
	optedIn := d != nil && d.DeletionTimestamp == nil && d.Annotations[rollout.AnnotationRollout] != ""
	if !optedIn && flight == nil {
		c.metrics.forget(ns, name)
		c.exec.own.forget(key)
		c.exec.pauses.forget(key)
		return 0, nil
	}
	if !optedIn || flight != nil && flight.DeletionTimestamp != nil {
		// Opted out, Deployment deleted, or the Flight deleted (which
		// resets it: released now, adopted afresh if still opted in, and
		// kept paused meanwhile).
		return c.release(ctx, flight, d, optedIn)
	}
	return c.fly(ctx, d, flight)
}

// getFlight reads Flight ns/name from the cache, or, while the cache does
// not show this replica's last write of it yet, as written: as created
// moments ago (so the look after a take-over's first needs no GET to find
// it), or as its status was last written (so a look does not decide again
// from the status before).
func (c *Controller) getFlight(ns, name string) (*v1alpha1.Flight, error) {
	key := ns + "/" + name
	f, err := c.flightLister.In(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return c.exec.own.created(key, c.clock.Now()), nil
	}
	if err != nil {
		return nil, err
	}
	if mine := c.exec.own.newer(key, f); mine != nil {
		return mine, nil
	}
	return f.DeepCopy(), nil // a copy: the cache is never mutated
}

// fly runs one decision for an opted-in Deployment.
func (c *Controller) fly(ctx context.Context, d *appsv1.Deployment, f *v1alpha1.Flight) (time.Duration, error) {
	log := c.log.With("flight", d.Namespace+"/"+d.Name)
	spec, policy, invalid := c.resolve(d, f)
	if f == nil {
		var err error
		if f, err = c.createFlight(ctx, d, spec); err != nil {
			return 0, err
		}
	}
	if policy == nil {
		// Nothing valid to judge under (a Deployment never taken over, or
		// its policy gone from the file): bad input changes nothing but
		// the Flight's condition (and an Event, once per distinct
		// message).
		return 0, c.reportInvalid(ctx, d, f, invalid)
	}
	// Otherwise a bad field is refused and reported, and the rollout goes
	// on under the last valid settings: bad input never switches off
	// judgement (or rollback).
	if f.Spec != spec {
		// The annotations changed the routing target or the policy: record
		// it (spec is fledge's to write, people only read it).
		var err error
		if f, err = c.updateSpec(ctx, f, spec); err != nil {
			return 0, err
		}
	}
	target := targetOf(f)
	in := rollout.Input{Now: c.clock.Now(), Policy: policy, Status: f.Status, Observed: c.observe(ctx, d, target, &f.Status, policy)}
	if in.RoutingError == "" {
		// Routing that reads back fine but that fledge cannot write (a
		// team's route it may not change that way) is a routing error
		// too, or the decision would re-assert it at every look.
		in.RoutingError = c.conflicts.get(d.Namespace+"/"+d.Name, in.Now)
	}
	in.RoutingWriteFailed = c.conflicts.writeFailed(d.Namespace + "/" + d.Name)
	in.Namespace, in.Name, in.UID = f.Namespace, f.Name, string(f.UID)
	in.Calls, in.Delivered = c.exec.Runner.Outcomes(&f.Status)
	in.FlagDocs = c.observeFlags(ctx, d.Namespace, policy, &f.Status)
	in.FlagsInUse = c.flagsInUse(f, policy)
	in.Gates = c.evaluateGates(ctx, d, policy, &f.Status)
	var fromAPI *pendingAction
	if kind, reason, err := rollout.ParseAction(d.Annotations); err != nil {
		invalid = errors.Join(invalid, err) // no action taken; the rollout goes on
	} else if kind != "" {
		in.Action = &rollout.ActionRequest{Kind: kind, By: "annotation", Reason: reason}
	} else if fromAPI = c.inbox.peek(d.Namespace + "/" + d.Name); fromAPI != nil {
		req := fromAPI.req
		in.Action = &req
	}
	began := c.clock.Now()
	dec := rollout.Decide(in)
	if dec.NeedChecks {
		metrics := dec.Measure
		vars := analysisVars(d, target.Host, &f.Status, &dec.Status)
		in.Checks = c.analyze(ctx, metrics, vars, in.Now)
		c.metrics.checked(d.Namespace, d.Name, metrics, in.Checks)
		dec = rollout.Decide(in)
		if dec.NeedChecks {
			// Analyze answers every metric it is given, by name: it did not.
			return 0, fmt.Errorf("analysis answered %d checks for %d metrics, not one for each: deciding again", len(in.Checks), len(metrics))
		}
	}
	c.metrics.decided(c.clock.Since(began))
	c.noteInvalid(d, f, invalid)
	dec.Status.Conditions = setValid(dec.Status.Conditions, invalid, in.Now)
	if settingUp(f, &dec, c.exec.own.createdAt(d.Namespace+"/"+d.Name), in.Now) {
		// Its actions are applied, its status not written: see settingUp.
		dec.Status = f.Status
	}
	if fromAPI == nil && evidenceOnly(&f.Status, &dec, in.Now, min(LookWriteEvery, 3*policy.LookInterval)) {
		// Nothing to write yet: see evidenceOnly. The next look counts
		// from the counters last written, so nothing is lost.
		c.metrics.observe(&v1alpha1.Flight{ObjectMeta: f.ObjectMeta, Status: dec.Status}, policy)
		return dec.RequeueAfter, nil
	}
	s := Subject{Flight: f, Deployment: d, Stable: c.stableService(d.Namespace, target.Stable), Target: targetOf(f, &dec.Status),
		StableDirect: policy.NeedsStableService(), PreviewHost: previewHost(&dec.Status)}
	if old := previewHost(&f.Status); old != "" && old != s.PreviewHost {
		// A new plan without that preview host: the old one goes.
		s.StalePreviewHost = old
	}
	written, err := c.exec.Apply(ctx, s, dec)
	c.conflicts.record(d.Namespace+"/"+d.Name, dec.Actions, err, in.Now)
	if written != nil {
		c.metrics.observe(written, policy)
	}
	// One line per decision; looks that change nothing only at debug level.
	// (Deliver and CallHook are asked again on every look while pending;
	// the runner logs their outcomes.)
	level := slog.LevelDebug
	for _, a := range dec.Actions {
		switch a.(type) {
		case rollout.Deliver, rollout.CallHook:
		default:
			level = slog.LevelInfo
		}
	}
	if err != nil {
		// Not "decided": its status was not written, or not all of its
		// actions applied (a fenced replica's decisions among them); the
		// next look decides again from what is stored.
		log.Log(ctx, level, "decision not applied", "phase", dec.Status.Phase, "step", dec.Status.Step, "weight", dec.Status.CanaryWeight,
			"actions", actionNames(dec.Actions), "err", err)
		return 0, err
	}
	log.Log(ctx, level, "decided", "phase", dec.Status.Phase, "step", dec.Status.Step, "weight", dec.Status.CanaryWeight,
		"actions", actionNames(dec.Actions), "requeue", dec.RequeueAfter, "message", dec.Status.Message)
	if fromAPI != nil && dec.Action != nil {
		// Taken (or refused) and written: answer the caller, and look
		// again at once for the next request. (A decision that did not
		// get to actions, while the routing is broken say, leaves it
		// queued for a later one.)
		c.inbox.done(d.Namespace+"/"+d.Name, fromAPI, actResult{flight: written, outcome: dec.Action})
		return time.Millisecond, nil
	}
	return dec.RequeueAfter, nil
}

func (c *Controller) createFlight(ctx context.Context, d *appsv1.Deployment, spec v1alpha1.FlightSpec) (*v1alpha1.Flight, error) {
	f := &v1alpha1.Flight{
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name, Namespace: d.Namespace,
			Labels:          map[string]string{LabelManagedBy: managedBy},
			Finalizers:      []string{FinalizerRelease},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
		},
		Spec: spec,
	}
	out, err := c.flights.Flights(d.Namespace).Create(ctx, f, metav1.CreateOptions{})
	if err == nil {
		c.exec.own.wrote(out, c.clock.Now())
	}
	if apierrors.IsAlreadyExists(err) {
		// Created by an earlier look the cache does not show yet: that
		// one, if it is this Deployment's.
		if cur, getErr := c.flights.Flights(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{}); getErr == nil && metav1.IsControlledBy(cur, d) {
			return cur, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("flight %s/%s: create: %w", d.Namespace, d.Name, err)
	}
	return out, nil
}

func (c *Controller) updateSpec(ctx context.Context, f *v1alpha1.Flight, spec v1alpha1.FlightSpec) (*v1alpha1.Flight, error) {
	next := *f
	next.Spec = spec
	out, err := c.flights.Flights(f.Namespace).Update(ctx, &next, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("flight %s/%s: update spec: %w", f.Namespace, f.Name, err)
	}
	c.exec.own.wrote(out, time.Time{})
	return out, nil
}

// EnqueueAll looks at every Flight again, after the policies changed.
func (c *Controller) EnqueueAll() {
	list, err := c.flightLister.List(labels.Everything())
	if err != nil {
		return
	}
	for _, obj := range list {
		c.enqueueObject(obj)
	}
	deps, _ := c.deployments.List(labels.Everything())
	for _, d := range deps {
		c.onDeployment(d)
	}
}

func actionNames(actions []rollout.Action) []string {
	names := make([]string, len(actions))
	for i, a := range actions {
		names[i] = a.String()
	}
	return names
}
