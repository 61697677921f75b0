package mirrorcmp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// maxDrain bounds the bytes of an answer's body read past MaxBody only to
// measure its length. A body longer still is Unanswered: its length is
// not known, and reading on would let one upstream hold a slot for as
// long as it keeps sending.
const maxDrain = 64 << 20

// LoopHeader marks the requests the proxy forwards. A copy that carries
// it is one of them mirrored back to the proxy (a routing loop: see the
// package doc); it is dropped rather than forwarded again, so that a loop
// costs one extra request per copy instead of multiplying them.
const LoopHeader = "Fledge-Mirror-Compared"

// shadowSuffix is what Istio (Envoy) appends to a mirrored copy's host.
const shadowSuffix = "-shadow"

// NewHandler returns the comparing proxy configured by opts, or an error
// naming each invalid field. Serve it as the destination of the mirror.
//
// For each copy of a safe method, sampled and within the proxy's bounds,
// it forwards the copy to the canary and to stable at once and counts
// Compare's Result; every copy is counted once in
// fledge_mirror_comparisons_total. The copy is answered when the
// comparison is done: 204 once compared (or refused as unsafe), 202 when
// skipped or dropped. Nobody reads that answer: Envoy drops it.
func NewHandler(opts Options) (http.Handler, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	counts, err := newComparisons(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &handler{opts: opts, slots: make(chan struct{}, opts.MaxInFlight), counts: counts}, nil
}

type handler struct {
	opts Options
	// slots holds a token per comparison under way.
	slots chan struct{}
	// received numbers the safe copies, for the sampler.
	received atomic.Uint64
	counts   *prometheus.CounterVec
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(LoopHeader) != "" {
		h.answer(w, http.StatusAccepted, resultDropped)
		return
	}
	if !safe(r.Method) {
		// Stable has served this request already, for the user whose
		// request this copies; calling it again would repeat whatever
		// the request does. The canary is not called either: a
		// comparison needs both answers.
		h.answer(w, http.StatusNoContent, resultUnsafe)
		return
	}
	if !sampled(h.received.Add(1), h.opts.Sample) {
		h.answer(w, http.StatusAccepted, resultSkipped)
		return
	}
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		h.answer(w, http.StatusAccepted, resultDropped)
		return
	}
	// The body is read only once a slot is held, so that at most
	// MaxInFlight bodies of MaxBody bytes are held at once.
	body, err := io.ReadAll(io.LimitReader(r.Body, h.opts.MaxBody+1))
	if err != nil || int64(len(body)) > h.opts.MaxBody {
		h.answer(w, http.StatusAccepted, resultDropped)
		return
	}

	// The comparison does not end when the sender stops waiting: Envoy
	// may give up on a copy (the route's timeout) that both upstreams are
	// still answering, and counting that as unanswered would measure
	// Envoy, not the canary. Timeout bounds each call instead.
	ctx := context.WithoutCancel(r.Context())
	header := forwardHeader(r.Header)
	var canary, stable Answer
	var wg sync.WaitGroup
	wg.Go(func() { canary = h.call(ctx, h.opts.Canary, r, header, body) })
	stable = h.call(ctx, h.opts.Stable, r, header, body)
	wg.Wait()
	h.answer(w, http.StatusNoContent, string(Compare(canary, stable)))
}

func (h *handler) answer(w http.ResponseWriter, status int, result string) {
	h.counts.WithLabelValues(result).Inc()
	w.WriteHeader(status)
}

// call forwards the copy r, with header and body, to the upstream at base
// and reduces its answer to an Answer.
func (h *handler) call(ctx context.Context, base *url.URL, r *http.Request, header http.Header, body []byte) Answer {
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	var b io.Reader = http.NoBody
	if len(body) > 0 {
		b = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, upstreamURL(base, r.URL).String(), b)
	if err != nil {
		return Answer{Err: fmt.Errorf("%s: %w", base.Redacted(), err)}
	}
	// The upstream sees the authority the user asked for, as the copy
	// would have reached the canary without the proxy.
	req.Host = unshadow(r.Host)
	req.Header = header.Clone()
	resp, err := h.opts.Client.Do(req)
	if err != nil {
		return Answer{Err: err}
	}
	defer resp.Body.Close()
	return readAnswer(resp, h.opts.MaxBody)
}

