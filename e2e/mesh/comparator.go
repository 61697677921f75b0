package mesh

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/fledgehq/fledge/traffic/mirrorcmp"
)

// This file plays fledge's response comparator (traffic/mirrorcmp), as the
// rest of the package plays the apps: a pod whose first container runs
// fledge in its mirror-compare mode is the destination of a canary's
// mirror, and for each copy it receives asks the canary and stable the
// same request, compares their answers with mirrorcmp.Compare, counts the
// result in fledge_mirror_comparisons_total and answers the copy 204.
//
// The comparator's two requests are routed through the table like any
// request, from the comparator pod's workload, so that the canary's and
// stable's proxies report them as a real mesh would; Request.Client tells
// them apart from users' requests. They carry the copy's authority (host
// without "-shadow") to the app, so that a healthy canary answers them
// with stable's body, and mirrorcmp's LoopHeader. They are never mirrored,
// and a comparator they reach compares nothing, so a comparison cannot
// recurse: a copy costs at most two more requests.

// The comparator mode of fledge's command, as a comparator pod's first
// container runs it:
//
//	args: ["mirror-compare", "--canary=http://shop-canary.demo:80", "--stable=http://shop-stable.demo:80",
//	       "--workload=shop-canary", "--namespace=demo"]
const (
	comparatorMode = "mirror-compare"
	argCanary      = "canary"
	argStable      = "stable"
	argWorkload    = "workload"
	argNamespace   = "namespace"
)

// comparatorArgs lists the flags in the order problems name them.
var comparatorArgs = []string{argCanary, argStable, argWorkload, argNamespace}

// loopHeader is mirrorcmp.LoopHeader as the emulator's lower-case header
// maps hold it.
var loopHeader = strings.ToLower(mirrorcmp.LoopHeader)

// comparator is what a comparator pod's args say, parsed when the table
// is built.
type comparator struct {
	canary, stable upstream
	// workload and namespace name the canary compared: the
	// destination_workload and destination_workload_namespace labels of
	// the comparator's counts.
	workload, namespace string
	// broken is set when the args could not be taken as written (each
	// problem is reported): the pod answers every request 503, as a
	// comparator that did not start would leave its Service without a
	// ready answer.
	broken bool
}

// upstream is one of the comparator's base URLs.
type upstream struct {
	authority string // host and optional port: what the request is routed by
	path      string // a path prefix, "" for none
}

// argProblem is a comparator arg that could not be taken.
type argProblem struct {
	Field   string // spec.containers[0].args or one of its elements
	Message string
}

// parseComparator reads a pod's comparator args: nil when the pod is no
// comparator (its first container's first arg is not mirror-compare).
// Flags take Go's flag package's forms (-name=value, --name=value, -name
// value, --name value); every flag is required, given once, and any other
// arg is a problem that leaves the comparator broken.
func parseComparator(pod *corev1.Pod) (*comparator, []argProblem) {
	if len(pod.Spec.Containers) == 0 {
		return nil, nil
	}
	args := pod.Spec.Containers[0].Args
	if len(args) == 0 || args[0] != comparatorMode {
		return nil, nil
	}
	const broken = "the comparator answers every request 503"
	var problems []argProblem
	report := func(field, format string, a ...any) {
		problems = append(problems, argProblem{Field: field, Message: fmt.Sprintf(format, a...) + "; " + broken})
	}
	field := func(i int) string { return fmt.Sprintf("spec.containers[0].args[%d]", i) }

	values := map[string]string{}
	for i := 1; i < len(args); i++ {
		arg := args[i]
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-"), "=")
		switch {
		case !strings.HasPrefix(arg, "-") || name == "":
			report(field(i), "%q is not a flag of %s (known: --%s)", arg, comparatorMode, strings.Join(comparatorArgs, ", --"))
			continue
		case !slices.Contains(comparatorArgs, name):
			report(field(i), "unknown flag %q of %s (known: --%s)", arg, comparatorMode, strings.Join(comparatorArgs, ", --"))
			continue
		}
		at := i
		if !hasValue {
			if i+1 == len(args) {
				report(field(i), "--%s has no value", name)
				continue
			}
			i++
			value = args[i]
		}
		if _, twice := values[name]; twice {
			report(field(at), "--%s is given twice", name)
			continue
		}
		values[name] = value
		var err error
		switch name {
		case argCanary, argStable:
			_, err = parseUpstream(value)
		case argWorkload:
			if msgs := validation.IsDNS1123Subdomain(value); len(msgs) > 0 {
				err = errors.New(strings.Join(msgs, "; "))
			}
		case argNamespace:
			if msgs := validation.IsDNS1123Label(value); len(msgs) > 0 {
				err = errors.New(strings.Join(msgs, "; "))
			}
		}
		if err != nil {
			report(field(at), "--%s=%q: %v", name, value, err)
		}
	}
	for _, name := range comparatorArgs {
		if _, ok := values[name]; !ok {
			report("spec.containers[0].args", "%s without --%s", comparatorMode, name)
		}
	}
	if len(problems) > 0 {
		return &comparator{broken: true}, problems
	}
	c := &comparator{workload: values[argWorkload], namespace: values[argNamespace]}
	c.canary, _ = parseUpstream(values[argCanary])
	c.stable, _ = parseUpstream(values[argStable])
	return c, nil
}

