package api

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// ServerConfig configures NewServer.
type ServerConfig struct {
	// Backend is the engine behind the service.
	Backend Backend
	// Service tunes the service.
	Service ServiceOptions
	// Auth configures the Authorizer. Health and reflection are added to
	// its Public methods: probes and grpcurl need no token, and neither
	// reveals anything about Flights.
	Auth Config

	// CertFile and KeyFile are the server's certificate (chain) and key,
	// PEM; required: bearer tokens never cross the network in the clear.
	// They are read again when they change on disk (cert-manager renews
	// them in place), at the next handshake.
	CertFile, KeyFile string
	// ClientCAFile, if set, is a PEM bundle of the CAs whose client
	// certificates the server verifies (mutual TLS). A client may still
	// connect without a certificate and use a bearer token; with
	// Auth.ClientCertificates a verified certificate stands for its caller.
	ClientCAFile string
	// RequireClientCertificate refuses connections without a verified
	// client certificate (needs ClientCAFile).
	RequireClientCertificate bool

	// Registerer, if set, gets the request metrics.
	Registerer prometheus.Registerer
	// Health, if set, is the health service to serve (so that its owner
	// can set statuses, and NOT_SERVING on shutdown); default: a new one,
	// SERVING.
	Health *health.Server
	// Options are more grpc.ServerOptions; they come after, and so
	// override, the defaults of DefaultServerOptions (keepalive, limits).
	Options []grpc.ServerOption
}

// Limits of the gRPC server, set by DefaultServerOptions.
const (
	// MaxRecvMsgSize bounds one request: fledge's requests name a Flight
	// and a few fields, a few hundred bytes (gRPC's default is 4 MiB).
	MaxRecvMsgSize = 1 << 20
	// MaxConcurrentStreams bounds the calls open at once on one
	// connection, Watch streams included.
	MaxConcurrentStreams = 100
)

// DefaultServerOptions are the keepalive settings and limits NewServer
// starts from: a client may ping every 10s, even with no call open (a CLI
// holding a connection between calls); an idle connection is closed after
// 5 minutes; a connection is pinged after 1 minute without traffic and
// dropped if it does not answer within 20s, which frees the Watch streams
// of a client that vanished.
func DefaultServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: 5 * time.Minute,
			Time:              time.Minute,
			Timeout:           20 * time.Second,
		}),
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
	}
}

// publicMethods anyone may call: health probes and reflection.
var publicMethods = []string{
	healthpb.Health_Check_FullMethodName,
	healthpb.Health_Watch_FullMethodName,
	reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName,
	reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName,
}

// NewServer returns a gRPC server for fledge.v1.Rollouts over TLS, behind
// the Authorizer, with grpc.health.v1, server reflection, request metrics
// and DefaultServerOptions. A panic in a call is logged (with
// cfg.Service.Logger, else cfg.Auth.Logger, else slog.Default()) and
// answered with codes.Internal; the server goes on serving. Serve it on a
// listener; stop it with GracefulStop bounded by a timeout and then Stop,
// since Watch streams do not end by themselves.
func NewServer(cfg ServerConfig) (*grpc.Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("grpc server: no backend")
	}
	tlsConfig, err := serverTLS(cfg)
	if err != nil {
		return nil, err
	}
	auth := cfg.Auth
	auth.Public = append(append([]string(nil), cfg.Auth.Public...), publicMethods...)
	authz, err := NewAuthorizer(auth)
	if err != nil {
		return nil, err
	}
	m := newMetrics()
	if cfg.Registerer != nil {
		if err := m.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	rec := recoverer{log: cmp.Or(cfg.Service.Logger, cfg.Auth.Logger, slog.Default())}
	opts := append(DefaultServerOptions(),
		grpc.Creds(credentials.NewTLS(tlsConfig)),
		// Metrics first, so that refusals are counted too, and panics
		// (as Internal) since recovery comes next.
		grpc.ChainUnaryInterceptor(m.unary, rec.unary, authz.Unary),
		grpc.ChainStreamInterceptor(m.stream, rec.stream, authz.Stream),
	)
	srv := grpc.NewServer(append(opts, cfg.Options...)...)
	rolloutpb.RegisterRolloutsServer(srv, NewService(cfg.Backend, cfg.Service))
	hs := cfg.Health
	if hs == nil {
		hs = health.NewServer()
	}
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, nil
}

func serverTLS(cfg ServerConfig) (*tls.Config, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("grpc server: a certificate and key are required (bearer tokens must not cross the network in the clear)")
	}
	kp := &keyPair{certFile: cfg.CertFile, keyFile: cfg.KeyFile}
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() },
	}
	if cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("grpc server: client CAs: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("grpc server: client CAs: no PEM certificate in %s", cfg.ClientCAFile)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.VerifyClientCertIfGiven
		if cfg.RequireClientCertificate {
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
	} else if cfg.RequireClientCertificate || cfg.Auth.ClientCertificates {
		return nil, errors.New("grpc server: client certificates need a client CA file")
	}
	return c, nil
}

// keyPair is a certificate and key read from files, read again when
// either file's modification time changes.
type keyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime [2]time.Time
}

func (k *keyPair) get() (*tls.Certificate, error) {
	var mod [2]time.Time
	for i, name := range []string{k.certFile, k.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return nil, fmt.Errorf("grpc server: certificate: %w", err)
		}
		mod[i] = fi.ModTime()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert != nil && mod == k.modTime {
		return k.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			// Caught mid-rotation (the certificate written, not yet the
			// key): keep serving the previous pair, try again next time.
			return k.cert, nil
		}
		return nil, fmt.Errorf("grpc server: certificate: %w", err)
	}
	k.cert, k.modTime = &cert, mod
	return k.cert, nil
}

// metrics of the gRPC server. Labels are bounded: methods are the
// server's (unknown ones are refused before counting would grow them, by
// grpc itself), codes are gRPC's 17.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	watches  prometheus.Gauge
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "fledge", Subsystem: "api", Name: "requests_total",
			Help: "gRPC calls handled, by full method name and status code (streams when they end).",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "fledge", Subsystem: "api", Name: "request_duration_seconds",
			Help:    "Latency of unary gRPC calls, authorization included, by full method name.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method"}),
		watches: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "fledge", Subsystem: "api", Name: "open_streams",
			Help: "gRPC streams open now (Watch calls, mostly).",
		}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.watches} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("grpc server metrics: %w", err)
		}
	}
	return nil
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.latency.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
	m.requests.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	m.watches.Inc()
	defer m.watches.Dec()
	err := handler(srv, ss)
	m.requests.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return err
}

// recoverer turns a panic in a call (the Authorizer's, the service's, the
// Backend's) into codes.Internal, logged with the method and the stack:
// one bad Flight or bug must not take the API, and the controller
// running in the same process, down with it.
type recoverer struct {
	log *slog.Logger
}

func (r recoverer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, r.recovered(info.FullMethod, p)
		}
	}()
	return handler(ctx, req)
}

func (r recoverer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = r.recovered(info.FullMethod, p)
		}
	}()
	return handler(srv, ss)
}

// recovered logs a recovered panic and returns the status the caller
// gets, which does not show the panic's value: it may hold internals.
func (r recoverer) recovered(method string, p any) error {
	r.log.Error("grpc call panicked", "method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	return status.Errorf(codes.Internal, "%s: internal error (logged by the server)", method)
}
