package hookclient

import (
	"strings"
	"testing"
	"time"
)

func TestOneLine(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		limit int
		want  string
	}{
		{"keeps a short line as it is", "service unavailable", 200, "service unavailable"},
		{"joins lines with one space", "line one\r\n\n  line two\t\tend\n", 200, "line one line two end"},
		{"drops terminal escapes and other control bytes", "red\x1b[31m alert\x00\x07", 200, "red [31m alert"},
		{"drops bidi overrides that could disguise the text", "abc\u202edef", 200, "abc def"},
		{"replaces invalid UTF-8", "ok\xff\xfeok", 200, "ok??ok"},
		{"keeps printable unicode", "délai dépassé ✓", 200, "délai dépassé ✓"},
		{"cuts at the limit and says so", "0123456789", 5, "01234..."},
		{"never cuts a rune in half", "ééé", 5, "éé..."},
		{"does not count the space before a cut word", "abcd efgh", 5, "abcd..."},
		{"is empty for a blank body", " \n\t ", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := oneLine([]byte(tt.in), tt.limit); got != tt.want {
				t.Fatalf("oneLine(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
			}
		})
	}
}

func TestOneLineStaysWithinItsLimit(t *testing.T) {
	body := strings.Repeat("héllo wörld\n\x1b", 10_000)
	got := oneLine([]byte(body), snippetBytes)
	if len(got) > snippetBytes+len("...") {
		t.Fatalf("oneLine of %d bytes = %d bytes, want at most %d", len(body), len(got), snippetBytes+3)
	}
	if strings.ContainsAny(got, "\n\r\x1b") {
		t.Fatalf("oneLine = %q: want no line breaks or escapes", got)
	}
}

func TestSizeText(t *testing.T) {
	tests := []struct {
		name string
		n    int64
		want string
	}{
		{"writes whole mebibytes", 1 << 20, "1 MiB"},
		{"writes whole kibibytes", 64 << 10, "64 KiB"},
		{"writes other sizes in bytes", 1000, "1000 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sizeText(tt.n); got != tt.want {
				t.Fatalf("sizeText(%d) = %q, want %q", tt.n, got, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	first, limit := 200*time.Millisecond, 2*time.Second
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 2 * time.Second, 2 * time.Second}
	for n, w := range want {
		if got := backoff(first, limit, n); got != w {
			t.Errorf("backoff before retry %d = %v, want %v", n+1, got, w)
		}
	}
	if got := backoff(first, limit, 1000); got != limit {
		t.Errorf("backoff after many retries = %v, want the cap %v", got, limit)
	}
}
