//go:build e2e

package rollout_test

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
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// apiEnv is an engine serving the API for one test namespace, with a
// pipeline identity that may drive the namespace's Deployments and a
// reader that may only look at them.
type apiEnv struct {
	sb       *sandbox.Sandbox
	ns       string
	engine   *engine
	addr     string // the API's host:port
	caFile   string // the API's (self-signed) certificate
	pipeline string // token of ServiceAccount "pipeline": get, list, watch, patch deployments
	reader   string // token of ServiceAccount "reader": get, list, watch deployments
}

// startAPIEngine runs an engine for a new namespace that serves the API,
// and waits until the API answers. extra are more engine flags.
func startAPIEngine(t *testing.T, policies string, extra ...string) *apiEnv {
	t.Helper()
	sb, ns := suite.Namespace(t)
	certFile, keyFile := servingCertificate(t)
	a := &apiEnv{sb: sb, ns: ns, addr: freeAddr(t), caFile: certFile}
	args := append([]string{"--api-addr=" + a.addr, "--tls-cert-file=" + certFile, "--tls-key-file=" + keyFile}, extra...)
	a.engine = startEngine(t, sb, ns, engineOptions{Policies: policies, Args: args})
	a.pipeline, a.reader = pipelineIdentities(t, sb, ns)
	a.waitServing(t)
	return a
}

// servingCertificate writes a self-signed ECDSA certificate for 127.0.0.1
// and its key; the certificate is also the CA clients trust.
func servingCertificate(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "fledge e2e api"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// pipelineIdentities creates the ServiceAccounts "pipeline" (may patch the
// namespace's Deployments) and "reader" (may only read them) with their
// Roles and RoleBindings, waits until the API server's authorizer applies
// them, and returns a token for each.
func pipelineIdentities(t *testing.T, sb *sandbox.Sandbox, ns string) (pipeline, reader string) {
	t.Helper()
	ctx := context.Background()
	verbs := map[string][]string{"pipeline": {"get", "list", "watch", "patch"}, "reader": {"get", "list", "watch"}}
	for name, vs := range verbs {
		if _, err := sb.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		role := &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: vs}},
		}
		if _, err := sb.Kube.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
		}
		if _, err := sb.Kube.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// RBAC reaches the authorizer through its informers: wait for the
	// grants, so that a refusal later is fledge's, not the cache's lag.
	for name, vs := range verbs {
		user := "system:serviceaccount:" + ns + ":" + name
		verb := vs[len(vs)-1]
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
			r, err := sb.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
				User:               user,
				Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: "apps", Resource: "deployments", Name: "shop"},
			}}, metav1.CreateOptions{})
			return err == nil && r.Status.Allowed, nil
		})
		if err != nil {
			t.Fatalf("%s is never allowed to %s deployments in %s: %v", user, verb, ns, err)
		}
	}
	return serviceAccountToken(t, sb, ns, "pipeline"), serviceAccountToken(t, sb, ns, "reader")
}

// serviceAccountToken requests a new token for a ServiceAccount of ns.
func serviceAccountToken(t *testing.T, sb *sandbox.Sandbox, ns, name string) string {
	t.Helper()
	tok, err := sb.Kube.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	return tok.Status.Token
}

// apiUser is how the Flight records an action of a namespace's
// ServiceAccount taken through the API.
func apiUser(ns, serviceAccount string) string {
	return "api:system:serviceaccount:" + ns + ":" + serviceAccount
}

// client returns a gRPC client of the API that trusts its certificate.
// Calls carry no credentials unless their context has some (withToken).
func (a *apiEnv) client(t *testing.T) rolloutpb.RolloutsClient {
	return rolloutpb.NewRolloutsClient(a.conn(t))
}

func (a *apiEnv) conn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	pemData, err := os.ReadFile(a.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatalf("no certificate in %s", a.caFile)
	}
	conn, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// withToken is ctx with a bearer token for the calls made with it.
func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// waitServing waits until the API answers its (public) health check.
func (a *apiEnv) waitServing(t *testing.T) {
	t.Helper()
	health := healthpb.NewHealthClient(a.conn(t))
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		last = err
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING, nil
	})
	if err != nil {
		t.Fatalf("the API at %s never served (engine log %s): %v", a.addr, a.engine.LogPath(), last)
	}
}

// wantStatus fails the test unless err has the code and its message
// contains every one of want.
func wantStatus(t *testing.T, what string, err error, code codes.Code, want ...string) {
	t.Helper()
	st := status.Convert(err)
	if err == nil || st.Code() != code {
		t.Errorf("%s: %v, want %s", what, err, code)
		return
	}
	for _, w := range want {
		if !strings.Contains(st.Message(), w) {
			t.Errorf("%s: %s %q does not say %q", what, st.Code(), st.Message(), w)
		}
	}
}

// callCtx bounds one call; mutating calls wait for the decision.
func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// flightState is what a refused call must leave as it was.
type flightState struct {
	Phase          v1alpha1.Phase
	Step, Weight   int32
	CanaryRevision string
	LastAction     *v1alpha1.ActionRecord
	Requests       []v1alpha1.RequestRecord
}

func stateOf(f *v1alpha1.Flight) flightState {
	return flightState{f.Status.Phase, f.Status.Step, f.Status.CanaryWeight, f.Status.CanaryRevision, f.Status.LastAction, f.Status.Requests}
}

// mustFlight reads the Flight "shop" from the API server.
func mustFlight(t *testing.T, sb *sandbox.Sandbox, ns string) *v1alpha1.Flight {
	t.Helper()
	f, err := getFlight(context.Background(), sb, ns, "shop")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// shopImage is the image of the Deployment "shop"'s template.
func shopImage(t *testing.T, sb *sandbox.Sandbox, ns string) string {
	t.Helper()
	d, err := sb.Kube.AppsV1().Deployments(ns).Get(context.Background(), "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

// startCanary applies a new image and waits until the canary takes the
// first step's traffic, returning its revision.
func startCanary(t *testing.T, sb *sandbox.Sandbox, ns, image string) string {
	t.Helper()
	rev := setImage(t, sb, ns, "shop", image, nil)
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseProgressing && f.Status.CanaryRevision == rev && f.Status.Step == 0 && f.Status.CanaryWeight == 20
	})
	return rev
}
