package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	"github.com/prometheus/common/config"

	"github.com/fledgehq/fledge/analysis/promclient"
)

// prometheusFlags say how fledge reaches Prometheus: where, with which
// TLS settings, credentials and extra headers. They become a
// prometheus/common HTTPClientConfig, the settings Prometheus's own
// scrapes and remote writes use, so that its round tripper does what the
// field expects: the CA and the client certificate are read again when
// their files change (cert-manager renewals), and the token and password
// files on every request (projected ServiceAccount tokens rotate).
//
// Secrets are only ever given as files: a flag's value shows in the
// process list and in the Deployment, and nothing here reads a secret
// file's content except to check that it is not empty.
type prometheusFlags struct {
	url                       string
	caFile, certFile, keyFile string
	serverName                string
	insecureSkipVerify        bool
	bearerTokenFile           string
	username, passwordFile    string
	headers                   headerFlags
}

func (p *prometheusFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.url, "prometheus-url", "http://prometheus.istio-system:9090",
		"base URL of the Prometheus API analysis queries (http or https): the one /api/v1/query is under, so a Thanos Querier's, or Mimir's with its prefix (https://mimir.example/prometheus). "+
			"Credentials in it (https://user:password@host) work but show in the process list: prefer --prometheus-username with --prometheus-password-file")
	fs.StringVar(&p.caFile, "prometheus-ca-file", "",
		"PEM file of the CA certificates that sign Prometheus's serving certificate (https --prometheus-url only); empty: the system's CAs. Read again when it changes")
	fs.StringVar(&p.certFile, "prometheus-cert-file", "",
		"PEM client certificate fledge presents to Prometheus (mTLS; https only), with --prometheus-key-file. Both are read again when they change, so a renewed certificate is used without a restart")
	fs.StringVar(&p.keyFile, "prometheus-key-file", "",
		"PEM private key of --prometheus-cert-file")
	fs.StringVar(&p.serverName, "prometheus-server-name", "",
		"name Prometheus's certificate must hold, also sent as TLS SNI, when it is not --prometheus-url's host (an IP address, or a Service name the certificate does not list); https only")
	fs.BoolVar(&p.insecureSkipVerify, "prometheus-insecure-skip-verify", false,
		"do not verify Prometheus's certificate at all: anyone on the path can then read and change the answers fledge judges rollouts on. For tests only; give --prometheus-ca-file instead")
	fs.StringVar(&p.bearerTokenFile, "prometheus-bearer-token-file", "",
		`file whose content fledge sends to Prometheus as "Authorization: Bearer <content>", read again on every query so that a rotated token (a projected ServiceAccount token, say) is used at once; not with --prometheus-username`)
	fs.StringVar(&p.username, "prometheus-username", "",
		"HTTP basic-auth user for Prometheus, with --prometheus-password-file; not with --prometheus-bearer-token-file")
	fs.StringVar(&p.passwordFile, "prometheus-password-file", "",
		"file holding the basic-auth password of --prometheus-username, read again on every query (a rotated Secret is used at once)")
	fs.Var(&p.headers, "prometheus-header",
		"an HTTP header sent with every Prometheus query, as Name=Value; repeat the flag for more (e.g. X-Scope-OrgID=team-a, the tenant of a Mimir, Cortex or multi-tenant Thanos). "+
			"Not Authorization nor another header HTTP or the flags above set; values are not secret (they show in the process list and the log)")
}

// header is one --prometheus-header.
type header struct{ name, value string }

// headerFlags collect the repeated --prometheus-header flag.
type headerFlags []header

func (h *headerFlags) String() string {
	if h == nil {
		return ""
	}
	var s []string
	for _, x := range *h {
		s = append(s, x.name+"="+x.value)
	}
	return strings.Join(s, ",")
}

