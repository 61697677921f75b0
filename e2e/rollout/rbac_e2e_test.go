//go:build e2e

package rollout_test

import (
	"context"
	"testing"

	"github.com/fledgehq/fledge/e2e/sandbox"
)

// The engines of these suites run as the ServiceAccount of deploy/rbac.yaml,
// with exactly its roles, bound in each test's namespace by
// deploy/rbac-namespace.yaml, never as admin: a permission missing from the
// manifests fails the tests that need it.

const engineNamespace = "fledge-system"

// installRBAC creates fledge's namespace and applies deploy/rbac.yaml.
func installRBAC(ctx context.Context, sb *sandbox.Sandbox) error {
	return sb.InstallRBAC(ctx, engineNamespace, repoFile("deploy/rbac.yaml"))
}

// bindNamespace lets fledge act in namespace ns: deploy/rbac-namespace.yaml
// applied there, as the install does for each namespace it lists.
func bindNamespace(sb *sandbox.Sandbox, ns string) error {
	return sb.ApplyRBAC(context.Background(), repoFile("deploy/rbac-namespace.yaml"), ns)
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as
// fledge's ServiceAccount.
func serviceAccountKubeconfig(t testing.TB, sb *sandbox.Sandbox) string {
	t.Helper()
	return sb.ServiceAccountKubeconfig(t, engineNamespace, "fledge")
}
