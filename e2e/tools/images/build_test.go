package main

import (
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// fakeBuild writes stand-in binaries and CA files and returns build's
// flags for them (the real binaries are e2e/ship's TestImages's).
func fakeBuild(t *testing.T, out string, extra ...string) []string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{"linux_amd64", "linux_arm64"} {
		if err := os.MkdirAll(filepath.Join(dir, "bin", p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "bin", p, "fledgectl"), []byte("#!/bin/sh\necho "+p+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ca := filepath.Join(dir, "ca")
	if err := os.MkdirAll(ca, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"b.crt", "a.crt"} {
		if err := os.WriteFile(filepath.Join(ca, c), []byte("-----BEGIN CERTIFICATE-----\n"+c+"\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return append([]string{"--binaries", filepath.Join(dir, "bin"), "--out", out, "--names", "fledgectl", "--ca-dir", ca,
		"--version", "v0.0.1", "--revision", "abc", "--created", "2026-12-01T10:00:00+01:00"}, extra...)
}

func indexDigest(t *testing.T, dir string) string {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 {
		t.Fatalf("%s: %d entries, want 1", dir, len(m.Manifests))
	}
	return m.Manifests[0].Digest.String()
}

func TestTwoBuildsGiveOneDigest(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if err := build(fakeBuild(t, a)); err != nil {
		t.Fatal(err)
	}
	if err := build(fakeBuild(t, b)); err != nil {
		t.Fatal(err)
	}
	if da, db := indexDigest(t, filepath.Join(a, "fledgectl")), indexDigest(t, filepath.Join(b, "fledgectl")); da != db {
		t.Errorf("digests %s and %s", da, db)
	}
	// Another commit time is another image: the time is in it.
	c := t.TempDir()
	args := fakeBuild(t, c)
	args[len(args)-1] = "2026-12-02T10:00:00Z"
	if err := build(args); err != nil {
		t.Fatal(err)
	}
	if indexDigest(t, filepath.Join(a, "fledgectl")) == indexDigest(t, filepath.Join(c, "fledgectl")) {
		t.Error("a build with another time gave the same digest: the time is not in the image")
	}
}

func TestPushSendsTheSameIndex(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := build(fakeBuild(t, out, "--push", u.Host+"/fledgehq/")); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(u.Host + "/fledgehq/fledgectl:v0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	if want := indexDigest(t, filepath.Join(out, "fledgectl")); desc.Digest.String() != want {
		t.Errorf("pushed %s, the layout holds %s", desc.Digest, want)
	}
	if !strings.Contains(string(desc.MediaType), "oci.image.index") {
		t.Errorf("pushed a %s, want an OCI index", desc.MediaType)
	}
}

func TestMissingCACertificatesAreAnError(t *testing.T) {
	args := fakeBuild(t, t.TempDir())
	for i := range args {
		if args[i] == "--ca-dir" {
			args[i+1] = t.TempDir()
		}
	}
	if err := build(args); err == nil || !strings.Contains(err.Error(), "ca-certificates") {
		t.Errorf("build with no CA files: %v, want an error naming ca-certificates", err)
	}
}
