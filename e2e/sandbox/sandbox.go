package sandbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fledgehq/fledge/rollout/client/clientset/versioned"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/slackd"
)

// Options configures a sandbox. The zero value is a good default.
type Options struct {
	// ToolsDir holds the binaries built by `make tools`; default
	// $FLEDGE_TOOLS_DIR, else bin/ at the repository root.
	ToolsDir string
	// Nodes is the number of fake kwok nodes (default 3).
	Nodes int
	// Logger receives progress lines; default discards.
	Logger *slog.Logger
	// MeshSeed makes the emulator's traffic reproducible.
	MeshSeed uint64
	// StartTimeout bounds the whole start (default 2 minutes).
	StartTimeout time.Duration
	// ScrapeInterval is Prometheus's, and its scrape timeout (default 1s,
	// so that a test sees a change of weights in a few seconds; a
	// production Prometheus scrapes every 15-30s).
	ScrapeInterval time.Duration
	// MeshShards splits the mesh's metrics into this many scrape
	// targets (default 1), and MeshTelemetry changes them as Istio's
	// Telemetry API can: what a cluster of thousands of workloads does to
	// keep its metrics scrapeable.
	MeshShards    int
	MeshTelemetry mesh.Telemetry
	// MeshDebounce and MeshDebounceMax are the mesh emulator's batching
	// of configuration changes (mesh.Options); default 50ms and 500ms.
	MeshDebounce, MeshDebounceMax time.Duration
	// Profiling serves the API server's /debug/pprof to its admin (off
	// by default, as in a hardened cluster): the scale bench profiles
	// where the API server's CPU goes in its burst.
	Profiling bool
	// ControllerSyncs is how many Deployments, and how many ReplicaSets,
	// kube-controller-manager syncs at once (its
	// --concurrent-deployment-syncs and --concurrent-replicaset-syncs);
	// default Kubernetes' 5. A platform may raise them for thousands of
	// Deployments (make bench-scale SYNCS=20 tries that).
	ControllerSyncs int
}

// Sandbox is a running local control plane with Prometheus and the mesh
// emulator. Start one with Start (or New in tests), then Stop it.
type Sandbox struct {
	// Dir is the sandbox's private temp directory; LogDir holds one log
	// file per component.
	Dir, LogDir string
	// Kubeconfig is the path of an admin kubeconfig for the API server.
	Kubeconfig string
	RESTConfig *rest.Config
	Kube       kubernetes.Interface
	Istio      istioclient.Interface
	Dynamic    dynamic.Interface
	// Fledge is the Flight API's typed clientset.
	Fledge versioned.Interface
	// PrometheusURL is the base URL of the real Prometheus, which scrapes
	// the mesh emulator every second.
	PrometheusURL string
	Mesh          *mesh.Emulator
	// MeshProxyURL is an HTTP proxy into the mesh, as the sidecar of the
	// workload "fledge-loadtester" in fledge-system: a process started
	// with HTTP_PROXY set to it sends its requests through the mesh
	// (routed, answered by the pods' behaviour, and in Istio's metrics).
	MeshProxyURL string
	// Slack is a Slack stand-in that records the messages it receives.
	Slack *slackd.Server
	// StartupTime is how long Start took, for the cold start figure.
	StartupTime time.Duration

	log   *slog.Logger
	tools *tools
	// scrape is Prometheus's scrape interval; meshShards the mesh's
	// scrape targets.
	scrape     time.Duration
	meshShards int
	profiling  bool
	// controllerSyncs is kube-controller-manager's concurrency per
	// controller (Options.ControllerSyncs).
	controllerSyncs int
	pki             *pki
	token           string
	ports           ports
	mu              sync.Mutex
	procs           []*process // in start order; stopped in reverse
	prometheus      *process
	meshProxy       *http.Server
	stopOnce        sync.Once
	stopErr         error
}

type ports struct{ etcdClient, etcdPeer, apiserver, kcm, scheduler, kwok, prometheus, mesh int }

