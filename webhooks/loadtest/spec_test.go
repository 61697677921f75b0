package loadtest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseSpec(t *testing.T) {
	const target = "http://shop.demo.svc.cluster.local/checkout"
	tests := []struct {
		name     string
		metadata map[string]string
		limits   Limits
		want     Spec // URL compared as a string
		wantErr  string
	}{
		{
			name:     "a url alone takes the defaults",
			metadata: map[string]string{"url": target},
			want:     Spec{Rate: 10, Duration: 10 * time.Second, Method: "GET", Header: http.Header{}},
		},
		{
			name: "every key is read",
			metadata: map[string]string{
				"url": " " + target + " ", "rate": " 50 ", "duration": "2m", "method": "put",
				"headers": "x-user-tier: beta\r\n\n  cookie: a=1; b=2  \nX-Twice: 1\nx-twice: 2", "body": `{"a":1}`,
			},
			want: Spec{Rate: 50, Duration: 2 * time.Minute, Method: "PUT", Body: []byte(`{"a":1}`), Header: http.Header{
				"X-User-Tier": {"beta"}, "Cookie": {"a=1; b=2"}, "X-Twice": {"1", "2"},
			}},
		},
		{
			name:     "the limits given apply",
			metadata: map[string]string{"url": target, "rate": "11"},
			limits:   Limits{MaxRate: 10},
			wantErr:  "metadata.rate: 11 is above this load tester's maximum of 10 per second",
		},
		{
			name:     "a rate at the default maximum is accepted",
			metadata: map[string]string{"url": target, "rate": "1000", "duration": "5m"},
			want:     Spec{Rate: 1000, Duration: 5 * time.Minute, Method: "GET", Header: http.Header{}},
		},
		{"a rate above the default maximum", map[string]string{"url": target, "rate": "1001"}, Limits{}, Spec{},
			"metadata.rate: 1001 is above this load tester's maximum of 1000 per second"},
		{"a rate that is not an integer", map[string]string{"url": target, "rate": "2.5"}, Limits{}, Spec{},
			`metadata.rate: "2.5" is not an integer`},
		{"a rate of zero", map[string]string{"url": target, "rate": "0"}, Limits{}, Spec{},
			"metadata.rate: 0 is below 1 request per second"},
		{"a duration without a unit", map[string]string{"url": target, "duration": "10"}, Limits{}, Spec{},
			`metadata.duration: "10" is not a duration (e.g. 30s, 2m)`},
		{"a negative duration", map[string]string{"url": target, "duration": "-1s"}, Limits{}, Spec{},
			"metadata.duration: -1s is not positive"},
		{"a duration too short for one request", map[string]string{"url": target, "rate": "1", "duration": "500ms"}, Limits{}, Spec{},
			"metadata.duration: 500ms at 1 per second sends no request"},
		{"no url", map[string]string{"rate": "1"}, Limits{}, Spec{},
			"metadata.url: required: the target of the load"},
		{"a url that is not http", map[string]string{"url": "ftp://files.demo/x"}, Limits{}, Spec{},
			`metadata.url: "ftp://files.demo/x": the scheme must be http or https`},
		{"a url without a host", map[string]string{"url": "http:///x"}, Limits{}, Spec{},
			`metadata.url: "http:///x" has no host`},
		{"a url that does not parse", map[string]string{"url": "http://[::1"}, Limits{}, Spec{},
			`metadata.url: "http://[::1" is not a URL`},
		{"credentials are redacted from messages", map[string]string{"url": "gopher://bob:hunter2@x/"}, Limits{}, Spec{},
			`metadata.url: "gopher://bob:xxxxx@x/": the scheme must be http or https`},
		{"a method that is not load", map[string]string{"url": target, "method": "CONNECT"}, Limits{}, Spec{},
			`metadata.method: "CONNECT" is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS`},
		{"a header line without a colon", map[string]string{"url": target, "headers": "x-a: 1\nx-b 2"}, Limits{}, Spec{},
			`metadata.headers: line 2: "x-b 2" is not "Name: value"`},
		{"a header name with a space", map[string]string{"url": target, "headers": "x a: 1"}, Limits{}, Spec{},
			`metadata.headers: line 1: "x a" is not a header name`},
		{"a header value with a control character", map[string]string{"url": target, "headers": "x-a: 1\x00"}, Limits{}, Spec{},
			"metadata.headers: line 1: the value of x-a holds a control character"},
		{"the Host header cannot step around the allowlist", map[string]string{"url": target, "headers": "host: evil.example"}, Limits{}, Spec{},
			"metadata.headers: line 1: Host cannot be set: the HTTP client derives it from the url and body"},
		{"a stableUrl that is not http names its key", map[string]string{"url": target, "stableUrl": "ftp://shop-stable.demo/"}, Limits{}, Spec{},
			`metadata.stableUrl: "ftp://shop-stable.demo/": the scheme must be http or https`},
		{"a stableUrl without a host names its key", map[string]string{"url": target, "stableUrl": "http:///x"}, Limits{}, Spec{},
			`metadata.stableUrl: "http:///x" has no host`},
		{"an empty stableUrl is refused rather than ignored", map[string]string{"url": target, "stableUrl": " "}, Limits{}, Spec{},
			"metadata.stableUrl: empty: leave the key out to load the url alone"},
		{"a stableUrl equal to the url would load one side twice", map[string]string{"url": target, "stableUrl": target}, Limits{}, Spec{},
			`metadata.stableUrl: "` + target + `" is the url: it would get twice the load, and stable none`},
		{"an unknown key", map[string]string{"url": target, "command": "rm -rf /"}, Limits{}, Spec{},
			"metadata.command: unknown key (want url, stableUrl, rate, duration, method, headers, body)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSpec(tt.metadata, tt.limits)
			if errString(err) != tt.wantErr {
				t.Fatalf("error = %q, want %q", errString(err), tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.URL.String() != target {
				t.Errorf("URL = %s, want %s", got.URL, target)
			}
			got.URL = nil
			if want, ok := tt.metadata["stableUrl"]; ok {
				if got.StableURL == nil || got.StableURL.String() != strings.TrimSpace(want) {
					t.Errorf("StableURL = %v, want %s", got.StableURL, want)
				}
			} else if got.StableURL != nil {
				t.Errorf("StableURL = %s, want none", got.StableURL)
			}
			got.StableURL = nil
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("spec mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequests(t *testing.T) {
	tests := []struct {
		name     string
		rate     int
		duration time.Duration
		want     uint64
	}{
		{"a whole number of seconds", 50, time.Second, 50},
		{"a fraction of a second rounds down", 10, 250 * time.Millisecond, 2},
		{"the largest run fits", DefaultMaxRate, DefaultMaxDuration, 300_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (Spec{Rate: tt.rate, Duration: tt.duration}).Requests(); got != tt.want {
				t.Errorf("Requests() = %d, want %d", got, tt.want)
			}
		})
	}
}

// FuzzParseSpec checks that whatever a policy holds, ParseSpec either
// refuses it naming a metadata key or returns a run within the limits.
func FuzzParseSpec(f *testing.F) {
	f.Add("http://a.b/", "", "10", "1s", "GET", "x-a: 1\ncookie: a=1; b=2", "")
	f.Add("https://a.b:8443/x?y=1", "https://a-stable.b:8443/x?y=1", "1000", "5m", "post", "", "{}")
	f.Add("http://[::1]:80/", "http://[::1]:80/", "-1", "1h", "CONNECT", "host: x", "")
	f.Add("http://a.b", "file:///etc/passwd", "9999999999999999999", "0.001ns", "get", ":\n:", "")
	f.Fuzz(func(t *testing.T, u, stable, rate, duration, method, headers, body string) {
		limits := Limits{MaxRate: 100, MaxDuration: time.Minute}
		metadata := map[string]string{"url": u, "rate": rate, "duration": duration, "method": method, "headers": headers, "body": body}
		if stable != "" {
			metadata["stableUrl"] = stable
		}
		s, err := ParseSpec(metadata, limits)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "metadata.") {
				t.Fatalf("error %q does not name a metadata key", err)
			}
			return
		}
		switch {
		case s.URL == nil || (s.URL.Scheme != "http" && s.URL.Scheme != "https") || s.URL.Hostname() == "":
			t.Fatalf("accepted url %q", u)
		case stable == "" && s.StableURL != nil,
			stable != "" && (s.StableURL == nil || (s.StableURL.Scheme != "http" && s.StableURL.Scheme != "https") || s.StableURL.Hostname() == ""):
			t.Fatalf("accepted stableUrl %q as %v", stable, s.StableURL)
		case s.Rate < 1 || s.Rate > limits.MaxRate:
			t.Fatalf("accepted rate %d", s.Rate)
		case s.Duration <= 0 || s.Duration > limits.MaxDuration:
			t.Fatalf("accepted duration %s", s.Duration)
		case s.Requests() == 0 || s.Requests() > uint64(limits.MaxRate)*uint64(limits.MaxDuration/time.Second):
			t.Fatalf("accepted %d requests", s.Requests())
		}
		for name, values := range s.Header {
			if !isToken(name) || name == "Host" {
				t.Fatalf("accepted header name %q", name)
			}
			for _, v := range values {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("accepted header value %q", v)
				}
			}
		}
		if _, err := http.NewRequest(s.Method, s.URL.String(), nil); err != nil {
			t.Fatalf("accepted a spec net/http cannot send: %v", err)
		}
	})
}
