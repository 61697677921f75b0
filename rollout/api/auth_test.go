package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

func TestUnaryCalls(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*fakeAPI)
		call  func(*harness) error
		// What the caller gets, and whether the service ran.
		wantCode   codes.Code
		wantInMsg  []string
		wantServed bool
		// How many reviews the API server was asked for.
		wantTokenReviews, wantAccessReviews int
		// The last SubjectAccessReview, if any was wanted.
		wantAccess *authzv1.SubjectAccessReviewSpec
	}{
		{
			name:      "refuses a call without credentials",
			call:      func(h *harness) error { return getShop(h, h.context) },
			wantCode:  codes.Unauthenticated,
			wantInMsg: []string{"no credentials"},
		},
		{
			name: "refuses an authorization that is not a bearer token",
			call: func(h *harness) error {
				return getShop(h, metadata.AppendToOutgoingContext(h.context, "authorization", "Basic "+readerToken))
			},
			wantCode:  codes.Unauthenticated,
			wantInMsg: []string{"want Bearer"},
		},
		{
			name: "refuses two authorization values",
			call: func(h *harness) error {
				return getShop(h, metadata.AppendToOutgoingContext(h.as(readerToken), "authorization", "Bearer "+deployerToken))
			},
			wantCode: codes.Unauthenticated,
		},
		{
			name:             "refuses a token the API server does not authenticate",
			call:             func(h *harness) error { return getShop(h, h.as(unknownToken)) },
			wantCode:         codes.Unauthenticated,
			wantInMsg:        []string{"invalid bearer token"},
			wantTokenReviews: 1,
		},
		{
			name:             "refuses a token reviewed as not authenticated, whatever user the review names",
			call:             func(h *harness) error { return getShop(h, h.as(expiredToken)) },
			wantCode:         codes.Unauthenticated,
			wantTokenReviews: 1,
		},
		{
			name:              "allows get to a caller who may get the deployment",
			call:              func(h *harness) error { return getShop(h, h.as(readerToken)) },
			wantCode:          codes.OK,
			wantServed:        true,
			wantTokenReviews:  1,
			wantAccessReviews: 1,
			wantAccess: &authzv1.SubjectAccessReviewSpec{
				ResourceAttributes: &authzv1.ResourceAttributes{Namespace: "prod", Verb: "get", Group: "apps", Resource: "deployments", Name: "shop"},
				User:               reader,
				UID:                "uid-reader",
				Groups:             []string{"system:serviceaccounts", "system:authenticated"},
			},
		},
		{
			name: "lists a namespace for a caller who may list its deployments",
			call: func(h *harness) error {
				_, err := h.client.List(h.as(readerToken), &rolloutpb.ListRequest{Namespace: "prod"})
				return err
			},
			wantCode:          codes.OK,
			wantServed:        true,
			wantTokenReviews:  1,
			wantAccessReviews: 1,
			wantAccess: &authzv1.SubjectAccessReviewSpec{
				ResourceAttributes: &authzv1.ResourceAttributes{Namespace: "prod", Verb: "list", Group: "apps", Resource: "deployments"},
				User:               reader,
				UID:                "uid-reader",
				Groups:             []string{"system:serviceaccounts", "system:authenticated"},
			},
		},
		{
			name: "refuses to list a namespace to a caller who may only get one deployment",
			call: func(h *harness) error {
				_, err := h.client.List(h.as(deployerToken), &rolloutpb.ListRequest{Namespace: "prod"})
				return err
			},
			wantCode:          codes.PermissionDenied,
			wantInMsg:         []string{`user "system:serviceaccount:ci:deployer" cannot list deployments.apps in namespace "prod"`},
			wantTokenReviews:  1,
			wantAccessReviews: 1,
		},
		{
			name:              "refuses promote to a caller who may not patch the deployment",
			call:              func(h *harness) error { return promoteShop(h, h.as(readerToken)) },
			wantCode:          codes.PermissionDenied,
			wantInMsg:         []string{`user "system:serviceaccount:ci:reader" cannot patch deployments.apps "shop" in namespace "prod"`},
			wantTokenReviews:  1,
			wantAccessReviews: 1,
		},
		{
			name:              "says why the API server denied",
			setup:             func(f *fakeAPI) { f.denyReason = "no RBAC policy matched" },
			call:              func(h *harness) error { return promoteShop(h, h.as(readerToken)) },
			wantCode:          codes.PermissionDenied,
			wantInMsg:         []string{"cannot patch", ": no RBAC policy matched"},
			wantTokenReviews:  1,
			wantAccessReviews: 1,
		},
		{
			name:              "allows promote to a caller who may patch the deployment, with its extra attributes",
			call:              func(h *harness) error { return promoteShop(h, h.as(deployerToken)) },
			wantCode:          codes.OK,
			wantServed:        true,
			wantTokenReviews:  1,
			wantAccessReviews: 1,
			wantAccess: &authzv1.SubjectAccessReviewSpec{
				ResourceAttributes: &authzv1.ResourceAttributes{Namespace: "prod", Verb: "patch", Group: "apps", Resource: "deployments", Name: "shop"},
				User:               deployer,
				UID:                "uid-deployer",
				Groups:             []string{"system:serviceaccounts", "system:authenticated"},
				Extra:              map[string]authzv1.ExtraValue{"authentication.kubernetes.io/pod-name": {"runner-1"}},
			},
		},
		{
			name: "refuses another deployment of the same namespace",
			call: func(h *harness) error {
				_, err := h.client.Get(h.as(readerToken), &rolloutpb.GetRequest{Namespace: "prod", Name: "cart"})
				return err
			},
			wantCode:          codes.PermissionDenied,
			wantInMsg:         []string{`cannot get deployments.apps "cart" in namespace "prod"`},
			wantTokenReviews:  1,
			wantAccessReviews: 1,
		},
		{
			name:             "refuses with Unavailable when the TokenReview cannot be made",
			setup:            func(f *fakeAPI) { f.reviewErr = errors.New("dial tcp 10.0.0.1:443: connect: connection refused") },
			call:             func(h *harness) error { return promoteShop(h, h.as(deployerToken)) },
			wantCode:         codes.Unavailable,
			wantInMsg:        []string{"cannot verify credentials: tokenreview: ", "connection refused"},
			wantTokenReviews: 1,
		},
		{
			name:             "refuses with Unavailable when the API server answers the TokenReview with a 5xx",
			setup:            func(f *fakeAPI) { f.reviewErr = apierrors.NewServiceUnavailable("etcd is down") },
			call:             func(h *harness) error { return getShop(h, h.as(readerToken)) },
			wantCode:         codes.Unavailable,
			wantInMsg:        []string{"cannot verify credentials"},
			wantTokenReviews: 1,
		},
		{
			name:              "refuses with Unavailable when the SubjectAccessReview cannot be made",
			setup:             func(f *fakeAPI) { f.accessErr = apierrors.NewInternalError(errors.New("webhook authorizer timed out")) },
			call:              func(h *harness) error { return promoteShop(h, h.as(deployerToken)) },
			wantCode:          codes.Unavailable,
			wantInMsg:         []string{"cannot verify credentials: subjectaccessreview: "},
			wantTokenReviews:  1,
			wantAccessReviews: 1,
		},
		{
			name: "refuses a request without a namespace before asking for access",
			call: func(h *harness) error {
				_, err := h.client.Get(h.as(readerToken), &rolloutpb.GetRequest{Name: "shop"})
				return err
			},
			wantCode:         codes.InvalidArgument,
			wantInMsg:        []string{"namespace is required"},
			wantTokenReviews: 1,
		},
		{
			name: "refuses a name that is not a Kubernetes name",
			call: func(h *harness) error {
				_, err := h.client.Get(h.as(readerToken), &rolloutpb.GetRequest{Namespace: "prod", Name: "Shop/../x"})
				return err
			},
			wantCode:         codes.InvalidArgument,
			wantTokenReviews: 1,
		},
		{
			name: "refuses a mutating call without a name",
			call: func(h *harness) error {
				_, err := h.client.Abort(h.as(deployerToken), &rolloutpb.AbortRequest{Namespace: "prod", RequestId: "r", Reason: "x"})
				return err
			},
			wantCode:         codes.InvalidArgument,
			wantInMsg:        []string{"name is required"},
			wantTokenReviews: 1,
		},
		{
			name: "refuses a method that is not in the access table without asking anything",
			call: func(h *harness) error {
				_, err := h.health.Check(h.as(readerToken), &healthpb.HealthCheckRequest{})
				return err
			},
			wantCode:  codes.PermissionDenied,
			wantInMsg: []string{"/grpc.health.v1.Health/Check is not in fledge's access table"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{}, harnessOptions{})
			if tc.setup != nil {
				tc.setup(h.api)
			}
			err := tc.call(h)
			st := status.Convert(err)
			if st.Code() != tc.wantCode {
				t.Fatalf("code %s (%q), want %s", st.Code(), st.Message(), tc.wantCode)
			}
			for _, want := range tc.wantInMsg {
				if !strings.Contains(st.Message(), want) {
					t.Errorf("message %q does not say %q", st.Message(), want)
				}
			}
			if served := h.svc.served.Load() > 0; served != tc.wantServed {
				t.Errorf("service ran: %v, want %v", served, tc.wantServed)
			}
			trs, sars := h.api.counts()
			if trs != tc.wantTokenReviews || sars != tc.wantAccessReviews {
				t.Errorf("%d TokenReviews and %d SubjectAccessReviews, want %d and %d", trs, sars, tc.wantTokenReviews, tc.wantAccessReviews)
			}
			if tc.wantAccess != nil {
				if diff := cmp.Diff(*tc.wantAccess, h.api.lastAccessReview(t)); diff != "" {
					t.Errorf("SubjectAccessReview spec (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestTheServiceRecordsTheCaller(t *testing.T) {
	h := newHarness(t, Config{}, harnessOptions{})
	resp, err := h.client.Promote(h.as(deployerToken), &rolloutpb.PromoteRequest{Namespace: "prod", Name: "shop", RequestId: "r-7", Reason: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.GetAction().GetBy(), "api:"+deployer; got != want {
		t.Errorf("action by %q, want %q", got, want)
	}
}

func TestStreams(t *testing.T) {
	tests := []struct {
		name       string
		ctx        func(*harness) context.Context
		req        *rolloutpb.WatchRequest
		wantCode   codes.Code
		wantInMsg  string
		wantVerb   string // of the SubjectAccessReview, if one is made
		wantServed bool
		wantUser   string // the caller the service saw
	}{
		{
			name:       "watching one flight needs get on its deployment",
			ctx:        func(h *harness) context.Context { return h.as(deployerToken) },
			req:        &rolloutpb.WatchRequest{Namespace: "prod", Name: "shop"},
			wantCode:   codes.OK,
			wantVerb:   VerbGet,
			wantServed: true,
			wantUser:   deployer,
		},
		{
			name:       "watching a namespace needs list on its deployments",
			ctx:        func(h *harness) context.Context { return h.as(readerToken) },
			req:        &rolloutpb.WatchRequest{Namespace: "prod"},
			wantCode:   codes.OK,
			wantVerb:   VerbList,
			wantServed: true,
			wantUser:   reader,
		},
		{
			name:      "refuses to watch a namespace to a caller who may not list it",
			ctx:       func(h *harness) context.Context { return h.as(deployerToken) },
			req:       &rolloutpb.WatchRequest{Namespace: "prod"},
			wantCode:  codes.PermissionDenied,
			wantInMsg: `user "system:serviceaccount:ci:deployer" cannot list deployments.apps in namespace "prod"`,
			wantVerb:  VerbList,
		},
		{
			name:      "refuses to watch another namespace",
			ctx:       func(h *harness) context.Context { return h.as(readerToken) },
			req:       &rolloutpb.WatchRequest{Namespace: "staging", Name: "shop"},
			wantCode:  codes.PermissionDenied,
			wantInMsg: `cannot get deployments.apps "shop" in namespace "staging"`,
			wantVerb:  VerbGet,
		},
		{
			name:      "refuses a watch without credentials",
			ctx:       func(h *harness) context.Context { return h.context },
			req:       &rolloutpb.WatchRequest{Namespace: "prod", Name: "shop"},
			wantCode:  codes.Unauthenticated,
			wantInMsg: "no credentials",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{}, harnessOptions{})
			stream, err := h.client.Watch(tc.ctx(h), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := stream.Recv()
			st := status.Convert(err)
			if st.Code() != tc.wantCode {
				t.Fatalf("code %s (%q), want %s", st.Code(), st.Message(), tc.wantCode)
			}
			if !strings.Contains(st.Message(), tc.wantInMsg) {
				t.Errorf("message %q does not say %q", st.Message(), tc.wantInMsg)
			}
			if tc.wantCode == codes.OK {
				if want := "read by " + tc.wantUser; ev.GetResourceVersion() != want {
					t.Errorf("event %v, want one %s", ev, want)
				}
			}
			if served := h.svc.served.Load() > 0; served != tc.wantServed {
				t.Errorf("service ran: %v, want %v", served, tc.wantServed)
			}
			if tc.wantVerb != "" {
				if got := h.api.lastAccessReview(t).ResourceAttributes.Verb; got != tc.wantVerb {
					t.Errorf("asked for %s, want %s", got, tc.wantVerb)
				}
			} else if _, sars := h.api.counts(); sars != 0 {
				t.Errorf("%d SubjectAccessReviews, want none", sars)
			}
		})
	}
}

func TestTokenCache(t *testing.T) {
	h := newHarness(t, Config{CacheTTL: time.Minute}, harnessOptions{})
	calls := func(want int, step string) {
		t.Helper()
		if trs, _ := h.api.counts(); trs != want {
			t.Fatalf("after %s: %d TokenReviews, want %d", step, trs, want)
		}
	}
	if err := getShop(h, h.as(readerToken)); err != nil {
		t.Fatal(err)
	}
	calls(1, "the first call")
	if err := getShop(h, h.as(readerToken)); err != nil {
		t.Fatal(err)
	}
	calls(1, "a second call with the same token")
	if err := promoteShop(h, h.as(deployerToken)); err != nil {
		t.Fatal(err)
	}
	calls(2, "a call with another token")

	// Access is asked for on every call: a revoked permission stops the
	// next call, whatever the cache holds.
	h.api.mu.Lock()
	delete(h.api.grants[Access{Verb: VerbGet, Namespace: "prod", Name: "shop"}], reader)
	h.api.mu.Unlock()
	if code := status.Code(getShop(h, h.as(readerToken))); code != codes.PermissionDenied {
		t.Fatalf("after the grant was revoked: %s, want PermissionDenied", code)
	}
	calls(2, "a cached token whose access was revoked")

	h.clock.Step(time.Minute)
	if code := status.Code(getShop(h, h.as(readerToken))); code != codes.PermissionDenied {
		t.Fatalf("after the cache expired: %s, want PermissionDenied", code)
	}
	calls(3, "the cache entry expired")

	// Refusals are not cached: a token the API server learns is accepted
	// at once.
	if code := status.Code(getShop(h, h.as(unknownToken))); code != codes.Unauthenticated {
		t.Fatalf("unknown token: %s, want Unauthenticated", code)
	}
	h.api.mu.Lock()
	h.api.users[unknownToken] = authnv1.UserInfo{Username: reader}
	h.api.grant(reader, VerbGet, "prod", "shop")
	h.api.mu.Unlock()
	if err := getShop(h, h.as(unknownToken)); err != nil {
		t.Fatalf("once the token is known: %v", err)
	}
	calls(5, "a refused token tried again")
}

func TestTokenCacheCanBeTurnedOff(t *testing.T) {
	h := newHarness(t, Config{CacheTTL: -1}, harnessOptions{})
	for range 3 {
		if err := getShop(h, h.as(readerToken)); err != nil {
			t.Fatal(err)
		}
	}
	if trs, _ := h.api.counts(); trs != 3 {
		t.Errorf("%d TokenReviews for 3 calls without a cache, want 3", trs)
	}
}

func TestTokenCacheStaysBounded(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	c := &tokenCache{ttl: time.Minute, size: 2, entries: map[[32]byte]cached{}}
	keys := [][32]byte{{1}, {2}, {3}}
	for i, k := range keys {
		c.put(k, identity{user: fmt.Sprint(i)}, now)
	}
	if len(c.entries) != 2 {
		t.Errorf("%d entries, want at most 2", len(c.entries))
	}
	if id, ok := c.get(keys[2], now); !ok || id.user != "2" {
		t.Errorf("the newest entry is gone: %v %v", id, ok)
	}
	if _, ok := c.get(keys[2], now.Add(time.Minute)); ok {
		t.Error("an entry outlived its ttl")
	}
}

func TestAudiences(t *testing.T) {
	h := newHarness(t, Config{Audiences: []string{"fledge"}}, harnessOptions{})
	if err := getShop(h, h.as(readerToken)); err != nil {
		t.Fatalf("a token for fledge: %v", err)
	}
	if diff := cmp.Diff([]string{"fledge"}, h.api.specAudiences); diff != "" {
		t.Errorf("TokenReview audiences (-want +got):\n%s", diff)
	}
	// An API server that authenticates the token for other audiences only.
	h.api.mu.Lock()
	h.api.audiences = []string{"https://kubernetes.default.svc"}
	h.api.mu.Unlock()
	err := promoteShop(h, h.as(deployerToken))
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "not for fledge") {
		t.Errorf("a token for the API server only: %v, want Unauthenticated, not for fledge", err)
	}
	if h.svc.served.Load() != 1 {
		t.Errorf("served %d calls, want 1", h.svc.served.Load())
	}
}

func TestPublicMethods(t *testing.T) {
	h := newHarness(t, Config{Public: []string{healthpb.Health_Check_FullMethodName}}, harnessOptions{})
	if _, err := h.health.Check(h.context, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("a public method without credentials: %v", err)
	}
	if trs, sars := h.api.counts(); trs+sars != 0 {
		t.Errorf("%d reviews for a public method, want none", trs+sars)
	}
	if code := status.Code(getShop(h, h.context)); code != codes.Unauthenticated {
		t.Errorf("Get without credentials next to a public method: %s, want Unauthenticated", code)
	}

	_, err := NewAuthorizer(Config{Kube: fake.NewClientset(), Public: []string{rolloutpb.Rollouts_Promote_FullMethodName}})
	if err == nil {
		t.Error("NewAuthorizer made Promote public")
	}
}

// TestAccessTableCoversTheService holds the access table to the service
// as the proto defines it: every method is in it, nothing else is, and
// each needs what its request says it does (patch for the ones with a
// request_id, get for one name, list for a namespace).
// anyCallerMethods name nothing: any authenticated caller may call them.
var anyCallerMethods = map[string]bool{rolloutpb.Rollouts_Version_FullMethodName: true}

func TestAccessTableCoversTheService(t *testing.T) {
	sd := rolloutpb.File_rollout_rolloutpb_rollouts_proto.Services().ByName("Rollouts")
	if sd == nil {
		t.Fatal("no service Rollouts in rollouts.proto")
	}
	methods := sd.Methods()
	seen := map[string]bool{}
	for i := range methods.Len() {
		m := methods.Get(i)
		full := fmt.Sprintf("/%s/%s", sd.FullName(), m.Name())
		seen[full] = true
		r, ok := rolloutsAccess[full]
		if !ok {
			t.Errorf("%s is not in the access table: it would be refused to everyone", full)
			continue
		}
		if m.IsStreamingClient() {
			t.Errorf("%s streams from the client: the Authorizer does not serve that", full)
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByName(m.Input().FullName())
		if err != nil {
			t.Fatal(err)
		}
		req := mt.New()
		fields := req.Descriptor().Fields()
		set := func(name, value string) bool {
			f := fields.ByName(protoreflect.Name(name))
			if f == nil || f.Kind() != protoreflect.StringKind {
				return false
			}
			req.Set(f, protoreflect.ValueOfString(value))
			return true
		}
		if anyCallerMethods[full] {
			if got, err := r(req.Interface()); err != nil || got != (Access{AnyCaller: true}) {
				t.Errorf("%s needs %s (%v), want any authenticated caller", full, got, err)
			}
			continue
		}
		if !set("namespace", "prod") {
			t.Errorf("%s: request %s has no string namespace", full, mt.Descriptor().FullName())
			continue
		}
		want := Access{Verb: VerbList, Namespace: "prod"}
		if set("name", "shop") {
			want = Access{Verb: VerbGet, Namespace: "prod", Name: "shop"}
		}
		if fields.ByName("request_id") != nil {
			want.Verb = VerbPatch
		}
		got, err := r(req.Interface())
		if err != nil {
			t.Errorf("%s: %v", full, err)
			continue
		}
		if got != want {
			t.Errorf("%s needs %s, want %s", full, got, want)
		}
	}
	for full := range rolloutsAccess {
		if !seen[full] {
			t.Errorf("the access table has %s, which the service does not", full)
		}
	}
	// The generated Go service agrees with its descriptor.
	for _, m := range rolloutpb.Rollouts_ServiceDesc.Methods {
		if !seen["/"+rolloutpb.Rollouts_ServiceDesc.ServiceName+"/"+m.MethodName] {
			t.Errorf("unary method %s is not in the descriptor", m.MethodName)
		}
	}
	for _, s := range rolloutpb.Rollouts_ServiceDesc.Streams {
		if !seen["/"+rolloutpb.Rollouts_ServiceDesc.ServiceName+"/"+s.StreamName] {
			t.Errorf("stream %s is not in the descriptor", s.StreamName)
		}
	}
	// Watching a namespace is listing it.
	if got, _ := watchRule(&rolloutpb.WatchRequest{Namespace: "prod"}); got != (Access{Verb: VerbList, Namespace: "prod"}) {
		t.Errorf("Watch without a name needs %s, want list", got)
	}
}

func TestAccessRulesRefuseOtherRequests(t *testing.T) {
	for full, r := range rolloutsAccess {
		if anyCallerMethods[full] {
			continue
		}
		if _, err := r(&healthpb.HealthCheckRequest{}); err == nil {
			t.Errorf("%s took a HealthCheckRequest", full)
		}
	}
}

// fakeStream is a server stream whose request is already there.
type fakeStream struct {
	grpc.ServerStream
	sent int
}

func (s *fakeStream) Context() context.Context { return context.Background() }
func (s *fakeStream) RecvMsg(any) error        { return nil }
func (s *fakeStream) SendMsg(any) error        { s.sent++; return nil }

func TestStreamSendsNothingBeforeItsRequestIsAuthorized(t *testing.T) {
	denied := status.Error(codes.PermissionDenied, "no")
	inner := &fakeStream{}
	s := &authorizingStream{ServerStream: inner, ctx: context.Background(), authorize: func(any) error { return denied }}
	if err := s.SendMsg(&rolloutpb.WatchEvent{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("send before receiving: %v, want PermissionDenied", err)
	}
	if err := s.RecvMsg(&rolloutpb.WatchRequest{}); !errors.Is(err, denied) {
		t.Errorf("receive: %v, want the refusal", err)
	}
	if err := s.SendMsg(&rolloutpb.WatchEvent{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("send after a refusal: %v, want PermissionDenied", err)
	}
	if inner.sent != 0 {
		t.Errorf("%d messages went out", inner.sent)
	}

	s = &authorizingStream{ServerStream: inner, ctx: context.Background(), authorize: func(any) error { return nil }}
	if err := s.RecvMsg(&rolloutpb.WatchRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(&rolloutpb.WatchEvent{}); err != nil || inner.sent != 1 {
		t.Errorf("send once authorized: %v, %d sent", err, inner.sent)
	}
}

// pki is a CA with a server certificate for "bufnet" and client
// certificates.
