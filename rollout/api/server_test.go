package api_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/fledgehq/fledge/rollout/api"
	"github.com/fledgehq/fledge/rollout/api/apitest"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

func TestServerServesHealthAndReflectionToAnyoneAndRolloutsToCallers(t *testing.T) {
	f := newFixture(t, apitest.Options{})
	anon := f.srv.DialAs(t, "")

	hc, err := healthpb.NewHealthClient(anon).Check(f.ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health check without a token: %v, %v", hc, err)
	}

	refl, err := reflectionpb.NewServerReflectionClient(anon).ServerReflectionInfo(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := refl.Recv()
	if err != nil {
		t.Fatalf("reflection without a token: %v", err)
	}
	var services []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	if !slices.Contains(services, "fledge.v1.Rollouts") {
		t.Errorf("reflection lists %v, not fledge.v1.Rollouts", services)
	}
	refl.CloseSend()

	_, err = rolloutpb.NewRolloutsClient(anon).Get(f.ctx, &rolloutpb.GetRequest{Namespace: "prod", Name: "shop"})
	wantStatus(t, err, codes.Unauthenticated)
	if _, err := f.client.Get(f.ctx, &rolloutpb.GetRequest{Namespace: "prod", Name: "shop"}); err != nil {
		t.Errorf("Get with a token: %v", err)
	}
	_, err = f.client.Get(f.ctx, &rolloutpb.GetRequest{Namespace: "prod", Name: "ghost"})
	wantStatus(t, err, codes.NotFound)

	counts := requestCounts(t, f.srv)
	for _, want := range []string{
		"/fledge.v1.Rollouts/Get Unauthenticated 1",
		"/fledge.v1.Rollouts/Get OK 1",
		"/fledge.v1.Rollouts/Get NotFound 1",
		"/grpc.health.v1.Health/Check OK 1",
	} {
		if !slices.Contains(counts, want) {
			t.Errorf("fledge_api_requests_total has no %q: %v", want, counts)
		}
	}
}

// requestCounts reads fledge_api_requests_total as "method code count".
func requestCounts(t *testing.T, s *apitest.Server) []string {
	t.Helper()
	families, err := s.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, fam := range families {
		if fam.GetName() != "fledge_api_requests_total" {
			continue
		}
		for _, m := range fam.GetMetric() {
			lbl := map[string]string{}
			for _, l := range m.GetLabel() {
				lbl[l.GetName()] = l.GetValue()
			}
			out = append(out, strings.Join([]string{lbl["method"], lbl["code"], strconv.FormatFloat(m.GetCounter().GetValue(), 'f', -1, 64)}, " "))
		}
	}
	return out
}

func TestNewServerRefusesAnIncompleteConfiguration(t *testing.T) {
	srv := apitest.Start(t, apitest.Options{Bufconn: true}) // for its certificate files
	kube := fake.NewClientset()
	backend := apitest.NewBackend(0)
	tests := []struct {
		name string
		cfg  api.ServerConfig
		want string
	}{
		{"no backend", api.ServerConfig{Auth: api.Config{Kube: kube}, CertFile: srv.CertFile, KeyFile: srv.KeyFile}, "no backend"},
		{"no certificate", api.ServerConfig{Backend: backend, Auth: api.Config{Kube: kube}}, "certificate and key are required"},
		{"a certificate that cannot be read", api.ServerConfig{Backend: backend, Auth: api.Config{Kube: kube}, CertFile: filepath.Join(t.TempDir(), "none"), KeyFile: srv.KeyFile}, "certificate"},
		{"client certificates without a CA", api.ServerConfig{Backend: backend, Auth: api.Config{Kube: kube, ClientCertificates: true}, CertFile: srv.CertFile, KeyFile: srv.KeyFile}, "client CA"},
		{"a client CA file without a certificate", api.ServerConfig{Backend: backend, Auth: api.Config{Kube: kube}, CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: srv.KeyFile}, "no PEM certificate"},
		{"no Kubernetes client", api.ServerConfig{Backend: backend, CertFile: srv.CertFile, KeyFile: srv.KeyFile}, "no Kubernetes client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := api.NewServer(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewServer: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	// A client CA file that holds a certificate is taken.
	if _, err := api.NewServer(api.ServerConfig{Backend: backend, Auth: api.Config{Kube: kube, ClientCertificates: true}, CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: srv.CAFile}); err != nil {
		t.Errorf("with a client CA: %v", err)
	}
	if _, err := os.Stat(srv.CAFile); err != nil {
		t.Fatal(err)
	}
}
