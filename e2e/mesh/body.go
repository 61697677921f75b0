package mesh

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"strings"
)

// This file gives every answer a body, as far as anyone can tell one body
// from another without reading it: a response comparison (fledge's
// mirrorcmp) hashes a body with SHA-256 and measures its length, and
// compares those. The emulator sends no bytes, so an answer's body is only
// that pair, chosen so that comparisons mean what they mean in a real
// cluster:
//
//   - A pod's successful (2xx) answer is a function of the request alone:
//     its method, the host the app was called by (without the "-shadow"
//     Envoy gives a mirrored copy), its path and query, and its user. Two
//     revisions, or a revision and a copy mirrored to another, answer one
//     request with the same body, unless the serving pod's body-diff-rate
//     makes this answer one of the share that differs: then its body is
//     another function of the request, of another length.
//   - A HEAD answer has no body, nor has a gRPC answer with a non-OK
//     status inside HTTP 200 (a trailers-only response).
//   - Any other answer of a pod is an error page that names the pod, as
//     one carrying a request id or a host name does: two error answers
//     generally differ, which is why comparisons look at their status
//     alone.
//   - Envoy's own replies (no route, no cluster, no healthy upstream, a
//     route's direct response or redirect) are a function of their status
//     and response flags.

// Kinds of body; each is hashed with a different first byte, so that no
// two kinds of body can coincide.
const (
	bodyContent    = 'c'
	bodyDiffering  = 'd'
	bodyErrorPage  = 'e'
	bodyLocalReply = 'l'
)

// Lengths of the bodies made up: a content body is 512 bytes to 16 KiB;
// one that differs is longer by 1 to 256 bytes; an error page 128 to 255.
const (
	minContentLen  = 512
	contentSpread  = 16 << 10
	minErrorLen    = 128
	errorLenSpread = 128
)

// emptyBody is the hash of an answer without a body.
var emptyBody = sha256.Sum256(nil)

// bodyKeyLen is the size of the buffer a body's key is assembled in, on
// the stack: enough for the method, host, path and user of every request
// the generators send, so that giving an answer its body allocates
// nothing. A longer key still works; append moves it to the heap.
const bodyKeyLen = 384

// requestBody is the body a pod answers req with when it succeeds;
// authority is the host the app was called by. differs says whether it is
// the body of the share of answers a body-diff-rate makes differ.
func requestBody(req *Request, authority string, differs bool) ([32]byte, int64) {
	if req.Method == "HEAD" {
		return emptyBody, 0
	}
	var buf [bodyKeyLen]byte
	key := appendRequestKey(append(buf[:0], bodyContent), req, authority)
	hash := sha256.Sum256(key)
	n := minContentLen + int64(binary.BigEndian.Uint16(hash[:2])%contentSpread)
	if !differs {
		return hash, n
	}
	key[0] = bodyDiffering
	hash = sha256.Sum256(key)
	return hash, n + 1 + int64(hash[0])
}

// errorPage is the body of a pod's error answer to req.
func errorPage(req *Request, authority, pod string, code int) ([32]byte, int64) {
	if req.Method == "HEAD" {
		return emptyBody, 0
	}
	var buf [bodyKeyLen]byte
	key := appendRequestKey(append(buf[:0], bodyErrorPage), req, authority)
	key = append(key, 0)
	key = append(key, pod...)
	key = append(key, 0)
	key = strconv.AppendInt(key, int64(code), 10)
	hash := sha256.Sum256(key)
	return hash, minErrorLen + int64(hash[0]%errorLenSpread)
}

// localReplyBody is the body of a reply Envoy makes itself.
func localReplyBody(code int, flags string) ([32]byte, int64) {
	var buf [32]byte
	key := strconv.AppendInt(append(buf[:0], bodyLocalReply), int64(code), 10)
	key = append(key, flags...)
	hash := sha256.Sum256(key)
	return hash, int64(len(key))
}

// appendRequestKey appends what a successful answer's body is a function
// of, each part ended by a NUL so that no two requests share a key.
func appendRequestKey(key []byte, req *Request, authority string) []byte {
	key = append(key, req.Method...)
	key = append(key, 0)
	key = appendUnshadowed(key, authority)
	key = append(key, 0)
	key = append(key, req.Path...)
	key = append(key, 0)
	key = append(key, req.User...)
	return append(key, 0)
}

// appendUnshadowed appends authority without the "-shadow" Envoy appends
// to a mirrored copy's host (see ShadowHost), in front of any port.
func appendUnshadowed(key []byte, authority string) []byte {
	host, port := authority, ""
	if i := strings.LastIndexByte(authority, ':'); i >= 0 && !strings.Contains(authority[i+1:], "]") {
		host, port = authority[:i], authority[i:]
	}
	key = append(key, strings.TrimSuffix(host, shadowSuffix)...)
	return append(key, port...)
}

// unshadow is authority without "-shadow": the authority of the request a
// mirrored copy copies.
func unshadow(authority string) string {
	if !strings.Contains(authority, shadowSuffix) {
		return authority
	}
	return string(appendUnshadowed(nil, authority))
}
