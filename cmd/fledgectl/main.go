// Command fledgectl drives and watches fledge's rollouts from a terminal
// or a CI pipeline, through fledge's gRPC API. This file only wires the
// command (internal/cli) to the process.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/fledgehq/fledge/cmd/fledgectl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.RunAs(ctx, os.Args[0], os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, os.Getenv)
	stop()
	os.Exit(code)
}
