package mirrorcmp_test

import (
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/fledgehq/fledge/traffic/mirrorcmp"
)

func answered(status int, body string) mirrorcmp.Answer {
	return mirrorcmp.Answer{Status: status, BodyHash: sha256.Sum256([]byte(body)), BodyLen: int64(len(body))}
}

func TestCompare(t *testing.T) {
	failed := mirrorcmp.Answer{Err: errors.New("connection refused")}
	long := answered(200, "0123456789")
	longer := long
	longer.BodyLen++ // the same first MaxBody bytes, one byte more past them
	for _, tc := range []struct {
		name           string
		canary, stable mirrorcmp.Answer
		want           mirrorcmp.Result
	}{
		{"the same status and body are the same", answered(200, "ok"), answered(200, "ok"), mirrorcmp.Same},
		{"200 and 201 are the same: one class", answered(200, "ok"), answered(201, "ok"), mirrorcmp.Same},
		{"200 and 500 differ in status", answered(200, "ok"), answered(500, "ok"), mirrorcmp.StatusDiffers},
		{"a 302 and a 200 differ in status", answered(302, ""), answered(200, ""), mirrorcmp.StatusDiffers},
		{"a 404 and a 500 differ in status", answered(404, "no"), answered(500, "no"), mirrorcmp.StatusDiffers},
		{"2xx answers with different bodies differ in body", answered(200, "v2"), answered(200, "v1"), mirrorcmp.BodyDiffers},
		{"2xx answers alike in their first bytes but not in length differ in body", longer, long, mirrorcmp.BodyDiffers},
		{"two 204s without bodies are the same", answered(204, ""), answered(204, ""), mirrorcmp.Same},
		{"500s with different bodies are the same: error bodies are not compared", answered(500, "request 1 failed"), answered(500, "request 2 failed, sorry"), mirrorcmp.Same},
		{"302s to different places are the same: redirects are not compared", answered(302, "see /a"), answered(302, "see /b"), mirrorcmp.Same},
		{"a canary that failed to answer is unanswered", failed, answered(200, "ok"), mirrorcmp.Unanswered},
		{"a stable that failed to answer is unanswered, even against a 500", answered(500, ""), failed, mirrorcmp.Unanswered},
		{"a failure with a status is unanswered", mirrorcmp.Answer{Status: 200, Err: errors.New("body cut short")}, answered(200, "ok"), mirrorcmp.Unanswered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mirrorcmp.Compare(tc.canary, tc.stable); got != tc.want {
				t.Errorf("Compare = %q, want %q", got, tc.want)
			}
		})
	}
}
