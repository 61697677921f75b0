package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fledgehq/fledge/cmd/internal/buildinfo"
	"github.com/fledgehq/fledge/rollout/api"
	"github.com/fledgehq/fledge/rollout/api/apitest"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

func TestVersionPrintsClientAndServer(t *testing.T) {
	server := &rolloutpb.VersionResponse{Version: "v9.9.9", Revision: "feedface", GoVersion: "go1.26.8", Platform: "linux/arm64", BuildDate: "2026-12-01T00:00:00Z"}
	srv := apitest.Start(t, apitest.Options{Service: api.ServiceOptions{Version: server}})
	h := &harness{srv: srv, env: map[string]string{"KUBECONFIG": filepath.Join(t.TempDir(), "none")}}
	ctx := context.Background()
	client := buildinfo.Response().GetVersion()

	r := h.run(ctx, "version")
	if r.code != ExitOK {
		t.Fatalf("version: exit %d\n%s", r.code, r.stderr)
	}
	want := "Client: " + client + " (revision "
	if !strings.HasPrefix(r.stdout, want) || !strings.Contains(r.stdout, "\nServer: v9.9.9 (revision feedface, go1.26.8, linux/arm64, built 2026-12-01T00:00:00Z)\n") {
		t.Errorf("version printed:\n%s\nwant a Client line starting %q and the server's build", r.stdout, want)
	}

	r = h.run(ctx, "version", "-o", "json")
	var got map[string]map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != ExitOK {
		t.Fatalf("version -o json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if got["server"]["version"] != "v9.9.9" || got["server"]["platform"] != "linux/arm64" || got["client"]["version"] != client {
		t.Errorf("version -o json = %v", got)
	}

	// --client asks nobody: it works with no server set at all.
	r = h.runRaw(ctx, nil, nil, "version", "--client")
	if r.code != ExitOK || strings.Contains(r.stdout, "Server:") || !strings.HasPrefix(r.stdout, "Client: "+client) {
		t.Errorf("version --client: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Without a server, only the client is printed, and that is no error.
	r = h.runRaw(ctx, nil, nil, "version")
	if r.code != ExitOK || strings.Contains(r.stdout, "Server:") {
		t.Errorf("version without a server: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestVersionOfAnUnreachableServerSaysSo(t *testing.T) {
	h := newHarness(t)
	r := h.runRaw(context.Background(), nil, nil, "--server", closedAddress(t), "--ca-file", h.srv.CAFile, "--token", apitest.Token, "--timeout", "2s", "version")
	if r.code != ExitUnavailable && r.code != ExitTimeout {
		t.Errorf("version against a closed port: exit %d, want %d or %d (retry may help)\n%s", r.code, ExitUnavailable, ExitTimeout, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "Client: ") || strings.Contains(r.stdout, "Server:") {
		t.Errorf("want the client's version printed anyway, and no server's:\n%s", r.stdout)
	}
}

func TestVersionFlagPrintsTheBuildOnOneLine(t *testing.T) {
	h := newHarness(t)
	r := h.runRaw(context.Background(), nil, nil, "--version")
	if r.code != ExitOK || r.stdout != buildinfo.Line("fledgectl")+"\n" {
		t.Errorf("--version: exit %d, printed %q, want %q", r.code, r.stdout, buildinfo.Line("fledgectl")+"\n")
	}
}
