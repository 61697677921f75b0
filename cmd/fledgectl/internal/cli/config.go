package cli

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Environment variables fledgectl reads, after its flags.
const (
	EnvServer    = "FLEDGE_SERVER"
	EnvToken     = "FLEDGE_TOKEN"
	EnvNamespace = "FLEDGE_NAMESPACE"
)

// globalFlags are the flags of every command.
type globalFlags struct {
	namespace  string
	output     string
	server     string
	token      string
	tokenFile  string
	caFile     string
	serverName string
	insecure   bool
	certFile   string
	keyFile    string
	requestID  string
	kubeconfig string
	context    string
	timeout    time.Duration
	verbose    bool
}

// settings are the connection flags resolved against the environment and
// the kubeconfig, once per invocation (the namespace is resolved apart:
// namespace).
type settings struct {
	server string
	// creds sends the caller's token; nil: none (note says why).
	creds *bearerCredentials
	note  string
	tls   *tls.Config
}

// resolve works out the server, token, namespace and TLS configuration.
func (a *app) resolve() (*settings, error) {
	a.setOnce.Do(func() { a.set, a.setErr = a.resolveOnce() })
	return a.set, a.setErr
}

func (a *app) resolveOnce() (*settings, error) {
	s := &settings{server: firstOf(a.flags.server, a.getenv(EnvServer))}
	if s.server == "" {
		return nil, fmt.Errorf("no fledge server: pass --server host:port or set %s (fledge's gRPC address; a kubeconfig names the Kubernetes API server, not fledge, so it cannot say)", EnvServer)
	}
	var err error
	switch {
	case a.flags.token != "":
		s.creds = staticToken("--token", a.flags.token)
	case a.flags.tokenFile != "":
		b, err := os.ReadFile(a.flags.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		token := strings.TrimSpace(string(b))
		if token == "" {
			return nil, fmt.Errorf("--token-file %s is empty", a.flags.tokenFile)
		}
		s.creds = staticToken("--token-file "+a.flags.tokenFile, token)
	case a.getenv(EnvToken) != "":
		s.creds = staticToken("$"+EnvToken, a.getenv(EnvToken))
	case a.flags.certFile == "":
		k, err := a.loadKubeconfig()
		if err != nil {
			return nil, err
		}
		s.creds, s.note = k.creds, k.note
		if s.creds != nil {
			// A plugin that fails says so now, rather than as a refused
			// call.
			if err := s.creds.check(); err != nil {
				return nil, err
			}
			a.verbosef("token: from %s", s.creds.source)
		} else {
			a.verbosef("no token: %s", s.note)
		}
	}
	if s.tls, err = a.tlsConfig(); err != nil {
		return nil, err
	}
	return s, nil
}

// namespace is -n, else FLEDGE_NAMESPACE, else the kubeconfig context's,
// else "default".
func (a *app) namespace() (string, error) {
	if ns := firstOf(a.flags.namespace, a.getenv(EnvNamespace)); ns != "" {
		return ns, nil
	}
	k, err := a.loadKubeconfig()
	if err != nil {
		return "", err
	}
	return firstOf(k.namespace, "default"), nil
}

func (a *app) tlsConfig() (*tls.Config, error) {
	// The server name to verify is the host of --server (grpc sets it),
	// unless --tls-server-name says otherwise (as through a port-forward).
	// InsecureSkipVerify only if asked for: then the token goes to
	// whoever answers.
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: a.flags.insecure, ServerName: a.flags.serverName}
	if a.flags.caFile != "" {
		pem, err := os.ReadFile(a.flags.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", a.flags.caFile)
		}
		c.RootCAs = pool
	}
	switch {
	case a.flags.certFile != "" && a.flags.keyFile != "":
		cert, err := tls.LoadX509KeyPair(a.flags.certFile, a.flags.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert-file/--key-file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	case a.flags.certFile != "" || a.flags.keyFile != "":
		return nil, errors.New("--cert-file and --key-file go together")
	}
	return c, nil
}

// dial connects to fledge. Nothing is sent before the first call.
func (a *app) dial() (*grpc.ClientConn, error) {
	s, err := a.resolve()
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(recordingTLS{TransportCredentials: credentials.NewTLS(s.tls.Clone()), h: &a.handshakes}),
		grpc.WithUserAgent("fledgectl"),
	}
	if s.creds != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(s.creds))
	}
	conn, err := grpc.NewClient(s.server, opts...)
	if err != nil {
		return nil, fmt.Errorf("fledge server %q: %w", s.server, err)
	}
	return conn, nil
}

// requestID is --request-id, or one made up for this invocation (and
// reused by its retries).
func (a *app) requestID() string {
	a.idOnce.Do(func() {
		if a.flags.requestID != "" {
			return
		}
		b := make([]byte, 12)
		_, _ = rand.Read(b) // never fails (crypto/rand)
		a.flags.requestID = "fledgectl-" + hex.EncodeToString(b)
	})
	return a.flags.requestID
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// onces guards what is resolved once per invocation.
type onces struct {
	kubeOnce sync.Once
	kube     kubeconfig
	kubeErr  error
	setOnce  sync.Once
	set      *settings
	setErr   error
	idOnce   sync.Once
}
