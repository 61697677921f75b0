package sandbox

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// insecure is for the self-signed serving certificates that
// kube-controller-manager and kube-scheduler make for themselves; only their
// /healthz is read through it.
var insecure = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback health checks of our own children

func trustCA(caPEM []byte) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{RootCAs: pool}
}

// waitHTTP polls url until it answers 200, failing fast (with the tail of
// its log) if the component serving it exits.
func waitHTTP(ctx context.Context, p *process, url string, tlsCfg *tls.Config, token string) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	defer client.CloseIdleConnections()
	var last string
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := p.errIfExited(); err != nil {
			return false, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return true, nil
		}
		last = fmt.Sprintf("%s: %s", resp.Status, body)
		return false, nil
	})
	if err != nil {
		if exitErr := p.errIfExited(); exitErr != nil {
			return exitErr
		}
		return fmt.Errorf("%s not ready at %s (last answer: %s): %w; last lines of %s:\n%s", p.name, url, last, err, p.logPath, tail(p.logPath, 15))
	}
	return nil
}
