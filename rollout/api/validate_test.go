package api

import (
	"strings"
	"testing"
	"unicode"
)

func TestValidImage(t *testing.T) {
	digest := "sha256:" + strings.Repeat("a1", 32)
	valid := []string{
		"shop",
		"shop:1.4.2",
		"library/shop:latest",
		"registry.example/team/shop:1.4.2",
		"registry.example:5000/team/shop:v1",
		"localhost:5000/shop",
		"localhost/shop",
		"[::1]:5000/shop:1",
		"10.0.0.1:5000/shop:1",
		"registry.example/shop@" + digest,
		"registry.example/shop:1.4.2@" + digest,
		"Registry.Example/team/shop:1",
		"ghcr.io/team/shop_svc__v2-x.y:1_A-b.c",
		"shop:" + strings.Repeat("x", 128),
	}
	for _, ref := range valid {
		if msg := validImage(ref); msg != "" {
			t.Errorf("validImage(%q) = %q, want it valid", ref, msg)
		}
	}
	invalid := []struct{ ref, why string }{
		{"", "is required"},
		{"Shop:1", "upper case repository"},
		{"registry.example/Team/shop", "upper case path"},
		{"shop:1 2", "space in the tag"},
		{" shop:1", "leading space"},
		{"shop:1\n", "newline"},
		{"shop::1", "empty tag"},
		{"shop:-1", "tag starting with a dash"},
		{"shop:" + strings.Repeat("x", 129), "tag too long"},
		{"shop@sha256:abc", "digest too short"},
		{"shop@" + strings.TrimPrefix(digest, "sha256:"), "digest without algorithm"},
		{"registry.example/shop/", "trailing slash"},
		{"/shop", "leading slash"},
		{"shop--.x", "separator before a separator"},
		{"-registry.example/shop", "domain starting with a dash"},
		{"registry.example:port/shop", "port not a number"},
		{"shop;rm -rf /", "shell"},
		{"https://registry.example/shop", "a URL"},
		{strings.Repeat("a", 256), "name too long"},
		{strings.Repeat("a/", 300) + "a", "far too long"},
	}
	for _, tc := range invalid {
		if msg := validImage(tc.ref); msg == "" {
			t.Errorf("validImage(%q) accepted it, want refused (%s)", tc.ref, tc.why)
		}
	}
}

func FuzzValidImage(f *testing.F) {
	for _, seed := range []string{"shop:1", "registry.example:5000/a/b@sha256:" + strings.Repeat("0", 64), "[::1]/x", "a__b", "A/b"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		if validImage(ref) != "" {
			return
		}
		// Whatever is accepted is one short token a container runtime
		// can be handed as is.
		if len(ref) > maxImage || strings.IndexFunc(ref, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r > unicode.MaxASCII }) >= 0 {
			t.Fatalf("accepted %q", ref)
		}
		if strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/") || strings.Contains(ref, "//") || strings.Contains(ref, "://") {
			t.Fatalf("accepted %q", ref)
		}
	})
}

func TestValidateRequestID(t *testing.T) {
	for _, id := range []string{"r-1", "4f9c2b1e-8a7d-4c7e-9b1a-2f3d4e5a6b7c", "pipeline:4211.deploy_2", strings.Repeat("a", 128)} {
		if err := validateRequestID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	for _, id := range []string{"", "r 1", "r/1", "r\n", "é", strings.Repeat("a", 129)} {
		if err := validateRequestID(id); err == nil {
			t.Errorf("%q was accepted", id)
		}
	}
}

func TestValidateReason(t *testing.T) {
	if err := validateReason(strings.Repeat("é", 256)); err != nil {
		t.Errorf("256 characters: %v", err)
	}
	for _, r := range []string{strings.Repeat("a", 257), "line one\nline two", "bell\a"} {
		if err := validateReason(r); err == nil {
			t.Errorf("%q was accepted", r)
		}
	}
}
