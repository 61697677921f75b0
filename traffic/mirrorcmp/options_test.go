package mirrorcmp_test

import (
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fledgehq/fledge/traffic/mirrorcmp"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestOptionsErrorsNameTheInvalidField(t *testing.T) {
	valid := func() mirrorcmp.Options {
		return mirrorcmp.Options{Canary: mustURL(t, "http://web-canary:8080"), Stable: mustURL(t, "http://web-stable:8080")}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*mirrorcmp.Options)
		field string // "" for no error
	}{
		{"zero values but the URLs take the defaults", func(*mirrorcmp.Options) {}, ""},
		{"a base URL with a path prefix is accepted", func(o *mirrorcmp.Options) { o.Stable = mustURL(t, "https://web:8443/api/") }, ""},
		{"a sample of 1 is accepted", func(o *mirrorcmp.Options) { o.Sample = 1 }, ""},
		{"no canary URL is refused", func(o *mirrorcmp.Options) { o.Canary = nil }, "Options.Canary"},
		{"no stable URL is refused", func(o *mirrorcmp.Options) { o.Stable = nil }, "Options.Stable"},
		{"a URL of another scheme is refused", func(o *mirrorcmp.Options) { o.Canary = mustURL(t, "ftp://web-canary") }, "Options.Canary"},
		{"a relative URL is refused", func(o *mirrorcmp.Options) { o.Stable = mustURL(t, "/web") }, "Options.Stable"},
		{"a URL with a query is refused", func(o *mirrorcmp.Options) { o.Stable = mustURL(t, "http://web?x=1") }, "Options.Stable"},
		{"a URL with a fragment is refused", func(o *mirrorcmp.Options) { o.Canary = mustURL(t, "http://web#top") }, "Options.Canary"},
		{"a negative MaxBody is refused", func(o *mirrorcmp.Options) { o.MaxBody = -1 }, "Options.MaxBody"},
		{"a negative sample is refused", func(o *mirrorcmp.Options) { o.Sample = -0.1 }, "Options.Sample"},
		{"a sample above 1 is refused", func(o *mirrorcmp.Options) { o.Sample = 1.5 }, "Options.Sample"},
		{"a NaN sample is refused", func(o *mirrorcmp.Options) { o.Sample = math.NaN() }, "Options.Sample"},
		{"a negative MaxInFlight is refused", func(o *mirrorcmp.Options) { o.MaxInFlight = -1 }, "Options.MaxInFlight"},
		{"a negative Timeout is refused", func(o *mirrorcmp.Options) { o.Timeout = -time.Second }, "Options.Timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.edit(&o)
			_, err := mirrorcmp.NewHandler(o)
			switch {
			case tc.field == "" && err != nil:
				t.Errorf("NewHandler: %v, want no error", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field+":")):
				t.Errorf("NewHandler: %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

// Every invalid field is named at once, so that a bad configuration is
// fixed in one go.
func TestOptionsErrorsNameEveryInvalidField(t *testing.T) {
	_, err := mirrorcmp.NewHandler(mirrorcmp.Options{Sample: 2, Timeout: -1})
	if err == nil {
		t.Fatal("NewHandler: no error")
	}
	for _, field := range []string{"Options.Canary:", "Options.Stable:", "Options.Sample:", "Options.Timeout:"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("NewHandler: %v, want it to name %s", err, field)
		}
	}
}

// Two proxies cannot count into one registry: that is an error, not a
// panic.
func TestASecondHandlerOnOneRegistryIsAnError(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := mirrorcmp.Options{Canary: mustURL(t, "http://web-canary"), Stable: mustURL(t, "http://web"), Registerer: reg}
	if _, err := mirrorcmp.NewHandler(o); err != nil {
		t.Fatal(err)
	}
	if _, err := mirrorcmp.NewHandler(o); err == nil || !strings.Contains(err.Error(), "fledge_mirror_comparisons_total") {
		t.Errorf("second NewHandler: %v, want an error naming the metric", err)
	}
}

// The proxy does not follow redirects or keep cookies, but the Client it
// is given may be shared: it uses a copy and leaves the given one alone.
func TestAGivenClientIsLeftAsItWas(t *testing.T) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar}
	o := mirrorcmp.Options{Canary: mustURL(t, "http://web-canary"), Stable: mustURL(t, "http://web"), Client: c}
	if _, err := mirrorcmp.NewHandler(o); err != nil {
		t.Fatal(err)
	}
	if c.CheckRedirect != nil || c.Jar != jar {
		t.Error("NewHandler changed the Client it was given")
	}
}
