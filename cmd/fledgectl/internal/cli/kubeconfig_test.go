package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fledgehq/fledge/rollout/api/apitest"
)

// execPlugin writes a kubeconfig exec plugin: a shell script that prints
// an ExecCredential with body as its status, as aws eks get-token or
// gke-gcloud-auth-plugin do. %n in body is replaced by the number of
// times the plugin has run.
func execPlugin(t *testing.T, body string) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the test plugins are shell scripts")
	}
	path := filepath.Join(t.TempDir(), "plugin")
	status := strings.ReplaceAll(body, "%n", "$n")
	script := fmt.Sprintf(`#!/bin/sh
n=$(( $(cat "$0.runs" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$0.runs"
cat <<EOF
{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": %s}
EOF
`, status)
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// failingPlugin is an exec plugin that cannot log in.
func failingPlugin(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "failing-plugin")
	if err := os.WriteFile(path, []byte("#!/bin/sh\necho 'not logged in' >&2\nexit 3\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeKubeconfig writes a kubeconfig whose current context "ci" (namespace
// prod) has the user written as user (YAML, indented under "user:").
func writeKubeconfig(t *testing.T, user string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, fmt.Appendf(nil, `apiVersion: v1
kind: Config
current-context: ci
clusters:
- name: c
  cluster: {server: "https://kubernetes.example:6443"}
users:
- name: ci
  user:
%s
contexts:
- name: ci
  context: {cluster: c, user: ci, namespace: prod}
`, user), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func execUser(command string) string {
	return fmt.Sprintf(`    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: %q
      interactiveMode: Never
      provideClusterInfo: true`, command)
}

// unsignedJWT is an ID token as an OIDC provider gives one: client-go's
// oidc auth provider reads only its expiry.
func unsignedJWT(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none"}`)) + "." + enc(fmt.Appendf(nil, `{"sub":"ci","exp":%d}`, exp.Unix())) + ".sig"
}

// A kubeconfig user whose token comes from a plugin (EKS, GKE, OIDC) or
// a file is read as client-go reads it, and the token it gives reaches
// fledge, as the bearer token of every call.
func TestTheKubeconfigUsersTokenReachesFledge(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	idToken := unsignedJWT(time.Now().Add(time.Hour))
	tests := []struct {
		name, user, want, source string
	}{
		{"an exec plugin's token", execUser(execPlugin(t, `{"token": "exec-token-%n"}`)), "exec-token-1", "exec plugin"},
		{"a token file's", fmt.Sprintf("    tokenFile: %q", tokenFile), "from-a-file", "token file"},
		{"an oidc auth provider's id token", fmt.Sprintf(`    auth-provider:
      name: oidc
      config: {client-id: fledgectl, idp-issuer-url: "https://issuer.invalid", id-token: %q}`, idToken), idToken, "auth provider oidc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := startFakeFledge(t, "127.0.0.1")
			h := &harness{env: map[string]string{"KUBECONFIG": writeKubeconfig(t, tc.user)}}
			r := h.runRaw(t.Context(), nil, nil, "--server", f.Addr, "--ca-file", f.CAFile, "-v", "status", "shop")
			if r.code != ExitOK || !strings.Contains(r.stdout, "prod/shop") {
				t.Fatalf("exit %d, want 0 and prod/shop (the context's namespace)\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			if got := f.Tokens(); !slices.Equal(got, []string{tc.want}) {
				t.Errorf("fledge was sent tokens %q, want %q", got, tc.want)
			}
			if !strings.Contains(r.stderr, `token: from kubeconfig user "ci" (`+tc.source) {
				t.Errorf("-v does not say where the token came from:\n%s", r.stderr)
			}
			if strings.Contains(r.stderr+r.stdout, tc.want) {
				t.Errorf("the token was printed:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			}
		})
	}
}

// Against fledge's real server and authorizer: the exec plugin's token is
// the one its TokenReview accepts.
func TestAnExecPluginsTokenIsAuthenticatedByFledge(t *testing.T) {
	h := newHarness(t)
	h.env["KUBECONFIG"] = writeKubeconfig(t, execUser(execPlugin(t, `{"token": "`+apitest.Token+`"}`)))
	r := h.runRaw(t.Context(), nil, nil, "--server", h.srv.Addr, "--ca-file", h.srv.CAFile, "status", "shop")
	if r.code != ExitOK || !strings.Contains(r.stdout, "Progressing") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	h.env["KUBECONFIG"] = writeKubeconfig(t, execUser(execPlugin(t, `{"token": "not-a-token-of-this-cluster"}`)))
	r = h.runRaw(t.Context(), nil, nil, "--server", h.srv.Addr, "--ca-file", h.srv.CAFile, "status", "shop")
	if r.code != ExitError || !strings.Contains(r.stderr, `refused the token from kubeconfig user "ci" (exec plugin`) {
		t.Errorf("a plugin's token fledge does not know: exit %d, want %d naming the plugin\n%s", r.code, ExitError, r.stderr)
	}
}

// A plugin that fails is reported as such, before anything is sent.
func TestAFailingExecPluginIsReportedBeforeAnyCall(t *testing.T) {
	f := startFakeFledge(t, "127.0.0.1")
	plugin := failingPlugin(t)
	h := &harness{env: map[string]string{"KUBECONFIG": writeKubeconfig(t, execUser(plugin))}}
	r := h.runRaw(t.Context(), nil, nil, "--server", f.Addr, "--ca-file", f.CAFile, "status", "shop")
	if r.code != ExitError || !strings.Contains(r.stderr, `token from kubeconfig user "ci" (exec plugin `+plugin+")") || !strings.Contains(r.stderr, "exit code 3") {
		t.Errorf("exit %d, want %d naming the plugin and how it failed:\n%s", r.code, ExitError, r.stderr)
	}
	if got := f.Tokens(); len(got) != 0 {
		t.Errorf("calls were made: %q", got)
	}
}

// A credential that expires is renewed by its plugin for the next call,
// as client-go does: a watch outlives an EKS token (15 minutes).
func TestAnExpiredExecCredentialIsRenewedForEachCall(t *testing.T) {
	plugin := execPlugin(t, `{"token": "renewed-%n", "expirationTimestamp": "2000-01-01T00:00:00Z"}`)
	a := &app{getenv: envMap{"KUBECONFIG": writeKubeconfig(t, execUser(plugin))}.get}
	k, err := a.loadKubeconfig()
	if err != nil || k.creds == nil {
		t.Fatalf("kubeconfig: %v (note %q)", err, k.note)
	}
	var got []string
	for range 2 {
		md, err := k.creds.GetRequestMetadata(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, md["authorization"])
	}
	if want := []string{"Bearer renewed-1", "Bearer renewed-2"}; !slices.Equal(got, want) {
		t.Errorf("authorization of two calls: %q, want %q", got, want)
	}
}

type envMap map[string]string

func (e envMap) get(k string) string { return e[k] }
