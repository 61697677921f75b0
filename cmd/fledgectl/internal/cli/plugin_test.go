package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNamingOfTheProgram(t *testing.T) {
	for _, tc := range []struct {
		argv0 string
		want  naming
	}{
		{"fledgectl", naming{"fledgectl", "fledgectl"}},
		{"/usr/local/bin/fledgectl", naming{"fledgectl", "fledgectl"}},
		{"/home/me/.krew/bin/kubectl-fledge", naming{"kubectl-fledge", "kubectl fledge"}},
		{"kubectl-fledge.exe", naming{"kubectl-fledge", "kubectl fledge"}},
		{"kubectl-fledge-dev", naming{"kubectl-fledge-dev", "kubectl fledge dev"}},
		{"kubectl-fledge_dev", naming{"kubectl-fledge_dev", "kubectl fledge-dev"}},
		{"kubectl-", naming{"fledgectl", "fledgectl"}},
		{"fledgectl-linux-amd64", naming{"fledgectl", "fledgectl"}},
	} {
		if got := namingOf(tc.argv0); got != tc.want {
			t.Errorf("namingOf(%q) = %+v, want %+v", tc.argv0, got, tc.want)
		}
	}
}

// runAs runs the CLI as if invoked as argv0, with no kubeconfig.
func runAs(t *testing.T, argv0 string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &app{
		streams: Streams{In: strings.NewReader(""), Out: &out, Err: &errOut},
		getenv:  envMap{"KUBECONFIG": filepath.Join(t.TempDir(), "none")}.get,
		backoff: defaultBackoff,
		naming:  namingOf(argv0),
	}
	code := a.run(t.Context(), args)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// Run as kubectl-fledge, the help shows the commands as a kubectl user
// types them.
func TestHelpAsAKubectlPluginSaysKubectlFledge(t *testing.T) {
	a := &app{naming: namingOf("/usr/local/bin/kubectl-fledge")}
	if root := a.command(); root.Use != "kubectl-fledge" || root.DisplayName() != "kubectl fledge" || root.UseLine() != "kubectl fledge" {
		t.Errorf("root: Use %q, display name %q, use line %q", root.Use, root.DisplayName(), root.UseLine())
	}
	r := runAs(t, "/usr/local/bin/kubectl-fledge", "--help")
	for _, want := range []string{"Usage:\n  kubectl fledge [command]", "kubectl fledge [command] --help"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--help does not say %q:\n%s", want, r.stdout)
		}
	}
	r = runAs(t, "kubectl-fledge", "set-image", "--help")
	for _, want := range []string{"kubectl fledge set-image NAME CONTAINER=IMAGE", "rev=$(kubectl fledge set-image shop", "kubectl fledge wait shop --revision"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("set-image --help does not say %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "fledgectl ") {
		t.Errorf("set-image --help still shows fledgectl command lines:\n%s", r.stdout)
	}
	r = runAs(t, "kubectl-fledge", "status", "shop")
	if r.code != ExitError || !strings.HasPrefix(r.stderr, "kubectl fledge: no fledge server") {
		t.Errorf("an error as a plugin: exit %d, stderr %q", r.code, r.stderr)
	}

	r = runAs(t, "fledgectl", "--help")
	if !strings.Contains(r.stdout, "Usage:\n  fledgectl [command]") || strings.Contains(r.stdout, "kubectl fledge [command]") {
		t.Errorf("as fledgectl, --help:\n%s", r.stdout)
	}
}

// cobra's completion command is there, for every shell it knows, and its
// scripts complete the program under the name it was run as.
func TestCompletionPrintsAScriptForEachShell(t *testing.T) {
	for shell, want := range map[string]string{
		"bash":       "complete -o default -F __start_fledgectl fledgectl",
		"zsh":        "#compdef fledgectl",
		"fish":       "complete -c fledgectl ",
		"powershell": "Register-ArgumentCompleter -CommandName 'fledgectl'",
	} {
		r := runAs(t, "fledgectl", "completion", shell)
		if r.code != ExitOK || !strings.Contains(r.stdout, want) {
			t.Errorf("completion %s: exit %d, no %q in:\n%.400s\nstderr: %s", shell, r.code, want, r.stdout, r.stderr)
		}
	}
	if r := runAs(t, "kubectl-fledge", "completion", "bash"); !strings.Contains(r.stdout, "__start_kubectl-fledge kubectl-fledge") {
		t.Errorf("completion bash as kubectl-fledge does not complete kubectl-fledge:\n%.400s", r.stdout)
	}
}

// A NAME argument completes to the namespace's Flights, as kubectl
// completes resource names; -o to its formats.
func TestCompletionOffersFlightNamesAndFormats(t *testing.T) {
	h := newHarness(t)
	r := h.run(t.Context(), "__complete", "status", "")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); strings.Join(lines, " ") != "cart shop :4" {
		t.Errorf("status <Tab>: %q, want cart, shop and no file completion (:4)", lines)
	}
	r = h.run(t.Context(), "__complete", "wait", "sh")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); strings.Join(lines, " ") != "shop :4" {
		t.Errorf("wait sh<Tab>: %q, want shop", lines)
	}
	r = h.runRaw(t.Context(), nil, nil, "__complete", "status", "-o", "")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); strings.Join(lines, " ") != "text json yaml :4" {
		t.Errorf("-o <Tab>: %q", lines)
	}
	// Without a server, nothing: not file names.
	r = h.runRaw(t.Context(), nil, nil, "__complete", "status", "")
	if strings.TrimSpace(r.stdout) != ":4" {
		t.Errorf("status <Tab> without a server: %q", r.stdout)
	}
}

// The built binary, linked as kubectl-fledge the way kubectl finds
// plugins, says kubectl fledge in its help.
func TestTheBinaryLinkedAsKubectlFledgeIsAKubectlPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fledgectl")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build fledgectl with")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "fledgectl")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, gobin, "build", "-o", bin, "github.com/fledgehq/fledge/cmd/fledgectl").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	plugin := filepath.Join(dir, "kubectl-fledge")
	if err := os.Symlink(bin, plugin); err != nil {
		t.Fatal(err)
	}
	// As kubectl runs a plugin: found on PATH, run by its path.
	cmd := exec.CommandContext(ctx, plugin, "--help")
	cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+filepath.Join(dir, "none"))
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), "Usage:\n  kubectl fledge [command]") || !strings.Contains(string(out), "Available Commands:") {
		t.Errorf("kubectl-fledge --help: %v\n%s", err, out)
	}
}
