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

	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/wait"
)

// The mesh emulator is scraped every second by default, so that a test
// sees a change of weights in Prometheus within a few seconds, as a canary
// step would; its metrics may be split across several targets, each
// /metrics?shard=<i>, labelled shard="<i>".
const prometheusConfig = `global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
  evaluation_interval: 1s
scrape_configs:
- job_name: mesh
  static_configs:
%[2]s- job_name: sandbox
  file_sd_configs:
  - files: [%[3]q]
    refresh_interval: 1s
`

func meshTargets(addr string, shards int) string {
	var b strings.Builder
	for i := range shards {
		fmt.Fprintf(&b, "  - targets: [%q]\n    labels: {__param_shard: \"%d\", shard: \"%d\"}\n", addr, i, i)
	}
	return b.String()
}

// launchPrometheus writes Prometheus's configuration and starts it without
// waiting: its service discovery hands over targets only every 5 s, so it
// is launched first and that delay overlaps the API server's start.
func (s *Sandbox) launchPrometheus(meshAddr string) error {
	dir := filepath.Join(s.Dir, "prometheus")
	if err := os.MkdirAll(filepath.Join(dir, "targets"), 0o755); err != nil {
		return err
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	body := fmt.Sprintf(prometheusConfig, model.Duration(s.scrape), meshTargets(meshAddr, s.meshShards), filepath.Join(dir, "targets", "*.json"))
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
		up, err := s.QueryVector(ctx, `up{job="mesh"} == 1`, "shard")
		return err == nil && len(up) == s.meshShards, nil
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
