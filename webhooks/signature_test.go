package webhooks

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignatureVerifies(t *testing.T) {
	secret := []byte("s3cret")
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"deliveryId":"x"}`)
	sig := Sign(secret, now, body)
	if !strings.HasPrefix(sig, "t=1800000000,v1=") {
		t.Fatalf("signature %q: want t=1800000000,v1=...", sig)
	}
	tests := []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"accepts the signed body", secret, sig, body, now, nil},
		{"accepts a call signed a little in the future (skew)", secret, sig, body, now.Add(-4 * time.Minute), nil},
		{"refuses an unsigned call", secret, "", body, now, ErrUnsigned},
		{"refuses another body", secret, sig, []byte(`{"deliveryId":"y"}`), now, ErrBadSignature},
		{"refuses another secret", []byte("other"), sig, body, now, ErrBadSignature},
		{"refuses a stale call", secret, sig, body, now.Add(6 * time.Minute), ErrStale},
		{"refuses a malformed header", secret, "garbage", body, now, ErrBadSignature},
		{"refuses a header without v1", secret, "t=1800000000", body, now, ErrBadSignature},
		{"refuses non-hex", secret, "t=1800000000,v1=zz", body, now, ErrBadSignature},
		{"refuses a re-timed signature", secret, strings.Replace(sig, "t=1800000000", "t=1800000100", 1), body, now, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.secret, tt.header, tt.body, tt.now, 5*time.Minute)
			if !errors.Is(err, tt.want) && !(err == nil && tt.want == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}