// readAnswer hashes the first maxBody bytes of resp's body as it reads
// them, then reads on, up to maxDrain more bytes, only to count them. The
// body's content is never kept.
func readAnswer(resp *http.Response, maxBody int64) Answer {
	a := Answer{Status: resp.StatusCode}
	sum := sha256.New()
	head, err := io.Copy(sum, io.LimitReader(resp.Body, maxBody))
	if err != nil {
		a.Err = fmt.Errorf("read body: %w", err)
		return a
	}
	rest, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain+1))
	switch {
	case err != nil:
		a.Err = fmt.Errorf("read body past %d bytes: %w", maxBody, err)
	case rest > maxDrain:
		a.Err = fmt.Errorf("body longer than %d bytes: its length is not measured", maxBody+maxDrain)
	}
	a.BodyLen = head + rest
	sum.Sum(a.BodyHash[:0])
	return a
}

// safe reports whether method is safe as RFC 9110 defines it (section
// 9.2.1): a request the server does not expect to change anything, so
// that stable can be asked it a second time. An application whose GETs
// change things is not fit for comparison.
func safe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// sampled says whether the n-th safe copy is compared, for a share
// sample. It hashes n rather than taking every k-th copy, which would
// alias with periodic traffic (with sample 0.5, a client that alternates
// two paths would have only one of them compared), and rather than
// drawing from a random source, so that a given sequence of copies is
// sampled the same way every run.
func sampled(n uint64, sample float64) bool {
	if sample >= 1 {
		return true
	}
	// splitmix64's finalizer: every bit of n moves about half the bits
	// of the result.
	n += 0x9e3779b97f4a7c15
	n = (n ^ n>>30) * 0xbf58476d1ce4e5b9
	n = (n ^ n>>27) * 0x94d049bb133111eb
	n ^= n >> 31
	return float64(n>>11)/(1<<53) < sample
}

// unshadow returns the authority the user's request carried, before Envoy
// appended "-shadow" to its host for the copy, in front of any port:
// "web-shadow:8080" is "web:8080", "[fd00::1]-shadow:80" is "[fd00::1]:80".
// An authority without the suffix is returned as it is.
func unshadow(authority string) string {
	if i := strings.LastIndexByte(authority, ':'); i >= 0 {
		if host, ok := strings.CutSuffix(authority[:i], shadowSuffix); ok {
			return host + authority[i:]
		}
	}
	return strings.TrimSuffix(authority, shadowSuffix)
}

// upstreamURL is base with in's path appended to base's path and in's
// query in place of base's (which is empty: see checkBaseURL).
func upstreamURL(base, in *url.URL) *url.URL {
	u := *base
	u.Path = joinPath(base.Path, in.Path)
	if base.RawPath != "" || in.RawPath != "" {
		u.RawPath = joinPath(base.EscapedPath(), in.EscapedPath())
	}
	u.RawQuery, u.ForceQuery = in.RawQuery, in.ForceQuery
	return &u
}

func joinPath(prefix, path string) string {
	return strings.TrimSuffix(prefix, "/") + "/" + strings.TrimPrefix(path, "/")
}

// hopByHop are the headers that concern one connection, not the request
// (RFC 9110 section 7.6.1, with the older Keep-Alive and
// Proxy-Connection); they are not forwarded.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// forwardHeader is the header forwarded to both upstreams: the copy's,
// without hop-by-hop headers (those listed and those its Connection
// header names), without Accept-Encoding, and with LoopHeader.
//
// Accept-Encoding is left to the client, whose transport then asks for
// gzip and decodes it, so that the bodies compared are the content and not
// one compressor's encoding of it: two versions that send the same page
// compressed at different levels answer the same.
func forwardHeader(in http.Header) http.Header {
	out := in.Clone()
	for _, v := range in.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			out.Del(textproto.TrimString(name))
		}
	}
	for _, name := range hopByHop {
		out.Del(name)
	}
	out.Del("Accept-Encoding")
	if _, ok := out["User-Agent"]; !ok {
		// Go's client would otherwise send its own, which the copy did
		// not carry.
		out["User-Agent"] = []string{""}
	}
	out.Set(LoopHeader, "1")
	return out
}
