//go:build e2e

package rollout_test

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
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgeengine "github.com/fledgehq/fledge/rollout/engine"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// These tests drive fledge as a CI pipeline does: through its gRPC API,
// served by the engine process over TLS, with ServiceAccount tokens whose
// RBAC decides what they may do, and through fledgectl as a binary, whose
// exit code is what a pipeline branches on.

// slowPolicies has a step that lasts a minute: whatever a test sees
// happen within it is the doing of the call it made, not of the analysis.
const slowPolicies = `
policies:
  slow:
    steps: [20, 50]
    interval: 60s
    minInterval: 1s
    failureLimit: 2
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 50}
`

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
	sb := suite.Get(t)
	ns := sb.Namespace(t)
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

// fledgectl, built once per test binary.
var fledgectlBuild struct {
	once   sync.Once
	binary string
	err    error
}

func fledgectlBinary(t *testing.T) string {
	t.Helper()
	fledgectlBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "fledge-e2e-fledgectl-")
		if err != nil {
			fledgectlBuild.err = err
			return
		}
		fledgectlBuild.binary = filepath.Join(dir, "fledgectl")
		if out, err := exec.Command("go", "build", "-o", fledgectlBuild.binary, "github.com/fledgehq/fledge/cmd/fledgectl").CombinedOutput(); err != nil {
			fledgectlBuild.err = fmt.Errorf("build fledgectl: %v\n%s", err, out)
		}
	})
	if fledgectlBuild.err != nil {
		t.Fatal(fledgectlBuild.err)
	}
	return fledgectlBuild.binary
}

// fledgectl runs the CLI as a pipeline step would: the server, token and
// namespace from the environment, fledge's CA from a file.
type fledgectl struct {
	t      *testing.T
	binary string
	env    []string
	caFile string
}

func (a *apiEnv) fledgectl(t *testing.T, token string) *fledgectl {
	return &fledgectl{t: t, binary: fledgectlBinary(t), caFile: a.caFile, env: append(os.Environ(),
		"FLEDGE_SERVER="+a.addr, "FLEDGE_TOKEN="+token, "FLEDGE_NAMESPACE="+a.ns,
		// Never a developer's kubeconfig.
		"KUBECONFIG="+filepath.Join(t.TempDir(), "none"))}
}

type ctlResult struct {
	code           int
	stdout, stderr string
}

func (c *fledgectl) command(args ...string) (*exec.Cmd, *lockedBuffer, *lockedBuffer) {
	cmd := exec.Command(c.binary, append([]string{"--ca-file", c.caFile}, args...)...)
	cmd.Env = c.env
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, errOut
	return cmd, out, errOut
}

// run runs fledgectl to its end (killing it after 3 minutes).
func (c *fledgectl) run(args ...string) ctlResult {
	c.t.Helper()
	cmd, out, errOut := c.command(args...)
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	timer := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	r := ctlResult{code: exitCodeOf(c.t, cmd.Wait()), stdout: out.String(), stderr: errOut.String()}
	c.t.Logf("fledgectl %s: exit %d\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

func exitCodeOf(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("fledgectl: %v", err)
	}
	return exit.ExitCode()
}

// background is a fledgectl still running (watch).
type background struct {
	cmd         *exec.Cmd
	out, errOut *lockedBuffer
	done        chan error
}

func (c *fledgectl) start(args ...string) *background {
	c.t.Helper()
	cmd, out, errOut := c.command(args...)
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	b := &background{cmd: cmd, out: out, errOut: errOut, done: make(chan error, 1)}
	go func() { b.done <- cmd.Wait() }()
	c.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-b.done
	})
	return b
}

