package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// call runs one read with the default timeout.
func (a *app) call(ctx context.Context, fn func(context.Context, rolloutpb.RolloutsClient) error) error {
	ctx, cancel := a.withTimeout(ctx, defaultCallTimeout)
	defer cancel()
	conn, err := a.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	return fn(ctx, rolloutpb.NewRolloutsClient(conn))
}

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status NAME",
		Short: "Show a Deployment's Flight: phase, step, weight, revisions, hold, last decision",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := a.namespace()
			if err != nil {
				return err
			}
			return a.call(cmd.Context(), func(ctx context.Context, c rolloutpb.RolloutsClient) error {
				resp, err := c.Get(ctx, &rolloutpb.GetRequest{Namespace: ns, Name: args[0]})
				if err != nil {
					return err
				}
				if a.flags.output != formatText {
					return printMessage(a.streams.Out, a.flags.output, resp.GetFlight(), false)
				}
				return printStatus(a.streams.Out, resp.GetFlight())
			})
		},
	}
}

func (a *app) listCommand() *cobra.Command {
	var selector string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the Flights of a namespace",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns, err := a.namespace()
			if err != nil {
				return err
			}
			return a.call(cmd.Context(), func(ctx context.Context, c rolloutpb.RolloutsClient) error {
				all := &rolloutpb.ListResponse{}
				token := ""
				for {
					page, err := c.List(ctx, &rolloutpb.ListRequest{Namespace: ns, LabelSelector: selector, PageToken: token})
					if err != nil {
						return err
					}
					all.Flights = append(all.Flights, page.GetFlights()...)
					if all.ResourceVersion == "" {
						all.ResourceVersion = page.GetResourceVersion()
					}
					if token = page.GetNextPageToken(); token == "" {
						break
					}
				}
				if a.flags.output != formatText {
					return printMessage(a.streams.Out, a.flags.output, all, false)
				}
				return printList(a.streams.Out, all.GetFlights())
			})
		},
	}
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector on the Deployments (\"team=shop\")")
	return cmd
}

func (a *app) explainCommand() *cobra.Command {
	var revision string
	cmd := &cobra.Command{
		Use:   "explain NAME",
		Short: "Show a Flight's decision log: every check with its query, value, threshold, samples and outcome",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := a.namespace()
			if err != nil {
				return err
			}
			return a.call(cmd.Context(), func(ctx context.Context, c rolloutpb.RolloutsClient) error {
				resp, err := c.Explain(ctx, &rolloutpb.ExplainRequest{Namespace: ns, Name: args[0], Revision: revision})
				if err != nil {
					return err
				}
				if a.flags.output != formatText {
					return printMessage(a.streams.Out, a.flags.output, resp, false)
				}
				return printExplain(a.streams.Out, resp)
			})
		},
	}
	cmd.Flags().StringVar(&revision, "revision", "", "only the decisions about this revision")
	return cmd
}

// acted is what a mutating call answers.
type acted interface {
	proto.Message
	GetFlight() *rolloutpb.Flight
	GetReplayed() bool
}

// act runs a manual action and prints its answer.
func (a *app) act(ctx context.Context, what, name string, fn func(context.Context, rolloutpb.RolloutsClient, string, string) (acted, error)) error {
	resp, ns, err := a.mutate(ctx, what, fn)
	if err != nil {
		return err
	}
	return a.printActed(what, ns, name, resp)
}

