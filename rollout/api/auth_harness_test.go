package api

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// Tokens the fake API server knows.
const (
	readerToken   = "reader-token-6b1f" // may get and list deployments in prod
	deployerToken = "deployer-token-93c2"
	unknownToken  = "unknown-token-0d77"
	expiredToken  = "expired-token-5a10" // reviewed as not authenticated, yet with a user
	reader        = "system:serviceaccount:ci:reader"
	deployer      = "system:serviceaccount:ci:deployer"
)

// fakeAPI answers TokenReviews and SubjectAccessReviews as an API server
// would, and counts them.
type fakeAPI struct {
	kube *fake.Clientset

	mu         sync.Mutex
	users      map[string]authnv1.UserInfo // by token
	audiences  []string                    // what TokenReviews answer; nil: the spec's
	grants     map[Access]map[string]bool  // access → users allowed
	denyReason string
	reviewErr  error // TokenReview fails
	accessErr  error // SubjectAccessReview fails

	tokenReviews  int
	specAudiences []string
	accessReviews []authzv1.SubjectAccessReviewSpec
}

func newFakeAPI() *fakeAPI {
	f := &fakeAPI{
		kube: fake.NewClientset(),
		users: map[string]authnv1.UserInfo{
			readerToken: {Username: reader, UID: "uid-reader", Groups: []string{"system:serviceaccounts", "system:authenticated"}},
			deployerToken: {Username: deployer, UID: "uid-deployer", Groups: []string{"system:serviceaccounts", "system:authenticated"},
				Extra: map[string]authnv1.ExtraValue{"authentication.kubernetes.io/pod-name": {"runner-1"}}},
		},
		grants: map[Access]map[string]bool{},
	}
	f.grant(reader, VerbGet, "prod", "shop")
	f.grant(reader, VerbList, "prod", "")
	f.grant(deployer, VerbGet, "prod", "shop")
	f.grant(deployer, VerbPatch, "prod", "shop")
	f.kube.PrependReactor("create", "tokenreviews", f.reviewToken)
	f.kube.PrependReactor("create", "subjectaccessreviews", f.reviewAccess)
	return f
}

func (f *fakeAPI) grant(user, verb, ns, name string) {
	a := Access{Verb: verb, Namespace: ns, Name: name}
	if f.grants[a] == nil {
		f.grants[a] = map[string]bool{}
	}
	f.grants[a][user] = true
}

func (f *fakeAPI) reviewToken(action k8stesting.Action) (bool, runtime.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenReviews++
	if f.reviewErr != nil {
		return true, nil, f.reviewErr
	}
	tr := action.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
	f.specAudiences = tr.Spec.Audiences
	if tr.Spec.Token == expiredToken {
		tr.Status = authnv1.TokenReviewStatus{User: f.users[readerToken], Error: "token has expired"}
		return true, tr, nil
	}
	user, ok := f.users[tr.Spec.Token]
	if !ok {
		tr.Status = authnv1.TokenReviewStatus{Error: "token not found"}
		return true, tr, nil
	}
	tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: user, Audiences: tr.Spec.Audiences}
	if f.audiences != nil {
		tr.Status.Audiences = f.audiences
	}
	return true, tr, nil
}

func (f *fakeAPI) reviewAccess(action k8stesting.Action) (bool, runtime.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sar := action.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview).DeepCopy()
	f.accessReviews = append(f.accessReviews, sar.Spec)
	if f.accessErr != nil {
		return true, nil, f.accessErr
	}
	ra := sar.Spec.ResourceAttributes
	if ra != nil && ra.Group == "apps" && ra.Resource == "deployments" && ra.Subresource == "" {
		sar.Status.Allowed = f.grants[Access{Verb: ra.Verb, Namespace: ra.Namespace, Name: ra.Name}][sar.Spec.User]
	}
	if !sar.Status.Allowed {
		sar.Status.Reason = f.denyReason
	}
	return true, sar, nil
}

func (f *fakeAPI) counts() (tokenReviews, accessReviews int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokenReviews, len(f.accessReviews)
}

func (f *fakeAPI) lastAccessReview(t *testing.T) authzv1.SubjectAccessReviewSpec {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.accessReviews) == 0 {
		t.Fatal("no SubjectAccessReview was made")
	}
	return f.accessReviews[len(f.accessReviews)-1]
}

// testService serves a few methods and says who called.
type testService struct {
	rolloutpb.UnimplementedRolloutsServer
	served atomic.Int32
}

