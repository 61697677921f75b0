package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Suite shares one sandbox among the tests of a test binary. It starts on
// first use, so a benchmark-only run pays nothing, and Main stops it:
//
//	var suite sandbox.Suite
//	func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }
//	func TestSomething(t *testing.T) { sb := suite.Get(t); ... }
//
// When a test fails, the sandbox directory is kept and the tail of every
// component's log is printed, then the names of the tests that failed (the
// output's last line, where a CI log's excerpt shows it). A process that
// outlives Stop fails the run.
type Suite struct {
	Options Options

	once sync.Once
	sb   *Sandbox
	err  error

	mu     sync.Mutex
	failed []string // names of the failed tests that used the sandbox
}

// Get returns the shared sandbox, starting it if needed; a start failure
// fails the calling test (and every later caller, with the same error).
func (s *Suite) Get(t testing.TB) *Sandbox {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !slices.Contains(s.failed, t.Name()) {
				s.failed = append(s.failed, t.Name())
			}
		}
	})
	s.once.Do(func() {
		opts := s.Options
		if opts.Logger == nil {
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		}
		s.sb, s.err = Start(context.Background(), opts)
		if s.err == nil {
			fmt.Fprintf(os.Stderr, "sandbox: cold start %.1fs, logs in %s\n", s.sb.StartupTime.Seconds(), s.sb.LogDir)
		}
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.sb
}

// Main runs the tests, then stops the shared sandbox if one was started,
// and returns the exit code for os.Exit.
func (s *Suite) Main(m *testing.M) int {
	code := m.Run()
	if s.sb == nil {
		return code
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "sandbox: tests failed; component logs kept in %s; their last lines:\n%s", s.sb.LogDir, s.sb.LogTails(20))
	}
	if err := s.sb.Stop(code != 0); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: stop: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failed) > 0 {
		fmt.Fprintf(os.Stderr, "sandbox: failed (their output is above the logs' tails): %s\n", strings.Join(s.failed, ", "))
	}
	return code
}

// Namespace returns the shared sandbox, starting it if needed as Get
// does, and a namespace of the calling test's own in it (Sandbox.Namespace):
// where nearly every test begins.
func (s *Suite) Namespace(t testing.TB) (*Sandbox, string) {
	t.Helper()
	sb := s.Get(t)
	return sb, sb.Namespace(t)
}

// Namespace creates a namespace for one test, named after it, and deletes
// it when the test ends.
func (s *Sandbox) Namespace(t testing.TB) string {
	t.Helper()
	name := strings.ToLower(t.Name())
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, name)
	if len(name) > 40 {
		name = name[:40]
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: strings.Trim(name, "-") + "-"}}
	ctx := context.Background()
	created, err := s.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = s.Kube.CoreV1().Namespaces().Delete(context.Background(), created.Name, metav1.DeleteOptions{})
	})
	return created.Name
}

// StopPrometheusForTest stops the sandbox's Prometheus, an outage for the
// test, and returns restart, which starts it again on the same address. It
// is started again when the test ends in any case, passed or failed: the
// tests after it need it.
func (s *Sandbox) StopPrometheusForTest(t testing.TB) (restart func()) {
	t.Helper()
	if err := s.StopPrometheus(); err != nil {
		t.Fatalf("stop prometheus: %v", err)
	}
	var once sync.Once
	restart = func() {
		t.Helper()
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := s.StartPrometheus(ctx); err != nil {
				t.Errorf("restart prometheus: %v", err)
			}
		})
	}
	t.Cleanup(restart)
	return restart
}

// WaitDeploymentAvailable waits until the Deployment's controller has seen
// its latest spec and all its replicas are updated and available.
func (s *Sandbox) WaitDeploymentAvailable(ctx context.Context, ns, name string, timeout time.Duration) (*appsv1.Deployment, error) {
	var last *appsv1.Deployment
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		d, err := s.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = d
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		st := d.Status
		return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == want &&
			st.AvailableReplicas == want && st.Replicas == want, nil
	})
	if err != nil {
		return last, fmt.Errorf("deployment %s/%s not available: %w (status %+v)", ns, name, err, statusOf(last))
	}
	return last, nil
}

func statusOf(d *appsv1.Deployment) any {
	if d == nil {
		return nil
	}
	return d.Status
}

// Prometheus returns an API client for the sandbox's Prometheus.
func (s *Sandbox) Prometheus() promv1.API {
	c, err := promapi.NewClient(promapi.Config{Address: s.PrometheusURL})
	if err != nil {
		panic(err) // only fails on a malformed address, which we built
	}
	return promv1.NewAPI(c)
}

// QueryVector runs an instant PromQL query and returns its samples by the
// value of one label (label "" keys the single unlabelled sample as "").
// Tests use it to read what Prometheus, not the emulator, observed.
func (s *Sandbox) QueryVector(ctx context.Context, query, label string) (map[string]float64, error) {
	v, warnings, _, err := s.Prometheus().Query(ctx, query, time.Now())
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", query, err)
	}
	if len(warnings) > 0 {
		return nil, fmt.Errorf("query %q: warnings %v", query, warnings)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("query %q: got a %s, want a vector", query, v.Type())
	}
	out := make(map[string]float64, len(vec))
	for _, smp := range vec {
		key := string(smp.Metric[model.LabelName(label)])
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("query %q: two samples with %s=%q", query, label, key)
		}
		f := float64(smp.Value)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("query %q: %s=%q is %v", query, label, key, f)
		}
		out[key] = f
	}
	return out, nil
}
