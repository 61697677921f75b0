package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/fledgehq/fledge/cmd/internal/buildinfo"
)

// Streams are a command's standard streams.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// Default timeouts, when --timeout is not given.
const (
	defaultCallTimeout = 30 * time.Second
	defaultWaitTimeout = 30 * time.Minute
)

// app is one invocation of fledgectl.
type app struct {
	streams Streams
	getenv  func(string) string
	flags   globalFlags
	onces
	// Retries of calls that fledge could not serve (not the leader,
	// unreachable): how long to wait between them. Tests shorten it.
	backoff backoff
	now     func() time.Time
	// naming is how fledgectl calls itself: "kubectl fledge" when run as
	// the kubectl plugin kubectl-fledge.
	naming naming
	// handshakes tells a certificate fledgectl will not accept from a
	// connection that broke.
	handshakes handshakes
}

// backoff is a doubling delay between attempts.
type backoff struct {
	initial, max time.Duration
	// attempts bounds the retries of a mutating call, and of a watch that
	// was never established; a watch that was is resumed until --timeout.
	attempts int
}

var defaultBackoff = backoff{initial: 500 * time.Millisecond, max: 5 * time.Second, attempts: 5}

// Run runs fledgectl with args and returns its exit code. getenv reads
// the environment (os.Getenv).
func Run(ctx context.Context, args []string, streams Streams, getenv func(string) string) int {
	return RunAs(ctx, programName, args, streams, getenv)
}

// RunAs is Run for a program invoked as argv0 (os.Args[0]): run as
// kubectl-fledge, a kubectl plugin, it calls itself "kubectl fledge".
func RunAs(ctx context.Context, argv0 string, args []string, streams Streams, getenv func(string) string) int {
	a := &app{streams: streams, getenv: getenv, backoff: defaultBackoff, now: time.Now, naming: namingOf(argv0)}
	return a.run(ctx, args)
}

func (a *app) run(ctx context.Context, args []string) int {
	cmd := a.command()
	cmd.SetArgs(args)
	cmd.SetIn(a.streams.In)
	cmd.SetOut(a.streams.Out)
	cmd.SetErr(a.streams.Err)
	err := a.explain(cmd.ExecuteContext(ctx))
	if err != nil {
		fmt.Fprintf(a.streams.Err, "%s: %v\n", a.naming.display, err)
	}
	return exitCode(err)
}

func (a *app) command() *cobra.Command {
	if a.naming == (naming{}) {
		a.naming = namingOf(programName)
	}
	root := &cobra.Command{
		Use:   programName,
		Short: "Drive and watch fledge's rollouts",
		Long: `fledgectl drives and watches the rollouts of Deployments opted in to fledge
(annotation fledge.dev/rollout), through fledge's gRPC API.

Where it connects and as whom, first found wins:
  server:     --server, then $` + EnvServer + `. Required: fledge's gRPC address
              (host:port), which a kubeconfig cannot give.
  token:      --token, --token-file, then $` + EnvToken + `, then the kubeconfig
              context's user's, as kubectl gets it: a token, a token file, an
              exec plugin (EKS, GKE, OIDC) or an auth provider. Or a client
              certificate (--cert-file, --key-file) where fledge trusts them.
  namespace:  -n, then $` + EnvNamespace + `, then the kubeconfig context's, then "default".
The kubeconfig is --kubeconfig, then $KUBECONFIG, then ~/.kube/config; its
context --context, then the current one.

Mutating commands (promote, abort, pause, resume, retry, set-image) send a
request id, --request-id or one made up per invocation: a call retried with
the same id is not applied twice. fledgectl retries them by itself, with the
same id, while fledge is unavailable (not the leader, restarting).

lint checks policy files and Deployments' fledge.dev/ annotations offline.
Shell completion: see completion --help. As a kubectl plugin: install (copy
or link) this binary as kubectl-fledge on PATH, then run kubectl fledge.

` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return validFormat(a.flags.output)
		},
	}
	f := root.PersistentFlags()
	f.StringVarP(&a.flags.namespace, "namespace", "n", "", "namespace of the Deployment (default: $"+EnvNamespace+", the kubeconfig context's, or \"default\")")
	f.StringVarP(&a.flags.output, "output", "o", formatText, "output format: text, json or yaml")
	f.StringVar(&a.flags.server, "server", "", "fledge's gRPC address, host:port (default: $"+EnvServer+")")
	f.StringVar(&a.flags.token, "token", "", "bearer token (default: $"+EnvToken+", or the kubeconfig user's)")
	f.StringVar(&a.flags.tokenFile, "token-file", "", "file holding the bearer token")
	f.StringVar(&a.flags.caFile, "ca-file", "", "PEM file of the CAs that sign fledge's certificate (default: the system's)")
	f.StringVar(&a.flags.serverName, "tls-server-name", "", "name to verify fledge's certificate against (default: the host of --server)")
	f.BoolVar(&a.flags.insecure, "insecure-skip-tls-verify", false, "do not verify fledge's certificate: the token then goes to whoever answers")
	f.StringVar(&a.flags.certFile, "cert-file", "", "client certificate for mutual TLS (PEM)")
	f.StringVar(&a.flags.keyFile, "key-file", "", "key of --cert-file (PEM)")
	f.StringVar(&a.flags.requestID, "request-id", "", "request id of a mutating call, reused by its retries (default: a random one, shown with -v)")
	f.StringVar(&a.flags.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&a.flags.context, "context", "", "kubeconfig context (default: the current one)")
	f.DurationVar(&a.flags.timeout, "timeout", 0, "how long the command may take (default 30s; wait 30m; watch until interrupted)")
	f.BoolVarP(&a.flags.verbose, "verbose", "v", false, "say more on stderr (request ids, reconnections)")

	// --version prints the build on one line, as fledge --version does;
	// `version` also asks the server.
	root.Version = buildinfo.Line("fledgectl")
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(
		a.statusCommand(), a.listCommand(), a.watchCommand(), a.waitCommand(), a.explainCommand(),
		a.promoteCommand(), a.abortCommand(), a.pauseCommand(), a.resumeCommand(), a.retryCommand(),
		a.setImageCommand(), a.versionCommand(), a.lintCommand(),
	)
	a.addCompletions(root)
	a.naming.apply(root)
	return root
}

// verbosef prints to stderr with -v.
func (a *app) verbosef(format string, args ...any) {
	if a.flags.verbose {
		fmt.Fprintf(a.streams.Err, format+"\n", args...)
	}
}

// withTimeout bounds a command by --timeout, or def if it is not given (0:
// no bound).
func (a *app) withTimeout(ctx context.Context, def time.Duration) (context.Context, context.CancelFunc) {
	d := a.flags.timeout
	if d <= 0 {
		d = def
	}
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
