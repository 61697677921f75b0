//go:build e2e

package ship_test

// The few helpers of e2e/rollout's harness these tests need, copied rather
// than shared: every suite stays readable on its own.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/fledgehq/fledge/e2e/sandbox"
)

var suite = sandbox.Suite{Options: sandbox.Options{MeshSeed: 11}}

func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }

// engineNamespace is fledge's own namespace, where deploy/rbac.yaml puts
// its ServiceAccount.
const engineNamespace = "fledge-system"

var (
	buildMu  sync.Mutex
	binaries = map[string]string{}
)

// buildBinary builds the command at pkg (a package path under
// github.com/fledgehq/fledge/cmd/) once per test binary, with ldflags when
// given, and returns its path.
func buildBinary(t testing.TB, pkg string, ldflags ...string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := fmt.Sprint(pkg, ldflags)
	if bin, ok := binaries[key]; ok {
		return bin
	}
	dir, err := os.MkdirTemp("", "fledge-e2e-ship-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	args := []string{"build", "-o", bin}
	for _, f := range ldflags {
		args = append(args, "-ldflags="+f)
	}
	args = append(args, "github.com/fledgehq/fledge/cmd/"+pkg)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	binaries[key] = bin
	return bin
}

var (
	crdOnce sync.Once
	crdErr  error
)

// installCRDs applies the Flight CRD once per sandbox.
func installCRDs(t testing.TB, sb *sandbox.Sandbox) {
	t.Helper()
	crdOnce.Do(func() {
		crdErr = sandbox.ApplyCRDs(context.Background(), sb.Dynamic, repoFile("deploy/crds/flights.fledge.dev.yaml"))
	})
	if crdErr != nil {
		t.Fatal(crdErr)
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// repoFile finds a file of the repository from this package's directory.
func repoFile(rel string) string { return filepath.Join("..", "..", rel) }
