package sandbox

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Process is a program a test runs beside the sandbox, fledge's engine for
// instance, with the same guarantees as the sandbox's own components: its
// own process group, SIGKILL if the test binary dies, a log file in LogDir,
// and stopped by Sandbox.Stop if the test did not stop it.
type Process struct {
	s *Sandbox
	p *process
}

// StartProcess runs binary with args and extra environment variables
// (KEY=value, added to this process's environment). Its output goes to
// LogDir/<name>.log, appended to across restarts under the same name.
func (s *Sandbox) StartProcess(name string, env []string, binary string, args ...string) (*Process, error) {
	p, err := s.launchEnv(name, env, binary, args...)
	if err != nil {
		return nil, err
	}
	return &Process{s: s, p: p}, nil
}

// Kill ends the process group with SIGKILL, like a crash: no clean shutdown.
func (p *Process) Kill() {
	p.s.forget(p.p).kill()
}

// Stop asks the process to terminate (SIGTERM), killing it after 10 s.
func (p *Process) Stop() error {
	return p.s.forget(p.p).stop(10 * time.Second)
}

// Exited reports whether the process has ended, and its exit error.
func (p *Process) Exited() (bool, error) { return p.p.exited() }

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.p.done }

// Pid is the process id (also its process group id).
func (p *Process) Pid() int { return p.p.cmd.Process.Pid }

// LogPath is the file its output goes to.
func (p *Process) LogPath() string { return p.p.logPath }

// LiveMembers lists the processes of its group still running (not
// zombies): empty once it is truly gone.
func (p *Process) LiveMembers() []int { return liveMembers(p.p.cmd.Process.Pid) }

// ResidentBytes is the resident memory of the sandbox component or
// process named name (kube-apiserver, prometheus, etcd, or a process
// StartProcess ran), summed over its process group.
func (s *Sandbox) ResidentBytes(name string) (int64, error) {
	var total int64
	err := s.eachMember(name, func(pid int) {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return // gone meanwhile
		}
		for line := range strings.SplitSeq(string(status), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err == nil {
					total += kb << 10
				}
			}
		}
	})
	return total, err
}

// CPUSeconds is the CPU time (user and system) the sandbox's process name
// and its live children have used so far, from /proc/<pid>/stat.
func (s *Sandbox) CPUSeconds(name string) (float64, error) {
	var ticks int64
	err := s.eachMember(name, func(pid int) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		// The command may hold spaces: the fields start after its ")".
		i := strings.LastIndexByte(string(stat), ')')
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 12 {
			u, _ := strconv.ParseInt(fields[11], 10, 64) // utime, the 14th field
			k, _ := strconv.ParseInt(fields[12], 10, 64) // stime
			ticks += u + k
		}
	})
	return float64(ticks) / 100, err // USER_HZ is 100 on Linux
}

// eachMember calls fn for every live process of the group of the
// sandbox's process name.
func (s *Sandbox) eachMember(name string, fn func(pid int)) error {
	s.mu.Lock()
	var pgid int
	for _, p := range s.procs {
		if p.name == name && p.cmd.Process != nil {
			pgid = p.cmd.Process.Pid
		}
	}
	s.mu.Unlock()
	if pgid == 0 {
		return fmt.Errorf("no process %q in the sandbox", name)
	}
	for _, pid := range liveMembers(pgid) {
		fn(pid)
	}
	return nil
}

// ControllerManagerProfile is a CPU profile of kube-controller-manager over
// d, from the /debug/pprof it serves on its secure port to the sandbox's
// admin (its serving certificate is self-signed).
func (s *Sandbox) ControllerManagerProfile(ctx context.Context, d time.Duration) ([]byte, error) {
	return s.ControllerManagerGet(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())), d+30*time.Second)
}

// ControllerSyncs is how many Deployments, and how many ReplicaSets,
// kube-controller-manager syncs at once (Options.ControllerSyncs).
func (s *Sandbox) ControllerSyncs() int { return s.controllerSyncs }

// ControllerManagerGet reads path (/metrics, say) from
// kube-controller-manager's secure port as the sandbox's admin, within
// timeout.
func (s *Sandbox) ControllerManagerGet(ctx context.Context, path string, timeout time.Duration) ([]byte, error) {
	url := fmt.Sprintf("https://127.0.0.1:%d%s", s.ports.kcm, path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: insecure}, Timeout: timeout}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("kube-controller-manager's %s: %s: %.200s", path, resp.Status, body)
	}
	return body, nil
}
