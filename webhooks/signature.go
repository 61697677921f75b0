package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers fledge sets on every hook call.
const (
	// HeaderSignature carries "t=<unix seconds>,v1=<hex HMAC-SHA256>", the
	// HMAC being over "<t>.<body>" with the hook's secret. The timestamp
	// is signed with the body, so a captured call cannot be replayed later
	// than the receiver's tolerance.
	HeaderSignature = "X-Fledge-Signature"
	// HeaderDelivery repeats the payload's delivery id.
	HeaderDelivery = "X-Fledge-Delivery"
	// HeaderType repeats the payload's hook type.
	HeaderType = "X-Fledge-Hook-Type"
)

// Sign returns the HeaderSignature value for body at time t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Errors Verify returns, for receivers to tell apart.
var (
	ErrUnsigned     = errors.New("request is not signed")
	ErrBadSignature = errors.New("signature does not match")
	ErrStale        = errors.New("signature timestamp is outside the tolerance")
)

// Verify checks a HeaderSignature value against body, accepting timestamps
// within tolerance of now (either side, for clock skew).
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if header == "" {
		return ErrUnsigned
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: malformed %s", ErrBadSignature, HeaderSignature)
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil {
				return fmt.Errorf("%w: v1 is not hex", ErrBadSignature)
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("%w: want t=<unix>,v1=<hex>", ErrBadSignature)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed at %s, now %s", ErrStale, time.Unix(sec, 0).UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrBadSignature
}
