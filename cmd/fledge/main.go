// Command fledge is the progressive delivery engine: it watches opted-in
// Deployments and canaries every new revision through Istio, judged on
// Prometheus. This file only wires the pieces together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	clientmetrics "k8s.io/client-go/tools/metrics"
	"k8s.io/client-go/tools/record"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/analysis/promclient"
	"github.com/fledgehq/fledge/cmd/internal/buildinfo"
	"github.com/fledgehq/fledge/flags/flagd"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/api"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/client/clientset/versioned"
	fledgescheme "github.com/fledgehq/fledge/rollout/client/clientset/versioned/scheme"
	"github.com/fledgehq/fledge/rollout/engine"
	"github.com/fledgehq/fledge/traffic/istio"
	"github.com/fledgehq/fledge/webhooks/hookclient"
)

func main() {
	var o options
	o.register(flag.CommandLine)
	showVersion := flag.Bool("version", false, "print fledge's version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(buildinfo.Line("fledge"))
		return
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "fledge: -log-level:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// Flags that are wrong will not fix themselves: exit with 2, as for a
	// flag that does not parse, before contacting anything, naming the flag.
	prom, err := newPrometheus(o.prometheus, o.queryTimeout)
	if err == nil {
		_, err = namespacesOf(o.namespaces, o.allNamespaces)
	}
	if err != nil {
		log.Error("fledge cannot start: fix its flags", "err", err)
		os.Exit(2)
	}
	log.Info("prometheus", o.prometheus.logAttrs()...)
	if o.prometheus.insecureSkipVerify {
		log.Warn("Prometheus's certificate is not verified (--prometheus-insecure-skip-verify): anyone on the path can change the answers rollouts are judged on")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, prom, log); err != nil {
		log.Error("fledge stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, prom *promclient.Client, log *slog.Logger) error {
	namespaces, err := namespacesOf(o.namespaces, o.allNamespaces)
	if err != nil {
		return err
	}
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	reg := prometheus.NewRegistry()
	// fledge_build_info: which build runs, as Prometheus's own binaries say.
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), versioncollector.NewCollector("fledge"))
	metrics := engine.NewMetrics(reg)
	cfg.Wrap(metrics.CountKubeRequests) // fledge_kube_requests_total: what fledge asks of the API server
	// fledge_kube_client_throttle_seconds: time waiting for --kube-api-qps.
	clientmetrics.Register(clientmetrics.RegisterOpts{RateLimiterLatency: metrics.ThrottleLatency()})
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	fledge, err := versioned.NewForConfig(cfg)
	if err != nil {
		return err
	}
	istioClient, err := istioclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	policies, err := engine.LoadPolicyFile(o.policies)
	if err != nil {
		return err
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()

	query := analysis.QueryFunc(func(ctx context.Context, q string, at time.Time) (float64, error) {
		began := time.Now()
		v, err := prom.Query(ctx, q, at)
		metrics.CountQuery(time.Since(began), err)
		return v, err
	})
	// Hooks never call the API server: neither its in-cluster Service nor
	// the address fledge itself reaches it at.
	hooks := hookclient.New(hookclient.WithDeniedAddrs(hookclient.APIServerAddrs(os.Getenv, cfg.Host)...))
	dispatch := &engine.Dispatcher{Client: hooks, Secrets: &engine.Secrets{Kube: kube, Namespace: o.secretsNamespace}}
	runner := &engine.Runner{Call: dispatch.Call, Deliver: dispatch.Deliver, Log: log, Metrics: metrics}
	defer runner.Stop()
	// Flag gates are read from ConfigMaps in fledge's own namespace,
	// through a cache of that namespace alone.
	ownNS := informers.NewSharedInformerFactoryWithOptions(kube, 10*time.Minute, informers.WithNamespace(o.secretsNamespace))
	gates := flagd.NewConfigMapGates(o.secretsNamespace, ownNS.Core().V1().ConfigMaps().Lister(), 0)
	ownNS.Start(ctx.Done())
	defer gates.Close(context.Background())
	var backend *api.Engine
	onFlight := func(event string, f *v1alpha1.Flight, d *appsv1.Deployment) {
		if backend != nil {
			backend.OnFlight(event, f, d)
		}
	}
	// Every write first asks whether this replica still surely holds the
	// Lease: renewed within the renew deadline by its own clock. A leader
	// stopped (SIGSTOP, a VM pause) or cut off from the API server past
	// that may have been replaced already: it writes nothing more, and
	// exits once the elector sees the Lease lost.
	var elector atomic.Pointer[leaderelection.LeaderElector]
	fence := func() error {
		if !o.leaderElect {
			return nil
		}
		le := elector.Load()
		if le == nil || !le.IsLeader() {
			return errors.New("not the leader")
		}
		if err := le.Check(o.renewDeadline - o.leaseDuration); err != nil {
			return fmt.Errorf("the Lease was last renewed more than %s ago (renew deadline): it may be another replica's now", o.renewDeadline)
		}
		return nil
	}
	ctrl := engine.NewController(engine.ControllerConfig{
		Fence: fence,
		Kube:  kube, Fledge: fledge, Router: istio.New(istioClient, istio.WithCache(ctx.Done())), Policies: policies, Runner: runner, OnFlight: onFlight, Gates: gates,
		Recorder: broadcaster.NewRecorder(eventScheme(), corev1.EventSource{Component: "fledge"}),
		Logger:   log, Metrics: metrics, Namespaces: namespaces, NamespaceRetry: o.namespaceRetry,
		Analyze:          concurrentAnalysis(query, o.analysisConcurrency),
		ReconcileTimeout: o.reconcileTimeout,
		ComparatorImage:  o.comparatorImage,
	})
	go policies.Watch(ctx, o.policyPoll, func(err error) {
		metrics.PolicyReloaded(err) // fledge_policy_last_reload_successful: alert FledgePolicyReloadRejected
		if err != nil {
			log.Error("policy file rejected", "err", err)
			return
		}
		log.Info("policies reloaded", "file", o.policies)
		ctrl.EnqueueAll()
	})

	for typ, ok := range ownNS.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("cache of %v in %s did not sync", typ, o.secretsNamespace)
		}
	}

	// --release-all only gives Deployments back: it neither routes new
	// canaries nor analyses, and its result is its exit code.
	var checks []precondition
	if !o.releaseAll {
		served, err := discoveryFor(cfg)
		if err != nil {
			return err
		}
		checks = []precondition{istioServed(served), prometheusAnswers(prom.Ping)}
	}
	pre := newPreconditions(reg, log, o.preconditionRetry, checks...)
	go pre.run(ctx)
	health := leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)
	serve(ctx, log, o.metricsAddr, "/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	serve(ctx, log, o.healthAddr, "/", healthHandler(health, pre.notReady, ctrl.HasSynced))
	serve(ctx, log, o.pprofAddr, "/debug/pprof/", profiler())
	// Nothing acts (no informers of Deployments, no Lease taken, no API)
	// until Istio's API is served; Prometheus only holds readiness back.
	if !pre.wait(ctx) {
		return nil // stopped while waiting
	}

	backend = api.NewEngine(ctrl, kube)
	if err := ctrl.Start(ctx); err != nil {
		return err
	}
	if o.tlsCert != "" {
		if err := serveAPI(ctx, log, o, kube, backend, reg); err != nil {
			return err
		}
	}
	act := func(ctx context.Context) error { return ctrl.Run(ctx, o.workers) }
	if o.releaseAll {
		act = ctrl.ReleaseAll
	}
	if !o.leaderElect {
		backend.SetLeader(true, o.identity)
		metrics.Leading(true)
		return act(ctx)
	}
	// This replica's pod says whether it leads (fledge.dev/leader), for the
	// API's Service; a "true" left by the pod's previous container goes
	// first. --release-all runs beside the engine and labels nothing.
	pod := podLabel{kube: kube, ns: os.Getenv("POD_NAMESPACE"), name: os.Getenv("POD_NAME"), log: log}
	if o.releaseAll {
		pod = podLabel{}
	}
	_ = pod.set(ctx, false)
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.leaseNamespace, o.leaseName,
		kube.CoreV1(), kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: o.identity})
	if err != nil {
		return err
	}
	var runErr error
	released := false
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: o.leaseDuration, RenewDeadline: o.renewDeadline, RetryPeriod: o.retryPeriod,
		ReleaseOnCancel: true, WatchDog: health, Name: o.leaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leading context.Context) {
				log.Info("leading", "identity", o.identity)
				backend.SetLeader(true, o.identity)
				metrics.Leading(true) // fledge_leader: alert FledgeNoLeader
				go func() { _ = pod.set(leading, true) }()
				runErr = act(leading)
				if o.releaseAll {
					released = true
					stop() // done: hand the Lease back and exit
				}
			},
			OnStoppedLeading: func() {
				log.Info("not leading", "identity", o.identity)
				backend.SetLeader(false, "")
				metrics.Leading(false)
				// Best effort, and bounded: the process exits after this.
				unlabel, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = pod.set(unlabel, false)
				cancel()
			},
			OnNewLeader: func(id string) {
				log.Info("leader", "identity", id)
				if id != o.identity {
					backend.SetLeader(false, id)
				}
			},
		},
	})
	if err != nil {
		return err
	}
	elector.Store(le)
	health.SetLeaderElection(le)
	le.Run(ctx)
	if released {
		return runErr
	}
	if runErr == nil && ctx.Err() == nil {
		// Leadership was lost, not handed back on shutdown: exit so that a
		// fresh process competes again with empty caches.
		runErr = errors.New("lost leadership")
	}
	return runErr
}

