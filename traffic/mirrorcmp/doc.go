// Package mirrorcmp is the response comparison of a canary's mirror stage:
// a small proxy that answers whether the canary answers live requests the
// way stable does, while users are answered by stable alone.
//
// It sits where Istio sends the mirror's copies (the destination of the
// route's mirror, in place of the canary). For each copy it receives it
// asks both the canary and stable, at once, the same request: method,
// path, query, headers but the hop-by-hop ones, and the body, read once
// and replayed to both, with "-shadow" taken off the host Envoy gave the
// copy. Compare then says whether the answers are the same: the status
// class must agree, and for 2xx answers the body too, by the SHA-256 of
// its first MaxBody bytes and its whole length. Headers, and the bodies of
// other answers, are not compared; a copy either upstream failed to answer
// is unanswered, neither a pass nor a fail. Each copy is counted once in
// fledge_mirror_comparisons_total by its result, from which fledge's
// analysis reads the share of copies answered differently and fails the
// canary above its bound.
//
// The proxy is bounded: it compares a Sample of the copies (chosen by a
// hash of their order of arrival, so the same every run), at most
// MaxInFlight at once (a copy beyond that is dropped, never queued), holds
// and hashes at most MaxBody bytes of a body, and gives each upstream
// call Timeout. Body content is hashed as it is read and never logged or
// kept. Only safe methods (GET, HEAD, OPTIONS, TRACE) are compared: stable
// has answered the user's request already, and asking it again a POST,
// PUT, PATCH or DELETE would repeat its effect on live data, so those
// copies are counted unsafe and forwarded to neither upstream. Mirroring
// with comparison is for read-only traffic, and stable serves every
// compared read twice: once for the user, once for the comparison.
//
// Because the forwarded requests carry the user's host, the proxy must
// reach its upstreams directly, not through an Istio sidecar's outbound
// routes: a sidecar routes by host, so it would send both calls along the
// user's route (mostly to stable) and mirror them back to the proxy.
// LoopHeader makes such a loop end at its first turn, counted dropped.
// (Under strict mTLS, the upstreams must then accept the proxy's plain
// text on their ports.)
package mirrorcmp
