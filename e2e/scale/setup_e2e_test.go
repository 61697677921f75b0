//go:build e2e

package scale_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout/engine"
)

// The benchmark's setup: the engine's binary, and a cluster at rest.

// engineBinary builds cmd/fledge and installs the Flight CRD and fledge's
// RBAC in the sandbox.
func engineBinary(b *testing.B, sb *sandbox.Sandbox) string {
	b.Helper()
	binary := filepath.Join(b.TempDir(), "fledge")
	if out, err := exec.Command("go", "build", "-o", binary, "github.com/fledgehq/fledge/cmd/fledge").CombinedOutput(); err != nil {
		b.Fatalf("build fledge: %v\n%s", err, out)
	}
	ctx := context.Background()
	if err := sandbox.ApplyCRDs(ctx, sb.Dynamic, repoFile("deploy/crds/flights.fledge.dev.yaml")); err != nil {
		b.Fatal(err)
	}
	if err := sb.InstallRBAC(ctx, engineNamespace, repoFile("deploy/rbac.yaml")); err != nil {
		b.Fatal(err)
	}
	return binary
}

func repoFile(rel string) string { return filepath.Join("..", "..", rel) }

func freeAddr(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// atRest waits until every Deployment of the namespaces is settled: its
// controller has observed its latest generation, and all its replicas
// run its template and are available.
func atRest(b *testing.B, sb *sandbox.Sandbox, namespaces []string, what string) {
	b.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, ns := range namespaces {
			list, err := sb.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			for i := range list.Items {
				if !engine.DeploymentSettled(&list.Items[i]) {
					return false, nil
				}
			}
		}
		return true, nil
	})
	if err != nil {
		b.Fatalf("%s: not done within 10m: %v", what, err)
	}
}

func envInt(b *testing.B, key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", key, v)
	}
	return n
}

// controllerSyncs is kube-controller-manager's concurrency per controller
// in the scale sandbox: FLEDGE_SCALE_CONTROLLER_SYNCS (make bench-scale
// SYNCS=20), else Kubernetes' default (5).
func controllerSyncs() int {
	if n, err := strconv.Atoi(os.Getenv("FLEDGE_SCALE_CONTROLLER_SYNCS")); err == nil && n > 0 {
		return n
	}
	return 0
}
