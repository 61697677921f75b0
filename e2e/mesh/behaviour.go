package mesh

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// Pod annotations that give a revision its behaviour. They usually sit in a
// Deployment's pod template, so that a canary revision can be made to fail
// or to slow down while the stable one stays healthy.
const (
	annotationPrefix        = "sandbox.fledge.dev/"
	annotationErrorRate     = annotationPrefix + "error-rate"
	annotationErrorCode     = annotationPrefix + "error-code"
	annotationGRPCErrorRate = annotationPrefix + "grpc-error-rate"
	annotationLatency       = annotationPrefix + "latency-ms"
)

// Defaults for a pod that says nothing: a healthy service that answers in a
// few milliseconds with a modest tail, so that latency metrics are not flat.
const (
	defaultErrorCode = 500
	defaultP50       = 5.0
	defaultP95       = 20.0
	// maxLatencyMs caps a sampled latency. A log-normal with a wide spread
	// can overflow float64; an hour is past every finite histogram bucket
	// that matters and keeps the recorded value finite.
	maxLatencyMs = 3_600_000.0
)

// tailZ returns the z-score of a quantile a latency annotation may give for
// its tail.
func tailZ(key string) (float64, bool) {
	switch key {
	case "p90":
		return 1.2816, true
	case "p95":
		return 1.6449, true
	case "p99":
		return 2.3263, true
	}
	return 0, false
}

// behaviour is how the pods of a revision answer, parsed once when the
// routing table is built so that routing a request does no parsing.
type behaviour struct {
	errorRate     float64 // share of requests answered with errorCode
	errorCode     int     // 500..599
	grpcErrorRate float64 // share of gRPC requests answered with UNAVAILABLE
	// Latency is log-normal: exp(N(ln(median), sigma)).
	latencyMu    float64 // ln(median ms)
	latencySigma float64 // >= 0
}

func defaultBehaviour() behaviour {
	return behaviour{
		errorCode:    defaultErrorCode,
		latencyMu:    math.Log(defaultP50),
		latencySigma: math.Log(defaultP95/defaultP50) / 1.6449, // p95
	}
}

// annotationProblem is a behaviour annotation that was ignored.
type annotationProblem struct {
	Annotation string
	Message    string
}

// parseBehaviour reads the behaviour annotations of a pod. A malformed value
// is reported and ignored, leaving that aspect of the pod healthy: a typo in
// a test fixture must show up as a Problem, not as a surprising canary
// verdict.
func parseBehaviour(annotations map[string]string) (behaviour, []annotationProblem) {
	b := defaultBehaviour()
	var problems []annotationProblem
	report := func(key, format string, args ...any) {
		problems = append(problems, annotationProblem{Annotation: key, Message: fmt.Sprintf(format, args...)})
	}

	// Sorted so that problems come out in a stable order.
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, annotationPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)

	for _, key := range keys {
		value := annotations[key]
		switch key {
		case annotationErrorRate:
			rate, ok := parseRate(value)
			if !ok {
				report(key, "%q is not a number in [0,1]; ignored, the pod behaves as healthy", value)
				continue
			}
			b.errorRate = rate
		case annotationGRPCErrorRate:
			rate, ok := parseRate(value)
			if !ok {
				report(key, "%q is not a number in [0,1]; ignored, the pod answers gRPC requests with OK", value)
				continue
			}
			b.grpcErrorRate = rate
		case annotationErrorCode:
			code, err := strconv.Atoi(strings.TrimSpace(value))
			if err != nil || code < 500 || code > 599 {
				report(key, "%q is not an HTTP status in 500..599; ignored, errors are answered with %d", value, defaultErrorCode)
				continue
			}
			b.errorCode = code
		case annotationLatency:
			mu, sigma, err := parseLatency(value)
			if err != nil {
				report(key, "%q: %v; ignored, the pod answers with the default latency p50=%g,p95=%g", value, err, defaultP50, defaultP95)
				continue
			}
			b.latencyMu, b.latencySigma = mu, sigma
		default:
			report(key, "unknown behaviour annotation (known: %s, %s, %s, %s); ignored",
				annotationErrorRate, annotationErrorCode, annotationGRPCErrorRate, annotationLatency)
		}
	}
	return b, problems
}

// parseRate accepts a share in [0,1].
func parseRate(s string) (float64, bool) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) || v < 0 || v > 1 {
		return 0, false
	}
	return v, true
}

// parseLatency reads "p50=20,p95=80" or a bare "20" (a p50 with no spread)
// and returns the parameters of the log-normal whose median is p50 and whose
// given tail quantile is the tail value.
func parseLatency(s string) (mu, sigma float64, err error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "=") {
		p50, err := parseMillis(s)
		if err != nil {
			return 0, 0, err
		}
		return math.Log(p50), 0, nil
	}

	var p50, tail float64
	var tailKey string
	var z float64
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			return 0, 0, fmt.Errorf("%q is not key=value", part)
		}
		if seen[key] {
			return 0, 0, fmt.Errorf("%s is given twice", key)
		}
		seen[key] = true
		v, err := parseMillis(value)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", key, err)
		}
		if key == "p50" {
			p50 = v
			continue
		}
		kz, ok := tailZ(key)
		if !ok {
			return 0, 0, fmt.Errorf("unknown key %q (want p50 and at most one of p90, p95, p99)", key)
		}
		if tailKey != "" {
			return 0, 0, fmt.Errorf("only one of p90, p95, p99 may be given, got %s and %s", tailKey, key)
		}
		tailKey, tail, z = key, v, kz
	}
	if p50 == 0 {
		return 0, 0, fmt.Errorf("p50 is required")
	}
	if tailKey == "" {
		return math.Log(p50), 0, nil
	}
	if tail < p50 {
		return 0, 0, fmt.Errorf("%s=%g is below p50=%g", tailKey, tail, p50)
	}
	sigma = math.Log(tail/p50) / z
	if math.IsInf(sigma, 0) || math.IsNaN(sigma) {
		// tail/p50 overflows for extreme but finite inputs.
		return 0, 0, fmt.Errorf("%s=%g is too far from p50=%g", tailKey, tail, p50)
	}
	return math.Log(p50), sigma, nil
}

// parseMillis accepts a positive, finite number of milliseconds.
func parseMillis(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return 0, fmt.Errorf("%q is not a positive number of milliseconds", strings.TrimSpace(s))
	}
	return v, nil
}

// sampleLatency draws one latency in milliseconds.
func (b behaviour) sampleLatency(rng *rand.Rand) float64 {
	if b.latencySigma == 0 {
		return min(math.Exp(b.latencyMu), maxLatencyMs)
	}
	v := math.Exp(b.latencyMu + b.latencySigma*rng.NormFloat64())
	if math.IsNaN(v) || v > maxLatencyMs {
		return maxLatencyMs
	}
	return v
}
