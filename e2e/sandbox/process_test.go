package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStopKillsTheWholeProcessGroup(t *testing.T) {
	dir := t.TempDir()
	// A leader that ignores SIGTERM and has a child of its own: stop must
	// escalate to SIGKILL and take the child with it.
	p, err := startProcess("stubborn", dir, nil, "/bin/sh", "-c", `trap "" TERM; sleep 300 & echo "child-"started; wait`)
	if err != nil {
		t.Fatal(err)
	}
	pgid := p.cmd.Process.Pid
	waitForLog(t, p.logPath, "child-started")
	if err := p.stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if live := liveMembers(pgid); len(live) > 0 {
		t.Fatalf("processes %v of group %d still alive after stop", live, pgid)
	}
}

func TestEarlyExitNamesTheLog(t *testing.T) {
	dir := t.TempDir()
	p, err := startProcess("quitter", dir, nil, "/bin/sh", "-c", `echo "fatal: port in use" >&2; exit 3`)
	if err != nil {
		t.Fatal(err)
	}
	<-p.done
	err = p.errIfExited()
	if err == nil {
		t.Fatal("no error for a process that exited")
	}
	for _, want := range []string{"quitter exited early", "exit status 3", filepath.Join(dir, "quitter.log"), "fatal: port in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestLiveMembersSeesARunningGroup(t *testing.T) {
	p, err := startProcess("pair", t.TempDir(), nil, "/bin/sh", "-c", `sleep 300 & echo "sleep-"started; wait`)
	if err != nil {
		t.Fatal(err)
	}
	defer p.kill()
	waitForLog(t, p.logPath, "sleep-started")
	if live := liveMembers(p.cmd.Process.Pid); len(live) != 2 {
		t.Fatalf("live members of a shell and its sleep: %v, want 2", live)
	}
}

// waitForLog waits for text in a log; the log's first line quotes the
// command, so text must be something only the process prints.
func waitForLog(t *testing.T, path, text string) {
	t.Helper()
	for range 100 {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), text) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never contained %q", path, text)
}
