package mesh

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Pod annotations that give a revision its behaviour. They usually sit in a
// Deployment's pod template, so that a canary revision can be made to fail
// or to slow down while the stable one stays healthy.
const (
	annotationPrefix        = "sandbox.fledge.dev/"
	annotationErrorRate     = annotationPrefix + aspectErrorRate
	annotationErrorCode     = annotationPrefix + aspectErrorCode
	annotationGRPCErrorRate = annotationPrefix + aspectGRPCErrorRate
	annotationLatency       = annotationPrefix + aspectLatency
	annotationBodyDiffRate  = annotationPrefix + aspectBodyDiffRate
	// annotationErrorRateAfter degrades a pod with age: "30s=0.2" answers
	// 20% of requests with an error once the pod has been up 30 s (a leak,
	// a cache that fills), so a revision healthy as a canary regresses
	// only after its promotion, in pods started then.
	annotationErrorRateAfter = annotationPrefix + "error-rate-after"

	// A pod that evaluates a release flag: the flag document is data key
	// <key> of ConfigMap <name> in the pod's namespace ("<name>/<key>"),
	// and variant.<variant>.<aspect> overrides one aspect of the behaviour
	// for requests served with that variant.
	annotationFlagSource    = annotationPrefix + "flag-source"
	annotationFlag          = annotationPrefix + "flag"
	annotationVariantPrefix = annotationPrefix + "variant."
)

// The aspects of a behaviour an annotation can set, for the whole pod or
// for one variant of its flag.
const (
	aspectErrorRate     = "error-rate"
	aspectErrorCode     = "error-code"
	aspectGRPCErrorRate = "grpc-error-rate"
	aspectLatency       = "latency-ms"
	aspectBodyDiffRate  = "body-diff-rate"
)

// aspects lists them in the order problems name them.
var aspects = []string{aspectErrorRate, aspectErrorCode, aspectGRPCErrorRate, aspectLatency, aspectBodyDiffRate}

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
	// bodyDiffRate is the share of successful answers whose body is not
	// the one every other revision answers the same request with (see
	// body.go): what a response comparison of a canary reports as
	// body_differs.
	bodyDiffRate float64
	// flag is the release flag the pod evaluates per request, nil if none.
	flag *flagSpec
	// degradeAfter > 0: once a pod has been up that long, its error rate
	// is degradedRate (annotationErrorRateAfter).
	degradeAfter time.Duration
	degradedRate float64
}

// errorRateAt is the share of requests answered with an error by a pod up
// for age.
func (b *behaviour) errorRateAt(age time.Duration) float64 {
	if b.degradeAfter > 0 && age >= b.degradeAfter {
		return b.degradedRate
	}
	return b.errorRate
}