// mutate runs a mutating call, retrying it with the same request id while
// fledge is unavailable. fn gets the namespace and the request id.
func (a *app) mutate(ctx context.Context, what string, fn func(context.Context, rolloutpb.RolloutsClient, string, string) (acted, error)) (acted, string, error) {
	ns, err := a.namespace()
	if err != nil {
		return nil, "", err
	}
	id := a.requestID()
	a.verbosef("request id: %s", id)
	ctx, cancel := a.withTimeout(ctx, defaultCallTimeout)
	defer cancel()
	delay := a.backoff.initial
	for attempt := 1; ; attempt++ {
		// A new connection per attempt: behind a Service, it may reach
		// another replica (the leader).
		conn, err := a.dial()
		if err != nil {
			return nil, "", err
		}
		resp, err := fn(ctx, rolloutpb.NewRolloutsClient(conn), ns, id)
		conn.Close()
		if err == nil {
			return resp, ns, nil
		}
		if status.Code(err) != codes.Unavailable || attempt >= a.backoff.attempts {
			return nil, "", err
		}
		if refusal := a.tlsRefusal(err); refusal != nil {
			return nil, "", exitWith(ExitError, refusal) // no retry mends a certificate
		}
		if leader, ok := notLeader(err); ok {
			a.verbosef("%s: this fledge replica is not the leader (the leader is %q); retrying in %s", what, leader, delay)
		} else {
			a.verbosef("%s: %v; retrying in %s", what, err, delay)
		}
		if sleep(ctx, delay) != nil {
			return nil, "", err // still unavailable when time ran out
		}
		delay = min(2*delay, a.backoff.max)
	}
}

// notLeader reads fledge's refusal of a replica that is not the leader
// (rollout/api: ErrorDomain, ReasonNotLeader).
func notLeader(err error) (string, bool) {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == "fledge.dev" && info.GetReason() == "NOT_LEADER" {
			return info.GetMetadata()["leader"], true
		}
	}
	return "", false
}

func (a *app) printActed(what, ns, name string, resp acted) error {
	if a.flags.output != formatText {
		return printMessage(a.streams.Out, a.flags.output, resp, false)
	}
	f := resp.GetFlight()
	fmt.Fprintf(a.streams.Out, "%s %s/%s: %s, %s\n", what, ns, name, phase(f.GetPhase()), progress(f))
	if resp.GetReplayed() {
		fmt.Fprintf(a.streams.Out, "(request id %s had been taken before: nothing was done again)\n", a.requestID())
	}
	return nil
}

// actionFlags are the flags every manual action has.
type actionFlags struct {
	reason, revision string
}

func (f *actionFlags) add(cmd *cobra.Command, reasonHelp string) {
	cmd.Flags().StringVar(&f.reason, "reason", "", reasonHelp)
	cmd.Flags().StringVar(&f.revision, "revision", "", "act only while this revision is the canary (the rejected one, for retry)")
}

func (a *app) promoteCommand() *cobra.Command {
	var af actionFlags
	var full bool
	cmd := &cobra.Command{
		Use:   "promote NAME",
		Short: "Pass the current step or gate; with --full, promote the canary now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.act(cmd.Context(), "promote", args[0], func(ctx context.Context, c rolloutpb.RolloutsClient, ns, id string) (acted, error) {
				return c.Promote(ctx, &rolloutpb.PromoteRequest{Namespace: ns, Name: args[0], RequestId: id, Reason: af.reason, Full: full, Revision: af.revision})
			})
		},
	}
	af.add(cmd, "why, recorded in the Flight and sent with notifications")
	cmd.Flags().BoolVar(&full, "full", false, "skip the remaining steps and promote the canary")
	return cmd
}

func (a *app) abortCommand() *cobra.Command {
	var af actionFlags
	cmd := &cobra.Command{
		Use:   "abort NAME --reason REASON",
		Short: "Roll the canary back now: all traffic to stable",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(af.reason) == "" {
				return errors.New("abort needs --reason: it is recorded and sent to the people watching the rollout")
			}
			return a.act(cmd.Context(), "abort", args[0], func(ctx context.Context, c rolloutpb.RolloutsClient, ns, id string) (acted, error) {
				return c.Abort(ctx, &rolloutpb.AbortRequest{Namespace: ns, Name: args[0], RequestId: id, Reason: af.reason, Revision: af.revision})
			})
		},
	}
	af.add(cmd, "why (required)")
	return cmd
}