// Set checks one Name=Value when the flag is parsed, so that a mistake
// stops fledge at once, naming the flag, rather than failing every query.
func (h *headerFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	switch {
	case !ok || name == "":
		return errors.New("want Name=Value, as X-Scope-OrgID=team-a")
	case !isToken(name):
		return fmt.Errorf("%q is not an HTTP header name", name)
	case strings.ContainsAny(value, "\r\n\x00"):
		return fmt.Errorf("the value of %s holds a line break or a NUL", name)
	}
	canonical := http.CanonicalHeaderKey(name)
	if _, reserved := config.ReservedHeaders[canonical]; reserved {
		if canonical == "Authorization" {
			return errors.New("Authorization is set by --prometheus-bearer-token-file or --prometheus-username, which keep the secret out of the process list")
		}
		return fmt.Errorf("%s is set by the HTTP client itself", canonical)
	}
	*h = append(*h, header{name: canonical, value: value})
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110 5.6.2), what a
// header name must be.
func isToken(s string) bool {
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return s != ""
}

// httpConfig checks the flags and turns them into prometheus/common's
// client settings. Each mistake that will not fix itself (a file missing
// or unreadable, a key without its certificate, two kinds of credentials,
// TLS settings for a plain-HTTP URL) is an error naming the flag, found
// before anything is contacted.
func (p prometheusFlags) httpConfig() (config.HTTPClientConfig, error) {
	cfg := config.DefaultHTTPClientConfig // redirects followed (credentials are dropped on one to another host), HTTP/2
	// As client_golang's default transport: HTTPS_PROXY and NO_PROXY apply.
	cfg.ProxyFromEnvironment = true
	u, err := url.Parse(p.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Not err itself, nor the value: either may hold a password.
		return cfg, errors.New("--prometheus-url: want an http or https URL, as http://prometheus.istio-system:9090")
	}
	tlsFlags := given(map[string]bool{
		"--prometheus-ca-file": p.caFile != "", "--prometheus-cert-file": p.certFile != "", "--prometheus-key-file": p.keyFile != "",
		"--prometheus-server-name": p.serverName != "", "--prometheus-insecure-skip-verify": p.insecureSkipVerify,
	})
	switch {
	case u.Scheme == "http" && len(tlsFlags) > 0:
		return cfg, fmt.Errorf("%s: TLS settings, but --prometheus-url (%s) is plain http: use an https URL, or drop them", strings.Join(tlsFlags, ", "), u.Redacted())
	case p.insecureSkipVerify && p.caFile != "":
		return cfg, errors.New("--prometheus-insecure-skip-verify and --prometheus-ca-file: with the first the second is ignored; give one")
	case p.certFile != "" && p.keyFile == "":
		return cfg, errors.New("--prometheus-cert-file is set without --prometheus-key-file: give both, or neither")
	case p.keyFile != "" && p.certFile == "":
		return cfg, errors.New("--prometheus-key-file is set without --prometheus-cert-file: give both, or neither")
	}
	if p.caFile != "" {
		pem, err := os.ReadFile(p.caFile)
		if err != nil {
			return cfg, fmt.Errorf("--prometheus-ca-file: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return cfg, fmt.Errorf("--prometheus-ca-file %s: no PEM certificate in it", p.caFile)
		}
		cfg.TLSConfig.CAFile = p.caFile
	}
	if p.certFile != "" {
		// tls's errors name neither file's content.
		if _, err := tls.LoadX509KeyPair(p.certFile, p.keyFile); err != nil {
			return cfg, fmt.Errorf("--prometheus-cert-file and --prometheus-key-file: %w", err)
		}
		cfg.TLSConfig.CertFile, cfg.TLSConfig.KeyFile = p.certFile, p.keyFile
	}
	cfg.TLSConfig.ServerName = p.serverName
	cfg.TLSConfig.InsecureSkipVerify = p.insecureSkipVerify

	credentials := given(map[string]bool{
		"--prometheus-bearer-token-file": p.bearerTokenFile != "",
		"--prometheus-username":          p.username != "" || p.passwordFile != "",
		"--prometheus-url's user info":   u.User != nil,
	})
	switch {
	case len(credentials) > 1:
		return cfg, fmt.Errorf("%s: two kinds of credentials; give one", strings.Join(credentials, " and "))
	case p.username != "" && p.passwordFile == "":
		return cfg, errors.New("--prometheus-username is set without --prometheus-password-file: give both")
	case p.passwordFile != "" && p.username == "":
		return cfg, errors.New("--prometheus-password-file is set without --prometheus-username: give both")
	case strings.Contains(p.username, ":"):
		return cfg, errors.New("--prometheus-username: a basic-auth user cannot hold a colon")
	}
	if p.bearerTokenFile != "" {
		if err := secretFile("--prometheus-bearer-token-file", p.bearerTokenFile); err != nil {
			return cfg, err
		}
		cfg.BearerTokenFile = p.bearerTokenFile
	}
	if p.username != "" {
		if err := secretFile("--prometheus-password-file", p.passwordFile); err != nil {
			return cfg, err
		}
		cfg.BasicAuth = &config.BasicAuth{Username: p.username, PasswordFile: p.passwordFile}
	}
	if len(p.headers) > 0 {
		cfg.HTTPHeaders = &config.Headers{Headers: map[string]config.Header{}}
		for _, h := range p.headers {
			v := cfg.HTTPHeaders.Headers[h.name]
			v.Values = append(v.Values, h.value)
			cfg.HTTPHeaders.Headers[h.name] = v
		}
	}
	// A backstop: the checks above are the ones that name the flag.
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("--prometheus-* flags: %w", err)
	}
	return cfg, nil
}

