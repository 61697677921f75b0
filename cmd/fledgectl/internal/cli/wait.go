package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

func (a *app) waitCommand() *cobra.Command {
	var revision string
	cmd := &cobra.Command{
		Use:   "wait NAME [--revision R] [--timeout 30m]",
		Short: "Wait until the rollout is promoted or rolled back; the exit code says which",
		Long: `wait follows a Flight until its rollout ends, printing each change on stderr
(-o json|yaml: the final Flight on stdout), and exits with a code that says
how it ended.

With --revision R (as printed by set-image), it waits for that revision:
it succeeds only once R is promoted (or is already what the Deployment runs),
and a Succeeded of an older revision does not count, so it is safe to run
right after set-image, before fledge has seen the new template. R replaced by
a newer revision, or reverted, before it finished is an error (1).

Without --revision, it waits for whatever is in flight to end, and returns at
once if nothing is: 0 if the Flight is Succeeded or Idle, 2 if RolledBack,
3 if Aborted.

Broken connections are resumed until --timeout (default 30m).

` + exitCodesHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := a.namespace()
			if err != nil {
				return err
			}
			ctx, cancel := a.withTimeout(cmd.Context(), defaultWaitTimeout)
			defer cancel()
			w := &waiter{revision: revision}
			var last *rolloutpb.Flight
			err = a.follow(ctx, &rolloutpb.WatchRequest{Namespace: ns, Name: args[0]}, func(ev *rolloutpb.WatchEvent) (bool, error) {
				switch ev.GetType() {
				case rolloutpb.WatchEvent_TYPE_SYNCED:
					if last == nil {
						fmt.Fprintf(a.streams.Err, "%s/%s has no Flight (yet): waiting for the Deployment to be opted in\n", ns, args[0])
					}
					return false, nil
				case rolloutpb.WatchEvent_TYPE_DELETED:
					return true, exitWith(ExitError, fmt.Errorf("%s/%s: the Flight was deleted (the Deployment was deleted or opted out)", ns, args[0]))
				case rolloutpb.WatchEvent_TYPE_ADDED, rolloutpb.WatchEvent_TYPE_MODIFIED:
				default:
					return false, nil
				}
				last = ev.GetFlight()
				fmt.Fprintln(a.streams.Err, watchLine(a.now(), ev))
				done, code, msg := w.judge(last)
				if !done {
					return false, nil
				}
				if a.flags.output != formatText {
					if err := printMessage(a.streams.Out, a.flags.output, last, false); err != nil {
						return true, err
					}
				}
				if code == ExitOK {
					if a.flags.output == formatText {
						fmt.Fprintf(a.streams.Out, "%s/%s: %s\n", ns, args[0], msg)
					}
					return true, nil
				}
				return true, exitWith(code, fmt.Errorf("%s/%s: %s", ns, args[0], msg))
			})
			if errors.Is(err, context.DeadlineExceeded) {
				state := "no Flight"
				if last != nil {
					state = phase(last.GetPhase()) + ", " + progress(last)
				}
				return exitWith(ExitTimeout, fmt.Errorf("%s/%s: timed out waiting (%s)", ns, args[0], state))
			}
			return err
		},
	}
	cmd.Flags().StringVar(&revision, "revision", "", "wait for this revision (as set-image prints it) to be promoted")
	return cmd
}

// waiter decides, from each state of the Flight, whether the rollout
// waited for has ended and how.
type waiter struct {
	revision string
	// canaried: the revision was seen as the canary.
	canaried bool
}

// judge returns whether the wait is over, with its exit code and what to
// say.
func (w *waiter) judge(f *rolloutpb.Flight) (done bool, code int, msg string) {
	p := f.GetPhase()
	if w.revision == "" {
		switch p {
		case rolloutpb.Phase_PHASE_SUCCEEDED:
			return true, ExitOK, fmt.Sprintf("revision %s promoted", orDash(f.GetStableRevision()))
		case rolloutpb.Phase_PHASE_IDLE:
			return true, ExitOK, "nothing in flight"
		case rolloutpb.Phase_PHASE_ROLLED_BACK:
			return true, ExitRolledBack, fmt.Sprintf("revision %s rolled back: %s", orDash(f.GetCanaryRevision()), f.GetMessage())
		case rolloutpb.Phase_PHASE_ABORTED:
			return true, ExitAborted, fmt.Sprintf("revision %s aborted: %s", orDash(f.GetCanaryRevision()), abortReason(f))
		}
		return false, 0, ""
	}
	r := w.revision
	switch {
	case f.GetCanaryRevision() == r:
		w.canaried = true
		switch p {
		case rolloutpb.Phase_PHASE_SUCCEEDED:
			return true, ExitOK, fmt.Sprintf("revision %s promoted", r)
		case rolloutpb.Phase_PHASE_ROLLED_BACK:
			return true, ExitRolledBack, fmt.Sprintf("revision %s rolled back: %s", r, f.GetMessage())
		case rolloutpb.Phase_PHASE_ABORTED:
			return true, ExitAborted, fmt.Sprintf("revision %s aborted: %s", r, abortReason(f))
		case rolloutpb.Phase_PHASE_IDLE:
			return true, ExitError, fmt.Sprintf("revision %s was reverted before it finished: the Deployment's template went back to %s", r, orDash(f.GetStableRevision()))
		}
	case f.GetStableRevision() == r && p != rolloutpb.Phase_PHASE_PROMOTING:
		// What the Deployment runs: promoted earlier, or nothing to do.
		return true, ExitOK, fmt.Sprintf("revision %s is the stable revision", r)
	case f.GetRejectedRevision() == r:
		if p == rolloutpb.Phase_PHASE_ABORTED {
			return true, ExitAborted, fmt.Sprintf("revision %s aborted: %s", r, abortReason(f))
		}
		return true, ExitRolledBack, fmt.Sprintf("revision %s was rejected: %s", r, f.GetMessage())
	case w.canaried:
		return true, ExitError, fmt.Sprintf("revision %s was replaced by %s before it finished", r, orDash(f.GetCanaryRevision()))
	}
	return false, 0, ""
}

func abortReason(f *rolloutpb.Flight) string {
	if a := f.GetLastAction(); a.GetKind() == rolloutpb.ActionKind_ACTION_KIND_ABORT {
		return actionText(a)
	}
	return f.GetMessage()
}
