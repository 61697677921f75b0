//go:build e2e

package ship_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// Most people reach their clusters through a kubeconfig whose user runs
// an exec plugin (aws eks get-token, gke-gcloud-auth-plugin, kubelogin).
// Here the plugin is a script that prints a real ServiceAccount token of
// the sandbox, and fledgectl, given only that kubeconfig and fledge's
// address, lists and reads Flights through the engine's API, which checks
// the token with a TokenReview and the permission with a
// SubjectAccessReview. A plugin whose token the API server does not know
// gets the one-line "token refused" error and exit code 1.
func TestFledgectlAuthenticatesThroughAKubeconfigExecPlugin(t *testing.T) {
	sb, ns := suite.Namespace(t)
	api := startCtlEngine(t, sb, ns)
	sb.CreateApp(t, ns, sandbox.App{Name: "shop", Container: "shop", Replicas: 1, Annotations: map[string]string{rollout.AnnotationRollout: "fast"}})
	sb.WaitFlight(t, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })

	token := ctlReaderToken(t, sb, ns)
	ctl := buildBinary(t, "fledgectl")
	// As a kubectl plugin too: the same binary under kubectl's name for it.
	plugin := filepath.Join(t.TempDir(), "kubectl-fledge")
	if err := os.Symlink(ctl, plugin); err != nil {
		t.Fatal(err)
	}

	good := ctlExecKubeconfig(t, sb, ns, tokenPlugin(t, token))
	for _, bin := range []string{ctl, plugin} {
		r := runCtl(t, bin, good, api, "list")
		if r.code != 0 || !strings.Contains(r.stdout, "shop") || !strings.Contains(r.stdout, "Idle") {
			t.Errorf("%s list with the exec plugin's token: exit %d, want 0 listing shop (Idle)\nstdout:\n%sstderr:\n%s", filepath.Base(bin), r.code, r.stdout, r.stderr)
		}
	}
	r := runCtl(t, ctl, good, api, "status", "shop", "-v")
	if r.code != 0 || !strings.Contains(r.stdout, ns+"/shop") {
		t.Errorf("status shop: exit %d, want 0 for %s/shop (the kubeconfig context's namespace)\nstdout:\n%sstderr:\n%s", r.code, ns, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "(exec plugin ") || strings.Contains(r.stderr+r.stdout, token) {
		t.Errorf("-v should say the token came from the exec plugin, without printing it:\n%s", r.stderr)
	}

	bad := ctlExecKubeconfig(t, sb, ns, tokenPlugin(t, "not-a-token-of-this-cluster"))
	r = runCtl(t, ctl, bad, api, "list")
	line := strings.TrimSuffix(r.stderr, "\n")
	if r.code != 1 || strings.Contains(line, "\n") || !strings.Contains(line, "refused the token from kubeconfig user") || strings.Contains(line, "rpc error") {
		t.Errorf("list with a token the cluster does not know: exit %d, want 1 and one plain line saying the token was refused:\n%s", r.code, r.stderr)
	}
}

// ctlAPI is where the engine serves its API, and the CA that signs it.
type ctlAPI struct {
	addr, caFile string
}

