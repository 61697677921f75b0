package mesh

import (
	"cmp"
	"maps"
	"math/rand/v2"
	"strings"
	"time"
)

// Envoy response flags the emulator produces.
const (
	flagNone          = "-"
	flagNoRoute       = "NR"
	flagNoHealthy     = "UH"
	flagNoCluster     = "NC"
	grpcOK            = "0"
	grpcUnavailable   = "14"
	statusNoRoute     = 404
	statusUnavailable = 503
)

// routed is the outcome of routing one request, with what telemetry needs
// beyond the Response.
type routed struct {
	resp Response
	host string      // the resolved destination host
	ep   *endpoint   // the endpoint that served it, nil if none
	dst  *destLabels // destination metric labels, nil to derive from host
	// shadows are the copies of the request the route mirrored, each with
	// its own outcome (which the client never sees); mirrored is the copy
	// itself, for a shadow.
	shadows  []routed
	mirrored *Request
	// compared is what a comparator pod did with the request, nil when no
	// comparator served it.
	compared *comparison
}

// hop is what routing knows of a request beyond the Request itself.
type hop struct {
	// authority is the host the app is called by, when it is not the one
	// the request is routed by: a comparator routes its requests to the
	// canary's and stable's URLs with the copy's authority, as mirrorcmp
	// does. "" means Request.Host.
	authority string
	// fromComparator marks a comparator's own requests: no route mirrors
	// them, and a comparator they reach compares nothing (it counts them
	// dropped, as mirrorcmp does a request carrying its LoopHeader), so
	// that a comparator whose upstreams mirror back to it cannot loop.
	fromComparator bool
}

// route routes req through the table as a client-side Envoy would and
// applies the serving pod's behaviour. rng supplies every random choice:
// weighted splits, errors and latency. req must be normalized.
func (t *table) route(req *Request, rng *rand.Rand) routed {
	return t.routeHop(req, hop{}, rng)
}

// routeHop is route for a request that h says more about.
func (t *table) routeHop(req *Request, h hop, rng *rand.Rand) routed {
	host := t.resolveAuthority(req.Host, req.SourceNamespace)
	vh := t.virtualHostFor(host)
	if vh == nil {
		svc := t.services[host]
		if svc == nil {
			return localReply(req, host, host, nil, statusUnavailable, flagNoCluster, nil)
		}
		return t.forward(req, h, svc.direct, nil, rng)
	}

	view := newRequestView(req)
	for _, r := range vh.routes {
		if !r.accepts(&view) {
			continue
		}
		if r.action != actionForward {
			// Direct responses and redirects are answered by Envoy.
			return localReply(req, "", host, nil, r.status, flagNone, r.cookies)
		}
		if r.totalWeight == 0 {
			// Every destination has weight 0: Envoy would reject such a
			// route; answering 503 NC makes the mistake visible.
			return localReply(req, "", host, nil, statusUnavailable, flagNoCluster, r.cookies)
		}
		// Envoy's weighted clusters: a uniform draw over the sum of the
		// weights, whatever that sum is.
		pick := rng.Uint64N(r.totalWeight)
		for i := range r.dests {
			d := &r.dests[i]
			if pick < d.weight {
				out := t.forward(req, h, d.target, d.cookies, rng)
				if len(r.mirrors) > 0 && !h.fromComparator {
					out.shadows = t.mirror(req, r.mirrors, rng)
				}
				return out
			}
			pick -= d.weight
		}
	}
	return localReply(req, "", host, nil, statusNoRoute, flagNoRoute, nil)
}

// mirror sends each mirror its share of copies of req, as Envoy's request
// mirror policies do: fire and forget, with "-shadow" appended to the
// authority's host, and the answer dropped (the caller never sees it).
func (t *table) mirror(req *Request, mirrors []mirrorDest, rng *rand.Rand) []routed {
	var out []routed
	for _, m := range mirrors {
		if m.percent < 100 && rng.Float64()*100 >= m.percent {
			continue
		}
		shadow := *req
		shadow.Host = ShadowHost(req.Host)
		r := t.forward(&shadow, hop{}, m.target, nil, rng)
		r.resp.Mirrored, r.resp.SetCookies = true, nil
		r.mirrored = &shadow
		out = append(out, r)
	}
	return out
}

// ShadowHost is the authority Envoy gives a mirrored request: the host with
// "-shadow" appended, before any port ("shop:8080" is "shop-shadow:8080").
func ShadowHost(authority string) string {
	host, port := authority, ""
	if i := strings.LastIndexByte(authority, ':'); i >= 0 && !strings.Contains(authority[i+1:], "]") {
		host, port = authority[:i], authority[i:]
	}
	return host + shadowSuffix + port
}

// shadowSuffix is what Envoy appends to a mirrored copy's host.
const shadowSuffix = "-shadow"