// waitOutput waits until stdout holds want.
func (b *background) waitOutput(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(b.out.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("fledgectl never printed %q\nstdout:\n%s\nstderr:\n%s", want, b.out, b.errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// interrupt stops the command as Ctrl-C would and returns how it ended.
func (b *background) interrupt(t *testing.T) ctlResult {
	t.Helper()
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	var err error
	select {
	case err = <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		err = <-b.done
		t.Errorf("fledgectl did not end within 10s of SIGINT")
	}
	b.done <- err // for the cleanup
	return ctlResult{code: exitCodeOf(t, err), stdout: b.out.String(), stderr: b.errOut.String()}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lineWith reports whether one line of out holds every one of parts.
func lineWith(out string, parts ...string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// A pipeline deploys with set-image and waits on the revision it printed:
// wait exits 0 once it is promoted, and 2 when a faulty revision is
// rolled back. A watch started before shows every step.
func TestFledgectlSetImageAndWaitTellAPipelineHowItsRevisionEnded(t *testing.T) {
	a := startAPIEngine(t, fastPolicies)
	sb, ns := a.sb, a.ns
	shopApp(t, sb, ns, "fast", 200)
	ctl := a.fledgectl(t, a.pipeline)

	watch := ctl.start("watch", "shop")
	watch.waitOutput(t, ns+"/shop Idle") // the current state first: changes come after it

	set := ctl.run("set-image", "shop", "shop=example.com/shop:v2", "--reason", "release v2")
	rev := strings.TrimSpace(set.stdout)
	if set.code != 0 || rev == "" || strings.ContainsAny(rev, " \n") {
		t.Fatalf("set-image: exit %d, stdout %q: want 0 and the revision alone", set.code, set.stdout)
	}
	d, err := sb.Kube.AppsV1().Deployments(ns).Get(context.Background(), "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fledgeengine.TemplateHash(d.Spec.Template); got != rev || d.Spec.Template.Spec.Containers[0].Image != "example.com/shop:v2" {
		t.Errorf("the Deployment's template is revision %s with image %s; set-image printed %s for example.com/shop:v2",
			got, d.Spec.Template.Spec.Containers[0].Image, rev)
	}
	if cause := d.Annotations["kubernetes.io/change-cause"]; !strings.Contains(cause, apiUser(ns, "pipeline")) || !strings.Contains(cause, "release v2") {
		t.Errorf("change-cause %q does not say who set the image and why", cause)
	}

	w := ctl.run("wait", "shop", "--revision", rev, "--timeout", "2m")
	if w.code != 0 || !strings.Contains(w.stdout, "revision "+rev+" promoted") {
		t.Fatalf("wait --revision %s: exit %d, want 0 (promoted)", rev, w.code)
	}
	if f := mustFlight(t, sb, ns); f.Status.Phase != v1alpha1.PhaseSucceeded || f.Status.StableRevision != rev {
		t.Fatalf("wait exited 0, but the Flight is %s with stable revision %s", f.Status.Phase, f.Status.StableRevision)
	}
	// What a pipeline reads next: what runs now.
	got, err := a.client(t).Get(withToken(callCtx(t), a.reader), &rolloutpb.GetRequest{Namespace: ns, Name: "shop"})
	if err != nil {
		t.Fatalf("Get after the promotion: %v", err)
	}
	if stable := got.GetFlight().GetStableImages(); len(stable) != 1 {
		t.Errorf("after the promotion the API lists stable images %v, want one (container shop)", stable)
	} else {
		if stable[0].GetImage() != "example.com/shop:v2" {
			t.Errorf("after the promotion the API says the stable revision runs %s, want example.com/shop:v2 (what the Deployment runs)", stable[0].GetImage())
		}
		if stable[0].GetContainer() != "shop" {
			t.Errorf("the stable image %v does not name its container, want shop", stable[0])
		}
	}

	// A faulty revision. Its behaviour is a pod template annotation, which
	// set-image cannot set: the annotation alone is a revision, rolled
	// back first; then set-image makes a faulty revision of its own.
	bad := setImage(t, sb, ns, "shop", "example.com/shop:v2", map[string]string{"sandbox.fledge.dev/error-rate": "0.2"})
	waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseRolledBack && f.Status.RejectedRevision == bad
	})
	set = ctl.run("set-image", "shop", "shop=example.com/shop:v3")
	rev3 := strings.TrimSpace(set.stdout)
	if set.code != 0 || rev3 == "" || rev3 == bad {
		t.Fatalf("set-image v3: exit %d, revision %q (the rejected one is %s)", set.code, rev3, bad)
	}
	w = ctl.run("wait", "shop", "--revision", rev3, "--timeout", "2m")
	if w.code != 2 || !strings.Contains(w.stderr, "revision "+rev3+" rolled back") {
		t.Errorf("wait --revision %s for a faulty revision: exit %d, want 2 (rolled back)", rev3, w.code)
	}
	if f := mustFlight(t, sb, ns); f.Status.Phase != v1alpha1.PhaseRolledBack || f.Status.RejectedRevision != rev3 {
		t.Errorf("wait exited 2, but the Flight is %s with rejected revision %s", f.Status.Phase, f.Status.RejectedRevision)
	}

	r := watch.interrupt(t)
	t.Logf("fledgectl watch shop:\n%s", r.stdout)
	if r.code != 0 {
		t.Errorf("watch exited %d after an interrupt, want 0", r.code)
	}
	for _, want := range [][]string{
		{"Progressing", "step 1/2", " 20%"},
		{"Progressing", "step 2/2", " 50%"},
		{"Succeeded"},
		{"RolledBack", "success-rate"},
	} {
		if !lineWith(r.stdout, want...) {
			t.Errorf("no line of the watch shows %q:\n%s", want, r.stdout)
		}
	}
	assertSettled(t, sb, ns)
}

// promote --full and abort take effect at once, whatever the steps'
// interval, and the Flight and the Deployment's Events say who did it and
// why.
func TestFledgectlPromoteFullAndAbortActAtOnceAndSayWhoAndWhy(t *testing.T) {
	a := startAPIEngine(t, slowPolicies)
	sb, ns := a.sb, a.ns
	shopApp(t, sb, ns, "slow", 50)
	ctl := a.fledgectl(t, a.pipeline)

	rev := startCanary(t, sb, ns, "example.com/shop:v2")
	if p := ctl.run("promote", "shop", "--full", "--reason", "smoke tests passed"); p.code != 0 {
		t.Fatalf("promote --full: exit %d", p.code)
	}
	// A step lasts a minute: promoted within it is the call's doing.
	f := waitFlight(t, sb, ns, "shop", 50*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == rev
	})
	want := []v1alpha1.Verdict{v1alpha1.VerdictStart, v1alpha1.VerdictPromote, v1alpha1.VerdictPromoted}
	if got := verdicts(f, rev); !cmp.Equal(got, want) {
		t.Errorf("decision log of %s: %v, want %v (no step judged)", rev, got, want)
	}
	if la := f.Status.LastAction; la == nil || la.Kind != v1alpha1.ActionPromoteFull || la.By != apiUser(ns, "pipeline") || la.Reason != "smoke tests passed" {
		t.Errorf("last action %+v, want promote-full by %s for \"smoke tests passed\"", la, apiUser(ns, "pipeline"))
	}
	assertSettled(t, sb, ns)

	rev3 := startCanary(t, sb, ns, "example.com/shop:v3")
	ab := ctl.run("abort", "shop", "--reason", "bad build")
	if ab.code != 0 || !strings.Contains(ab.stdout, "Aborted") {
		t.Fatalf("abort: exit %d, want 0 and the Flight Aborted", ab.code)
	}
	// The answer comes once the decision is written.
	f = mustFlight(t, sb, ns)
	if f.Status.Phase != v1alpha1.PhaseAborted || f.Status.RejectedRevision != rev3 {
		t.Errorf("after abort answered: phase %s, rejected %q; want Aborted, %s", f.Status.Phase, f.Status.RejectedRevision, rev3)
	}
	la := f.Status.LastAction
	if la == nil || la.Kind != v1alpha1.ActionAbort || la.By != apiUser(ns, "pipeline") || la.Reason != "bad build" || !strings.HasPrefix(la.RequestID, "fledgectl-") {
		t.Errorf("last action %+v, want abort by %s for \"bad build\" with fledgectl's request id", la, apiUser(ns, "pipeline"))
	}
	waitWarning(t, sb, ns, "shop", rollout.EventAborted, "bad build")
	if w := ctl.run("wait", "shop", "--revision", rev3, "--timeout", "30s"); w.code != 3 || !strings.Contains(w.stderr, "bad build") {
		t.Errorf("wait --revision %s after the abort: exit %d, want 3 (aborted) naming the reason", rev3, w.code)
	}
	assertSettled(t, sb, ns)
}

// Who may do what is the Deployment's RBAC: a reader may look, not act,
// and a caller without valid credentials may do neither. Refused calls
// change nothing.
func TestAPIRefusesCallersWithoutThePermissionOrCredentials(t *testing.T) {
	a := startAPIEngine(t, slowPolicies)
	sb, ns := a.sb, a.ns
	shopApp(t, sb, ns, "slow", 50)
	rev := startCanary(t, sb, ns, "example.com/shop:v2")
	before := mustFlight(t, sb, ns)
	c := a.client(t)
	reader := withToken(callCtx(t), a.reader)

	got, err := c.Get(reader, &rolloutpb.GetRequest{Namespace: ns, Name: "shop"})
	if err != nil {
		t.Fatalf("the reader's Get: %v", err)
	}
	if got.GetFlight().GetCanaryRevision() != rev || got.GetFlight().GetPhase() != rolloutpb.Phase_PHASE_PROGRESSING {
		t.Errorf("the reader got %v, want the canary %s progressing", got.GetFlight(), rev)
	}
	readerUser := "system:serviceaccount:" + ns + ":reader"
	_, err = c.Promote(reader, &rolloutpb.PromoteRequest{Namespace: ns, Name: "shop", RequestId: "reader-promote", Reason: "why not", Full: true})
	wantStatus(t, "the reader's Promote", err, codes.PermissionDenied, readerUser, "patch", "shop")
	_, err = c.Abort(reader, &rolloutpb.AbortRequest{Namespace: ns, Name: "shop", RequestId: "reader-abort", Reason: "why not"})
	wantStatus(t, "the reader's Abort", err, codes.PermissionDenied, readerUser, "patch", "shop")
	_, err = c.SetImage(reader, &rolloutpb.SetImageRequest{Namespace: ns, Name: "shop", RequestId: "reader-image", Container: "shop", Image: "example.com/shop:v9"})
	wantStatus(t, "the reader's SetImage", err, codes.PermissionDenied, readerUser, "patch")
	if r := a.fledgectl(t, a.reader).run("abort", "shop", "--reason", "why not"); r.code != 1 || !strings.Contains(r.stderr, "cannot patch") {
		t.Errorf("fledgectl abort as the reader: exit %d, want 1 saying it cannot patch", r.code)
	}

	none := callCtx(t)
	_, err = c.Get(none, &rolloutpb.GetRequest{Namespace: ns, Name: "shop"})
	wantStatus(t, "Get without a token", err, codes.Unauthenticated)
	_, err = c.Promote(none, &rolloutpb.PromoteRequest{Namespace: ns, Name: "shop", RequestId: "anonymous", Full: true})
	wantStatus(t, "Promote without a token", err, codes.Unauthenticated)
	garbage := withToken(callCtx(t), "garbage.not-a-token")
	_, err = c.Get(garbage, &rolloutpb.GetRequest{Namespace: ns, Name: "shop"})
	wantStatus(t, "Get with a garbage token", err, codes.Unauthenticated)
	_, err = c.Abort(garbage, &rolloutpb.AbortRequest{Namespace: ns, Name: "shop", RequestId: "garbage", Reason: "x"})
	wantStatus(t, "Abort with a garbage token", err, codes.Unauthenticated)
	if r := a.fledgectl(t, "garbage.not-a-token").run("status", "shop"); r.code != 1 || !strings.Contains(r.stderr, "Unauthenticated") {
		t.Errorf("fledgectl status with a garbage token: exit %d, want 1 (unauthenticated)", r.code)
	}

	after := mustFlight(t, sb, ns)
	if diff := cmp.Diff(stateOf(before), stateOf(after)); diff != "" {
		t.Errorf("refused calls changed the Flight (-before +after):\n%s", diff)
	}
	// Refusals are counted, by method and code.
	counters := scrapeCounters(t, a.engine.MetricsAddr)
	for key, want := range map[string]float64{
		`fledge_api_requests_total{code="PermissionDenied",method="/fledge.v1.Rollouts/Promote"}`: 1,
		`fledge_api_requests_total{code="PermissionDenied",method="/fledge.v1.Rollouts/Abort"}`:   2,
		`fledge_api_requests_total{code="Unauthenticated",method="/fledge.v1.Rollouts/Get"}`:      3,
	} {
		if counters[key] != want {
			t.Errorf("%s = %v, want %v", key, counters[key], want)
		}
	}
	if image := shopImage(t, sb, ns); image != "example.com/shop:v2" {
		t.Errorf("after a refused SetImage the Deployment's image is %s, want example.com/shop:v2", image)
	}
}

// When fledge cannot ask the API server who calls and what they may do,
// it refuses every call with UNAVAILABLE, valid tokens included, and acts
// on none, not even once the API server is back.
func TestAPIRefusesEveryCallAsUnavailableWhileTheAPIServerIsUnreachable(t *testing.T) {
	sb := suite.Get(t)
	target, err := url.Parse(sb.RESTConfig.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startTCPProxy(t, target.Host)
	// Its API server traffic goes through the proxy. Leases long enough to
	// outlast the outage: a leader that gave up would exit, and the test
	// would see a closed port rather than fledge's refusals.
	a := startAPIEngine(t, slowPolicies, "--kubeconfig="+proxiedKubeconfig(t, sb, proxy.addr),
		"--lease-duration=90s", "--renew-deadline=80s", "--retry-period=2s")
	ns := a.ns
	shopApp(t, sb, ns, "slow", 50)
	startCanary(t, sb, ns, "example.com/shop:v2")
	c := a.client(t)
	before := mustFlight(t, sb, ns)
	// The pipeline's token is reviewed (and cached by fledge) now; the
	// fresh one never was, so it needs a TokenReview during the outage.
	fresh := serviceAccountToken(t, sb, ns, "pipeline")
	if _, err := c.Get(withToken(callCtx(t), a.pipeline), &rolloutpb.GetRequest{Namespace: ns, Name: "shop"}); err != nil {
		t.Fatalf("Get before the outage: %v", err)
	}

	proxy.Close()
	// First the cached token (a review is trusted for 30s), so that the
	// refusal is the SubjectAccessReview's.
	_, err = c.Promote(withToken(callCtx(t), a.pipeline), &rolloutpb.PromoteRequest{Namespace: ns, Name: "shop", RequestId: "during-outage", Reason: "ship it", Full: true})
	wantStatus(t, "Promote with a reviewed token", err, codes.Unavailable, "cannot verify credentials", "subjectaccessreview")
	_, err = c.Get(withToken(callCtx(t), fresh), &rolloutpb.GetRequest{Namespace: ns, Name: "shop"})
	wantStatus(t, "Get with a token to review", err, codes.Unavailable, "cannot verify credentials", "tokenreview")
	if r := a.fledgectl(t, a.pipeline).run("promote", "shop", "--full", "--request-id", "ctl-during-outage"); r.code != 5 {
		t.Errorf("fledgectl promote during the outage: exit %d, want 5 (unavailable)", r.code)
	}

	proxy.Reopen()
	var last error
	err = wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		_, last = c.Get(withToken(ctx, fresh), &rolloutpb.GetRequest{Namespace: ns, Name: "shop"})
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("the API never served again after the outage: %v", last)
	}
	// Nothing was queued to be taken once fledge could write again.
	for range 10 {
		after := mustFlight(t, sb, ns)
		if diff := cmp.Diff(stateOf(before), stateOf(after)); diff != "" {
			t.Fatalf("calls refused during the outage changed the Flight (-before +after):\n%s", diff)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Bad calls get the code that says what is wrong, and a promote retried
// with its request id is answered, not taken, again.
func TestAPIAnswersBadCallsWithTheirCodeAndTakesARetriedPromoteOnce(t *testing.T) {
	a := startAPIEngine(t, slowPolicies)
	sb, ns := a.sb, a.ns
	shopApp(t, sb, ns, "slow", 50)
	rev := startCanary(t, sb, ns, "example.com/shop:v2")
	c := a.client(t)
	ctx := withToken(callCtx(t), a.pipeline)

	_, err := c.Get(ctx, &rolloutpb.GetRequest{Namespace: ns, Name: "ghost"})
	wantStatus(t, "Get of a Deployment that is not opted in", err, codes.NotFound, ns+"/ghost")
	_, err = c.Promote(ctx, &rolloutpb.PromoteRequest{Namespace: ns, Name: "ghost", RequestId: "ghost-1", Reason: "x"})
	wantStatus(t, "Promote of a Deployment that is not opted in", err, codes.NotFound, ns+"/ghost")
	_, err = c.SetImage(ctx, &rolloutpb.SetImageRequest{Namespace: ns, Name: "shop", RequestId: "bad-image", Container: "shop", Image: "UPPER CASE:bad"})
	wantStatus(t, "SetImage of a malformed image", err, codes.InvalidArgument, "image", "UPPER CASE:bad")
	_, err = c.Abort(ctx, &rolloutpb.AbortRequest{Namespace: ns, Name: "shop", RequestId: "no-reason"})
	wantStatus(t, "Abort without a reason", err, codes.InvalidArgument, "reason")
	if f := mustFlight(t, sb, ns); f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.LastAction != nil {
		t.Fatalf("after invalid calls: %s, last action %+v; want the canary progressing, no action recorded", f.Status.Phase, f.Status.LastAction)
	}
	if image := shopImage(t, sb, ns); image != "example.com/shop:v2" {
		t.Errorf("after a malformed SetImage the Deployment's image is %s, want example.com/shop:v2", image)
	}

	req := &rolloutpb.PromoteRequest{Namespace: ns, Name: "shop", RequestId: "pipeline-4211-promote", Reason: "step looks fine"}
	first, err := c.Promote(ctx, req)
	if err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if first.GetReplayed() || first.GetFlight().GetCanaryWeight() != 50 {
		t.Errorf("first Promote: replayed %v, canary at %d%%; want a new action that passed the 20%% step", first.GetReplayed(), first.GetFlight().GetCanaryWeight())
	}
	again, err := c.Promote(ctx, req)
	if err != nil {
		t.Fatalf("Promote again with the same request id: %v", err)
	}
	if !again.GetReplayed() || again.GetAction().GetRequestId() != req.RequestId || again.GetFlight().GetPhase() != rolloutpb.Phase_PHASE_PROGRESSING || again.GetFlight().GetCanaryWeight() != 50 {
		t.Errorf("Promote again: replayed %v, action %v, flight %s at %d%%; want replayed, still at 50%%",
			again.GetReplayed(), again.GetAction(), again.GetFlight().GetPhase(), again.GetFlight().GetCanaryWeight())
	}
	// The same request id for another call is refused, and does nothing.
	_, err = c.Abort(ctx, &rolloutpb.AbortRequest{Namespace: ns, Name: "shop", RequestId: req.RequestId, Reason: "oops"})
	wantStatus(t, "Abort reusing a promote's request id", err, codes.InvalidArgument, req.RequestId)

	f := mustFlight(t, sb, ns)
	var promotes []string
	for _, d := range f.Status.Decisions {
		if d.Revision == rev && d.Verdict == v1alpha1.VerdictManual {
			promotes = append(promotes, d.Message)
		}
	}
	if len(promotes) != 1 || !strings.Contains(promotes[0], apiUser(ns, "pipeline")) || !strings.Contains(promotes[0], "step looks fine") {
		t.Errorf("manual decisions of %s: %q, want one step passed by %s", rev, promotes, apiUser(ns, "pipeline"))
	}
	if f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.CanaryWeight != 50 || f.Status.LastAction == nil || f.Status.LastAction.Kind != v1alpha1.ActionPromote {
		t.Errorf("after the replay: phase %s at %d%%, last action %+v; want progressing at 50%% after one promote", f.Status.Phase, f.Status.CanaryWeight, f.Status.LastAction)
	}
}

// proxiedKubeconfig is fledge's ServiceAccount kubeconfig with the API
// server reached through addr (on 127.0.0.1, which the API server's
// certificate names).
func proxiedKubeconfig(t *testing.T, sb *sandbox.Sandbox, addr string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(serviceAccountKubeconfig(t, sb))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		c.Server = "https://" + addr
	}
	path := filepath.Join(t.TempDir(), "proxied.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// tcpProxy forwards connections to target until closed; it can be
// reopened on the same address.
type tcpProxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	l     net.Listener // nil while closed
	conns map[net.Conn]struct{}
}

func startTCPProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{t: t, target: target, conns: map[net.Conn]struct{}{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = l.Addr().String()
	p.serve(l)
	t.Cleanup(p.Close)
	return p
}

// Reopen listens again on the proxy's address.
func (p *tcpProxy) Reopen() {
	p.t.Helper()
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(l)
}

func (p *tcpProxy) serve(l net.Listener) {
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.forward(l, c)
		}
	}()
}

func (p *tcpProxy) forward(l net.Listener, c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.l != l { // closed meanwhile
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	var once sync.Once
	done := func() {
		once.Do(func() {
			c.Close()
			up.Close()
			p.mu.Lock()
			delete(p.conns, c)
			delete(p.conns, up)
			p.mu.Unlock()
		})
	}
	go func() { _, _ = io.Copy(up, c); done() }()
	go func() { _, _ = io.Copy(c, up); done() }()
}

// Close stops listening and cuts every connection: the API server is
// unreachable through the proxy.
func (p *tcpProxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// Pause holds a canary at its weight, resume lets it go on, and retry
// canaries an aborted revision again, each answered once its decision is
// written.
func TestFledgectlPauseResumeAndRetry(t *testing.T) {
	a := startAPIEngine(t, slowPolicies)
	sb, ns := a.sb, a.ns
	shopApp(t, sb, ns, "slow", 50)
	ctl := a.fledgectl(t, a.pipeline)

	rev := startCanary(t, sb, ns, "example.com/shop:v2")
	if r := ctl.run("pause", "shop", "--reason", "looking at a dashboard"); r.code != 0 {
		t.Fatalf("pause: exit %d: %s", r.code, r.stderr)
	}
	f := mustFlight(t, sb, ns)
	if f.Status.Phase != v1alpha1.PhasePaused || f.Status.CanaryWeight == 0 {
		t.Fatalf("after pause: phase %s at %d%%, want Paused at the step's weight", f.Status.Phase, f.Status.CanaryWeight)
	}
	if r := ctl.run("resume", "shop"); r.code != 0 {
		t.Fatalf("resume: exit %d: %s", r.code, r.stderr)
	}
	if f := mustFlight(t, sb, ns); f.Status.Phase != v1alpha1.PhaseProgressing {
		t.Fatalf("after resume: phase %s, want Progressing", f.Status.Phase)
	}
	if r := ctl.run("abort", "shop", "--reason", "flaky dependency"); r.code != 0 {
		t.Fatalf("abort: exit %d: %s", r.code, r.stderr)
	}
	if f := mustFlight(t, sb, ns); f.Status.Phase != v1alpha1.PhaseAborted || f.Status.RejectedRevision != rev {
		t.Fatalf("after abort: phase %s rejected %q", f.Status.Phase, f.Status.RejectedRevision)
	}
	// The Deployment still asks for the aborted revision: retry flies it again.
	if r := ctl.run("retry", "shop", "--reason", "dependency fixed"); r.code != 0 {
		t.Fatalf("retry: exit %d: %s", r.code, r.stderr)
	}
	f = mustFlight(t, sb, ns)
	if f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.CanaryRevision != rev || f.Status.RejectedRevision != "" {
		t.Fatalf("after retry: phase %s canary %s rejected %q; want %s in flight again", f.Status.Phase, f.Status.CanaryRevision, f.Status.RejectedRevision, rev)
	}
	// Promoting a canary that is not ready yet is refused, and says so.
	if r := ctl.run("promote", "shop", "--full"); r.code == 0 {
		if f := mustFlight(t, sb, ns); f.Status.Phase == v1alpha1.PhaseProgressing && f.Status.Step < 0 {
			t.Fatalf("promote --full of a canary not yet ready succeeded")
		}
	} else if !strings.Contains(r.stderr, "not ready") {
		t.Fatalf("promote --full refused without saying why: %s", r.stderr)
	}
	waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Step >= 0 || f.Status.Phase != v1alpha1.PhaseProgressing
	})
	if r := ctl.run("promote", "shop", "--full"); r.code != 0 && mustFlight(t, sb, ns).Status.Phase == v1alpha1.PhaseProgressing {
		t.Fatalf("promote --full: exit %d: %s", r.code, r.stderr)
	}
	waitFlight(t, sb, ns, "shop", 50*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == rev
	})
	assertSettled(t, sb, ns)
}