func (s *testService) caller(ctx context.Context) (string, error) {
	s.served.Add(1)
	user, ok := Caller(ctx)
	if !ok {
		return "", status.Error(codes.Internal, "no caller in the context")
	}
	return user, nil
}

func (s *testService) Get(ctx context.Context, req *rolloutpb.GetRequest) (*rolloutpb.GetResponse, error) {
	user, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	return &rolloutpb.GetResponse{Flight: &rolloutpb.Flight{Namespace: req.GetNamespace(), Name: req.GetName(), Message: "read by " + user}}, nil
}

func (s *testService) List(ctx context.Context, req *rolloutpb.ListRequest) (*rolloutpb.ListResponse, error) {
	user, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	return &rolloutpb.ListResponse{ResourceVersion: "read by " + user}, nil
}

func (s *testService) Promote(ctx context.Context, req *rolloutpb.PromoteRequest) (*rolloutpb.PromoteResponse, error) {
	user, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	return &rolloutpb.PromoteResponse{Action: &rolloutpb.Action{Kind: rolloutpb.ActionKind_ACTION_KIND_PROMOTE, By: "api:" + user, RequestId: req.GetRequestId()}}, nil
}

func (s *testService) Version(ctx context.Context, _ *rolloutpb.VersionRequest) (*rolloutpb.VersionResponse, error) {
	user, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	return &rolloutpb.VersionResponse{Version: "read by " + user}, nil
}

func (s *testService) Watch(req *rolloutpb.WatchRequest, stream grpc.ServerStreamingServer[rolloutpb.WatchEvent]) error {
	user, err := s.caller(stream.Context())
	if err != nil {
		return err
	}
	return stream.Send(&rolloutpb.WatchEvent{Type: rolloutpb.WatchEvent_TYPE_SYNCED, ResourceVersion: "read by " + user})
}

// syncBuffer collects the log lines of a test's server.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	api     *fakeAPI
	svc     *testService
	clock   *clocktesting.FakeClock
	client  rolloutpb.RolloutsClient
	health  healthpb.HealthClient
	authz   *Authorizer
	logs    *syncBuffer
	context context.Context
}

type harnessOptions struct {
	serverCreds credentials.TransportCredentials
	clientCreds credentials.TransportCredentials
}

// newHarness serves the test service and grpc's health service on an
// in-memory connection, behind an Authorizer made from cfg.
func newHarness(t *testing.T, cfg Config, opts harnessOptions) *harness {
	t.Helper()
	h := &harness{api: newFakeAPI(), svc: &testService{}, clock: clocktesting.NewFakeClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)), logs: &syncBuffer{}, context: t.Context()}
	cfg.Kube = h.api.kube
	cfg.Clock = h.clock
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := NewAuthorizer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.authz = a
	serverOpts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(a.Unary), grpc.ChainStreamInterceptor(a.Stream)}
	if opts.serverCreds != nil {
		serverOpts = append(serverOpts, grpc.Creds(opts.serverCreds))
	}
	srv := grpc.NewServer(serverOpts...)
	rolloutpb.RegisterRolloutsServer(srv, h.svc)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis := bufconn.Listen(1 << 20)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	clientCreds := opts.clientCreds
	if clientCreds == nil {
		clientCreds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(clientCreds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.client = rolloutpb.NewRolloutsClient(conn)
	h.health = healthpb.NewHealthClient(conn)
	t.Cleanup(func() {
		// Whatever happened, no token reached the logs.
		for _, tok := range []string{readerToken, deployerToken, unknownToken, expiredToken} {
			if strings.Contains(h.logs.String(), tok) {
				t.Errorf("the logs hold a token:\n%s", h.logs)
			}
		}
	})
	return h
}

func (h *harness) as(token string) context.Context {
	return metadata.AppendToOutgoingContext(h.context, "authorization", "Bearer "+token)
}

func getShop(h *harness, ctx context.Context) error {
	resp, err := h.client.Get(ctx, &rolloutpb.GetRequest{Namespace: "prod", Name: "shop"})
	if err == nil && !strings.HasPrefix(resp.GetFlight().GetMessage(), "read by ") {
		return fmt.Errorf("unexpected response %v", resp)
	}
	return err
}

func promoteShop(h *harness, ctx context.Context) error {
	_, err := h.client.Promote(ctx, &rolloutpb.PromoteRequest{Namespace: "prod", Name: "shop", RequestId: "r-1", Reason: "smoke tests passed"})
	return err
}