func (r *httpRoute) accepts(v *requestView) bool {
	if len(r.matches) == 0 {
		return true
	}
	for i := range r.matches {
		if r.matches[i].matches(v) {
			return true
		}
	}
	return false
}

// forward sends the request to one endpoint of target, round-robin, and
// lets the pod's behaviour decide the answer (or, for a comparator pod, the
// comparison: see comparator.go).
func (tb *table) forward(req *Request, h hop, t *target, cookies map[string]string, rng *rand.Rand) routed {
	if t.flags != "" {
		return localReply(req, t.host, t.host, &t.noPod, statusUnavailable, t.flags, cookies)
	}
	if len(t.endpoints) == 0 {
		return localReply(req, t.host, t.host, &t.noPod, statusUnavailable, flagNoHealthy, cookies)
	}
	ep := &t.endpoints[(t.next.Add(1)-1)%uint64(len(t.endpoints))]
	pod := ep.pod
	if pod.comparator != nil {
		return tb.compare(req, h, t, ep, cookies, rng)
	}
	authority := cmp.Or(h.authority, req.Host)
	b := &pod.behaviour
	var variant string
	if f := pod.flag; f != nil {
		// The app evaluates its flag before answering; a variant with its
		// own annotations answers with that behaviour, any other (and a
		// failed evaluation) with the pod's base.
		var ok bool
		if variant, ok = f.variant(req); ok {
			if vb := f.spec.variants[variant]; vb != nil {
				b = vb
			}
		}
	}

	resp := Response{
		Code:         200,
		Flags:        flagNone,
		Namespace:    pod.namespace,
		Workload:     pod.rev.Workload,
		Pod:          pod.name,
		TemplateHash: pod.rev.TemplateHash,
		Service:      t.host,
		SetCookies:   cloneCookies(cookies),
		Variant:      variant,
	}
	grpc := req.Protocol == GRPC
	if grpc {
		resp.GRPCStatus = grpcOK
	}
	switch {
	case b.errorRateAt(time.Since(pod.started)) > 0 && rng.Float64() < b.errorRateAt(time.Since(pod.started)):
		resp.Code = b.errorCode
		if grpc {
			// A gRPC server answering with an HTTP error and no
			// grpc-status: Envoy derives the status from the HTTP code.
			resp.GRPCStatus = grpcStatusForHTTP(b.errorCode)
		}
	case grpc && b.grpcErrorRate > 0 && rng.Float64() < b.grpcErrorRate:
		resp.GRPCStatus = grpcUnavailable
	}
	switch {
	case resp.Code/100 != 2:
		resp.BodyHash, resp.BodyLen = errorPage(req, authority, pod.name, resp.Code)
	case grpc && resp.GRPCStatus != grpcOK:
		resp.BodyHash = emptyBody // trailers only
	default:
		differs := b.bodyDiffRate > 0 && rng.Float64() < b.bodyDiffRate
		resp.BodyHash, resp.BodyLen = requestBody(req, authority, differs)
	}
	resp.LatencyMs = b.sampleLatency(rng)
	return routed{resp: resp, host: t.host, ep: ep, dst: &ep.labels}
}

// localReply is a response Envoy generates itself. service is the
// destination host when a destination was chosen, "" otherwise; host is
// what telemetry reports as the destination service either way. For a gRPC
// request Envoy sends a local reply as a gRPC error inside an HTTP 200, with
// the status derived from the HTTP code, which is what Istio's metrics then
// report.
func localReply(req *Request, service, host string, dst *destLabels, code int, flags string, cookies map[string]string) routed {
	resp := Response{Code: code, Flags: flags, Service: service, SetCookies: cloneCookies(cookies)}
	if req.Protocol == GRPC {
		resp.GRPCStatus = grpcStatusForHTTP(code)
		resp.Code = 200
		resp.BodyHash = emptyBody // trailers only
	} else {
		resp.BodyHash, resp.BodyLen = localReplyBody(code, flags)
	}
	return routed{resp: resp, host: host, dst: dst}
}

// grpcStatusForHTTP is Envoy's Grpc::Utility::httpToGrpcStatus.
func grpcStatusForHTTP(code int) string {
	switch code {
	case 200:
		return grpcOK
	case 400:
		return "13" // INTERNAL
	case 401:
		return "16" // UNAUTHENTICATED
	case 403:
		return "7" // PERMISSION_DENIED
	case 404:
		return "12" // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return grpcUnavailable
	default:
		return "2" // UNKNOWN
	}
}

// cloneCookies copies the table's cookie map so that callers may keep or
// modify the Response without touching the shared table.
func cloneCookies(c map[string]string) map[string]string {
	if len(c) == 0 {
		return nil
	}
	return maps.Clone(c)
}
