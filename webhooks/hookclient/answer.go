package hookclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fledgehq/fledge/webhooks"
)

// snippetBytes is how much of a body or error a message quotes. Bodies are
// written by whoever runs the hook and end up in the Flight's status and
// in Slack: enough to tell an error page from a stack trace, no more.
const snippetBytes = 200

// answer turns a response into a result. Its message lacks the "POST url: "
// head. It reports whether another attempt could get a different answer.
func (c *Client) answer(ctx, actx context.Context, timeout time.Duration, resp *http.Response) (Result, bool) {
	code := resp.StatusCode
	res := Result{Outcome: Error, Status: code}
	status := statusText(code)
	// A 5xx or 429 is worth another try whatever its body.
	retryable := code >= 500 || code == http.StatusTooManyRequests
	body, tooLarge, err := readBody(resp, c.maxBody)
	switch {
	case err != nil:
		msg, retry := describe(ctx, actx, timeout, err)
		res.Message = status + ": reading body: " + msg
		return res, retry || retryable
	case tooLarge:
		res.Message = fmt.Sprintf("%s: response body larger than %s", status, sizeText(c.maxBody))
		return res, retryable
	}
	res.Body = body
	if code < 200 || code > 299 {
		res.Outcome = Rejected
		res.Message = status
		if s := oneLine(body, snippetBytes); s != "" {
			res.Message += ": " + s
		}
		return res, retryable
	}
	load, err := parseLoad(body)
	if err != nil {
		res.Message = fmt.Sprintf("%s: not a valid load result: %v", status, err)
		return res, false
	}
	res.Outcome, res.Load, res.Message = OK, load, status
	if load != nil {
		res.Message += fmt.Sprintf(": load result: %d requests, %.2f%% success, p95 %gms", load.Requests, load.Success*100, load.P95Ms)
		if st := load.Stable; st != nil {
			res.Message += fmt.Sprintf("; stable: %d requests, %.2f%% success, p95 %gms", st.Requests, st.Success*100, st.P95Ms)
		}
	}
	return res, false
}

// readBody reads at most limit bytes of the body, and one more to tell a
// body of exactly limit bytes from a larger one. A larger body is not read
// further: closing it drops the connection instead of draining it.
func readBody(resp *http.Response, limit int64) (body []byte, tooLarge bool, err error) {
	if resp.ContentLength > limit {
		return nil, true, nil
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, false, err
	}
	if int64(len(body)) > limit {
		return nil, true, nil
	}
	return body, false, nil
}

// describe says why a request or body read failed, and whether to retry.
// Refusals are final; so is the end of the caller's context. Anything
// else (a reset, a timeout, a refused connection) may pass.
func describe(ctx, actx context.Context, timeout time.Duration, err error) (string, bool) {
	var refused *refusedError
	var redirect *redirectError
	switch {
	case errors.As(err, &refused):
		return refused.Error(), false
	case errors.As(err, &redirect):
		return redirect.Error(), false
	case ctx.Err() != nil:
		return fmt.Sprintf("stopped: %v", context.Cause(ctx)), false
	case errors.Is(actx.Err(), context.DeadlineExceeded):
		return fmt.Sprintf("timed out after %v", timeout), true
	}
	// url.Error repeats the method and URL, credentials and all.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return oneLine([]byte(err.Error()), 2*snippetBytes), true
}

// statusText is "503 Service Unavailable": the code and Go's name for it,
// not the server's reason phrase, which could say anything.
func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return fmt.Sprintf("%d %s", code, t)
	}
	return fmt.Sprint(code)
}

// oneLine makes b fit in a one-line message: runs of spaces, line breaks
// and unprintable runes become one space, invalid UTF-8 becomes '?', and
// the result is cut to at most limit bytes, "..." marking the cut.
func oneLine(b []byte, limit int) string {
	var sb strings.Builder
	gap := false
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if r == utf8.RuneError && size == 1 {
			r = '?'
		}
		if r == ' ' || !unicode.IsPrint(r) {
			gap = sb.Len() > 0
			continue
		}
		n := utf8.RuneLen(r)
		if gap {
			n++
		}
		if sb.Len()+n > limit {
			return sb.String() + "..."
		}
		if gap {
			sb.WriteByte(' ')
			gap = false
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// sizeText writes a byte count as people do: "1 MiB", "64 KiB", "1000 bytes".
func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Limits on what a load result may carry into the Flight's status, which
// lives in an etcd object of bounded size.
const (
	maxLoadErrors   = 10
	loadErrorLength = snippetBytes
)

// parseLoad reads the load result out of a 2xx body. A body is one when it
// is a JSON object with a "requests" field; other bodies (empty, text,
// other JSON) are nil, nil: most hooks answer no load result. A body that
// claims to be one but cannot be read, or holds impossible figures, is an
// error: a broken load tester must not pass for a working one.
func parseLoad(body []byte) (*webhooks.LoadResult, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		if bytes.Contains(body, []byte(`"requests"`)) {
			return nil, fmt.Errorf("malformed JSON: %v", err)
		}
		return nil, nil
	}
	raw, ok := fields["requests"]
	if !ok {
		return nil, nil
	}
	if len(raw) == 0 || raw[0] < '0' || raw[0] > '9' {
		return nil, fmt.Errorf("requests is %s, want a count", oneLine(raw, 40))
	}
	var lr webhooks.LoadResult
	if err := json.Unmarshal(body, &lr); err != nil {
		return nil, errors.New(oneLine([]byte(err.Error()), snippetBytes))
	}
	if err := checkFigures(&lr.LoadFigures); err != nil {
		return nil, err
	}
	if lr.Stable != nil {
		if err := checkFigures(lr.Stable); err != nil {
			return nil, fmt.Errorf("stable: %w", err)
		}
	}
	return &lr, nil
}

// checkFigures refuses impossible figures and bounds the errors kept.
func checkFigures(f *webhooks.LoadFigures) error {
	if f.Success < 0 || f.Success > 1 {
		return fmt.Errorf("success is %g, want a ratio between 0 and 1", f.Success)
	}
	for _, v := range []struct {
		name string
		v    float64
	}{{"p50Ms", f.P50Ms}, {"p95Ms", f.P95Ms}, {"p99Ms", f.P99Ms}, {"durationSeconds", f.Duration}} {
		if v.v < 0 {
			return fmt.Errorf("%s is %g, want 0 or more", v.name, v.v)
		}
	}
	if len(f.Errors) > maxLoadErrors {
		f.Errors = f.Errors[:maxLoadErrors]
	}
	for i, e := range f.Errors {
		f.Errors[i] = oneLine([]byte(e), loadErrorLength)
	}
	return nil
}