// parseUpstream takes a base URL as mirrorcmp's Options do: http or https,
// a host, at most a path prefix; no query, fragment or user.
func parseUpstream(s string) (upstream, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return upstream{}, err
	case u.Scheme != "http" && u.Scheme != "https":
		return upstream{}, fmt.Errorf("scheme %q, want http or https", u.Scheme)
	case u.Host == "":
		return upstream{}, errors.New("no host")
	case u.RawQuery != "" || u.ForceQuery:
		return upstream{}, errors.New("has a query, want the copy's alone")
	case u.Fragment != "":
		return upstream{}, errors.New("has a fragment")
	case u.User != nil:
		return upstream{}, errors.New("has user information")
	}
	return upstream{authority: strings.ToLower(u.Host), path: strings.TrimSuffix(u.EscapedPath(), "/")}, nil
}

// comparison is what a comparator did with one request.
type comparison struct {
	pod    *podInfo // the comparator's
	result compareResult
	// src are the comparator pod's source labels; requests and answers
	// are its requests to the canary and to stable, when it made them.
	src      sourceLabels
	made     bool
	requests [2]Request
	answers  [2]routed
}

// compare is a comparator pod's answer to req, served through endpoint ep
// of target t: mirrorcmp's handler, with the emulator's routing in place
// of its HTTP client.
func (tb *table) compare(req *Request, h hop, t *target, ep *endpoint, cookies map[string]string, rng *rand.Rand) routed {
	pod := ep.pod
	c := pod.comparator
	resp := Response{
		Code:         204,
		Flags:        flagNone,
		Namespace:    pod.namespace,
		Workload:     pod.rev.Workload,
		Pod:          pod.name,
		TemplateHash: pod.rev.TemplateHash,
		Service:      t.host,
		SetCookies:   cloneCookies(cookies),
		BodyHash:     emptyBody,
	}
	out := routed{host: t.host, ep: ep, dst: &ep.labels}
	authority := cmp.Or(h.authority, req.Host)
	var upstreamMs float64
	switch {
	case c.broken:
		resp.Code = statusUnavailable
		resp.BodyHash, resp.BodyLen = errorPage(req, authority, pod.name, resp.Code)
	case h.fromComparator || req.Headers[loopHeader] != "":
		resp.Code = 202
		out.compared = &comparison{pod: pod, result: resultDropped}
	case !safeMethod(req.Method):
		out.compared = &comparison{pod: pod, result: resultUnsafe}
	default:
		cmpn := &comparison{pod: pod, src: peerSourceLabels(pod.peer), made: true}
		sub := hop{authority: unshadow(authority), fromComparator: true}
		headers := maps.Clone(req.Headers)
		if headers == nil {
			headers = make(map[string]string, 1)
		}
		headers[loopHeader] = "1"
		var answers [2]mirrorcmp.Answer
		for i, up := range [2]upstream{c.canary, c.stable} {
			cmpn.requests[i] = Request{
				Client:          pod.rev.Workload,
				SourceNamespace: pod.namespace,
				SourceLabels:    pod.labels,
				Host:            up.authority,
				Path:            joinPath(up.path, req.Path),
				Method:          req.Method,
				Protocol:        req.Protocol,
				User:            req.User,
				Headers:         headers,
			}
			cmpn.answers[i] = tb.routeHop(&cmpn.requests[i], sub, rng)
			answers[i] = answerOf(cmpn.answers[i].resp)
			// mirrorcmp asks both at once, and answers when both have.
			upstreamMs = max(upstreamMs, cmpn.answers[i].resp.LatencyMs)
		}
		cmpn.result = resultOf(mirrorcmp.Compare(answers[0], answers[1]))
		out.compared = cmpn
	}
	if req.Protocol == GRPC {
		resp.GRPCStatus = grpcOK
		if resp.Code >= 500 {
			resp.GRPCStatus = grpcStatusForHTTP(resp.Code)
		}
	}
	resp.LatencyMs = upstreamMs + pod.behaviour.sampleLatency(rng)
	out.resp = resp
	return out
}

// safeMethod is mirrorcmp's rule: only safe methods (RFC 9110 section
// 9.2.1) are asked of stable a second time.
func safeMethod(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// errNoUpstream is the Err of an answer no upstream gave: Envoy found no
// route, cluster or healthy endpoint, where mirrorcmp's call would have
// failed to connect.
var errNoUpstream = errors.New("no upstream answered")

// answerOf reduces a routed answer to what mirrorcmp compares.
func answerOf(r Response) mirrorcmp.Answer {
	if r.Pod == "" && r.Flags != flagNone {
		return mirrorcmp.Answer{Err: errNoUpstream}
	}
	return mirrorcmp.Answer{Status: r.Code, BodyHash: r.BodyHash, BodyLen: r.BodyLen}
}

// joinPath appends a request's path (and query) to an upstream's path
// prefix, as mirrorcmp does.
func joinPath(prefix, path string) string {
	if prefix == "" {
		return path
	}
	return prefix + "/" + strings.TrimPrefix(path, "/")
}
