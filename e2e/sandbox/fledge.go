package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// What the suites that run fledge in the sandbox share: its permissions
// as deploy/ grants them, and waiting on a Flight.

// rbacResources are the kinds an RBAC manifest may hold.
var rbacResources = map[string]schema.GroupVersionResource{
	"ServiceAccount":     {Version: "v1", Resource: "serviceaccounts"},
	"ClusterRole":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"ClusterRoleBinding": {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	"Role":               {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	"RoleBinding":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
}

// InstallRBAC creates namespace and applies the RBAC manifest at path
// (deploy/rbac.yaml): an engine run with its ServiceAccount has exactly
// its permissions. Objects that exist already are left as they are.
func (s *Sandbox) InstallRBAC(ctx context.Context, namespace, path string) error {
	_, err := s.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return s.ApplyRBAC(ctx, path, "")
}

// ApplyRBAC applies the RBAC manifest at path, as kubectl -n namespace
// apply -f would: a namespaced object that names no namespace goes to
// namespace (deploy/rbac-namespace.yaml's RoleBinding, say). Objects that
// exist already are left as they are.
func (s *Sandbox) ApplyRBAC(ctx context.Context, path, namespace string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	name := filepath.Base(path)
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if obj.Object == nil {
			continue
		}
		gvr, ok := rbacResources[obj.GetKind()]
		if !ok {
			return fmt.Errorf("%s: unexpected kind %s", name, obj.GetKind())
		}
		var c interface {
			Create(context.Context, *unstructured.Unstructured, metav1.CreateOptions, ...string) (*unstructured.Unstructured, error)
		} = s.Dynamic.Resource(gvr)
		if obj.GetNamespace() == "" && namespace != "" && !strings.HasPrefix(obj.GetKind(), "Cluster") {
			obj.SetNamespace(namespace)
		}
		if ns := obj.GetNamespace(); ns != "" {
			c = s.Dynamic.Resource(gvr).Namespace(ns)
		}
		if _, err := c.Create(ctx, &obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s: %s %s: %w", name, obj.GetKind(), obj.GetName(), err)
		}
	}
}

// ServiceAccountKubeconfig writes a kubeconfig that authenticates as the
// ServiceAccount namespace/account, with a token from the TokenRequest API.
func (s *Sandbox) ServiceAccountKubeconfig(t testing.TB, namespace, account string) string {
	t.Helper()
	tok, err := s.Kube.CoreV1().ServiceAccounts(namespace).CreateToken(context.Background(), account,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for the ServiceAccount %s/%s: %v", namespace, account, err)
	}
	cfg, err := clientcmd.LoadFromFile(s.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.Token = tok.Status.Token
	}
	path := filepath.Join(t.TempDir(), account+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// WaitFlight polls the Flight until ok accepts it, and fails the test with
// its last status if that takes longer than timeout.
func (s *Sandbox) WaitFlight(t testing.TB, ns, name string, timeout time.Duration, ok func(*v1alpha1.Flight) bool) *v1alpha1.Flight {
	t.Helper()
	var last *v1alpha1.Flight
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		f, err := s.Fledge.FledgeV1alpha1().Flights(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = f
		return ok(f), nil
	})
	if err != nil {
		if last != nil {
			t.Fatalf("flight %s/%s: %v; last status: phase=%s step=%d weight=%d hold=%+v message=%q", ns, name, err, last.Status.Phase, last.Status.Step, last.Status.CanaryWeight, last.Status.Hold, last.Status.Message)
		}
		t.Fatalf("flight %s/%s never appeared: %v", ns, name, err)
	}
	return last
}
