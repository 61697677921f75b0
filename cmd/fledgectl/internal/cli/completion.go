package cli

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// Shell completion is cobra's: `fledgectl completion bash|zsh|fish|powershell`
// prints the script, which calls `fledgectl __complete ...` as the user
// types. What cobra cannot know is added here: the Flight names a NAME
// argument takes (asked of fledge, as kubectl completes resource names)
// and the values of -o.

// flightCommands take a Flight's NAME as their first argument.
var flightCommands = []string{"status", "explain", "watch", "wait", "promote", "abort", "pause", "resume", "retry", "set-image"}

// completionTimeout bounds the List a completion makes: a shell waits
// for it at every Tab.
const completionTimeout = 5 * time.Second

func (a *app) addCompletions(root *cobra.Command) {
	for _, c := range root.Commands() {
		if slices.Contains(flightCommands, c.Name()) {
			c.ValidArgsFunction = a.completeFlights
		}
	}
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{formatText, formatJSON, formatYAML}, cobra.ShellCompDirectiveNoFileComp))
}

// completeFlights offers the names of the namespace's Flights. When
// fledge cannot be asked (no server, no token), it offers nothing rather
// than file names.
func (a *app) completeFlights(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ns, err := a.namespace()
	if err != nil {
		cobra.CompDebugln(err.Error(), false)
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	var names []cobra.Completion
	err = a.call(ctx, func(ctx context.Context, c rolloutpb.RolloutsClient) error {
		resp, err := c.List(ctx, &rolloutpb.ListRequest{Namespace: ns})
		for _, f := range resp.GetFlights() {
			if strings.HasPrefix(f.GetName(), toComplete) {
				names = append(names, f.GetName())
			}
		}
		return err
	})
	if err != nil {
		cobra.CompDebugln(a.explain(err).Error(), false)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
