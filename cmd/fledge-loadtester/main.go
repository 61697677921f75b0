// Command fledge-loadtester answers fledge's rollout and pre-rollout hooks
// with load against the canary (see package webhooks/loadtest). This file
// only wires the pieces together.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fledgehq/fledge/cmd/internal/buildinfo"
	"github.com/fledgehq/fledge/webhooks/loadtest"
)

type options struct {
	listen, secretFile, logLevel string
	allow                        []string
	insecureNoSignature          bool
	maxRate, maxConcurrent       int
	maxInFlight                  int
	maxDuration, requestTimeout  time.Duration
	shutdownTimeout              time.Duration
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == compareMode {
		mainCompare(os.Args[2:])
		return
	}
	var o options
	flag.StringVar(&o.listen, "listen", ":8080", "address to serve hook calls and /healthz on")
	flag.Func("allow", "host pattern load may go to: an exact host or *.suffix (repeatable, or comma-separated), e.g. *.svc.cluster.local", func(v string) error {
		o.allow = append(o.allow, v)
		return nil
	})
	flag.StringVar(&o.secretFile, "secret-file", "", "file holding the hooks' HMAC secret, used byte for byte (or set "+loadtest.EnvSecret+")")
	flag.BoolVar(&o.insecureNoSignature, "insecure-no-signature", false, "accept unsigned calls; for local testing only: anyone who reaches the tester can then make it send load")
	flag.IntVar(&o.maxRate, "max-rate", loadtest.DefaultMaxRate, "highest rate (requests per second) a hook may ask for")
	flag.DurationVar(&o.maxDuration, "max-duration", loadtest.DefaultMaxDuration, "longest run a hook may ask for")
	flag.IntVar(&o.maxConcurrent, "max-concurrent", 8, "runs in progress at once; calls beyond are answered 503")
	flag.IntVar(&o.maxInFlight, "max-in-flight", 1000, "requests of one run awaiting an answer at once")
	flag.DurationVar(&o.requestTimeout, "request-timeout", 10*time.Second, "timeout of one request of a run")
	flag.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 25*time.Second, "on SIGTERM, how long runs in progress may go on before they are cut short")
	flag.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	showVersion := flag.Bool("version", false, "print the load tester's version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(buildinfo.Line("fledge-loadtester"))
		return
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "fledge-loadtester: -log-level:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		log.Error("fledge-loadtester stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	secret, err := loadtest.ReadSecret(o.secretFile, os.Getenv)
	if err != nil {
		return fmt.Errorf("-secret-file: %w", err)
	}
	if len(secret) == 0 && !o.insecureNoSignature {
		return fmt.Errorf("no signature secret: set -secret-file or %s (or -insecure-no-signature, for local testing only)", loadtest.EnvSecret)
	}
	lt, err := loadtest.New(loadtest.Options{
		Secret: secret, InsecureNoSignature: o.insecureNoSignature, Allow: o.allow,
		Limits:        loadtest.Limits{MaxRate: o.maxRate, MaxDuration: o.maxDuration},
		MaxConcurrent: o.maxConcurrent, MaxInFlight: o.maxInFlight, RequestTimeout: o.requestTimeout,
		Logger: log,
	})
	if err != nil {
		return err
	}
	if o.insecureNoSignature {
		log.Warn("accepting unsigned calls (-insecure-no-signature): for local testing only")
	}
	if bytes.HasSuffix(secret, []byte("\n")) {
		log.Warn("the secret ends with a newline, which is part of it: fledge must sign with the same bytes")
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	// No read or write timeout: a call waits for its whole run.
	srv := &http.Server{Handler: lt, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "allow", strings.Join(o.allow, ","),
		"maxRate", o.maxRate, "maxDuration", o.maxDuration.String(), "maxConcurrent", o.maxConcurrent,
		"httpProxySet", os.Getenv("HTTP_PROXY") != "" || os.Getenv("http_proxy") != "")

	select {
	case err := <-served:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", o.shutdownTimeout.String())
	grace, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	// New connections are refused at once; runs in progress get the grace
	// period, then are cut short and their callers answered 503.
	err = srv.Shutdown(grace)
	lt.Stop()
	if err != nil {
		final, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(final); err != nil {
			srv.Close()
		}
	}
	log.Info("stopped")
	return nil
}

// mainCompare runs the mirror-compare mode (compare.go).
func mainCompare(args []string) {
	o, err := parseCompare(args)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fledge-loadtester "+compareMode+":", err)
		os.Exit(2)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "fledge-loadtester "+compareMode+": -log-level:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runCompare(ctx, o, log); err != nil {
		log.Error("fledge-loadtester "+compareMode+" stopped", "err", err)
		os.Exit(1)
	}
}
