//go:build e2e

package rollout_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fledgectl runs the CLI as a pipeline step would: the server, token and
// namespace from the environment, fledge's CA from a file.
type fledgectl struct {
	t      *testing.T
	binary string
	env    []string
	caFile string
}

func (a *apiEnv) fledgectl(t *testing.T, token string) *fledgectl {
	return &fledgectl{t: t, binary: fledgectlCommand.build(t), caFile: a.caFile, env: append(os.Environ(),
		"FLEDGE_SERVER="+a.addr, "FLEDGE_TOKEN="+token, "FLEDGE_NAMESPACE="+a.ns,
		// Never a developer's kubeconfig.
		"KUBECONFIG="+filepath.Join(t.TempDir(), "none"))}
}

type ctlResult struct {
	code           int
	stdout, stderr string
}

func (c *fledgectl) command(args ...string) (*exec.Cmd, *lockedBuffer, *lockedBuffer) {
	cmd := exec.Command(c.binary, append([]string{"--ca-file", c.caFile}, args...)...)
	cmd.Env = c.env
	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, errOut
	return cmd, out, errOut
}

// run runs fledgectl to its end (killing it after 3 minutes).
func (c *fledgectl) run(args ...string) ctlResult {
	c.t.Helper()
	cmd, out, errOut := c.command(args...)
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	timer := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	r := ctlResult{code: exitCodeOf(c.t, cmd.Wait()), stdout: out.String(), stderr: errOut.String()}
	c.t.Logf("fledgectl %s: exit %d\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

func exitCodeOf(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("fledgectl: %v", err)
	}
	return exit.ExitCode()
}

// background is a fledgectl still running (watch).
type background struct {
	cmd         *exec.Cmd
	out, errOut *lockedBuffer
	done        chan error
}

func (c *fledgectl) start(args ...string) *background {
	c.t.Helper()
	cmd, out, errOut := c.command(args...)
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	b := &background{cmd: cmd, out: out, errOut: errOut, done: make(chan error, 1)}
	go func() { b.done <- cmd.Wait() }()
	c.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-b.done
	})
	return b
}

// waitOutput waits until stdout holds want.
func (b *background) waitOutput(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(b.out.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("fledgectl never printed %q\nstdout:\n%s\nstderr:\n%s", want, b.out, b.errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// interrupt stops the command as Ctrl-C would and returns how it ended.
func (b *background) interrupt(t *testing.T) ctlResult {
	t.Helper()
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	var err error
	select {
	case err = <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		err = <-b.done
		t.Errorf("fledgectl did not end within 10s of SIGINT")
	}
	b.done <- err // for the cleanup
	return ctlResult{code: exitCodeOf(t, err), stdout: b.out.String(), stderr: b.errOut.String()}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lineWith reports whether one line of out holds every one of parts.
func lineWith(out string, parts ...string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