// Start brings up the sandbox: Prometheus and etcd, kube-apiserver, then in
// parallel kube-controller-manager, kube-scheduler, kwok with Ready fake
// nodes, Istio's CRDs and the mesh emulator. On error everything
// already started is stopped, and the error says which log to read.
func Start(ctx context.Context, opts Options) (_ *Sandbox, err error) {
	began := time.Now()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	if opts.ScrapeInterval <= 0 {
		opts.ScrapeInterval = time.Second
	}
	opts.MeshShards = max(opts.MeshShards, 1)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	t, err := findTools(opts.ToolsDir)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "fledge-sandbox-")
	if err != nil {
		return nil, err
	}
	s := &Sandbox{Dir: dir, LogDir: filepath.Join(dir, "logs"), log: opts.Logger, tools: t, scrape: opts.ScrapeInterval, meshShards: opts.MeshShards, profiling: opts.Profiling, controllerSyncs: cmp.Or(opts.ControllerSyncs, 5)}
	if err := os.MkdirAll(s.LogDir, 0o755); err != nil {
		return nil, err
	}
	// Said first, so the logs can be found even if this process is killed
	// before it can report a failure.
	s.log.Info("sandbox starting", "dir", dir, "logs", s.LogDir)
	defer func() {
		if err != nil {
			stopErr := s.stop()
			err = fmt.Errorf("sandbox start: %w (component logs in %s)", errors.Join(err, stopErr), s.LogDir)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	if s.ports, err = freePorts(); err != nil {
		return nil, err
	}
	if s.pki, err = newPKI(filepath.Join(dir, "pki")); err != nil {
		return nil, err
	}
	s.token = randomToken()
	if err := s.writeKubeconfig(); err != nil {
		return nil, err
	}

	meshAddr := fmt.Sprintf("127.0.0.1:%d", s.ports.mesh)
	if err := s.launchPrometheus(meshAddr); err != nil {
		return nil, err
	}
	etcd, err := s.startEtcd()
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, etcd, fmt.Sprintf("http://127.0.0.1:%d/health", s.ports.etcdClient), nil, ""); err != nil {
		return nil, err
	}
	apiserver, err := s.startAPIServer()
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, apiserver, fmt.Sprintf("https://127.0.0.1:%d/readyz", s.ports.apiserver), trustCA(s.pki.CAData), s.token); err != nil {
		return nil, err
	}
	if err := s.makeClients(); err != nil {
		return nil, err
	}
	s.log.Info("api server ready", "after", time.Since(began).Round(time.Millisecond))

	// The rest are independent of each other: start them together.
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.startKubeComponents(ctx) })
	g.Go(func() error { return s.startKwok(ctx, opts.Nodes) })
	g.Go(func() error {
		if err := ApplyCRDs(ctx, s.Dynamic, s.tools.IstioCRDs); err != nil {
			return fmt.Errorf("istio CRDs: %w", err)
		}
		s.Mesh = mesh.New(s.Kube, s.Istio, mesh.Options{
			Logger: s.log.With("component", "mesh"), Seed: opts.MeshSeed, MetricsAddr: meshAddr,
			Shards: opts.MeshShards, Telemetry: opts.MeshTelemetry, Debounce: opts.MeshDebounce, DebounceMax: opts.MeshDebounceMax,
		})
		if err := s.Mesh.Start(ctx); err != nil {
			return fmt.Errorf("mesh emulator: %w", err)
		}
		return s.waitPrometheus(ctx)
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := s.startMeshProxy(); err != nil {
		return nil, err
	}
	if s.Slack, err = slackd.Start("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("slack receiver: %w", err)
	}
	s.StartupTime = time.Since(began)
	s.log.Info("sandbox ready", "startup", s.StartupTime.Round(time.Millisecond), "kubeconfig", s.Kubeconfig, "prometheus", s.PrometheusURL)
	return s, nil
}

func (s *Sandbox) startEtcd() (*process, error) {
	return s.launch("etcd", s.tools.Etcd,
		"--name=sandbox",
		"--data-dir="+filepath.Join(s.Dir, "etcd"),
		fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", s.ports.etcdClient),
		fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", s.ports.etcdClient),
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", s.ports.etcdPeer),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", s.ports.etcdPeer),
		fmt.Sprintf("--initial-cluster=sandbox=http://127.0.0.1:%d", s.ports.etcdPeer),
		// A throwaway store: durability buys nothing and fsync costs seconds.
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
}

func (s *Sandbox) startAPIServer() (*process, error) {
	tokens := filepath.Join(s.Dir, "pki", "tokens.csv")
	// A static token in system:masters: the admin credential of the kubeconfig.
	if err := os.WriteFile(tokens, []byte(s.token+",sandbox-admin,sandbox-admin,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	return s.launch("kube-apiserver", s.tools.APIServer,
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", s.ports.etcdClient),
		fmt.Sprintf("--secure-port=%d", s.ports.apiserver),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--tls-cert-file="+s.pki.ServingCert,
		"--tls-private-key-file="+s.pki.ServingKey,
		"--client-ca-file="+s.pki.CAFile,
		"--token-auth-file="+tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+s.pki.SAKey,
		"--service-account-signing-key-file="+s.pki.SAKey,
		// Room for thousands of Services (the scale probe's apps, a canary
		// Service each): a /24 holds about 250.
		"--service-cluster-ip-range=10.0.0.0/16",
		// No ServiceAccount admission: pods need no token volume and no
		// token controller. No TaintNodesByCondition: without the node
		// lifecycle controller the not-ready taint it adds is never lifted.
		"--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
		// The apiserver cannot publish a loopback address as the endpoint of
		// the kubernetes Service; nothing here needs it.
		"--endpoint-reconciler-type=none",
		"--cert-dir="+filepath.Join(s.Dir, "apiserver"),
		fmt.Sprintf("--profiling=%t", s.profiling),
	)
}

// startKubeComponents runs kube-controller-manager (only the controllers a
// Deployment rollout needs, and the autoscaler's) and kube-scheduler, and waits for both to be
// healthy.
func (s *Sandbox) startKubeComponents(ctx context.Context) error {
	common := []string{
		"--kubeconfig=" + s.Kubeconfig,
		"--authentication-kubeconfig=" + s.Kubeconfig,
		"--authorization-kubeconfig=" + s.Kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--kube-api-qps=100",
		"--kube-api-burst=200",
	}
	kcm, err := s.launch("kube-controller-manager", s.tools.ControllerManager, append(common,
		// The horizontal-pod-autoscaler controller is the real one, with no
		// metrics API behind it: it enforces its autoscalers' minReplicas
		// and maxReplicas through the /scale subresource (and reports that
		// it cannot read metrics), so a test scales an app as an
		// autoscaler would by changing those bounds.
		"--controllers=deployment-controller,replicaset-controller,garbage-collector-controller,namespace-controller,resourcequota-controller,horizontal-pod-autoscaler-controller",
		"--horizontal-pod-autoscaler-sync-period=1s",
		fmt.Sprintf("--concurrent-deployment-syncs=%d", s.controllerSyncs),
		fmt.Sprintf("--concurrent-replicaset-syncs=%d", s.controllerSyncs),
		fmt.Sprintf("--secure-port=%d", s.ports.kcm),
		"--cert-dir="+filepath.Join(s.Dir, "kube-controller-manager"),
	)...)
	if err != nil {
		return err
	}
	sched, err := s.launch("kube-scheduler", s.tools.Scheduler, append(common,
		fmt.Sprintf("--secure-port=%d", s.ports.scheduler),
		"--cert-dir="+filepath.Join(s.Dir, "kube-scheduler"),
	)...)
	if err != nil {
		return err
	}
	// Their serving certificates are self-signed; /healthz is open to anyone.
	if err := waitHTTP(ctx, kcm, fmt.Sprintf("https://127.0.0.1:%d/healthz", s.ports.kcm), insecure, ""); err != nil {
		return err
	}
	return waitHTTP(ctx, sched, fmt.Sprintf("https://127.0.0.1:%d/healthz", s.ports.scheduler), insecure, "")
}

func (s *Sandbox) makeClients() error {
	cfg := &rest.Config{
		Host:            fmt.Sprintf("https://127.0.0.1:%d", s.ports.apiserver),
		BearerToken:     s.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: s.pki.CAData},
		QPS:             100,
		Burst:           200,
	}
	var err error
	s.RESTConfig = cfg
	if s.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if s.Istio, err = istioclient.NewForConfig(cfg); err != nil {
		return err
	}
	if s.Fledge, err = versioned.NewForConfig(cfg); err != nil {
		return err
	}
	s.Dynamic, err = dynamic.NewForConfig(cfg)
	return err
}

func (s *Sandbox) writeKubeconfig() error {
	s.Kubeconfig = filepath.Join(s.Dir, "kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["sandbox"] = &clientcmdapi.Cluster{
		Server:                   fmt.Sprintf("https://127.0.0.1:%d", s.ports.apiserver),
		CertificateAuthorityData: s.pki.CAData,
	}
	cfg.AuthInfos["sandbox-admin"] = &clientcmdapi.AuthInfo{Token: s.token}
	cfg.Contexts["sandbox"] = &clientcmdapi.Context{Cluster: "sandbox", AuthInfo: "sandbox-admin", Namespace: "default"}
	cfg.CurrentContext = "sandbox"
	return clientcmd.WriteToFile(*cfg, s.Kubeconfig)
}

// launch starts a component and records it for Stop.
func (s *Sandbox) launch(name, binary string, args ...string) (*process, error) {
	return s.launchEnv(name, nil, binary, args...)
}

func (s *Sandbox) launchEnv(name string, env []string, binary string, args ...string) (*process, error) {
	p, err := startProcess(name, s.LogDir, env, binary, args...)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	s.log.Debug("started", "component", name, "pid", p.cmd.Process.Pid, "log", p.logPath)
	return p, nil
}

// forget removes a process from those Stop will stop, for components that
// are stopped on their own.
func (s *Sandbox) forget(p *process) *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, q := range s.procs {
		if q == p {
			s.procs = append(s.procs[:i], s.procs[i+1:]...)
			break
		}
	}
	return p
}