func (a *app) pauseCommand() *cobra.Command {
	var af actionFlags
	cmd := &cobra.Command{
		Use:   "pause NAME",
		Short: "Hold the canary at its current weight until resume",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.act(cmd.Context(), "pause", args[0], func(ctx context.Context, c rolloutpb.RolloutsClient, ns, id string) (acted, error) {
				return c.Pause(ctx, &rolloutpb.PauseRequest{Namespace: ns, Name: args[0], RequestId: id, Reason: af.reason, Revision: af.revision})
			})
		},
	}
	af.add(cmd, "why")
	return cmd
}

func (a *app) resumeCommand() *cobra.Command {
	var af actionFlags
	cmd := &cobra.Command{
		Use:   "resume NAME",
		Short: "Continue a paused canary",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.act(cmd.Context(), "resume", args[0], func(ctx context.Context, c rolloutpb.RolloutsClient, ns, id string) (acted, error) {
				return c.Resume(ctx, &rolloutpb.ResumeRequest{Namespace: ns, Name: args[0], RequestId: id, Reason: af.reason, Revision: af.revision})
			})
		},
	}
	af.add(cmd, "why")
	return cmd
}

func (a *app) retryCommand() *cobra.Command {
	var af actionFlags
	cmd := &cobra.Command{
		Use:   "retry NAME",
		Short: "Canary a rolled back or aborted revision again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.act(cmd.Context(), "retry", args[0], func(ctx context.Context, c rolloutpb.RolloutsClient, ns, id string) (acted, error) {
				return c.Retry(ctx, &rolloutpb.RetryRequest{Namespace: ns, Name: args[0], RequestId: id, Reason: af.reason, Revision: af.revision})
			})
		},
	}
	af.add(cmd, "why")
	return cmd
}

func (a *app) setImageCommand() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "set-image NAME CONTAINER=IMAGE",
		Short: "Set a container's image: the new template is a revision fledge canaries",
		Long: `set-image sets a container's image in the Deployment's pod template, which
starts a rollout of the new revision. It prints that revision on stdout (and
the details on stderr), so that a pipeline can wait for it:

  rev=$(fledgectl set-image shop app=registry.example/shop:1.4.2)
  fledgectl wait shop --revision "$rev"`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			container, image, ok := strings.Cut(args[1], "=")
			if !ok || container == "" || image == "" {
				return fmt.Errorf("%q: want CONTAINER=IMAGE", args[1])
			}
			resp, ns, err := a.mutate(cmd.Context(), "set-image", func(ctx context.Context, c rolloutpb.RolloutsClient, ns, id string) (acted, error) {
				return c.SetImage(ctx, &rolloutpb.SetImageRequest{Namespace: ns, Name: args[0], RequestId: id, Reason: reason, Container: container, Image: image})
			})
			if err != nil {
				return err
			}
			r := resp.(*rolloutpb.SetImageResponse)
			if a.flags.output != formatText {
				return printMessage(a.streams.Out, a.flags.output, r, false)
			}
			switch {
			case r.GetReplayed():
				fmt.Fprintf(a.streams.Err, "%s/%s: request id %s had been taken before: nothing was done again; revision %s\n", ns, args[0], a.requestID(), r.GetRevision())
			case r.GetChanged():
				fmt.Fprintf(a.streams.Err, "%s/%s: container %s: %s (was %s); pending revision %s: %s wait %s --revision %s\n",
					ns, args[0], container, image, r.GetPreviousImage(), r.GetRevision(), a.naming.display, args[0], r.GetRevision())
			default:
				fmt.Fprintf(a.streams.Err, "%s/%s: container %s already runs %s: nothing changed; revision %s\n", ns, args[0], container, image, r.GetRevision())
			}
			fmt.Fprintln(a.streams.Out, r.GetRevision())
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the change")
	return cmd
}
