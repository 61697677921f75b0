package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
)

// EnvToolsDir names the environment variable that overrides where the
// sandbox looks for its binaries (default: bin/ at the repository root).
const EnvToolsDir = "FLEDGE_TOOLS_DIR"

// tools are the paths of everything the sandbox runs, all built or copied
// there by `make tools`.
type tools struct {
	Etcd, APIServer, ControllerManager, Scheduler, Kwok, Prometheus string
	KwokStages                                                      []string // kwok Stage manifests (node and pod lifecycles)
	IstioCRDs                                                       string   // Istio's CRDs, from the istio.io/api module fledge builds against
}

func findTools(dir string) (*tools, error) {
	if dir == "" {
		dir = os.Getenv(EnvToolsDir)
	}
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return nil, err
		}
		dir = filepath.Join(root, "bin")
	}
	t := &tools{
		Etcd:              filepath.Join(dir, "etcd"),
		APIServer:         filepath.Join(dir, "kube-apiserver"),
		ControllerManager: filepath.Join(dir, "kube-controller-manager"),
		Scheduler:         filepath.Join(dir, "kube-scheduler"),
		Kwok:              filepath.Join(dir, "kwok"),
		IstioCRDs:         filepath.Join(dir, "istio-crds.yaml"),
	}
	var missing []string
	for _, p := range []string{t.Etcd, t.APIServer, t.ControllerManager, t.Scheduler, t.Kwok, t.IstioCRDs} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	stages, _ := filepath.Glob(filepath.Join(dir, "kwok-stages", "*.yaml"))
	sort.Strings(stages)
	if len(stages) == 0 {
		missing = append(missing, filepath.Join(dir, "kwok-stages/*.yaml"))
	}
	t.KwokStages = stages
	// Prometheus comes from Debian's package unless a build of our own is in bin/.
	t.Prometheus = filepath.Join(dir, "prometheus")
	if _, err := os.Stat(t.Prometheus); err != nil {
		if p, err := exec.LookPath("prometheus"); err == nil {
			t.Prometheus = p
		} else {
			missing = append(missing, "prometheus (in "+dir+" or on PATH)")
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("sandbox tools missing: %v: run `make tools` at the repository root", missing)
	}
	return t, nil
}

// repoRoot walks up from the working directory to fledge's go.mod, so tests
// in any package and the demo find the same bin/.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/fledgehq/fledge\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("sandbox: cannot find the fledge repository root (go.mod of github.com/fledgehq/fledge) above the working directory; set " + EnvToolsDir)
		}
		dir = parent
	}
}
