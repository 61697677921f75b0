package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

func (a *app) watchCommand() *cobra.Command {
	var selector string
	cmd := &cobra.Command{
		Use:   "watch [NAME]",
		Short: "Follow one Flight, or those of a namespace: one line per change",
		Long: `watch prints one line per change: the phase, the step, the canary weight as a
bar, why the Flight holds (if it does) and the checks of its last decision.
With -o json, one JSON object per event and line; with -o yaml, one document
per event. It reconnects by itself, resuming where it was, and runs until
interrupted (or --timeout).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := a.namespace()
			if err != nil {
				return err
			}
			req := &rolloutpb.WatchRequest{Namespace: ns, LabelSelector: selector}
			if len(args) == 1 {
				req.Name = args[0]
			}
			ctx, cancel := a.withTimeout(cmd.Context(), 0)
			defer cancel()
			err = a.follow(ctx, req, func(ev *rolloutpb.WatchEvent) (bool, error) {
				return false, a.printEvent(ev)
			})
			if errors.Is(err, context.DeadlineExceeded) && a.flags.timeout > 0 {
				return nil // watched for as long as asked
			}
			if errors.Is(err, context.Canceled) {
				return nil // interrupted
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector on the Deployments, without NAME")
	return cmd
}

func (a *app) printEvent(ev *rolloutpb.WatchEvent) error {
	switch ev.GetType() {
	case rolloutpb.WatchEvent_TYPE_ADDED, rolloutpb.WatchEvent_TYPE_MODIFIED, rolloutpb.WatchEvent_TYPE_DELETED:
	case rolloutpb.WatchEvent_TYPE_SYNCED:
		a.verbosef("synced at version %q", ev.GetResourceVersion())
		if a.flags.output == formatText {
			return nil
		}
	default:
		return nil
	}
	if a.flags.output != formatText {
		return printMessage(a.streams.Out, a.flags.output, ev, true)
	}
	_, err := fmt.Fprintln(a.streams.Out, watchLine(a.now(), ev))
	return err
}

// follow watches until handle says it is done, handle or a permanent
// error fails, or ctx ends. A broken stream is resumed from the last
// version seen. Until a stream delivers, fledge is given
// backoff.attempts tries; once one has, it is resumed until ctx ends. If
// ctx ends while fledge cannot be reached, the error says so
// (ExitUnavailable) rather than that time ran out.
func (a *app) follow(ctx context.Context, req *rolloutpb.WatchRequest, handle func(*rolloutpb.WatchEvent) (bool, error)) error {
	conn, err := a.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	client := rolloutpb.NewRolloutsClient(conn)
	var (
		everDelivered bool
		delivered     bool  // since the last failure
		failure       error // the failure being retried; nil while a stream delivers
	)
	delay := a.backoff.initial
	for attempt := 1; ; attempt++ {
		handled, err := a.stream(ctx, client, req, handle, &delivered)
		if delivered {
			everDelivered, failure, attempt, delay = true, nil, 1, a.backoff.initial
			delivered = false
		}
		switch {
		case err == nil, handled:
			return err // done, or handle's own error
		case ctx.Err() != nil, status.Code(err) == codes.DeadlineExceeded:
			// The server may see the deadline (sent along) pass first.
			return a.ended(ctx, failure)
		case !retriable(err), !everDelivered && attempt >= a.backoff.attempts:
			return err
		}
		if refusal := a.tlsRefusal(err); refusal != nil {
			return exitWith(ExitError, refusal) // no retry mends a certificate
		}
		failure = err
		a.verbosef("watch: %v; resuming from version %q in %s", err, req.GetResourceVersion(), delay)
		if sleep(ctx, delay) != nil {
			return a.ended(ctx, failure)
		}
		delay = min(2*delay, a.backoff.max)
	}
}

// ended is the error of a watch whose context ended.
func (a *app) ended(ctx context.Context, failure error) error {
	if failure != nil && status.Code(failure) == codes.Unavailable {
		return exitWith(ExitUnavailable, fmt.Errorf("time ran out: %w", a.explain(failure)))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return context.DeadlineExceeded
}

// stream runs one Watch call, keeping req's resource version at the last
// one received so that the next call resumes there. handled says that the
// stream ended because handle was done or failed.
func (a *app) stream(ctx context.Context, client rolloutpb.RolloutsClient, req *rolloutpb.WatchRequest, handle func(*rolloutpb.WatchEvent) (bool, error), delivered *bool) (handled bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := client.Watch(ctx, req)
	if err != nil {
		return false, err
	}
	for {
		ev, err := s.Recv()
		if err != nil {
			return false, err
		}
		*delivered = true
		if rv := ev.GetResourceVersion(); rv != "" {
			req.ResourceVersion = rv
		}
		done, err := handle(ev)
		if err != nil || done {
			return true, err
		}
	}
}

// retriable: the stream broke, or fledge cut it or could not serve it
// for now.
func retriable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted, codes.Internal, codes.Unknown:
		return true
	}
	return false
}