// serveAPI serves the gRPC API until ctx is done: TLS always, callers
// authenticated with TokenReview and authorized with SubjectAccessReview.
func serveAPI(ctx context.Context, log *slog.Logger, o options, kube kubernetes.Interface, backend *api.Engine, reg prometheus.Registerer) error {
	srv, err := api.NewServer(api.ServerConfig{
		Backend: backend, Auth: api.Config{Kube: kube, ClientCertificates: o.clientCA != "", Logger: log},
		CertFile: o.tlsCert, KeyFile: o.tlsKey, ClientCAFile: o.clientCA, Registerer: reg,
		Service: api.ServiceOptions{Logger: log, Version: buildinfo.Response()},
	})
	if err != nil {
		return fmt.Errorf("grpc api: %w", err)
	}
	l, err := net.Listen("tcp", o.apiAddr)
	if err != nil {
		return fmt.Errorf("grpc api: %w", err)
	}
	log.Info("grpc api serving", "addr", l.Addr().String())
	go func() {
		if err := srv.Serve(l); err != nil {
			log.Error("grpc api", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		// Watches never end by themselves: give calls a moment, then stop.
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			srv.Stop()
		}
	}()
	return nil
}

// namespacesOf reads --namespaces and --all-namespaces: exactly one says
// where fledge acts, so that no install acts cluster-wide by omission.
func namespacesOf(list string, all bool) ([]string, error) {
	var out []string
	for _, ns := range strings.Split(list, ",") {
		ns = strings.TrimSpace(ns)
		if ns == "" {
			continue
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("--namespaces: %s is not a namespace name: %s", rollout.Bounded(ns), strings.Join(errs, "; "))
		}
		out = append(out, ns)
	}
	switch {
	case all && len(out) > 0:
		return nil, errors.New("--namespaces and --all-namespaces: give one of them, not both")
	case all:
		return engine.AllNamespaces, nil
	case len(out) == 0:
		return nil, errors.New("say where fledge acts: --namespaces=shop,payments (each namespace with the RoleBinding of deploy/rbac-namespace.yaml), or --all-namespaces (with the ClusterRoleBinding of deploy/rbac-cluster.yaml)")
	}
	return out, nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", kubeconfig)
}

func serve(ctx context.Context, log *slog.Logger, addr, pattern string, h http.Handler) {
	if addr == "" || addr == "0" {
		return
	}
	mux := http.NewServeMux()
	mux.Handle(pattern, h)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "addr", addr, "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
}

// profiler serves Go's profiles under /debug/pprof/ (--pprof-addr).
func profiler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // heap, goroutine, allocs, ...
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile) // CPU
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// eventScheme knows the kinds fledge records Events about: Kubernetes' own
// and the Flight, whose typed objects arrive without their kind.
func eventScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(scheme.AddToScheme(s))
	utilruntime.Must(fledgescheme.AddToScheme(s))
	return s
}

// concurrentAnalysis evaluates a look's checks side by side, with at most
// limit queries in flight across every Flight: one slow check (or one
// slow Flight) no longer holds the others, and Prometheus sees a bounded
// load. Each query keeps its own timeout (--query-timeout); the checks
// come back in the metrics' order. A query two checks of the look share
// (the canary's request count, say) is asked once.
func concurrentAnalysis(q analysis.Querier, limit int) engine.Analyze {
	slots := make(chan struct{}, max(limit, 1))
	return func(ctx context.Context, ms []analysis.Metric, vars analysis.Vars, at time.Time) []analysis.Check {
		q := analysis.Once(q) // a query two checks share is asked once
		checks := make([]analysis.Check, len(ms))
		var wg sync.WaitGroup
		for i, m := range ms {
			wg.Go(func() {
				select {
				case slots <- struct{}{}:
					defer func() { <-slots }()
					checks[i] = analysis.Evaluate(ctx, q, m, vars, at)
				case <-ctx.Done():
					checks[i] = analysis.Check{Metric: m.Name, At: at, Outcome: analysis.Error,
						Message: fmt.Sprintf("%s: not measured: %v", m.Name, ctx.Err())}
				}
			})
		}
		wg.Wait()
		return checks
	}
}
