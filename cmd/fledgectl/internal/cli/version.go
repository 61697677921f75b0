package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/fledgehq/fledge/cmd/internal/buildinfo"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// versionCommand prints fledgectl's build and, where a server is set, the
// build of the fledge replica that answers, as `kubectl version` does.
func (a *app) versionCommand() *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print fledgectl's version and the fledge server's",
		Long: `Print fledgectl's version and, unless --client is given, the version of the
fledge replica that answers at --server (any authenticated caller may ask).
Without a server set, only fledgectl's own version is printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versions{Client: buildinfo.Response()}
			var serverErr error
			if !clientOnly {
				if firstOf(a.flags.server, a.getenv(EnvServer)) == "" {
					a.verbosef("server version not asked: no --server or $%s", EnvServer)
				} else {
					serverErr = a.call(cmd.Context(), func(ctx context.Context, c rolloutpb.RolloutsClient) error {
						var err error
						v.Server, err = c.Version(ctx, &rolloutpb.VersionRequest{})
						return err
					})
				}
			}
			if err := a.printVersions(v); err != nil {
				return err
			}
			return serverErr
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "print fledgectl's version only; ask no server")
	return cmd
}

// versions is what `fledgectl version` prints.
type versions struct {
	Client, Server *rolloutpb.VersionResponse
}

func (a *app) printVersions(v versions) error {
	if a.flags.output == formatText {
		fmt.Fprintf(a.streams.Out, "Client: %s\n", versionLine(v.Client))
		if v.Server != nil {
			fmt.Fprintf(a.streams.Out, "Server: %s\n", versionLine(v.Server))
		}
		return nil
	}
	out := map[string]json.RawMessage{}
	for name, r := range map[string]*rolloutpb.VersionResponse{"client": v.Client, "server": v.Server} {
		if r == nil {
			continue
		}
		b, err := protojson.Marshal(r)
		if err != nil {
			return err
		}
		out[name] = b
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if a.flags.output == formatYAML {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
		_, err = a.streams.Out.Write(b)
		return err
	}
	_, err = fmt.Fprintf(a.streams.Out, "%s\n", b)
	return err
}

// versionLine is one build on one line.
func versionLine(r *rolloutpb.VersionResponse) string {
	s := fmt.Sprintf("%s (revision %s, %s, %s", r.GetVersion(), orUnknown(r.GetRevision()), orUnknown(r.GetGoVersion()), orUnknown(r.GetPlatform()))
	if r.GetBuildDate() != "" {
		s += ", built " + r.GetBuildDate()
	}
	return s + ")"
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
