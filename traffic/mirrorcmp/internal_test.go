package mirrorcmp

import (
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestUnshadowTakesOffWhatEnvoyAppends(t *testing.T) {
	for in, want := range map[string]string{
		"web-shadow":                           "web",
		"web-shadow:8080":                      "web:8080",
		"web.shop.svc.cluster.local-shadow:80": "web.shop.svc.cluster.local:80",
		"[fd00::1]-shadow:80":                  "[fd00::1]:80",
		"web:8080":                             "web:8080",
		"web":                                  "web",
		"web-shadow-shadow:8080":               "web-shadow:8080", // a service named web-shadow, mirrored
	} {
		if got := unshadow(in); got != want {
			t.Errorf("unshadow(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTheSamplerTakesItsShareOfEveryStretchOfCopies(t *testing.T) {
	for _, sample := range []float64{0.01, 0.1, 0.5, 0.9} {
		// Each stretch of 10000 copies, not only the whole run.
		for start := uint64(0); start < 50000; start += 10000 {
			n := 0
			for i := start; i < start+10000; i++ {
				if sampled(i, sample) {
					n++
				}
			}
			if want := sample * 10000; float64(n) < want*0.9-30 || float64(n) > want*1.1+30 {
				t.Errorf("sample %v, copies %d-%d: %d sampled, want about %v", sample, start, start+10000, n, want)
			}
		}
	}
	for i := range uint64(1000) {
		if !sampled(i, 1) {
			t.Fatalf("copy %d not sampled with sample 1", i)
		}
	}
}

// With a sample of 0.5, a client that alternates two paths has both
// compared: a sampler that took every other copy would compare one only.
func TestTheSamplerDoesNotAliasWithAlternatingTraffic(t *testing.T) {
	var even, odd int
	for i := range uint64(2000) {
		if sampled(i, 0.5) {
			if i%2 == 0 {
				even++
			} else {
				odd++
			}
		}
	}
	if even < 400 || odd < 400 {
		t.Errorf("%d even and %d odd copies sampled of 1000 each, want about 500 each", even, odd)
	}
}

func TestUpstreamURLAppendsTheCopysPathToTheBase(t *testing.T) {
	for _, tc := range []struct{ base, in, want string }{
		{"http://web:8080", "/items?q=1", "http://web:8080/items?q=1"},
		{"http://web:8080/", "/items", "http://web:8080/items"},
		{"https://web/api", "/items/", "https://web/api/items/"},
		{"https://web/api/", "/a%2Fb?x=%20", "https://web/api/a%2Fb?x=%20"},
		{"http://web", "/", "http://web/"},
	} {
		base, _ := url.Parse(tc.base)
		in, _ := url.ParseRequestURI(tc.in)
		if got := upstreamURL(base, in).String(); got != tc.want {
			t.Errorf("upstreamURL(%s, %s) = %s, want %s", tc.base, tc.in, got, tc.want)
		}
	}
}

// zeros is an endless body.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A body too long to measure within the drain bound is unanswered rather
// than compared by a length that is not its own.
func TestABodyLongerThanTheDrainBoundIsUnanswered(t *testing.T) {
	const maxBody = 1024
	for _, tc := range []struct {
		name    string
		length  int64
		wantErr bool
	}{
		{"a body of exactly the bound", maxBody + maxDrain, false},
		{"a body a byte past the bound", maxBody + maxDrain + 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: 200, Body: io.NopCloser(io.LimitReader(zeros{}, tc.length))}
			a := readAnswer(resp, maxBody)
			if (a.Err != nil) != tc.wantErr {
				t.Errorf("Err = %v, want an error: %v", a.Err, tc.wantErr)
			}
			if !tc.wantErr && a.BodyLen != tc.length {
				t.Errorf("BodyLen = %d, want %d", a.BodyLen, tc.length)
			}
		})
	}
}

func TestForwardHeaderDropsTheHeadersTheConnectionNames(t *testing.T) {
	in := http.Header{
		"Connection":      {"keep-alive, X-Hop-A", "X-Hop-B"},
		"Keep-Alive":      {"timeout=5"},
		"X-Hop-A":         {"1"},
		"X-Hop-B":         {"1"},
		"Te":              {"trailers"},
		"Upgrade":         {"websocket"},
		"Accept-Encoding": {"br"},
		"X-End":           {"kept"},
	}
	out := forwardHeader(in)
	if want := "Fledge-Mirror-Compared,User-Agent,X-End"; strings.Join(slices.Sorted(maps.Keys(out)), ",") != want {
		t.Errorf("forwarded headers %v, want %s", slices.Sorted(maps.Keys(out)), want)
	}
	if in.Get("X-Hop-A") != "1" {
		t.Error("forwardHeader changed the copy's header")
	}
}
