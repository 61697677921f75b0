package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// The mesh emulator is scraped every second so that a test sees a change
// of weights in Prometheus within a few seconds, as a canary step would.
const prometheusConfig = `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: mesh
  static_configs:
  - targets: [%q]
- job_name: sandbox
  file_sd_configs:
  - files: [%q]
    refresh_interval: 1s
`

// launchPrometheus writes Prometheus's configuration and starts it without
// waiting: its service discovery hands over targets only every 5 s, so it
// is launched first and that delay overlaps the API server's start.
func (s *Sandbox) launchPrometheus(meshAddr string) error {
	dir := filepath.Join(s.Dir, "prometheus")
	if err := os.MkdirAll(filepath.Join(dir, "targets"), 0o755); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	body := fmt.Sprintf(prometheusConfig, meshAddr, filepath.Join(dir, "targets", "*.json"))
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return err
	}
	s.PrometheusURL = fmt.Sprintf("http://127.0.0.1:%d", s.ports.prometheus)
	p, err := s.launch("prometheus", s.tools.Prometheus,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--storage.tsdb.retention.time=2h",
		"--web.listen-address="+strings.TrimPrefix(s.PrometheusURL, "http://"),
		"--log.level=warn",
	)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.prometheus = p
	s.mu.Unlock()
	return nil
}

// waitPrometheus waits until Prometheus is ready and has scraped the mesh
// emulator: until the first scrape, queries see no mesh at all, and a test
// could mistake that for "no traffic".
func (s *Sandbox) waitPrometheus(ctx context.Context) error {
	s.mu.Lock()
	p := s.prometheus
	s.mu.Unlock()
	if err := waitHTTP(ctx, p, s.PrometheusURL+"/-/ready", nil, ""); err != nil {
		return err
	}
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := p.errIfExited(); err != nil {
			return false, err
		}
		up, err := s.QueryVector(ctx, `up{job="mesh"} == 1`, "job")
		return err == nil && len(up) == 1, nil
	})
	if err != nil {
		return fmt.Errorf("prometheus never scraped the mesh emulator: %w", err)
	}
	return nil
}

// StartPrometheus starts Prometheus again after StopPrometheus, on the same
// address and with the same data, and waits until it has scraped the mesh.
func (s *Sandbox) StartPrometheus(ctx context.Context) error {
	s.mu.Lock()
	running := s.prometheus != nil
	s.mu.Unlock()
	if running {
		return errors.New("prometheus is already running")
	}
	if err := s.launchPrometheus(s.Mesh.MetricsAddr()); err != nil {
		return err
	}
	return s.waitPrometheus(ctx)
}

// StopPrometheus stops Prometheus, as an outage would: queries fail until
// StartPrometheus. Its data is kept.
func (s *Sandbox) StopPrometheus() error {
	s.mu.Lock()
	p := s.prometheus
	s.prometheus = nil
	s.mu.Unlock()
	if p == nil {
		return errors.New("prometheus is not running")
	}
	return s.forget(p).stop(10 * time.Second)
}

var targetName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// AddScrapeTarget makes Prometheus scrape addr (host:port, /metrics) as
// job "sandbox" with label component=<name>, for example fledge's own
// metrics. Prometheus picks the file up within a second or two.
func (s *Sandbox) AddScrapeTarget(name, addr string) error {
	if !targetName.MatchString(name) {
		return fmt.Errorf("scrape target name %q: want lower-case letters, digits and dashes", name)
	}
	b, err := json.Marshal([]map[string]any{{"targets": []string{addr}, "labels": map[string]string{"component": name}}})
	if err != nil {
		return err
	}
	path := filepath.Join(s.Dir, "prometheus", "targets", name+".json")
	// Written whole and renamed, so Prometheus never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
