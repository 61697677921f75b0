package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/analysis/promclient"
)

// fakePrometheus answers every query with the single sample 1, as
// Prometheus answers vector(1), and keeps the headers of each request.
type fakePrometheus struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func (p *fakePrometheus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.seen = append(p.seen, r.Header.Clone())
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"1"]}]}}`)
}

// last is the headers of the latest request.
func (p *fakePrometheus) last(t *testing.T) http.Header {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) == 0 {
		t.Fatal("Prometheus was not asked")
	}
	return p.seen[len(p.seen)-1]
}

// startPrometheus serves a fakePrometheus over plain HTTP.
func startPrometheus(t *testing.T) *fakePrometheus {
	t.Helper()
	p := &fakePrometheus{}
	p.Server = httptest.NewServer(p)
	t.Cleanup(p.Close)
	return p
}

// startTLSPrometheus serves a fakePrometheus over TLS with a certificate
// serverCA signs for prometheus.example only (not 127.0.0.1, the address
// it is reached at: --prometheus-server-name says the name). With
// clientCA, it requires a client certificate that clientCA signed.
func startTLSPrometheus(t *testing.T, serverCA, clientCA *testCA) *fakePrometheus {
	t.Helper()
	_, _, pair := serverCA.issue(t, "prometheus", false, "prometheus.example")
	return serveTLSPrometheus(t, pair, clientCA)
}

func serveTLSPrometheus(t *testing.T, pair tls.Certificate, clientCA *testCA) *fakePrometheus {
	t.Helper()
	p := &fakePrometheus{}
	p.Server = httptest.NewUnstartedServer(p)
	p.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	if clientCA != nil {
		p.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		p.TLS.ClientCAs = clientCA.pool
	}
	p.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // the refused handshakes are the point
	p.StartTLS()
	t.Cleanup(p.Close)
	return p
}

// parsePrometheusFlags parses args as the engine parses its command line
// and builds the client from them.
func parsePrometheusFlags(t *testing.T, args ...string) (*promclient.Client, error) {
	t.Helper()
	var o options
	fs := flag.NewFlagSet("fledge", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return newPrometheus(o.prometheus, 5*time.Second)
}

func mustClient(t *testing.T, args ...string) *promclient.Client {
	t.Helper()
	c, err := parsePrometheusFlags(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The TLS flags reach Prometheus's TLS handshake: the right CA, server
// name and client certificate let queries through, and each wrong one
// fails with an error that says which setting to look at.
func TestPrometheusTLSFlags(t *testing.T) {
	serverCA, otherCA, clientCA := newTestCA(t, "server-ca"), newTestCA(t, "other-ca"), newTestCA(t, "client-ca")
	clientCert, clientKey, _ := clientCA.issue(t, "fledge", true)
	strangerCert, strangerKey, _ := otherCA.issue(t, "stranger", true)
	tlsOnly := startTLSPrometheus(t, serverCA, nil)
	mutual := startTLSPrometheus(t, serverCA, clientCA)
	_, _, expiredPair := serverCA.issueUntil(t, time.Now().Add(-time.Minute), "expired", false, "prometheus.example")
	expired := serveTLSPrometheus(t, expiredPair, nil)
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string // "" for success
	}{
		{name: "the CA file that signed Prometheus's certificate lets queries through",
			args: []string{"--prometheus-url=" + tlsOnly.URL, "--prometheus-ca-file=" + serverCA.file, "--prometheus-server-name=prometheus.example"}},
		{name: "without a CA file the system's CAs do not trust a private CA",
			args:    []string{"--prometheus-url=" + tlsOnly.URL, "--prometheus-server-name=prometheus.example"},
			wantErr: "Prometheus's certificate is not signed by a CA this client trusts"},
		{name: "a CA file of another CA fails, saying the certificate is not trusted",
			args:    []string{"--prometheus-url=" + tlsOnly.URL, "--prometheus-ca-file=" + otherCA.file, "--prometheus-server-name=prometheus.example"},
			wantErr: "Prometheus's certificate is not signed by a CA this client trusts"},
		{name: "without the server name the certificate does not name the address",
			args:    []string{"--prometheus-url=" + tlsOnly.URL, "--prometheus-ca-file=" + serverCA.file},
			wantErr: "Prometheus's certificate does not name the host asked for"},
		{name: "a server name the certificate does not hold fails",
			args:    []string{"--prometheus-url=" + tlsOnly.URL, "--prometheus-ca-file=" + serverCA.file, "--prometheus-server-name=other.example"},
			wantErr: "Prometheus's certificate does not name the host asked for"},
		{name: "an expired certificate fails, saying so",
			args:    []string{"--prometheus-url=" + expired.URL, "--prometheus-ca-file=" + serverCA.file, "--prometheus-server-name=prometheus.example"},
			wantErr: "Prometheus's certificate has expired or is not valid yet"},
		{name: "insecure-skip-verify lets an unverified certificate through",
			args: []string{"--prometheus-url=" + tlsOnly.URL, "--prometheus-insecure-skip-verify"}},
		{name: "mTLS: a client certificate signed by the CA Prometheus trusts is accepted",
			args: []string{"--prometheus-url=" + mutual.URL, "--prometheus-ca-file=" + serverCA.file, "--prometheus-server-name=prometheus.example",
				"--prometheus-cert-file=" + clientCert, "--prometheus-key-file=" + clientKey}},
		{name: "mTLS: without a client certificate Prometheus refuses, and the error says so",
			args:    []string{"--prometheus-url=" + mutual.URL, "--prometheus-ca-file=" + serverCA.file, "--prometheus-server-name=prometheus.example"},
			wantErr: "Prometheus refused this client's certificate"},
		{name: "mTLS: a client certificate of another CA is refused",
			args: []string{"--prometheus-url=" + mutual.URL, "--prometheus-ca-file=" + serverCA.file, "--prometheus-server-name=prometheus.example",
				"--prometheus-cert-file=" + strangerCert, "--prometheus-key-file=" + strangerKey},
			wantErr: "Prometheus refused this client's certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := mustClient(t, tc.args...).Ping(context.Background())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Ping: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, analysis.ErrUnreachable) {
				t.Fatalf("Ping: %v; want ErrUnreachable saying %q", err, tc.wantErr)
			}
			t.Logf("as the engine says it: %v", err)
		})
	}
}

// A CA bundle replaced in place (a renewed CA, a Secret updated) is used
// from the next query on, without a restart.
func TestPrometheusCAFileIsReadAgainWhenItChanges(t *testing.T) {
	serverCA, otherCA := newTestCA(t, "server-ca"), newTestCA(t, "other-ca")
	prom := startTLSPrometheus(t, serverCA, nil)
	bundle := writeFile(t, "ca.crt", mustRead(t, otherCA.file))
	c := mustClient(t, "--prometheus-url="+prom.URL, "--prometheus-ca-file="+bundle, "--prometheus-server-name=prometheus.example")
	if err := c.Ping(context.Background()); err == nil {
		t.Fatal("Ping with the wrong CA succeeded: the test shows nothing")
	}
	if err := os.WriteFile(bundle, []byte(mustRead(t, serverCA.file)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(context.Background()); err != nil {
		t.Errorf("Ping after the CA file was replaced: %v", err)
	}
}

// Credentials and headers arrive with every query, and the secret files
// are read again each time, so a rotated token or password is used at
// once (a projected ServiceAccount token rotates hourly).
func TestPrometheusCredentialFlags(t *testing.T) {
	t.Run("the bearer token arrives, and a rotated one is used at once", func(t *testing.T) {
		prom := startPrometheus(t)
		token := writeFile(t, "token", "first-token\n")
		c := mustClient(t, "--prometheus-url="+prom.URL, "--prometheus-bearer-token-file="+token)
		ping(t, c)
		if got := prom.last(t).Get("Authorization"); got != "Bearer first-token" {
			t.Errorf("Authorization %q, want the token file's content, trimmed", got)
		}
		if err := os.WriteFile(token, []byte("second-token"), 0o600); err != nil {
			t.Fatal(err)
		}
		ping(t, c)
		if got := prom.last(t).Get("Authorization"); got != "Bearer second-token" {
			t.Errorf("after rotation: Authorization %q, want the new token", got)
		}
	})
	t.Run("basic auth arrives, and a rotated password is used at once", func(t *testing.T) {
		prom := startPrometheus(t)
		password := writeFile(t, "password", "s3cret")
		c := mustClient(t, "--prometheus-url="+prom.URL, "--prometheus-username=fledge", "--prometheus-password-file="+password)
		ping(t, c)
		req := &http.Request{Header: prom.last(t)}
		if user, pass, ok := req.BasicAuth(); !ok || user != "fledge" || pass != "s3cret" {
			t.Errorf("basic auth %q:%q (%v), want fledge:s3cret", user, pass, ok)
		}
		if err := os.WriteFile(password, []byte("n3w"), 0o600); err != nil {
			t.Fatal(err)
		}
		ping(t, c)
		req = &http.Request{Header: prom.last(t)}
		if _, pass, _ := req.BasicAuth(); pass != "n3w" {
			t.Errorf("after rotation: password %q, want the new one", pass)
		}
	})
	t.Run("the URL's user info still works, as before these flags", func(t *testing.T) {
		prom := startPrometheus(t)
		c := mustClient(t, "--prometheus-url="+strings.Replace(prom.URL, "http://", "http://old:way@", 1))
		ping(t, c)
		req := &http.Request{Header: prom.last(t)}
		if user, pass, ok := req.BasicAuth(); !ok || user != "old" || pass != "way" {
			t.Errorf("basic auth %q:%q (%v), want old:way from the URL", user, pass, ok)
		}
	})
	t.Run("headers arrive, a repeated name with each of its values", func(t *testing.T) {
		prom := startPrometheus(t)
		c := mustClient(t, "--prometheus-url="+prom.URL, "--prometheus-header=X-Scope-OrgID=team-a", "--prometheus-header=x-extra=one", "--prometheus-header=X-Extra=two=2")
		ping(t, c)
		h := prom.last(t)
		if got := h.Values("X-Scope-OrgID"); len(got) != 1 || got[0] != "team-a" {
			t.Errorf("X-Scope-OrgID %q, want [team-a]", got)
		}
		if got := h.Values("X-Extra"); len(got) != 2 || got[0] != "one" || got[1] != "two=2" {
			t.Errorf("X-Extra %q, want [one two=2]", got)
		}
	})
}

func ping(t *testing.T, c *promclient.Client) {
	t.Helper()
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Flags that are wrong are refused at start with an error that names the
// flag: none of these will fix itself, and each would otherwise fail
// every query, or silently not do what was meant.
func TestPrometheusFlagsRefusedNamingTheFlag(t *testing.T) {
	ca := newTestCA(t, "ca")
	cert, key, _ := ca.issue(t, "fledge", true)
	_, otherKey, _ := ca.issue(t, "other", true)
	token := writeFile(t, "token", "a-token")
	password := writeFile(t, "password", "a-password")
	empty := writeFile(t, "empty", " \n")
	notPEM := writeFile(t, "ca.crt", "not a certificate")
	missing := filepath.Join(t.TempDir(), "missing")
	const https = "--prometheus-url=https://prometheus.example:9090"
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"a URL without a scheme", []string{"--prometheus-url=prometheus:9090"}, "--prometheus-url: want an http or https URL"},
		{"a key without its certificate", []string{https, "--prometheus-key-file=" + key}, "--prometheus-key-file is set without --prometheus-cert-file"},
		{"a certificate without its key", []string{https, "--prometheus-cert-file=" + cert}, "--prometheus-cert-file is set without --prometheus-key-file"},
		{"a certificate with another's key", []string{https, "--prometheus-cert-file=" + cert, "--prometheus-key-file=" + otherKey},
			"--prometheus-cert-file and --prometheus-key-file: tls: private key does not match public key"},
		{"a CA file that is not there", []string{https, "--prometheus-ca-file=" + missing}, "--prometheus-ca-file: open " + missing},
		{"a CA file without a certificate", []string{https, "--prometheus-ca-file=" + notPEM}, "--prometheus-ca-file " + notPEM + ": no PEM certificate in it"},
		{"TLS settings for a plain-HTTP URL", []string{"--prometheus-url=http://prometheus:9090", "--prometheus-ca-file=" + ca.file, "--prometheus-server-name=p"},
			"--prometheus-ca-file, --prometheus-server-name: TLS settings, but --prometheus-url (http://prometheus:9090) is plain http"},
		{"a CA file that insecure-skip-verify would ignore", []string{https, "--prometheus-ca-file=" + ca.file, "--prometheus-insecure-skip-verify"},
			"--prometheus-insecure-skip-verify and --prometheus-ca-file"},
		{"a token file and basic auth together", []string{https, "--prometheus-bearer-token-file=" + token, "--prometheus-username=u", "--prometheus-password-file=" + password},
			"--prometheus-bearer-token-file and --prometheus-username: two kinds of credentials; give one"},
		{"a token file and credentials in the URL", []string{"--prometheus-url=https://u:p@prometheus.example", "--prometheus-bearer-token-file=" + token},
			"--prometheus-bearer-token-file and --prometheus-url's user info: two kinds of credentials"},
		{"a token file that is not there", []string{https, "--prometheus-bearer-token-file=" + missing}, "--prometheus-bearer-token-file: open " + missing},
		{"an empty token file", []string{https, "--prometheus-bearer-token-file=" + empty}, "--prometheus-bearer-token-file " + empty + ": the file is empty"},
		{"a user without a password file", []string{https, "--prometheus-username=u"}, "--prometheus-username is set without --prometheus-password-file"},
		{"a password file without a user", []string{https, "--prometheus-password-file=" + password}, "--prometheus-password-file is set without --prometheus-username"},
		{"a password file that is not there", []string{https, "--prometheus-username=u", "--prometheus-password-file=" + missing}, "--prometheus-password-file: open " + missing},
		{"a user with a colon", []string{https, "--prometheus-username=a:b", "--prometheus-password-file=" + password}, "--prometheus-username: a basic-auth user cannot hold a colon"},
		{"a header without a value", []string{https, "--prometheus-header=X-Scope-OrgID"}, `invalid value "X-Scope-OrgID" for flag -prometheus-header: want Name=Value`},
		{"a header name with a space", []string{https, "--prometheus-header=X Org=a"}, `"X Org" is not an HTTP header name`},
		{"an Authorization header, whose secret would show in the process list", []string{https, "--prometheus-header=authorization=Bearer x"},
			"Authorization is set by --prometheus-bearer-token-file or --prometheus-username"},
		{"a header the HTTP client sets", []string{https, "--prometheus-header=Host=x"}, "Host is set by the HTTP client itself"},
		{"a negative query timeout", []string{https, "--query-timeout=-1s"}, "--query-timeout -1s: must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o options
			fs := flag.NewFlagSet("fledge", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			o.register(fs)
			err := fs.Parse(tc.args)
			if err == nil {
				_, err = newPrometheus(o.prometheus, o.queryTimeout)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one with %q", err, tc.wantErr)
			}
		})
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
