package engine

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/fledgehq/fledge/rollout"
)

// Secrets reads the Secrets policies name (webhook signing keys, Slack
// URLs and tokens) from fledge's own namespace, one Get at a time: fledge
// needs no list or watch on Secrets, and RBAC can pin it to their names.
// Values are cached for TTL, so a rotated secret is used within it.
// Errors name the Secret and key, never a value.
type Secrets struct {
	Kube      kubernetes.Interface
	Namespace string
	TTL       time.Duration // default 30s
	Clock     clock.Clock

	mu    sync.Mutex
	cache map[string]secretEntry
}

type secretEntry struct {
	data map[string][]byte
	at   time.Time
}

// Data returns all keys of a Secret.
func (s *Secrets) Data(ctx context.Context, name string) (map[string][]byte, error) {
	if s.Clock == nil {
		s.Clock = clock.RealClock{}
	}
	ttl := cmp.Or(s.TTL, 30*time.Second)
	s.mu.Lock()
	e, ok := s.cache[name]
	s.mu.Unlock()
	if ok && s.Clock.Since(e.at) < ttl {
		return e.data, nil
	}
	sec, err := s.Kube.CoreV1().Secrets(s.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", s.Namespace, name, err)
	}
	s.mu.Lock()
	if s.cache == nil {
		s.cache = map[string]secretEntry{}
	}
	s.cache[name] = secretEntry{data: sec.Data, at: s.Clock.Now()}
	s.mu.Unlock()
	return sec.Data, nil
}

// Get returns one key of a Secret.
func (s *Secrets) Get(ctx context.Context, ref rollout.SecretRef) ([]byte, error) {
	data, err := s.Data(ctx, ref.Name)
	if err != nil {
		return nil, err
	}
	v, ok := data[ref.Key]
	if !ok || len(v) == 0 {
		return nil, fmt.Errorf("secret %s/%s has no key %q", s.Namespace, ref.Name, ref.Key)
	}
	return v, nil
}