// flagSpec is what a pod's annotations say about the flag it evaluates.
type flagSpec struct {
	configMap, key string // where the flag document is, in the pod's namespace
	name           string // the flag's key in the document
	// variants hold the behaviour of requests served with a variant: the
	// pod's base behaviour with the variant's annotations applied. A
	// variant without annotations is absent and behaves as the base.
	variants map[string]*behaviour
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

// baseFallback is what a pod does instead when the base annotation of an
// aspect is malformed.
var baseFallback = map[string]string{
	aspectErrorRate:     "the pod behaves as healthy",
	aspectErrorCode:     fmt.Sprintf("errors are answered with %d", defaultErrorCode),
	aspectGRPCErrorRate: "the pod answers gRPC requests with OK",
	aspectLatency:       fmt.Sprintf("the pod answers with the default latency p50=%g,p95=%g", defaultP50, defaultP95),
	aspectBodyDiffRate:  "the pod answers every request with the body any revision answers it with",
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

	var flagSource, flagName *string
	var variantKeys []string
	for _, key := range keys {
		value := annotations[key]
		switch {
		case key == annotationFlagSource:
			flagSource = &value
		case key == annotationFlag:
			flagName = &value
		case key == annotationErrorRateAfter:
			after, rate, ok := strings.Cut(value, "=")
			d, err := time.ParseDuration(strings.TrimSpace(after))
			r, rok := parseRate(rate)
			if !ok || err != nil || d <= 0 || !rok {
				report(key, "%q is not <duration>=<rate in [0,1]> (say 30s=0.2); ignored, the pod does not degrade", value)
				continue
			}
			b.degradeAfter, b.degradedRate = d, r
		case strings.HasPrefix(key, annotationVariantPrefix):
			// Applied after the loop, over the complete base behaviour.
			variantKeys = append(variantKeys, key)
		case slices.Contains(aspects, strings.TrimPrefix(key, annotationPrefix)):
			aspect := strings.TrimPrefix(key, annotationPrefix)
			if err := setAspect(&b, aspect, value); err != nil {
				report(key, "%v; ignored, %s", err, baseFallback[aspect])
			}
		default:
			report(key, "unknown behaviour annotation (known: %s, %s, %s, %s, %s, %s, %s, %s, %s<variant>.<aspect>); ignored",
				annotationErrorRate, annotationErrorCode, annotationGRPCErrorRate, annotationLatency, annotationBodyDiffRate, annotationErrorRateAfter,
				annotationFlagSource, annotationFlag, annotationVariantPrefix)
		}
	}

	b.flag = parseFlag(flagSource, flagName, report)
	for _, key := range variantKeys {
		if b.flag == nil {
			report(key, "the pod evaluates no flag (that needs %s and %s); ignored", annotationFlag, annotationFlagSource)
			continue
		}
		variant, aspect, ok := cutVariantKey(key)
		if !ok {
			report(key, "not %s<variant>.<aspect> with an aspect among %s; ignored",
				annotationVariantPrefix, strings.Join(aspects, ", "))
			continue
		}
		vb := b.flag.variants[variant]
		if vb == nil {
			vb = &behaviour{}
			*vb = b
			vb.flag = nil
			b.flag.variants[variant] = vb
		}
		if err := setAspect(vb, aspect, annotations[key]); err != nil {
			report(key, "%v; ignored, requests served with variant %q take the pod's base %s", err, variant, aspect)
		}
	}
	return b, problems
}

// parseFlag reads the flag annotations; nil when the pod evaluates no flag.
func parseFlag(source, name *string, report func(key, format string, args ...any)) *flagSpec {
	if source == nil && name == nil {
		return nil
	}
	const ignored = "ignored, the pod evaluates no flag"
	spec := &flagSpec{variants: map[string]*behaviour{}}
	ok := true
	if source != nil {
		cm, key, err := parseFlagSource(*source)
		if err != nil {
			report(annotationFlagSource, "%q: %v; %s", *source, err, ignored)
			ok = false
		}
		spec.configMap, spec.key = cm, key
	}
	if name != nil {
		spec.name = strings.TrimSpace(*name)
		if spec.name == "" {
			report(annotationFlag, "empty; %s", ignored)
			ok = false
		}
	}
	switch {
	case source == nil && ok:
		report(annotationFlag, "no %s says where the flag document is; %s", annotationFlagSource, ignored)
		ok = false
	case name == nil && ok:
		report(annotationFlagSource, "no %s says which flag to evaluate; %s", annotationFlag, ignored)
		ok = false
	}
	if !ok {
		return nil
	}
	return spec
}

// parseFlagSource reads "<configmap>/<key>".
func parseFlagSource(s string) (configMap, key string, err error) {
	configMap, key, found := strings.Cut(strings.TrimSpace(s), "/")
	if !found {
		return "", "", fmt.Errorf("want <configmap>/<key>")
	}
	if msgs := validation.IsDNS1123Subdomain(configMap); len(msgs) > 0 {
		return "", "", fmt.Errorf("configmap name %q: %s", configMap, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsConfigMapKey(key); len(msgs) > 0 {
		return "", "", fmt.Errorf("configmap key %q: %s", key, strings.Join(msgs, "; "))
	}
	return configMap, key, nil
}

// cutVariantKey splits "sandbox.fledge.dev/variant.<variant>.<aspect>". The
// aspect is cut at the last dot, since a variant's name may hold dots.
func cutVariantKey(key string) (variant, aspect string, ok bool) {
	rest := strings.TrimPrefix(key, annotationVariantPrefix)
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 {
		return "", "", false
	}
	variant, aspect = rest[:i], rest[i+1:]
	return variant, aspect, slices.Contains(aspects, aspect)
}

// setAspect parses the value of one aspect's annotation into b; on error b
// is unchanged.
func setAspect(b *behaviour, aspect, value string) error {
	switch aspect {
	case aspectErrorRate, aspectGRPCErrorRate, aspectBodyDiffRate:
		rate, ok := parseRate(value)
		if !ok {
			return fmt.Errorf("%q is not a number in [0,1]", value)
		}
		switch aspect {
		case aspectErrorRate:
			b.errorRate = rate
		case aspectGRPCErrorRate:
			b.grpcErrorRate = rate
		default:
			b.bodyDiffRate = rate
		}
	case aspectErrorCode:
		code, err := strconv.Atoi(strings.TrimSpace(value))
		if err != nil || code < 500 || code > 599 {
			return fmt.Errorf("%q is not an HTTP status in 500..599", value)
		}
		b.errorCode = code
	case aspectLatency:
		mu, sigma, err := parseLatency(value)
		if err != nil {
			return fmt.Errorf("%q: %w", value, err)
		}
		b.latencyMu, b.latencySigma = mu, sigma
	default:
		return fmt.Errorf("unknown aspect %q", aspect)
	}
	return nil
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