// startCtlEngine runs fledge for namespace ns, as its ServiceAccount with
// deploy/'s RBAC, serving the API on loopback over TLS, and waits until
// the API answers.
func startCtlEngine(t *testing.T, sb *sandbox.Sandbox, ns string) ctlAPI {
	t.Helper()
	ctx := context.Background()
	installCRDs(t, sb)
	if err := sb.InstallRBAC(ctx, engineNamespace, repoFile("deploy/rbac.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := sb.ApplyRBAC(ctx, repoFile("deploy/rbac-namespace.yaml"), ns); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies.yaml")
	if err := os.WriteFile(policies, []byte(`
policies:
  fast:
    steps: [20, 50]
    interval: 6s
    minInterval: 1s
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 50}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := ctlServingCertificate(t, dir)
	api := ctlAPI{addr: freeAddr(t), caFile: certFile}
	p, err := sb.StartProcess(ns+"-fledge", nil, buildBinary(t, "fledge"),
		"--kubeconfig="+sb.ServiceAccountKubeconfig(t, engineNamespace, "fledge"), "--policies="+policies,
		"--prometheus-url="+sb.PrometheusURL, "--metrics-addr="+freeAddr(t), "--health-addr=0", "--namespaces="+ns,
		"--leader-election-namespace="+engineNamespace, "--leader-election-id=fledge-"+ns, "--identity=fledge",
		"--api-addr="+api.addr, "--tls-cert-file="+certFile, "--tls-key-file="+keyFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })

	pool := x509.NewCertPool()
	pemData, err := os.ReadFile(certFile)
	if err != nil || !pool.AppendCertsFromPEM(pemData) {
		t.Fatalf("the API's certificate %s: %v", certFile, err)
	}
	conn, err := grpc.NewClient(api.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		last = err
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING, nil
	})
	if err != nil {
		t.Fatalf("the API at %s never served (engine log %s): %v", api.addr, p.LogPath(), last)
	}
	return api
}

// ctlServingCertificate writes a self-signed certificate for 127.0.0.1,
// which is also the CA fledgectl trusts, and its key.
func ctlServingCertificate(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "fledge e2e ship api"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// ctlReaderToken creates the ServiceAccount "reader" of ns, which may
// read the namespace's Deployments (what List and Get need), waits until
// the API server's authorizer applies that, and mints a token for it.
func ctlReaderToken(t *testing.T, sb *sandbox.Sandbox, ns string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := sb.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list", "watch"}}},
	}
	if _, err := sb.Kube.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "reader", Namespace: ns}},
	}
	if _, err := sb.Kube.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// RBAC reaches the authorizer through its informers: wait for the
	// grant, so that a refusal later is fledge's, not the cache's lag.
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		r, err := sb.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User:               "system:serviceaccount:" + ns + ":reader",
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Verb: "list", Group: "apps", Resource: "deployments"},
		}}, metav1.CreateOptions{})
		return err == nil && r.Status.Allowed, nil
	})
	if err != nil {
		t.Fatalf("the reader of %s is never allowed to list deployments: %v", ns, err)
	}
	tok, err := sb.Kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "reader",
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Status.Token
}

// tokenPlugin writes an exec plugin that prints an ExecCredential holding
// token, read from a file beside it (never in a command line).
func tokenPlugin(t *testing.T, token string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "get-token")
	body := `#!/bin/sh
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$(cat "$(dirname "$0")/token")"
`
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	return script
}

// ctlExecKubeconfig is the sandbox's kubeconfig with its user's
// credentials replaced by the exec plugin, and its context's namespace ns.
func ctlExecKubeconfig(t *testing.T, sb *sandbox.Sandbox, ns, plugin string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(sb.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for name := range cfg.AuthInfos {
		cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
			APIVersion: "client.authentication.k8s.io/v1", Command: plugin, InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
		}}
	}
	for _, c := range cfg.Contexts {
		c.Namespace = ns
	}
	path := filepath.Join(t.TempDir(), "config")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

type ctlResult struct {
	code           int
	stdout, stderr string
}

// runCtl runs fledgectl (or its kubectl-fledge link) with only the
// kubeconfig and fledge's address and CA: no token of its own.
func runCtl(t *testing.T, bin, kubeconfig string, api ctlAPI, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--ca-file", api.caFile}, args...)...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLEDGE_") && !strings.HasPrefix(kv, "KUBECONFIG=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "KUBECONFIG="+kubeconfig, "FLEDGE_SERVER="+api.addr)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := ctlResult{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", bin, err)
	}
	t.Logf("%s %s: exit %d", filepath.Base(bin), strings.Join(args, " "), r.code)
	return r
}
