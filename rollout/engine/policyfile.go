package engine

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fledgehq/fledge/rollout"
)

// PolicyFile serves the policies of a config file and follows its changes.
// A file that fails validation is reported and not applied: the policies
// before it stay in force, whole. Polling the content (not inotify) also
// follows the symlink swaps of a mounted ConfigMap.
type PolicyFile struct {
	path string

	mu       sync.RWMutex
	policies map[string]*rollout.Policy
	content  []byte
	err      error // of the last load that failed, nil once one succeeds
}

// LoadPolicyFile reads and validates the file; a first load must succeed.
func LoadPolicyFile(path string) (*PolicyFile, error) {
	p := &PolicyFile{path: path}
	if _, err := p.reload(); err != nil {
		return nil, err
	}
	return p, nil
}

// Get returns a policy by name.
func (p *PolicyFile) Get(name string) (*rollout.Policy, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if pol, ok := p.policies[name]; ok {
		return pol, nil
	}
	return nil, fmt.Errorf("no policy %s (known: %s)", rollout.Bounded(name), strings.Join(slices.Sorted(maps.Keys(p.policies)), ", "))
}

// Err is the error of the last failed reload, nil if the file in force is
// the file on disk.
func (p *PolicyFile) Err() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.err
}

// Watch re-reads the file every interval until ctx is done; changed is
// called after every change of content, with the error if it was rejected.
func (p *PolicyFile) Watch(ctx context.Context, interval time.Duration, changed func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ok, err := p.reload(); ok {
				changed(err)
			}
		}
	}
}

// reload reports whether the content changed, and why it was rejected.
func (p *PolicyFile) reload() (bool, error) {
	data, err := os.ReadFile(p.path)
	if err != nil {
		err = fmt.Errorf("policy file %s: %w", p.path, err)
		p.mu.Lock()
		defer p.mu.Unlock()
		changed := p.err == nil || p.err.Error() != err.Error()
		p.err = err
		return changed, err
	}
	p.mu.RLock()
	same := p.content != nil && bytes.Equal(data, p.content)
	p.mu.RUnlock()
	if same {
		return false, nil
	}
	policies, err := rollout.ParseConfig(data)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.content = data
	if err != nil {
		if p.policies == nil {
			p.err = fmt.Errorf("policy file %s: %w", p.path, err)
		} else {
			p.err = fmt.Errorf("policy file %s rejected, the previous policies stay in force: %w", p.path, err)
		}
		return true, p.err
	}
	p.policies, p.err = policies, nil
	return true, nil
}
