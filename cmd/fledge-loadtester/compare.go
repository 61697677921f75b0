package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fledgehq/fledge/traffic/mirrorcmp"
)

// compareMode is the first argument that runs the response comparator of
// a mirror stage instead of the load tester: fledge starts it as
// "<name>-mirror" (rollout/engine.ComparatorDeployment), the mirror's
// destination. Each copy it receives it sends to --canary and to --stable
// and counts how the answers compare (see package traffic/mirrorcmp) in
// fledge_mirror_comparisons_total, labelled destination_workload=
// --workload and destination_workload_namespace=--namespace, as Istio
// names the canary: that is what fledge's response-diff check reads.
const compareMode = "mirror-compare"

type compareOptions struct {
	listen, metricsListen         string
	canary, stable                string
	workload, namespace, logLevel string
	sample                        float64
	maxBody                       int64
	maxInFlight                   int
	timeout                       time.Duration
}

// parseCompare reads the mirror-compare mode's flags.
func parseCompare(args []string) (compareOptions, error) {
	var o compareOptions
	fs := flag.NewFlagSet(compareMode, flag.ContinueOnError)
	fs.StringVar(&o.listen, "listen", ":8080", "address to receive the mirrored copies on")
	fs.StringVar(&o.metricsListen, "metrics-listen", ":9090", "address of /metrics and /healthz")
	fs.StringVar(&o.canary, "canary", "", "base URL of the canary alone (http://<name>-canary.<ns>.svc.cluster.local:<port>)")
	fs.StringVar(&o.stable, "stable", "", "base URL of stable alone (http://<name>-stable.<ns>.svc.cluster.local:<port>)")
	fs.StringVar(&o.workload, "workload", "", "the canary's workload, the destination_workload label of the counts")
	fs.StringVar(&o.namespace, "namespace", "", "the canary's namespace, the destination_workload_namespace label of the counts")
	fs.Float64Var(&o.sample, "sample", mirrorcmp.DefaultSample, "share of the copies compared (0 < sample <= 1); the rest are answered at once")
	fs.Int64Var(&o.maxBody, "max-body", mirrorcmp.DefaultMaxBody, "bytes of each body hashed; a longer body is compared by its first bytes and its length")
	fs.IntVar(&o.maxInFlight, "max-in-flight", mirrorcmp.DefaultMaxInFlight, "comparisons at once; copies beyond are dropped, never queued")
	fs.DurationVar(&o.timeout, "timeout", mirrorcmp.DefaultTimeout, "timeout of one call to either side, its body included")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var missing []error
	for name, v := range map[string]string{"canary": o.canary, "stable": o.stable, "workload": o.workload, "namespace": o.namespace} {
		if v == "" {
			missing = append(missing, fmt.Errorf("-%s: required", name))
		}
	}
	return o, errors.Join(missing...)
}

// runCompare serves the comparator until ctx ends.
func runCompare(ctx context.Context, o compareOptions, log *slog.Logger) error {
	canary, err := url.Parse(o.canary)
	if err != nil {
		return fmt.Errorf("-canary: %w", err)
	}
	stable, err := url.Parse(o.stable)
	if err != nil {
		return fmt.Errorf("-stable: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	labelled := prometheus.WrapRegistererWith(prometheus.Labels{"destination_workload": o.workload, "destination_workload_namespace": o.namespace}, reg)
	h, err := mirrorcmp.NewHandler(mirrorcmp.Options{
		Canary: canary, Stable: stable, MaxBody: o.maxBody, Sample: o.sample,
		MaxInFlight: o.maxInFlight, Timeout: o.timeout, Registerer: labelled,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	servers := []*http.Server{
		{Addr: o.listen, Handler: h, ReadHeaderTimeout: 10 * time.Second},
		{Addr: o.metricsListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second},
	}
	served := make(chan error, len(servers))
	for _, srv := range servers {
		ln, err := net.Listen("tcp", srv.Addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", srv.Addr, err)
		}
		go func() { served <- srv.Serve(ln) }()
	}
	// No body content is ever logged: only where the copies go.
	log.Info("comparing mirrored responses", "listen", o.listen, "metrics", o.metricsListen, "canary", canary.Redacted(), "stable", stable.Redacted(),
		"workload", o.namespace+"/"+o.workload, "sample", o.sample, "maxBody", o.maxBody, "maxInFlight", o.maxInFlight)
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	grace, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.Shutdown(grace)
	}
	return nil
}
