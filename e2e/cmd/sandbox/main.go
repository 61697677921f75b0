// Command sandbox starts the local test bed and keeps it running until
// interrupted, for developers who want to poke at it (`make sandbox`).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/fledgehq/fledge/e2e/sandbox"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sb, err := sandbox.Start(ctx, sandbox.Options{Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("sandbox ready in %.1fs\n  export KUBECONFIG=%s\n  prometheus: %s\n  mesh metrics: http://%s/metrics\n  logs: %s\nCtrl-C stops it.\n",
		sb.StartupTime.Seconds(), sb.Kubeconfig, sb.PrometheusURL, sb.Mesh.MetricsAddr(), sb.LogDir)
	<-ctx.Done()
	if err := sb.Stop(false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
