// Command demo is what `make demo` runs: it starts the sandbox, plays the
// demo scenario in it, and stops it.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fledgehq/fledge/e2e/demo"
	"github.com/fledgehq/fledge/e2e/sandbox"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) (err error) {
	began := time.Now()
	// The emulator warns, as istioctl analyze would, about the canary host
	// that exists only while a canary runs; the demo shows fledge's view.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	fmt.Println("starting the sandbox: etcd, kube-apiserver, controllers, kwok nodes, Istio CRDs, mesh emulator, Prometheus")
	sb, err := sandbox.Start(ctx, sandbox.Options{Logger: log})
	if err != nil {
		return err
	}
	fmt.Printf("sandbox ready in %.1fs (kubeconfig %s, Prometheus %s)\n\n", sb.StartupTime.Seconds(), sb.Kubeconfig, sb.PrometheusURL)
	// flagd's in-process provider (the emulator's apps read their flags
	// with it) logs to whatever os.Stderr is when it starts; keep that
	// among the sandbox's component logs, not in the demo's output.
	if f, ferr := os.Create(filepath.Join(sb.LogDir, "flagd.log")); ferr == nil {
		stderr := os.Stderr
		os.Stderr = f
		defer func() { os.Stderr = stderr; f.Close() }()
	}
	defer func() {
		if stopErr := sb.Stop(err != nil); stopErr != nil && err == nil {
			err = stopErr
		}
		if err != nil {
			err = fmt.Errorf("%w (component logs kept in %s)", err, sb.LogDir)
		}
	}()
	if err := demo.Run(ctx, os.Stdout, sb); err != nil {
		return err
	}
	fmt.Printf("\ndemo done in %.0fs; sandbox stopped and cleaned up\n", time.Since(began).Seconds())
	return nil
}
