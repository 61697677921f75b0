package api_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/fledgehq/fledge/rollout/api"
	"github.com/fledgehq/fledge/rollout/api/apitest"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// panickingBackend panics on the Flight named "boom", as a bug in the
// engine would.
type panickingBackend struct {
	*apitest.Backend
}

func (b panickingBackend) Get(ctx context.Context, namespace, name string) (*v1alpha1.Flight, error) {
	if name == "boom" {
		panic("backend bug: get " + namespace + "/" + name)
	}
	return b.Backend.Get(ctx, namespace, name)
}

func (b panickingBackend) Subscribe(ctx context.Context, namespace, name string, selector labels.Selector) (<-chan api.FlightEvent, error) {
	if name == "boom" {
		panic("backend bug: watch " + namespace + "/" + name)
	}
	return b.Backend.Subscribe(ctx, namespace, name, selector)
}

// lockedBuffer is a log destination that calls on many goroutines share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// allowingKube is a fake API server that authenticates apitest.Token and
// allows every SubjectAccessReview, as apitest.Start's does.
func allowingKube() *fake.Clientset {
	kube := fake.NewClientset()
	kube.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		tr := action.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		if tr.Spec.Token == apitest.Token {
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: apitest.User}}
		}
		return true, tr, nil
	})
	kube.PrependReactor("create", "subjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		sar := action.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview).DeepCopy()
		sar.Status.Allowed = true
		return true, sar, nil
	})
	return kube
}

// servePanicking serves NewServer over a panickingBackend holding
// prod/shop on a loopback listener, and returns a client calling with
// apitest.Token and the server's log.
func servePanicking(t *testing.T) (rolloutpb.RolloutsClient, *lockedBuffer) {
	t.Helper()
	pki := apitest.Start(t, apitest.Options{Bufconn: true}) // for its certificate files
	backend := apitest.NewBackend(0)
	backend.Put(apitest.NewFlight("prod", "shop", progressing()), nil)
	logs := &lockedBuffer{}
	srv, err := api.NewServer(api.ServerConfig{
		Backend:  panickingBackend{backend},
		Service:  api.ServiceOptions{Logger: slog.New(slog.NewTextHandler(logs, nil))},
		Auth:     api.Config{Kube: allowingKube(), Logger: slog.New(slog.DiscardHandler)},
		CertFile: pki.CertFile, KeyFile: pki.KeyFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("serve: %v", err)
		}
	})
	ca, err := os.ReadFile(pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"})),
		grpc.WithPerRPCCredentials(apitest.BearerToken(apitest.Token)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return rolloutpb.NewRolloutsClient(conn), logs
}

func TestAPanicInACallIsInternalAndTheServerGoesOn(t *testing.T) {
	client, logs := servePanicking(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	_, err := client.Get(ctx, &rolloutpb.GetRequest{Namespace: "prod", Name: "boom"})
	wantStatus(t, err, codes.Internal, rolloutpb.Rollouts_Get_FullMethodName, "internal error")
	if strings.Contains(err.Error(), "backend bug") {
		t.Errorf("the caller was told the panic's value: %v", err)
	}
	if got, err := client.Get(ctx, &rolloutpb.GetRequest{Namespace: "prod", Name: "shop"}); err != nil || got.GetFlight().GetName() != "shop" {
		t.Fatalf("Get after a panic on the same server: %v, %v", got, err)
	}

	watch, err := client.Watch(ctx, &rolloutpb.WatchRequest{Namespace: "prod", Name: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = watch.Recv()
	wantStatus(t, err, codes.Internal, rolloutpb.Rollouts_Watch_FullMethodName)
	watch, err = client.Watch(ctx, &rolloutpb.WatchRequest{Namespace: "prod", Name: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := watch.Recv(); err != nil {
		t.Fatalf("Watch after a panic on the same server: %v, %v", ev, err)
	}
	cancel()

	log := logs.String()
	for _, want := range []string{
		`msg="grpc call panicked" method=` + rolloutpb.Rollouts_Get_FullMethodName,
		`msg="grpc call panicked" method=` + rolloutpb.Rollouts_Watch_FullMethodName,
		"backend bug: get prod/boom", "backend bug: watch prod/boom",
		"panickingBackend.Get", // the stack
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the server's log does not say %q:\n%s", want, log)
		}
	}
}

func TestTheServerRefusesAnOversizedRequest(t *testing.T) {
	client, _ := servePanicking(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := client.Get(ctx, &rolloutpb.GetRequest{Namespace: "prod", Name: strings.Repeat("x", 2<<20)})
	if got := status.Code(err); got != codes.ResourceExhausted {
		// Not the message: it may quote the 2 MiB name.
		t.Errorf("Get of a 2 MiB request: code %s, want ResourceExhausted (over api.MaxRecvMsgSize)", got)
	}
	if _, err := client.Get(ctx, &rolloutpb.GetRequest{Namespace: "prod", Name: "shop"}); err != nil {
		t.Errorf("Get after an oversized request: %v", err)
	}
}

// One connection holds at most api.MaxConcurrentStreams calls open: with
// that many Watch streams open, a further call waits (here until its
// deadline) until one of them ends.
func TestOneConnectionHoldsAtMostMaxConcurrentStreams(t *testing.T) {
	client, _ := servePanicking(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var watches []context.CancelFunc
	for range api.MaxConcurrentStreams {
		wctx, wcancel := context.WithCancel(ctx)
		watches = append(watches, wcancel)
		w, err := client.Watch(wctx, &rolloutpb.WatchRequest{Namespace: "prod", Name: "shop"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil { // the stream is open: its first event came
			t.Fatal(err)
		}
	}
	short, shortCancel := context.WithTimeout(ctx, time.Second)
	defer shortCancel()
	if _, err := client.Get(short, &rolloutpb.GetRequest{Namespace: "prod", Name: "shop"}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a call beyond %d open streams: %v, want it to wait (DeadlineExceeded)", api.MaxConcurrentStreams, err)
	}
	watches[0]()
	if _, err := client.Get(ctx, &rolloutpb.GetRequest{Namespace: "prod", Name: "shop"}); err != nil {
		t.Errorf("a call once a stream ended: %v", err)
	}
	for _, c := range watches[1:] {
		c()
	}
}
