package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
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
	token  string
	tls    *tls.Config
}

// kubeconfig is the parts of the kubeconfig's context fledgectl uses.
type kubeconfig struct {
	namespace string
	token     string
	// why the token could not be used, for -v.
	note string
}

// loadKubeconfig reads the kubeconfig (--kubeconfig, else $KUBECONFIG,
// else ~/.kube/config) and its context (--context, else the current
// one). A missing default kubeconfig is no error: CI runners often have
// none.
func (a *app) loadKubeconfig() (kubeconfig, error) {
	a.kubeOnce.Do(func() { a.kube, a.kubeErr = a.readKubeconfig() })
	return a.kube, a.kubeErr
}

func (a *app) readKubeconfig() (kubeconfig, error) {
	rules := &clientcmd.ClientConfigLoadingRules{}
	switch {
	case a.flags.kubeconfig != "":
		rules.ExplicitPath = a.flags.kubeconfig
	case a.getenv(clientcmd.RecommendedConfigPathEnvVar) != "":
		rules.Precedence = filepath.SplitList(a.getenv(clientcmd.RecommendedConfigPathEnvVar))
	default:
		if home := a.getenv("HOME"); home != "" {
			rules.Precedence = []string{filepath.Join(home, clientcmd.RecommendedHomeDir, clientcmd.RecommendedFileName)}
		}
	}
	raw, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).RawConfig()
	if err != nil {
		return kubeconfig{}, fmt.Errorf("kubeconfig: %w", err)
	}
	name := raw.CurrentContext
	if a.flags.context != "" {
		name = a.flags.context
	}
	if name == "" {
		return kubeconfig{note: "the kubeconfig has no current context"}, nil
	}
	kctx, ok := raw.Contexts[name]
	if !ok {
		if a.flags.context != "" {
			return kubeconfig{}, fmt.Errorf("kubeconfig: no context %q", name)
		}
		return kubeconfig{note: fmt.Sprintf("the kubeconfig's current context %q does not exist", name)}, nil
	}
	k := kubeconfig{namespace: kctx.Namespace}
	user := raw.AuthInfos[kctx.AuthInfo]
	switch {
	case user == nil:
		k.note = fmt.Sprintf("context %q has no user", name)
	case user.Token != "":
		k.token = user.Token
	case user.TokenFile != "":
		b, err := os.ReadFile(user.TokenFile)
		if err != nil {
			return kubeconfig{}, fmt.Errorf("kubeconfig: user %q: token file: %w", kctx.AuthInfo, err)
		}
		k.token = strings.TrimSpace(string(b))
	default:
		k.note = userNote(kctx.AuthInfo, user)
	}
	return k, nil
}

func userNote(name string, u *clientcmdapi.AuthInfo) string {
	switch {
	case u.Exec != nil, u.AuthProvider != nil:
		return fmt.Sprintf("kubeconfig user %q gets its token from a plugin, which fledgectl does not run: pass --token or set %s", name, EnvToken)
	case u.ClientCertificate != "" || len(u.ClientCertificateData) > 0:
		return fmt.Sprintf("kubeconfig user %q has a client certificate for the API server, not for fledge: pass --token, or --cert-file and --key-file", name)
	}
	return fmt.Sprintf("kubeconfig user %q has no token", name)
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
		s.token = a.flags.token
	case a.flags.tokenFile != "":
		b, err := os.ReadFile(a.flags.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		s.token = strings.TrimSpace(string(b))
		if s.token == "" {
			return nil, fmt.Errorf("--token-file %s is empty", a.flags.tokenFile)
		}
	case a.getenv(EnvToken) != "":
		s.token = a.getenv(EnvToken)
	case a.flags.certFile == "":
		k, err := a.loadKubeconfig()
		if err != nil {
			return nil, err
		}
		s.token = k.token
		if s.token == "" {
			a.verbosef("no token: %s", k.note)
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
	// The server name to verify is the host of --server (grpc sets it).
	// InsecureSkipVerify only if asked for: then the token goes to
	// whoever answers.
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: a.flags.insecure}
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
		grpc.WithTransportCredentials(credentials.NewTLS(s.tls.Clone())),
		grpc.WithUserAgent("fledgectl"),
	}
	if s.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(s.token)))
	}
	conn, err := grpc.NewClient(s.server, opts...)
	if err != nil {
		return nil, fmt.Errorf("fledge server %q: %w", s.server, err)
	}
	return conn, nil
}

// bearer sends a token with every call, over TLS only.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

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
