package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// fakeFledge is a gRPC server of fledge's Rollouts service on loopback
// that records the bearer tokens it is sent and answers Get with a
// Succeeded Flight, or with refusal when set. Unlike apitest's real
// server, its certificate names what a test asks for, and it can answer
// any error: the tests of what fledgectl says when a call fails need both.
type fakeFledge struct {
	rolloutpb.UnimplementedRolloutsServer
	Addr   string
	CAFile string

	mu      sync.Mutex
	tokens  []string
	refusal error
	hang    bool // answer nothing until the call's deadline
}

// startFakeFledge serves over TLS with a certificate for names (DNS names
// or IP addresses), signed by a CA of its own (CAFile).
func startFakeFledge(t *testing.T, names ...string) *fakeFledge {
	t.Helper()
	pki := newTestPKI(t, names...)
	f := &fakeFledge{CAFile: pki.caFile}
	srv := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&pki.cert)), grpc.UnaryInterceptor(f.record))
	rolloutpb.RegisterRolloutsServer(srv, f)
	f.Addr = serve(t, srv)
	return f
}

// serve serves srv on a loopback port until the test ends.
func serve(t *testing.T, srv *grpc.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func (f *fakeFledge) record(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	token := ""
	if v := md.Get("authorization"); len(v) == 1 {
		token = strings.TrimPrefix(v[0], "Bearer ")
	}
	f.mu.Lock()
	f.tokens = append(f.tokens, token)
	refusal, hang := f.refusal, f.hang
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if refusal != nil {
		return nil, refusal
	}
	return handler(ctx, req)
}

func (f *fakeFledge) refuse(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refusal = err
}

// hangUp makes the server answer nothing until each call's deadline.
func (f *fakeFledge) hangUp() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hang = true
}

// Tokens are the bearer tokens of the calls so far ("" for none).
func (f *fakeFledge) Tokens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.tokens...)
}

func (f *fakeFledge) Get(_ context.Context, req *rolloutpb.GetRequest) (*rolloutpb.GetResponse, error) {
	return &rolloutpb.GetResponse{Flight: &rolloutpb.Flight{
		Namespace: req.GetNamespace(), Name: req.GetName(), Phase: rolloutpb.Phase_PHASE_SUCCEEDED,
		StableRevision: "rev-a", CanaryRevision: "rev-a",
	}}, nil
}

// testPKI is a CA (its certificate in caFile) and a server certificate
// it signed.
type testPKI struct {
	caFile string
	cert   tls.Certificate
}

func newTestPKI(t *testing.T, names ...string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fakefledge CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "fledge"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, ip)
		} else {
			leaf.DNSNames = append(leaf.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return testPKI{caFile: caFile, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}
