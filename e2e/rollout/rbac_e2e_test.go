//go:build e2e

package rollout_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/e2e/sandbox"
)

// The engines of these suites run as the ServiceAccount of deploy/rbac.yaml,
// with exactly its ClusterRole and leader-election Role, never as admin: a
// permission missing from the manifests fails the tests that need it.

const engineNamespace = "fledge-system"

var manifestResources = map[string]schema.GroupVersionResource{
	"ServiceAccount":     {Version: "v1", Resource: "serviceaccounts"},
	"ClusterRole":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"ClusterRoleBinding": {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	"Role":               {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	"RoleBinding":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
}

// installRBAC creates fledge's namespace and applies deploy/rbac.yaml.
func installRBAC(ctx context.Context, sb *sandbox.Sandbox) error {
	_, err := sb.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: engineNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	data, err := os.ReadFile(repoFile("deploy/rbac.yaml"))
	if err != nil {
		return err
	}
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
		gvr, ok := manifestResources[obj.GetKind()]
		if !ok {
			return fmt.Errorf("deploy/rbac.yaml: unexpected kind %s", obj.GetKind())
		}
		var c interface {
			Create(context.Context, *unstructured.Unstructured, metav1.CreateOptions, ...string) (*unstructured.Unstructured, error)
		} = sb.Dynamic.Resource(gvr)
		if ns := obj.GetNamespace(); ns != "" {
			c = sb.Dynamic.Resource(gvr).Namespace(ns)
		}
		if _, err := c.Create(ctx, &obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("deploy/rbac.yaml: %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as
// fledge's ServiceAccount, with a token from the TokenRequest API.
func serviceAccountKubeconfig(t testing.TB, sb *sandbox.Sandbox) string {
	t.Helper()
	ctx := context.Background()
	tok, err := sb.Kube.CoreV1().ServiceAccounts(engineNamespace).CreateToken(ctx, "fledge",
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for the fledge ServiceAccount: %v", err)
	}
	cfg, err := clientcmd.LoadFromFile(sb.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.Token = tok.Status.Token
	}
	path := filepath.Join(t.TempDir(), "fledge.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
