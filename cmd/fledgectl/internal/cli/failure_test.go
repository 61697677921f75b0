package cli

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fledgehq/fledge/rollout/api/apitest"
)

// What a user reads when fledge cannot be reached or refuses: one plain
// line that says what went wrong and what to check, never grpc's
// "rpc error: code = ... desc = ..."; and an exit code that says whether
// retrying may help (4, 5) or not (1). Each case runs against a real
// server on loopback: apitest's (fledge's own server and authorizer), or
// fakeFledge where the certificate or the answer must be unusual.
func TestFailuresAreOnePlainLineWithAnExitCodeThatSaysWhetherToRetry(t *testing.T) {
	h := newHarness(t)
	otherName := startFakeFledge(t, "fledge.other.example")
	denying := startFakeFledge(t, "127.0.0.1")
	denying.refuse(status.Error(codes.PermissionDenied, `user "ci" cannot get deployments.apps "shop" in namespace "prod"`))
	hanging := startFakeFledge(t, "127.0.0.1")
	hanging.hangUp()
	plaintext := serve(t, grpc.NewServer()) // gRPC without TLS
	closed := closedAddress(t)

	to := func(addr, caFile string, args ...string) []string {
		return append([]string{"--server", addr, "--ca-file", caFile, "--token", apitest.Token, "-n", "prod"}, args...)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string // in the line
	}{
		{
			name:     "a closed port is unreachable, and retrying may help",
			args:     to(closed, h.srv.CAFile, "status", "shop"),
			wantCode: ExitUnavailable,
			want:     []string{"cannot reach fledge at " + closed + " (connection refused)", "check --server"},
		},
		{
			name:     "a name that does not resolve is unreachable",
			args:     to("fledge.does-not-exist.invalid:443", h.srv.CAFile, "status", "shop"),
			wantCode: ExitUnavailable,
			want:     []string{"cannot reach fledge at fledge.does-not-exist.invalid:443 (its name does not resolve", "check --server"},
		},
		{
			name:     "a certificate for another name is refused, and retrying will not help",
			args:     to(otherName.Addr, otherName.CAFile, "status", "shop"),
			wantCode: ExitError,
			want:     []string{"TLS: fledge's certificate at " + otherName.Addr + " is for another name", "fledge.other.example", "--tls-server-name"},
		},
		{
			name:     "a certificate no trusted CA signed is refused",
			args:     []string{"--server", h.srv.Addr, "--token", apitest.Token, "-n", "prod", "status", "shop"},
			wantCode: ExitError,
			want:     []string{"TLS: fledge's certificate at " + h.srv.Addr + " is not signed by a CA fledgectl trusts", `issuer "apitest CA"`, "pass the CA that signed it with --ca-file"},
		},
		{
			name:     "a --ca-file of another CA is named",
			args:     to(h.srv.Addr, otherName.CAFile, "status", "shop"),
			wantCode: ExitError,
			want:     []string{"is not signed by a CA fledgectl trusts", "check that --ca-file " + otherName.CAFile + " holds the CA"},
		},
		{
			name:     "a server that does not speak TLS is refused",
			args:     to(plaintext, h.srv.CAFile, "status", "shop"),
			wantCode: ExitError,
			want:     []string{"TLS: what answers at " + plaintext + " does not speak TLS"},
		},
		{
			name:     "a token fledge does not know is refused, naming where it came from",
			args:     []string{"--server", h.srv.Addr, "--ca-file", h.srv.CAFile, "--token", "stolen", "-n", "prod", "status", "shop"},
			wantCode: ExitError,
			want:     []string{"fledge at " + h.srv.Addr + " refused the token from --token (invalid bearer token)", "unexpired token"},
		},
		{
			name:     "a call without a token says none was sent",
			args:     []string{"--server", h.srv.Addr, "--ca-file", h.srv.CAFile, "-n", "prod", "status", "shop"},
			wantCode: ExitError,
			want:     []string{"wants a token and none was sent", "no credentials", "pass --token"},
		},
		{
			name:     "a call the caller may not make is refused, with fledge's reason",
			args:     to(denying.Addr, denying.CAFile, "status", "shop"),
			wantCode: ExitError,
			want:     []string{"fledge at " + denying.Addr + " refused the call", `user "ci" cannot get deployments.apps "shop"`, "RBAC"},
		},
		{
			name:     "a server that does not answer in time is a timeout",
			args:     to(hanging.Addr, hanging.CAFile, "status", "shop", "--timeout", "200ms"),
			wantCode: ExitTimeout,
			want:     []string{"no answer from fledge at " + hanging.Addr + " in time", "--timeout"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.runRaw(t.Context(), nil, nil, tc.args...)
			line := strings.TrimSuffix(r.stderr, "\n")
			if r.code != tc.wantCode || strings.Contains(line, "\n") || r.stdout != "" {
				t.Errorf("exit %d, want %d; want one line on stderr and nothing on stdout:\nstderr:\n%s\nstdout:\n%s", r.code, tc.wantCode, r.stderr, r.stdout)
			}
			if !strings.HasPrefix(line, "fledgectl: ") || strings.Contains(line, "rpc error") || strings.Contains(line, "desc =") {
				t.Errorf("not a plain line: %s", line)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("the line does not say %q:\n%s", w, line)
				}
			}
		})
	}

	t.Run("--tls-server-name verifies the name the certificate holds", func(t *testing.T) {
		r := h.runRaw(t.Context(), nil, nil, to(otherName.Addr, otherName.CAFile, "--tls-server-name", "fledge.other.example", "status", "shop")...)
		if r.code != ExitOK || !strings.Contains(r.stdout, "Succeeded") {
			t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
		}
	})
}

// Retrying a call cannot mend a certificate: a mutating call and a watch,
// which retry while fledge is unavailable, stop at the first refusal.
func TestACertificateRefusalIsNotRetried(t *testing.T) {
	h := newHarness(t)
	for _, args := range [][]string{{"pause", "shop"}, {"watch", "shop"}, {"wait", "shop"}} {
		r := h.runRaw(t.Context(), nil, nil, append([]string{"--server", h.srv.Addr, "--token", apitest.Token, "-n", "prod", "-v"}, args...)...)
		if r.code != ExitError || !strings.Contains(r.stderr, "not signed by a CA fledgectl trusts") {
			t.Errorf("%v: exit %d, want %d refusing the certificate:\n%s", args, r.code, ExitError, r.stderr)
		}
		if strings.Contains(r.stderr, "retrying") || strings.Contains(r.stderr, "resuming") {
			t.Errorf("%v retried a refused certificate:\n%s", args, r.stderr)
		}
	}
	// While a closed port is retried, as before, and said plainly.
	r := h.runRaw(t.Context(), nil, nil, "--server", closedAddress(t), "--ca-file", h.srv.CAFile, "--token", apitest.Token, "-n", "prod", "-v", "resume", "shop")
	if r.code != ExitUnavailable || !strings.Contains(r.stderr, "retrying") || !strings.Contains(r.stderr, "fledgectl: cannot reach fledge at") {
		t.Errorf("resume against a closed port: exit %d, want %d after retries:\n%s", r.code, ExitUnavailable, r.stderr)
	}
}
