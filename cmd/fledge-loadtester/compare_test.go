package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The mirror-compare mode, as fledge starts it: copies in, both sides
// called, the counts on /metrics labelled with the canary's workload, as
// fledge's response-diff check selects them.
func TestTheMirrorCompareModeCountsByTheCanarysWorkload(t *testing.T) {
	stable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page "+r.URL.Path) }))
	defer stable.Close()
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/changed" {
			io.WriteString(w, "another page")
			return
		}
		io.WriteString(w, "page "+r.URL.Path)
	}))
	defer canary.Close()
	listen, metrics := freePort(t), freePort(t)
	o, err := parseCompare([]string{"--canary=" + canary.URL, "--stable=" + stable.URL, "--workload=shop-canary", "--namespace=demo",
		"--listen=" + listen, "--metrics-listen=" + metrics})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runCompare(ctx, o, slog.New(slog.DiscardHandler)) }()
	defer func() { cancel(); <-done }()
	client := &http.Client{Timeout: 5 * time.Second}
	var up bool
	for range 50 {
		if resp, err := client.Get("http://" + metrics + "/healthz"); err == nil {
			resp.Body.Close()
			up = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !up {
		t.Fatal("the comparator never answered /healthz")
	}
	for _, path := range []string{"/a", "/b", "/changed"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+listen+path, nil)
		req.Host = "shop-shadow"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := client.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`fledge_mirror_comparisons_total{destination_workload="shop-canary",destination_workload_namespace="demo",result="same"} 2`,
		`fledge_mirror_comparisons_total{destination_workload="shop-canary",destination_workload_namespace="demo",result="body_differs"} 1`,
		`fledge_mirror_comparisons_total{destination_workload="shop-canary",destination_workload_namespace="demo",result="status_differs"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestTheMirrorCompareModeNamesEveryMissingFlag(t *testing.T) {
	_, err := parseCompare([]string{"--canary=http://shop-canary"})
	for _, want := range []string{"-stable: required", "-workload: required", "-namespace: required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
}
