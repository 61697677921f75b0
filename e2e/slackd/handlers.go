package slackd

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxBody is larger than any message Slack accepts (50 blocks of at most
// 3000 characters): a bigger body is refused rather than buffered.
const maxBody = 1 << 20

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if status, ok := s.injected(); ok {
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, http.StatusText(status), status)
		return
	}
	switch {
	case r.URL.Path == webhookPath:
		s.webhook(w, r)
	case strings.HasPrefix(r.URL.Path, apiPrefix):
		s.api(w, r, strings.TrimPrefix(r.URL.Path, apiPrefix))
	default:
		// Slack's answer to a webhook URL that does not exist (revoked,
		// or mistyped), whatever the path.
		plain(w, http.StatusNotFound, "no_service")
	}
}

// payload is what both endpoints read of a message.
type payload struct {
	Channel string          `json:"channel"`
	Text    string          `json:"text"`
	Blocks  json.RawMessage `json:"blocks"`
}

// webhook is an incoming webhook: JSON (slack-go sends it), or a form
// whose payload field is the JSON (the legacy way).
func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		plain(w, http.StatusMethodNotAllowed, "invalid_method")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		plain(w, http.StatusRequestEntityTooLarge, "request_too_large")
		return
	}
	if mediaType(r) == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			plain(w, http.StatusBadRequest, "invalid_payload")
			return
		}
		body = []byte(form.Get("payload"))
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil || !blocksValid(p.Blocks) || p.Text == "" && !hasBlocks(p.Blocks) {
		plain(w, http.StatusBadRequest, "invalid_payload")
		return
	}
	s.accept(Message{Via: "webhook", Channel: p.Channel, Text: p.Text, Blocks: blocksOf(p.Blocks), Raw: compact(body)})
	plain(w, http.StatusOK, "ok")
}

// api is the Web API, of which only chat.postMessage is served. Slack
// answers its errors with HTTP 200 and ok:false, and checks the token
// before the arguments.
func (s *Server) api(w http.ResponseWriter, r *http.Request, method string) {
	if method != "chat.postMessage" {
		apiJSON(w, map[string]any{"ok": false, "error": "unknown_method", "req_method": method})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		apiError(w, "request_too_large")
		return
	}
	p, raw, given, code := readPost(r, body)
	switch {
	case given == "":
		code = "not_authed"
	case given != token:
		code = "invalid_auth"
	case code != "": // the body could not be read
	case p.Channel == "":
		code = "channel_not_found"
	case !blocksValid(p.Blocks):
		code = "invalid_blocks"
	case p.Text == "" && !hasBlocks(p.Blocks):
		code = "no_text"
	}
	if code != "" {
		apiError(w, code)
		return
	}
	ts := s.accept(Message{Via: "api", Channel: p.Channel, Text: p.Text, Blocks: blocksOf(p.Blocks), Raw: raw})
	apiJSON(w, map[string]any{
		"ok": true, "channel": p.Channel, "ts": ts,
		"message": map[string]any{"type": "message", "text": p.Text, "ts": ts},
	})
}

// readPost reads chat.postMessage's arguments from a JSON body (the token
// in the Authorization header only, as Slack wants) or from a form or
// query (the token in the header or a token field). raw is the arguments
// as JSON, without the token. code is an error to answer, if any.
func readPost(r *http.Request, body []byte) (p payload, raw json.RawMessage, given, code string) {
	given, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if mediaType(r) == "application/json" {
		if err := json.Unmarshal(body, &p); err != nil {
			return p, nil, given, "invalid_json"
		}
		return p, compact(body), given, ""
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return p, nil, given, "invalid_form_data"
	}
	for k, v := range r.URL.Query() {
		if _, ok := form[k]; !ok {
			form[k] = v
		}
	}
	if given == "" {
		given = form.Get("token")
	}
	p = payload{Channel: form.Get("channel"), Text: form.Get("text")}
	if b := form.Get("blocks"); b != "" {
		p.Blocks = json.RawMessage(b)
	}
	args := map[string]any{}
	for k := range form {
		if k == "token" {
			continue
		}
		v := form.Get(k)
		if (k == "blocks" || k == "attachments" || k == "metadata") && json.Valid([]byte(v)) {
			args[k] = json.RawMessage(v)
		} else {
			args[k] = v
		}
	}
	raw, _ = json.Marshal(args) // strings and valid JSON: cannot fail
	return p, raw, given, ""
}

// blocksValid: absent, null, or a JSON array.
func blocksValid(b json.RawMessage) bool {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return true
	}
	var arr []json.RawMessage
	return json.Unmarshal(b, &arr) == nil
}

func hasBlocks(b json.RawMessage) bool {
	var arr []json.RawMessage
	return json.Unmarshal(b, &arr) == nil && len(arr) > 0
}

// blocksOf keeps a message's blocks, nil when it has none.
func blocksOf(b json.RawMessage) json.RawMessage {
	if !hasBlocks(b) {
		return nil
	}
	return compact(b)
}

func compact(b []byte) json.RawMessage {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return nil
	}
	return out.Bytes()
}

func mediaType(r *http.Request) string {
	t, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return t
}

func plain(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func apiError(w http.ResponseWriter, code string) {
	apiJSON(w, map[string]any{"ok": false, "error": code})
}

func apiJSON(w http.ResponseWriter, v any) {
	b, _ := json.Marshal(v) // maps of strings: cannot fail
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(b)
}
