package api

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"

	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// Version names nothing: any authenticated caller may ask which build
// answers, with no SubjectAccessReview; nobody else may.
func TestVersionNeedsATokenAndNoGrant(t *testing.T) {
	h := newHarness(t, Config{}, harnessOptions{})
	h.api.mu.Lock()
	h.api.users["nobody-token-77aa"] = authnv1.UserInfo{Username: "system:serviceaccount:ci:nobody", Groups: []string{"system:authenticated"}}
	h.api.mu.Unlock()
	resp, err := h.client.Version(h.as("nobody-token-77aa"), &rolloutpb.VersionRequest{})
	if err != nil || resp.GetVersion() != "read by system:serviceaccount:ci:nobody" {
		t.Fatalf("Version as a caller with no grants = %v, %v; want it served", resp, err)
	}
	if _, reviews := h.api.counts(); reviews != 0 {
		t.Errorf("%d SubjectAccessReviews for Version, want none", reviews)
	}
	for _, tok := range []string{"", unknownToken} {
		ctx := h.context
		if tok != "" {
			ctx = h.as(tok)
		}
		if _, err := h.client.Version(ctx, &rolloutpb.VersionRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("Version with token %q: %v, want Unauthenticated", tok, err)
		}
	}
}
