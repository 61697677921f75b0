package promclient

import (
	"context"
	"errors"
	"io"
	stdlog "log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"

	"github.com/fledgehq/fledge/analysis"
)

// Ping is a query like the checks' own: it succeeds on an answer, and
// fails with the same classified errors.
func TestPing(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.Form.Get("query") != "vector(1)" {
			t.Errorf("asked %q (%v), want vector(1)", r.Form.Get("query"), err)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, vector(`{"metric":{},"value":[1700000000,"1"]}`))
	}))
	defer srv.Close()
	if err := newTestPrometheus(t, srv.URL, time.Second).Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	srv.Close()
	if err := newTestPrometheus(t, srv.URL, time.Second).Ping(context.Background()); !errors.Is(err, analysis.ErrUnreachable) {
		t.Errorf("Ping of a closed port: %v, want ErrUnreachable", err)
	}
}

// A refusal by what guards Prometheus says that the credentials are the
// thing to look at; other client errors do not claim so.
func TestRefusedCredentialsAreNamed(t *testing.T) {
	for _, tc := range []struct {
		status int
		hint   bool
	}{{http.StatusUnauthorized, true}, {http.StatusForbidden, true}, {http.StatusNotFound, false}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, http.StatusText(tc.status), tc.status)
		}))
		err := newTestPrometheus(t, srv.URL, time.Second).Ping(context.Background())
		srv.Close()
		if !errors.Is(err, analysis.ErrQueryFailed) {
			t.Errorf("%d: %v, want ErrQueryFailed", tc.status, err)
			continue
		}
		if got := strings.Contains(err.Error(), "refused the credentials sent"); got != tc.hint {
			t.Errorf("%d: %v; credentials named: %v, want %v", tc.status, err, got, tc.hint)
		}
	}
}

// A certificate the client does not trust is an outage (ErrUnreachable)
// whose message says what to check, beside the transport's own words.
func TestUntrustedCertificateIsNamed(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	p, err := New(promapi.Config{Address: srv.URL}, time.Second) // the system's CAs: httptest's is not among them
	if err != nil {
		t.Fatal(err)
	}
	err = p.Ping(context.Background())
	if !errors.Is(err, analysis.ErrUnreachable) || !strings.Contains(err.Error(), "not signed by a CA this client trusts") || !strings.Contains(err.Error(), "x509") {
		t.Errorf("Ping of an untrusted certificate: %v; want ErrUnreachable with the hint and the transport's words", err)
	}
}
