package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

type pki struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	server tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{ca: ca, caKey: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.server = p.issue(t, pkix.Name{CommonName: "fledge"}, x509.ExtKeyUsageServerAuth, "bufnet")
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func (p *pki) issue(t *testing.T, subject pkix.Name, usage x509.ExtKeyUsage, dnsNames ...string) tls.Certificate {
	t.Helper()
	key := newKey(t)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: subject, DNSNames: dnsNames,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestClientCertificates(t *testing.T) {
	p := newPKI(t)
	client := p.issue(t, pkix.Name{CommonName: "ci-bot", Organization: []string{"pipelines"}}, x509.ExtKeyUsageClientAuth)
	serverCreds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientCAs:    p.pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	})
	clientCreds := func(certs ...tls.Certificate) credentials.TransportCredentials {
		return credentials.NewTLS(&tls.Config{RootCAs: p.pool, Certificates: certs, ServerName: "bufnet"})
	}
	tests := []struct {
		name       string
		trust      bool
		certs      []tls.Certificate
		token      string
		wantCode   codes.Code
		wantUser   string
		wantGroups []string
	}{
		{
			name:       "a verified certificate stands for its CN and organizations",
			trust:      true,
			certs:      []tls.Certificate{client},
			wantCode:   codes.OK,
			wantUser:   "ci-bot",
			wantGroups: []string{"pipelines", "system:authenticated"},
		},
		{
			name:     "a certificate counts for nothing unless certificates are trusted",
			certs:    []tls.Certificate{client},
			wantCode: codes.Unauthenticated,
		},
		{
			name:     "a bearer token wins over a certificate",
			trust:    true,
			certs:    []tls.Certificate{client},
			token:    readerToken,
			wantCode: codes.OK,
			wantUser: reader,
			wantGroups: []string{
				"system:serviceaccounts", "system:authenticated",
			},
		},
		{
			name:     "TLS without a client certificate has no caller",
			trust:    true,
			wantCode: codes.Unauthenticated,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{ClientCertificates: tc.trust}, harnessOptions{serverCreds: serverCreds, clientCreds: clientCreds(tc.certs...)})
			h.api.grant("ci-bot", VerbGet, "prod", "shop")
			ctx := h.context
			if tc.token != "" {
				ctx = h.as(tc.token)
			}
			err := getShop(h, ctx)
			if code := status.Code(err); code != tc.wantCode {
				t.Fatalf("%v, want %s", err, tc.wantCode)
			}
			if tc.wantUser == "" {
				return
			}
			got := h.api.lastAccessReview(t)
			if got.User != tc.wantUser || !cmp.Equal(got.Groups, tc.wantGroups) {
				t.Errorf("asked about %q in %q, want %q in %q", got.User, got.Groups, tc.wantUser, tc.wantGroups)
			}
		})
	}
}
