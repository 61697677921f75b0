package apitest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/test/bufconn"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/fledgehq/fledge/rollout/api"
)

// The credentials the fake API server of Start knows.
const (
	Token = "apitest-token-7d1e"
	User  = "system:serviceaccount:ci:deployer"
)

// Options configure Start.
type Options struct {
	// Backend defaults to NewBackend(0).
	Backend *Backend
	// Service tunes the service.
	Service api.ServiceOptions
	// Bufconn serves on an in-memory listener instead of loopback TCP.
	Bufconn bool
	// Logger defaults to one that discards.
	Logger *slog.Logger
}

// Server is a running fledge gRPC server over a fake Backend.
type Server struct {
	Backend *Backend
	// Addr is the loopback address ("127.0.0.1:port"); for Bufconn,
	// "bufnet", only reachable with Dial.
	Addr string
	// CAFile holds the PEM certificate of the CA that signed the server's
	// certificate, which names localhost, bufnet and 127.0.0.1.
	CAFile string
	// CertFile and KeyFile are the server's.
	CertFile, KeyFile string
	// Registry holds the server's metrics.
	Registry *prometheus.Registry

	pool *x509.CertPool
	lis  *bufconn.Listener
}

// Start serves api.NewServer over a fake Backend until the test ends.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Backend == nil {
		opts.Backend = NewBackend(0)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Service.Logger == nil {
		opts.Service.Logger = opts.Logger
	}
	s := &Server{Backend: opts.Backend, Registry: prometheus.NewRegistry()}
	s.writePKI(tb)
	srv, err := api.NewServer(api.ServerConfig{
		Backend:    opts.Backend,
		Service:    opts.Service,
		Auth:       api.Config{Kube: allowingKube(), Logger: opts.Logger},
		CertFile:   s.CertFile,
		KeyFile:    s.KeyFile,
		Registerer: s.Registry,
	})
	if err != nil {
		tb.Fatal(err)
	}
	var lis net.Listener
	if opts.Bufconn {
		s.lis = bufconn.Listen(1 << 20)
		lis, s.Addr = s.lis, "bufnet"
	} else {
		lis, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		s.Addr = lis.Addr().String()
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	tb.Cleanup(func() {
		srv.Stop()
		// A test that never dialled may stop the server before Serve has
		// begun: Serve then says it was stopped, which is no failure.
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			tb.Errorf("serve: %v", err)
		}
	})
	return s
}

// Dial connects to the server with TLS and Token.
func (s *Server) Dial(tb testing.TB, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	return s.DialAs(tb, Token, opts...)
}

// DialAs connects to the server with TLS and token ("" for none).
func (s *Server) DialAs(tb testing.TB, token string, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	all := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: s.pool, ServerName: "localhost"})),
	}
	if token != "" {
		all = append(all, grpc.WithPerRPCCredentials(BearerToken(token)))
	}
	target := s.Addr
	if s.lis != nil {
		target = "passthrough:///bufnet"
		all = append(all, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.lis.DialContext(ctx) }))
	}
	conn, err := grpc.NewClient(target, append(all, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// BearerToken is per-call credentials carrying a bearer token.
type BearerToken string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t BearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if t == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (BearerToken) RequireTransportSecurity() bool { return true }

// allowingKube is a fake API server that authenticates Token as User
// and allows every SubjectAccessReview.
func allowingKube() *fake.Clientset {
	kube := fake.NewClientset()
	kube.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		tr := action.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		if tr.Spec.Token == Token {
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: User, Groups: []string{"system:authenticated"}}}
		} else {
			tr.Status = authnv1.TokenReviewStatus{Error: "token not found"}
		}
		return true, tr, nil
	})
	kube.PrependReactor("create", "subjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		sar := action.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview).DeepCopy()
		sar.Status.Allowed = true
		return true, sar, nil
	})
	return kube
}

// writePKI makes a CA and a server certificate in the test's directory.
func (s *Server) writePKI(tb testing.TB) {
	tb.Helper()
	dir := tb.TempDir()
	caKey := newKey(tb)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "apitest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatal(err)
	}
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "fledge"},
		DNSNames: []string{"localhost", "bufnet"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	s.CAFile = writePEM(tb, filepath.Join(dir, "ca.crt"), "CERTIFICATE", caDER)
	s.CertFile = writePEM(tb, filepath.Join(dir, "tls.crt"), "CERTIFICATE", der)
	s.KeyFile = writePEM(tb, filepath.Join(dir, "tls.key"), "EC PRIVATE KEY", keyDER)
	s.pool = x509.NewCertPool()
	s.pool.AddCert(ca)
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key
}

func writePEM(tb testing.TB, path, typ string, der []byte) string {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}
