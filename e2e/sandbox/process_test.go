package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStopKillsTheWholeProcessGroup(t *testing.T) {
	dir := t.TempDir()
	// A leader that ignores SIGTERM and has a child of its own: stop must
	// escalate to SIGKILL and take the child with it.
	p, err := startProcess("stubborn", dir, nil, "/bin/sh", "-c", `trap "" TERM; sleep 300 & echo child $! ; wait`)
	if err != nil {
		t.Fatal(err)
	}
	pgid := p.cmd.Process.Pid
	waitForLog(t, p.logPath, "child ")
	if err := p.stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(-pgid, 0); err != syscall.ESRCH {
		t.Fatalf("process group %d still exists after stop (kill 0: %v)", pgid, err)
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
