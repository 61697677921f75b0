package rollout

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The decision core is pure: no client-go clients, no network, no clock,
// no goroutines, no randomness. These tests hold that line, so that it
// cannot erode unnoticed: a new import must be added to the allow-list
// below, in a change a reviewer reads.

// allowedImports are the only packages the core's files may import. Each
// is data, parsing or formatting: none reaches the network, the file
// system, a clock or another goroutine.
var allowedImports = map[string]string{
	"cmp":           "comparisons",
	"crypto/sha256": "delivery ids are hashes of what they identify",
	"encoding/hex":  "delivery ids",
	"encoding/json": "policies, flag documents",
	"errors":        "",
	"fmt":           "",
	"maps":          "",
	"math":          "",
	"net/netip":     "parsing the policy file's hookNetworks (CIDRs), never dialling them",
	"net/url":       "parsing the URLs of admin-written hooks, never dialling them",
	"regexp":        "validating annotations and policies",
	"slices":        "",
	"sort":          "",
	"strconv":       "",
	"strings":       "",
	"time":          "durations and instants given in Input (the clock is not: see TestCoreReadsNoClock)",
	"unicode/utf8":  "cutting echoed values on a character boundary",

	"k8s.io/apimachinery/pkg/api/meta":     "status conditions",
	"k8s.io/apimachinery/pkg/apis/meta/v1": "the status's times and conditions",
	"sigs.k8s.io/yaml":                     "parsing the policy file's text",

	"github.com/fledgehq/fledge/analysis":                     "checks and verdicts (the Prometheus client is analysis/promclient)",
	"github.com/fledgehq/fledge/analysis/sequential":          "the comparisons' statistics",
	"github.com/fledgehq/fledge/flags":                        "release-flag rewriting and gate answers (providers are flags/flagd)",
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1": "the Flight: the status Decide reads and returns",
	"github.com/fledgehq/fledge/traffic":                      "weights and the Router's errors (routers are traffic/istio)",
	"github.com/fledgehq/fledge/webhooks":                     "hook types and payloads (the HTTP client is webhooks/hookclient)",
}

// coreFiles parses the core's own (non-test) files.
func coreFiles(t *testing.T) (*token.FileSet, map[string]*ast.File) {
	t.Helper()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := map[string]*ast.File{}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = f
	}
	if len(files) == 0 {
		t.Fatal("no files parsed")
	}
	return fset, files
}

func TestCoreImportsOnlyAllowedPackages(t *testing.T) {
	_, files := coreFiles(t)
	for name, f := range files {
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if _, ok := allowedImports[path]; !ok {
				t.Errorf("%s imports %s: the decision core may import only the allow-list in purity_test.go (I/O belongs in rollout/engine)", name, path)
			}
		}
	}
}

// clockAndConcurrency are the calls that would make a decision depend on
// when, or in which goroutine, it ran.
var clockAndConcurrency = map[string][]string{
	"time": {"Now", "Since", "Until", "Sleep", "After", "AfterFunc", "Tick", "NewTimer", "NewTicker"},
}

func TestCoreReadsNoClockAndStartsNoGoroutine(t *testing.T) {
	fset, files := coreFiles(t)
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				t.Errorf("%s: a goroutine in the decision core", fset.Position(n.Pos()))
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && slices.Contains(clockAndConcurrency[x.Name], n.Sel.Name) {
					t.Errorf("%s: %s.%s in the decision core: time comes in Input.Now", fset.Position(n.Pos()), x.Name, n.Sel.Name)
				}
			}
			return true
		})
	}
}

// forbiddenDeps may not be linked into the core at any depth: clients of
// the API server, gRPC, Prometheus's HTTP API, OpenFeature providers, and
// fledge's own packages that do I/O.
var forbiddenDeps = []string{
	"k8s.io/client-go",
	"google.golang.org/grpc",
	"github.com/prometheus/client_golang/api",
	"github.com/open-feature",
	"github.com/fledgehq/fledge/analysis/promclient",
	"github.com/fledgehq/fledge/flags/flagd",
	"github.com/fledgehq/fledge/rollout/api",
	"github.com/fledgehq/fledge/rollout/client",
	"github.com/fledgehq/fledge/rollout/engine",
	"github.com/fledgehq/fledge/traffic/istio",
	"github.com/fledgehq/fledge/webhooks/hookclient",
	"github.com/fledgehq/fledge/webhooks/slack",
}

// TestCoreLinksNoClientAndNoNetworkCode checks the core's whole dependency
// closure (go list -deps). net/http itself is in it: k8s.io/apimachinery's
// meta/v1 (for metav1.Time) and prometheus/common (behind the PromQL
// parser analysis validates templates with) import it for helpers the core
// never calls. So the test pins what can be pinned: no client library at
// any depth, and no package of fledge's in the closure that imports a
// network package itself.
func TestCoreLinksNoClientAndNoNetworkCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		for _, bad := range forbiddenDeps {
			if pkg == bad || strings.HasPrefix(pkg, bad+"/") {
				t.Errorf("the decision core links %s", pkg)
			}
		}
		if !strings.HasPrefix(pkg, "github.com/fledgehq/fledge") {
			continue
		}
		for _, imp := range strings.Fields(imports) {
			if imp == "net" || imp == "net/http" || imp == "os/exec" || strings.HasPrefix(imp, "net/http/") {
				t.Errorf("%s, which the decision core links, imports %s", pkg, imp)
			}
		}
	}
}
