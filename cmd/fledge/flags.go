package main

import (
	"flag"
	"os"
	"time"

	"github.com/prometheus/common/version"

	"github.com/fledgehq/fledge/cmd/internal/buildinfo"
	"github.com/fledgehq/fledge/rollout/engine"
)

// options are the engine's flags; their help texts are the reference for
// whoever deploys fledge (deploy/fledge.yaml, the Helm chart).
type options struct {
	kubeconfig, policies, metricsAddr, healthAddr           string
	pprofAddr                                               string
	prometheus                                              prometheusFlags
	leaderElect                                             bool
	leaseNamespace, leaseName, identity                     string
	leaseDuration, renewDeadline, retryPeriod, queryTimeout time.Duration
	preconditionRetry                                       time.Duration
	workers                                                 int
	namespaces                                              string
	allNamespaces                                           bool
	namespaceRetry                                          time.Duration
	qps                                                     float64
	burst                                                   int
	policyPoll                                              time.Duration
	logLevel                                                string
	secretsNamespace                                        string
	releaseAll                                              bool
	comparatorImage                                         string
	analysisConcurrency                                     int
	reconcileTimeout                                        time.Duration
	apiAddr, tlsCert, tlsKey, clientCA                      string
}

// register defines the engine's flags on fs: main's command line, or a
// test's own set.
func (o *options) register(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	fs.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file; empty: in-cluster configuration")
	fs.StringVar(&o.policies, "policies", "/etc/fledge/policies.yaml", "rollout policy file (reloaded when it changes)")
	o.prometheus.register(fs)
	fs.DurationVar(&o.queryTimeout, "query-timeout", 10*time.Second, "timeout of one Prometheus query")
	fs.DurationVar(&o.preconditionRetry, "precondition-retry", defaultPreconditionRetry, "how often fledge checks again that Istio's CRDs are served (networking.istio.io/v1 VirtualService) and that Prometheus answers a query: without Istio's API it acts on nothing, and /readyz fails until each has held once; once started, a check that fails again is logged and shown by fledge_precondition_ok, and fledge keeps running")
	fs.StringVar(&o.metricsAddr, "metrics-addr", ":8080", "address of fledge's own /metrics")
	fs.StringVar(&o.healthAddr, "health-addr", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&o.pprofAddr, "pprof-addr", "", "address of Go's profiler, /debug/pprof/ (heap, CPU, goroutines), to see where memory and time go; empty: not served. Unauthenticated: bind it to localhost (127.0.0.1:6060) and reach it with kubectl port-forward")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "elect a leader with a Lease so several replicas can run, one acting")
	fs.StringVar(&o.leaseNamespace, "leader-election-namespace", envOr("POD_NAMESPACE", "fledge-system"), "namespace of the Lease")
	fs.StringVar(&o.leaseName, "leader-election-id", "fledge", "name of the Lease")
	fs.StringVar(&o.identity, "identity", envOr("POD_NAME", host), "this replica's name in the Lease")
	fs.DurationVar(&o.leaseDuration, "lease-duration", 15*time.Second, "how long a leader's Lease holds without renewal")
	fs.DurationVar(&o.renewDeadline, "renew-deadline", 10*time.Second, "how long the leader retries renewing before it gives up")
	fs.DurationVar(&o.retryPeriod, "retry-period", 2*time.Second, "how often candidates try to acquire or renew")
	// Sized by make bench-scale: at (1000, 100) a look takes about two API
	// calls and most of its time waits on the API server, and 4 workers
	// behind a 50 QPS limit were both saturated (30 looks a second, 63
	// calls a second wanted).
	fs.IntVar(&o.workers, "workers", 16, "Flights reconciled in parallel (a look mostly waits on the API server and Prometheus), and as many take-overs again in a lane of their own; at 2,000 Flights on 2 shared cores, 64 was slower than 16 (make bench-scale ENGINE_FLAGS=--workers=64)")
	fs.StringVar(&o.namespaces, "namespaces", "", "the namespaces fledge acts in, comma-separated; each needs the RoleBinding of deploy/rbac-namespace.yaml (one of this and --all-namespaces is required)")
	fs.DurationVar(&o.namespaceRetry, "namespace-retry", engine.DefaultNamespaceRetry, "how often a namespace of --namespaces that fledge may not read yet (no RoleBinding) is tried again")
	fs.BoolVar(&o.allNamespaces, "all-namespaces", false, "act in every namespace; needs the ClusterRoleBinding of deploy/rbac-cluster.yaml")
	fs.Float64Var(&o.qps, "kube-api-qps", 150, "Kubernetes API requests per second (client-side limit): under 1 per look, about 7 per take-over; fledge_kube_client_throttle_seconds shows any wait")
	fs.IntVar(&o.burst, "kube-api-burst", 300, "Kubernetes API request burst (client-side limit)")
	fs.DurationVar(&o.policyPoll, "policy-poll", 2*time.Second, "how often the policy file is checked for changes")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.apiAddr, "api-addr", ":9443", "address of the gRPC API (served when --tls-cert-file is set)")
	fs.StringVar(&o.tlsCert, "tls-cert-file", "", "the API's TLS certificate (PEM); empty: no API")
	fs.StringVar(&o.tlsKey, "tls-key-file", "", "the API's TLS key (PEM)")
	fs.StringVar(&o.clientCA, "client-ca-file", "", "CAs of client certificates the API accepts (mTLS; optional)")
	fs.StringVar(&o.secretsNamespace, "secrets-namespace", envOr("POD_NAMESPACE", "fledge-system"), "namespace of the Secrets policies name (webhook signing key, Slack)")
	fs.IntVar(&o.analysisConcurrency, "analysis-concurrency", 16, "checks measured at once, across every Flight (a look's checks run side by side; each query keeps --query-timeout)")
	fs.DurationVar(&o.reconcileTimeout, "reconcile-timeout", engine.DefaultReconcileTimeout, "longest one look at a Flight may take, API calls and queries included (then it fails and is retried)")
	fs.StringVar(&o.comparatorImage, "mirror-compare-image", "ghcr.io/fledgehq/fledge-loadtester:"+imageTag(),
		"image of the response comparator fledge starts for a mirror stage that compares responses (policy mirror.compareResponses): fledge-loadtester, run in its mirror-compare mode")
	fs.BoolVar(&o.releaseAll, "release-all", false, "give every opted-in Deployment back (plain routing, canary deleted, unpaused, Flights gone) and exit: run it before uninstalling fledge (it takes the leader Lease first, so no engine acts meanwhile)")
}

// imageTag is the tag of this release's images: its version, or "latest"
// for a build outside a release.
func imageTag() string {
	if v := version.Version; v != "" && v != buildinfo.Devel {
		return v
	}
	return "latest"
}
