package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one component of the sandbox running as a child process.
//
// Each child leads its own process group, so stopping it signals everything
// it may have started, and it gets SIGKILL from the kernel if this process
// dies first (Pdeathsig): a test binary that panics or is killed by `go test
// -timeout` leaves nothing running behind it.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid once done is closed
}

func startProcess(name, logDir string, env []string, binary string, args ...string) (*process, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logFile, "# %s %s\n", binary, strings.Join(args, " "))
	cmd := exec.Command(binary, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = logDir // some components write relative paths; keep them inside the sandbox
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, logFile: logFile, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// errIfExited turns an early exit into an error that says where to look.
func (p *process) errIfExited() error {
	if done, err := p.exited(); done {
		return fmt.Errorf("%s exited early (%v); last lines of %s:\n%s", p.name, err, p.logPath, tail(p.logPath, 15))
	}
	return nil
}

// stop asks the process group to terminate, then kills it after grace.
// It returns an error only if something of the group is still alive after
// the kill, which would be a leak.
func (p *process) stop(grace time.Duration) error {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// The leader is reaped; make sure no other member of its group lingers.
	// Killed members turn into zombies until PID 1 reaps them (here it may
	// never do so), so only members that are still running count.
	if len(liveMembers(pgid)) > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) && len(liveMembers(pgid)) > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		if live := liveMembers(pgid); len(live) > 0 {
			return fmt.Errorf("%s: processes %v of group %d still alive after SIGKILL", p.name, live, pgid)
		}
	}
	return nil
}

// liveMembers lists the processes of a process group that are not zombies,
// from /proc.
func liveMembers(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var live []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and parens,
		// so parse from the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			live = append(live, pid)
		}
	}
	return live
}

// kill sends SIGKILL to the whole group at once, as a crash or an OOM kill
// would, and waits for the leader to be reaped.
func (p *process) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + string(bytes.Join(lines, []byte("\n    ")))
}
