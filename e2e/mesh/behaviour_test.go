package mesh

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseBehaviour(t *testing.T) {
	def := defaultBehaviour()
	with := func(f func(*behaviour)) behaviour { b := def; f(&b); return b }
	const latencyIgnored = "; ignored, the pod answers with the default latency p50=5,p95=20"

	tests := []struct {
		name         string
		annotations  map[string]string
		want         behaviour
		wantProblems []annotationProblem
	}{
		{
			name: "a pod without annotations is healthy with the default latency",
			want: def,
		},
		{
			name:        "annotations outside the sandbox prefix are not ours to judge",
			annotations: map[string]string{"prometheus.io/scrape": "true"},
			want:        def,
		},
		{
			name: "every annotation is read",
			annotations: map[string]string{
				annotationErrorRate:     "0.05",
				annotationErrorCode:     "503",
				annotationGRPCErrorRate: " 0.1 ",
				annotationLatency:       "p50=20, p99=100",
			},
			want: behaviour{
				errorRate: 0.05, errorCode: 503, grpcErrorRate: 0.1,
				latencyMu: math.Log(20), latencySigma: math.Log(5) / 2.3263,
			},
		},
		{
			name:        "a bare latency is a median without spread",
			annotations: map[string]string{annotationLatency: "20"},
			want:        with(func(b *behaviour) { b.latencyMu, b.latencySigma = math.Log(20), 0 }),
		},
		{
			name:        "a latency with only p50 has no spread",
			annotations: map[string]string{annotationLatency: "p50=7"},
			want:        with(func(b *behaviour) { b.latencyMu, b.latencySigma = math.Log(7), 0 }),
		},
		{
			name:         "an error rate that is not a number is ignored",
			annotations:  map[string]string{annotationErrorRate: "abc"},
			want:         def,
			wantProblems: []annotationProblem{{annotationErrorRate, `"abc" is not a number in [0,1]; ignored, the pod behaves as healthy`}},
		},
		{
			name:         "an error rate above 1 is ignored",
			annotations:  map[string]string{annotationErrorRate: "1.5"},
			want:         def,
			wantProblems: []annotationProblem{{annotationErrorRate, `"1.5" is not a number in [0,1]; ignored, the pod behaves as healthy`}},
		},
		{
			name:         "NaN is not a rate",
			annotations:  map[string]string{annotationGRPCErrorRate: "NaN"},
			want:         def,
			wantProblems: []annotationProblem{{annotationGRPCErrorRate, `"NaN" is not a number in [0,1]; ignored, the pod answers gRPC requests with OK`}},
		},
		{
			name:         "an error code outside 5xx is ignored",
			annotations:  map[string]string{annotationErrorCode: "404"},
			want:         def,
			wantProblems: []annotationProblem{{annotationErrorCode, `"404" is not an HTTP status in 500..599; ignored, errors are answered with 500`}},
		},
		{
			name:         "a tail below the median is ignored",
			annotations:  map[string]string{annotationLatency: "p50=20,p95=10"},
			want:         def,
			wantProblems: []annotationProblem{{annotationLatency, `"p50=20,p95=10": p95=10 is below p50=20` + latencyIgnored}},
		},
		{
			name:         "two tails are one too many",
			annotations:  map[string]string{annotationLatency: "p50=20,p95=80,p99=100"},
			want:         def,
			wantProblems: []annotationProblem{{annotationLatency, `"p50=20,p95=80,p99=100": only one of p90, p95, p99 may be given, got p95 and p99` + latencyIgnored}},
		},
		{
			name:         "a latency without p50 is ignored",
			annotations:  map[string]string{annotationLatency: "p95=80"},
			want:         def,
			wantProblems: []annotationProblem{{annotationLatency, `"p95=80": p50 is required` + latencyIgnored}},
		},
		{
			name:         "an infinite latency is ignored",
			annotations:  map[string]string{annotationLatency: "p50=Inf"},
			want:         def,
			wantProblems: []annotationProblem{{annotationLatency, `"p50=Inf": p50: "Inf" is not a positive number of milliseconds` + latencyIgnored}},
		},
		{
			name:         "an unknown quantile is ignored",
			annotations:  map[string]string{annotationLatency: "p50=1,p75=2"},
			want:         def,
			wantProblems: []annotationProblem{{annotationLatency, `"p50=1,p75=2": unknown key "p75" (want p50 and at most one of p90, p95, p99)` + latencyIgnored}},
		},
		{
			name: "one bad annotation does not spoil the others",
			annotations: map[string]string{
				annotationErrorRate: "0.5",
				annotationErrorCode: "5xx",
			},
			want:         with(func(b *behaviour) { b.errorRate = 0.5 }),
			wantProblems: []annotationProblem{{annotationErrorCode, `"5xx" is not an HTTP status in 500..599; ignored, errors are answered with 500`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := parseBehaviour(tt.annotations)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(behaviour{}), cmpopts.EquateApprox(0, 1e-12)); diff != "" {
				t.Errorf("behaviour mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantProblems, problems); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLatencyQuantiles checks that sampled latencies have the quantiles the
// annotation asked for.
func TestLatencyQuantiles(t *testing.T) {
	b, problems := parseBehaviour(map[string]string{annotationLatency: "p50=20,p95=80"})
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	samples := make([]float64, 50000)
	for i := range samples {
		samples[i] = b.sampleLatency(rng)
	}
	slices.Sort(samples)
	got := map[string]float64{
		"p50": samples[len(samples)/2],
		"p95": samples[len(samples)*95/100],
	}
	want := map[string]float64{"p50": 20, "p95": 80}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(0.05, 0)); diff != "" {
		t.Errorf("latency quantiles mismatch (-want +got):\n%s", diff)
	}
}

func TestBehaviourShapesResponses(t *testing.T) {
	failing := annotated(map[string]string{annotationErrorRate: "1", annotationErrorCode: "503", annotationGRPCErrorRate: "1"})
	tests := []struct {
		name     string
		protocol Protocol
		want     Response
	}{
		{"an HTTP request to a failing pod gets its error code", HTTP, Response{Code: 503}},
		{"a gRPC request to a failing pod gets the HTTP error and its gRPC status", GRPC, Response{Code: 503, GRPCStatus: "14"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl, _ := buildTable(newDemo(failing).snapshot(betaToV2(exact("beta"))))
			req := request("app", map[string]string{"x-user-tier": "beta"})
			req.Protocol = tt.protocol
			got := tbl.route(&req, rand.New(rand.NewPCG(1, 1))).resp
			want := servedBy(v2Pod0, v2Rev)
			want.Code, want.GRPCStatus = tt.want.Code, tt.want.GRPCStatus
			if diff := cmp.Diff(want, got, ignoreLatencyAndBody); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("a gRPC-only failure answers HTTP 200 with UNAVAILABLE", func(t *testing.T) {
		tbl, _ := buildTable(newDemo(annotated(map[string]string{annotationGRPCErrorRate: "1"})).snapshot(betaToV2(exact("beta"))))
		req := request("app", map[string]string{"x-user-tier": "beta"})
		req.Protocol = GRPC
		got := tbl.route(&req, rand.New(rand.NewPCG(1, 1))).resp
		want := servedBy(v2Pod0, v2Rev)
		want.GRPCStatus = "14"
		if diff := cmp.Diff(want, got, ignoreLatencyAndBody); diff != "" {
			t.Errorf("mismatch (-want +got):\n%s", diff)
		}
	})
}

func FuzzParseBehaviour(f *testing.F) {
	f.Add("0.05", "503", "0.1", "p50=20,p95=80", "x")
	f.Add("1", "599", "0", "20", "")
	f.Add("-0", "500", "1e-300", "p50=1e-300,p99=1e300", "latency-ms")
	f.Add("NaN", "0x1F5", "+Inf", "p50=5,p90=5", "error-rate")
	f.Add("", "", "", "p50=,p95=", "=")
	f.Fuzz(func(t *testing.T, errorRate, errorCode, grpcRate, latency, extraKey string) {
		b, _ := parseBehaviour(map[string]string{
			annotationErrorRate:                                errorRate,
			annotationErrorCode:                                errorCode,
			annotationGRPCErrorRate:                            grpcRate,
			annotationLatency:                                  latency,
			annotationBodyDiffRate:                             grpcRate,
			annotationPrefix + extraKey:                        latency,
			"unrelated/" + extraKey:                            errorRate,
			annotationFlagSource:                               "flags/" + extraKey,
			annotationFlag:                                     extraKey,
			annotationVariantPrefix + extraKey + ".error-rate": errorRate,
			annotationVariantPrefix + "on.latency-ms":          latency,
			annotationVariantPrefix + "on.error-code":          errorCode,
			annotationVariantPrefix + "on.body-diff-rate":      errorRate,
		})
		checkBehaviour(t, "pod", b)
		if b.flag != nil {
			for name, vb := range b.flag.variants {
				if vb.flag != nil {
					t.Fatalf("variant %q has a flag of its own", name)
				}
				checkBehaviour(t, "variant "+name, *vb)
			}
		}
	})
}

// checkBehaviour fails unless b is one routing can use.
func checkBehaviour(t *testing.T, what string, b behaviour) {
	t.Helper()
	for name, v := range map[string]float64{
		"errorRate": b.errorRate, "grpcErrorRate": b.grpcErrorRate, "bodyDiffRate": b.bodyDiffRate,
	} {
		if math.IsNaN(v) || v < 0 || v > 1 {
			t.Fatalf("%s: %s = %v, want a share in [0,1]", what, name, v)
		}
	}
	if b.errorCode < 500 || b.errorCode > 599 {
		t.Fatalf("%s: errorCode = %d, want 500..599", what, b.errorCode)
	}
	if math.IsNaN(b.latencyMu) || math.IsInf(b.latencyMu, 0) {
		t.Fatalf("%s: latencyMu = %v, want finite", what, b.latencyMu)
	}
	if math.IsNaN(b.latencySigma) || math.IsInf(b.latencySigma, 0) || b.latencySigma < 0 {
		t.Fatalf("%s: latencySigma = %v, want finite and >= 0", what, b.latencySigma)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for range 16 {
		if v := b.sampleLatency(rng); math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			t.Fatalf("%s: sampleLatency = %v for mu=%v sigma=%v, want finite and >= 0", what, v, b.latencyMu, b.latencySigma)
		}
	}
}

// error-rate-after degrades a pod with age: healthy until the duration,
// failing at the rate after it; a malformed value is a problem and the pod
// does not degrade.
func TestAPodDegradesWithAgeWhenToldTo(t *testing.T) {
	b, problems := parseBehaviour(map[string]string{annotationErrorRate: "0.01", annotationErrorRateAfter: "30s=0.2"})
	if len(problems) > 0 {
		t.Fatalf("problems: %+v", problems)
	}
	for _, c := range []struct {
		age  time.Duration
		want float64
	}{{0, 0.01}, {29 * time.Second, 0.01}, {30 * time.Second, 0.2}, {time.Hour, 0.2}} {
		if got := b.errorRateAt(c.age); got != c.want {
			t.Errorf("at %s: error rate %g, want %g", c.age, got, c.want)
		}
	}
	for _, bad := range []string{"30s", "0.2", "-1s=0.2", "30s=1.5", "soon=0.2"} {
		b, problems := parseBehaviour(map[string]string{annotationErrorRateAfter: bad})
		if len(problems) != 1 || !strings.Contains(problems[0].Message, "not <duration>=<rate") || b.errorRateAt(time.Hour) != 0 {
			t.Errorf("%q: problems %+v, rate after an hour %g; want one problem and no degradation", bad, problems, b.errorRateAt(time.Hour))
		}
	}
}
