package hookclient

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fledgehq/fledge/webhooks"
)

func TestDoRedirects(t *testing.T) {
	secret := []byte("s3cret")
	now := time.Unix(1_800_000_000, 0)
	// other is another host:port; it must never be called.
	var otherHits atomic.Int32
	other := serve(t, func(w http.ResponseWriter, r *http.Request) { otherHits.Add(1) })

	// The hook's server: /hop/N redirects to /hop/N-1 and /hop/0 to /ok,
	// which checks that the payload arrived signed.
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("/hop/{n}", func(w http.ResponseWriter, r *http.Request) {
		n := r.PathValue("n")
		next := "/ok"
		if n != "0" {
			next = "/hop/" + string(n[0]-1)
		}
		http.Redirect(w, r, next, http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || webhooks.Verify(secret, r.Header.Get(webhooks.HeaderSignature), body, now, time.Minute) != nil {
			http.Error(w, "want the signed payload", http.StatusBadRequest)
		}
	})
	mux.HandleFunc("/to/{where}", func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusTemporaryRedirect
		var to string
		switch r.PathValue("where") {
		case "other":
			to = other.URL + "/hook"
		case "localhost":
			to = strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/ok"
		case "metadata":
			to = "http://169.254.169.254/latest/meta-data/"
		case "found":
			to, code = "/ok", http.StatusFound
		case "see-other":
			to, code = "/ok", http.StatusSeeOther
		case "permanent":
			to, code = "/ok", http.StatusPermanentRedirect
		}
		http.Redirect(w, r, to, code)
	})
	srv = serve(t, mux.ServeHTTP)
	host := strings.TrimPrefix(srv.URL, "http://")

	tests := []struct {
		name    string
		path    string
		outcome Outcome
		status  int
		message string // after "POST <url>: "
	}{
		{"follows a 307 within the host with the signed payload", "/hop/0", OK, 200, "200 OK"},
		{"follows a 308 within the host", "/to/permanent", OK, 200, "200 OK"},
		{"follows three redirects", "/hop/2", OK, 200, "200 OK"},
		{"stops at the fourth redirect", "/hop/3", Error, 307, "stopped after 3 redirects"},
		{"refuses a redirect to another port", "/to/other", Error, 307,
			"307 redirect to " + other.URL + "/hook refused: only redirects within " + host + " are followed"},
		{"refuses a redirect to another name for the same address", "/to/localhost", Error, 307,
			"307 redirect to " + strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/ok refused: only redirects within " + host + " are followed"},
		{"refuses a redirect to the metadata address", "/to/metadata", Error, 307,
			"307 redirect to http://169.254.169.254/latest/meta-data/ refused: only redirects within " + host + " are followed"},
		{"refuses a 302, which would drop the payload", "/to/found", Error, 302,
			"302 redirect to " + srv.URL + "/ok not followed: it would resend the hook as a GET without its payload (only 307 and 308 keep it)"},
		{"refuses a 303, which would drop the payload", "/to/see-other", Error, 303,
			"303 redirect to " + srv.URL + "/ok not followed: it would resend the hook as a GET without its payload (only 307 and 308 keep it)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fastClient(WithNow(func() time.Time { return now }))
			res := c.Do(context.Background(), Call{Networks: loopback, URL: srv.URL + tt.path, Secret: secret, Retries: 2, Payload: testPayload})
			want := "POST " + srv.URL + tt.path + ": " + tt.message
			if res.Outcome != tt.outcome || res.Status != tt.status || res.Message != want || res.Attempts != 1 {
				t.Fatalf("Do = %s %d %q after %d attempts, want %s %d %q after 1", res.Outcome, res.Status, res.Message, res.Attempts, tt.outcome, tt.status, want)
			}
		})
	}
	if n := otherHits.Load(); n != 0 {
		t.Fatalf("the other host was called %d times, want never", n)
	}
}

func TestCheckRedirectOrigins(t *testing.T) {
	tests := []struct {
		name    string
		from    string
		to      string
		refused bool
	}{
		{"allows another path on the same host", "http://hooks.example/a", "http://hooks.example/b", false},
		{"compares host names regardless of case", "http://Hooks.Example/a", "http://hooks.example/b", false},
		{"takes an explicit default port as the same origin", "http://hooks.example/a", "http://hooks.example:80/b", false},
		{"allows an upgrade to https on the same host and port", "http://hooks.example:8443/a", "https://hooks.example:8443/b", false},
		{"refuses a downgrade to http on the same host and port", "https://hooks.example:8443/a", "http://hooks.example:8443/b", true},
		{"refuses http to https with default ports, another port", "http://hooks.example/a", "https://hooks.example/b", true},
		{"refuses another port", "http://hooks.example:8080/a", "http://hooks.example:8081/a", true},
		{"refuses a subdomain", "http://hooks.example/a", "http://evil.hooks.example/a", true},
		{"refuses another IPv6 host", "http://[fd00::1]:80/a", "http://[fd00::2]:80/a", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := httptest.NewRequest(http.MethodPost, tt.from, nil)
			next := httptest.NewRequest(http.MethodPost, tt.to, nil)
			next.Response = &http.Response{StatusCode: http.StatusTemporaryRedirect}
			err := checkRedirect(next, []*http.Request{first})
			if (err != nil) != tt.refused {
				t.Fatalf("checkRedirect(%s -> %s) = %v, want refused %v", tt.from, tt.to, err, tt.refused)
			}
		})
	}
}
