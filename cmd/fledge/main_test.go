package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestMain lets a test run the engine's main as a process of its own
// (FLEDGE_TEST_MAIN=1, the engine's flags as arguments), to see its exit
// code and everything it prints.
func TestMain(m *testing.M) {
	if os.Getenv("FLEDGE_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runEngine runs main with args and returns its exit code and output
// (stdout and stderr: the log).
func runEngine(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "FLEDGE_TEST_MAIN=1", "KUBECONFIG=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String()
	}
	t.Fatalf("run the engine: %v\n%s", err, out.String())
	return 0, ""
}

// Flags that are wrong stop the engine with exit code 2 and one line
// naming the flag, before it contacts the API server or Prometheus: bad
// configuration will not fix itself, and a pod that crash-loops with a
// clear message is the right signal for it.
func TestBadFlagsExitWith2BeforeContactingAnything(t *testing.T) {
	var contacted atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		contacted.Add(1)
		http.Error(w, "nobody should ask", http.StatusTeapot)
	}))
	defer srv.Close()
	kubeconfig := writeFile(t, "kubeconfig", `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+srv.URL+`"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`)
	token := writeFile(t, "token", "a-token")
	password := writeFile(t, "password", "a-password")
	base := []string{"--kubeconfig=" + kubeconfig, "--namespaces=shop", "--health-addr=0", "--metrics-addr=0"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a key without its certificate", []string{"--prometheus-url=https://" + srv.Listener.Addr().String(), "--prometheus-key-file=" + token},
			"--prometheus-key-file is set without --prometheus-cert-file"},
		{"a CA file that is not there", []string{"--prometheus-url=https://" + srv.Listener.Addr().String(), "--prometheus-ca-file=" + filepath.Join(t.TempDir(), "ca.crt")},
			"--prometheus-ca-file: open "},
		{"a token file and basic auth together", []string{"--prometheus-url=" + srv.URL, "--prometheus-bearer-token-file=" + token, "--prometheus-username=u", "--prometheus-password-file=" + password},
			"--prometheus-bearer-token-file and --prometheus-username: two kinds of credentials"},
		{"a header that does not parse", []string{"--prometheus-url=" + srv.URL, "--prometheus-header=X-Scope-OrgID"},
			"-prometheus-header: want Name=Value"},
		{"no namespace said", []string{"--prometheus-url=" + srv.URL, "--namespaces="},
			"say where fledge acts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runEngine(t, append(append([]string{}, base...), tc.args...)...)
			if code != 2 || !strings.Contains(out, tc.want) {
				t.Errorf("exit code %d, output:\n%s\nwant 2 and %q", code, out, tc.want)
			}
			if n := contacted.Load(); n != 0 {
				t.Errorf("the engine made %d requests before refusing its flags", n)
			}
		})
	}
}

// The token, the password and a password in the URL never show in what
// the engine prints, whether it accepts its flags (it logs how it reaches
// Prometheus: files and user names) or refuses them.
func TestSecretsNeverShowInTheLog(t *testing.T) {
	const tokenSecret, passwordSecret, urlSecret = "tok-3f9a1c", "pw-77e2d0", "url-5b8c44"
	token := writeFile(t, "token", tokenSecret+"\n")
	password := writeFile(t, "password", passwordSecret)
	// The engine stops after logging the connection: no kubeconfig there.
	base := []string{"--kubeconfig=" + filepath.Join(t.TempDir(), "missing"), "--namespaces=shop", "--health-addr=0", "--metrics-addr=0"}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"accepted: a bearer token file", []string{"--prometheus-url=https://prometheus.example", "--prometheus-bearer-token-file=" + token},
			1, `"auth":"bearer token read from ` + token + `"`},
		{"accepted: basic auth", []string{"--prometheus-url=https://prometheus.example", "--prometheus-username=fledge", "--prometheus-password-file=" + password},
			1, `"auth":"basic auth as fledge, password read from ` + password + `"`},
		{"accepted: credentials in the URL", []string{"--prometheus-url=https://fledge:" + urlSecret + "@prometheus.example"},
			1, `"url":"https://fledge:xxxxx@prometheus.example","tls":"server certificate verified against the system's CAs","auth":"basic auth from the URL's user info"`},
		{"refused: a token file and basic auth", []string{"--prometheus-url=https://prometheus.example", "--prometheus-bearer-token-file=" + token, "--prometheus-username=fledge", "--prometheus-password-file=" + password},
			2, "two kinds of credentials"},
		{"refused: a token file and credentials in the URL", []string{"--prometheus-url=https://fledge:" + urlSecret + "@prometheus.example", "--prometheus-bearer-token-file=" + token},
			2, "two kinds of credentials"},
		{"refused: TLS settings for a URL with credentials over plain http", []string{"--prometheus-url=http://fledge:" + urlSecret + "@prometheus.example", "--prometheus-insecure-skip-verify"},
			2, "(http://fledge:xxxxx@prometheus.example) is plain http"},
		{"refused: a URL that does not parse, with a password in it", []string{"--prometheus-url=http://fledge:" + urlSecret + "@prometheus example"},
			2, "--prometheus-url: want an http or https URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runEngine(t, append(append([]string{}, base...), tc.args...)...)
			if code != tc.wantCode || !strings.Contains(out, tc.want) {
				t.Errorf("exit code %d, output:\n%s\nwant %d and %q", code, out, tc.wantCode, tc.want)
			}
			for _, secret := range []string{tokenSecret, passwordSecret, urlSecret} {
				if strings.Contains(out, secret) {
					t.Errorf("the output shows a secret:\n%s", out)
				}
			}
		})
	}
}