// given lists the names whose value is true, sorted.
func given(set map[string]bool) []string {
	var out []string
	for name, ok := range set {
		if ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// secretFile checks that a secret's file can be read and is not empty,
// saying so without its content.
func secretFile(flagName, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", flagName, err)
	}
	if strings.TrimSpace(string(b)) == "" {
		return fmt.Errorf("%s %s: the file is empty", flagName, path)
	}
	return nil
}

// newPrometheus checks the flags and builds the client analysis queries
// with; it contacts nothing.
func newPrometheus(p prometheusFlags, timeout time.Duration) (*promclient.Client, error) {
	if timeout < 0 {
		return nil, fmt.Errorf("--query-timeout %s: must not be negative", timeout)
	}
	cfg, err := p.httpConfig()
	if err != nil {
		return nil, err
	}
	rt, err := config.NewRoundTripperFromConfig(cfg, "prometheus")
	if err != nil {
		return nil, fmt.Errorf("--prometheus-* TLS flags: %w", err)
	}
	prom, err := promclient.New(promapi.Config{Address: p.url, RoundTripper: rt}, timeout)
	if err != nil {
		return nil, fmt.Errorf("--prometheus-url: %w", err)
	}
	return prom, nil
}

// logAttrs describe the connection for the start-up log: where, how it is
// secured and as whom, by file names and user name only, never a secret.
func (p prometheusFlags) logAttrs() []any {
	u, _ := url.Parse(p.url) // checked by httpConfig
	tlsDesc := "none (plain http)"
	if u.Scheme == "https" {
		tlsDesc = "server certificate verified against the system's CAs"
		if p.caFile != "" {
			tlsDesc = "server certificate verified against " + p.caFile
		}
		if p.insecureSkipVerify {
			tlsDesc = "server certificate NOT verified (--prometheus-insecure-skip-verify)"
		}
		if p.serverName != "" {
			tlsDesc += ", as " + p.serverName
		}
		if p.certFile != "" {
			tlsDesc += "; client certificate " + p.certFile
		}
	}
	auth := "none"
	switch {
	case p.bearerTokenFile != "":
		auth = "bearer token read from " + p.bearerTokenFile
	case p.username != "":
		auth = "basic auth as " + p.username + ", password read from " + p.passwordFile
	case u.User != nil:
		auth = "basic auth from the URL's user info"
	}
	names := []string{}
	for _, h := range p.headers {
		names = append(names, h.name)
	}
	return []any{"url", u.Redacted(), "tls", tlsDesc, "auth", auth, "headers", names}
}