// Stop stops the mesh emulator and every process the sandbox started, in
// reverse order, and removes the sandbox directory unless keepLogs is
// set (keep them when a test failed: the error and Dir say where).
// It returns an error if any process outlived its kill.
func (s *Sandbox) Stop(keepLogs bool) error {
	s.stopOnce.Do(func() {
		s.stopErr = s.stop()
		if !keepLogs && s.stopErr == nil {
			if err := os.RemoveAll(s.Dir); err != nil {
				s.stopErr = err
			}
		}
	})
	return s.stopErr
}

func (s *Sandbox) stop() error {
	if s.meshProxy != nil {
		_ = s.meshProxy.Close()
	}
	if s.Slack != nil {
		_ = s.Slack.Close()
	}
	if s.Mesh != nil {
		s.Mesh.Stop()
	}
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].stop(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// startMeshProxy serves the mesh emulator's proxy on a free port.
func (s *Sandbox) startMeshProxy() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("mesh proxy: %w", err)
	}
	s.meshProxy = &http.Server{Handler: s.Mesh.ProxyHandler("fledge-loadtester", "fledge-system"), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.meshProxy.Serve(l) }()
	s.MeshProxyURL = "http://" + l.Addr().String()
	return nil
}

// LogTails returns the last lines of every component's log, for printing
// when a test fails.
func (s *Sandbox) LogTails(lines int) string {
	entries, err := os.ReadDir(s.LogDir)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range entries {
		p := filepath.Join(s.LogDir, e.Name())
		fmt.Fprintf(&b, "--- %s\n%s\n", p, tail(p, lines))
	}
	return b.String()
}

// freePorts reserves distinct free loopback ports by holding every listener
// open until all are chosen.
func freePorts() (ports, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	next := func() (int, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		ls = append(ls, l)
		_, port, _ := net.SplitHostPort(l.Addr().String())
		return strconv.Atoi(port)
	}
	var p ports
	for _, dst := range []*int{&p.etcdClient, &p.etcdPeer, &p.apiserver, &p.kcm, &p.scheduler, &p.kwok, &p.prometheus, &p.mesh} {
		n, err := next()
		if err != nil {
			return p, err
		}
		*dst = n
	}
	return p, nil
}
