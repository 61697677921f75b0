package slackd

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func start(t *testing.T) *Server {
	t.Helper()
	s, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// do sends one request and returns the answer's status, Retry-After and
// body.
func do(t *testing.T, method, target, contentType, body string, header ...string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

const blocksJSON = `[{"type":"section","text":{"type":"mrkdwn","text":"*success-rate* 0.91"}}]`

func TestIncomingWebhookAnswersAsSlack(t *testing.T) {
	const jsonType = "application/json"
	tests := []struct {
		name        string
		method      string
		path        string // "" is the webhook's
		contentType string
		body        string
		status      int
		answer      string
		want        *Message // recorded, Via/Text/Channel/Blocks compared
	}{
		{
			name: "accepts text", contentType: jsonType, body: `{"text":"hello"}`,
			status: 200, answer: "ok", want: &Message{Via: "webhook", Text: "hello"},
		},
		{
			name: "accepts blocks without text", contentType: jsonType, body: `{"blocks":` + blocksJSON + `}`,
			status: 200, answer: "ok", want: &Message{Via: "webhook", Blocks: json.RawMessage(blocksJSON)},
		},
		{
			name: "keeps a channel the payload asks for", contentType: jsonType, body: `{"text":"hi","channel":"#ops"}`,
			status: 200, answer: "ok", want: &Message{Via: "webhook", Channel: "#ops", Text: "hi"},
		},
		{
			name: "accepts the legacy form with a payload field", contentType: "application/x-www-form-urlencoded",
			body:   "payload=" + url.QueryEscape(`{"text":"legacy"}`),
			status: 200, answer: "ok", want: &Message{Via: "webhook", Text: "legacy"},
		},
		{name: "refuses a body that is not JSON", contentType: jsonType, body: `{"text":`, status: 400, answer: "invalid_payload"},
		{name: "refuses neither text nor blocks", contentType: jsonType, body: `{"channel":"#x"}`, status: 400, answer: "invalid_payload"},
		{name: "refuses empty blocks without text", contentType: jsonType, body: `{"blocks":[]}`, status: 400, answer: "invalid_payload"},
		{name: "refuses blocks that are not an array", contentType: jsonType, body: `{"text":"x","blocks":{"type":"section"}}`, status: 400, answer: "invalid_payload"},
		{name: "answers no_service on another webhook's path", path: "/services/T1/B1/wrong", contentType: jsonType, body: `{"text":"x"}`, status: 404, answer: "no_service"},
		{name: "answers no_service on any other path", path: "/hooks", contentType: jsonType, body: `{"text":"x"}`, status: 404, answer: "no_service"},
		{name: "refuses a GET", method: http.MethodGet, status: 405, answer: "invalid_method"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t)
			target := s.WebhookURL()
			if tt.path != "" {
				target = strings.TrimSuffix(s.APIURL(), "/api/") + tt.path
			}
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			status, _, answer := do(t, method, target, tt.contentType, tt.body)
			if status != tt.status || answer != tt.answer {
				t.Errorf("answered %d %q, want %d %q", status, answer, tt.status, tt.answer)
			}
			checkRecorded(t, s.Messages(), tt.want)
			if s.Failures() != 0 {
				t.Errorf("Failures = %d: refusals are not injected failures", s.Failures())
			}
		})
	}
}

func TestPostMessageAnswersAsSlack(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	bearer := []string{"Authorization", "Bearer " + token}
	formBody := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	tests := []struct {
		name        string
		method      string // "" is chat.postMessage
		contentType string
		body        string
		header      []string
		code        string // "" is ok:true
		want        *Message
	}{
		{
			name: "accepts a form with the token as a field, as slack-go sends it", contentType: form,
			body: formBody("token", token, "channel", "#rollouts", "text", "hi", "blocks", blocksJSON),
			want: &Message{Via: "api", Channel: "#rollouts", Text: "hi", Blocks: json.RawMessage(blocksJSON)},
		},
		{
			name: "accepts a form with a bearer token", contentType: form, header: bearer,
			body: formBody("channel", "C0123", "text", "hi"),
			want: &Message{Via: "api", Channel: "C0123", Text: "hi"},
		},
		{
			name: "accepts JSON with a bearer token", contentType: "application/json; charset=utf-8", header: bearer,
			body: `{"channel":"#rollouts","blocks":` + blocksJSON + `}`,
			want: &Message{Via: "api", Channel: "#rollouts", Blocks: json.RawMessage(blocksJSON)},
		},
		{name: "refuses a missing token", contentType: form, body: formBody("channel", "#x", "text", "hi"), code: "not_authed"},
		{name: "refuses a wrong token", contentType: form, body: formBody("token", "xoxb-wrong", "channel", "#x", "text", "hi"), code: "invalid_auth"},
		{
			name: "refuses a token in a JSON body, as Slack does", contentType: "application/json",
			body: `{"token":"` + token + `","channel":"#x","text":"hi"}`, code: "not_authed",
		},
		{name: "refuses a missing channel", contentType: form, header: bearer, body: formBody("text", "hi"), code: "channel_not_found"},
		{name: "refuses neither text nor blocks", contentType: form, header: bearer, body: formBody("channel", "#x"), code: "no_text"},
		{name: "refuses blocks that are not JSON", contentType: form, header: bearer, body: formBody("channel", "#x", "blocks", "[{"), code: "invalid_blocks"},
		{name: "refuses a JSON body that is not JSON", contentType: "application/json", header: bearer, body: `{"channel":`, code: "invalid_json"},
		{name: "answers unknown_method for other methods", method: "chat.update", contentType: form, header: bearer, body: formBody("channel", "#x", "text", "hi"), code: "unknown_method"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t)
			method := tt.method
			if method == "" {
				method = "chat.postMessage"
			}
			status, _, answer := do(t, http.MethodPost, s.APIURL()+method, tt.contentType, tt.body, tt.header...)
			if status != 200 {
				t.Fatalf("HTTP %d: the Web API answers 200, errors in the body", status)
			}
			var got struct {
				OK      bool   `json:"ok"`
				Error   string `json:"error"`
				Channel string `json:"channel"`
				TS      string `json:"ts"`
			}
			if err := json.Unmarshal([]byte(answer), &got); err != nil {
				t.Fatalf("answer %q: %v", answer, err)
			}
			if got.OK != (tt.code == "") || got.Error != tt.code {
				t.Errorf("answered %s, want ok=%v error %q", answer, tt.code == "", tt.code)
			}
			if got.OK && tt.want != nil && (got.Channel != tt.want.Channel || got.TS == "") {
				t.Errorf("answered %s, want the channel %q and a ts", answer, tt.want.Channel)
			}
			msgs := s.Messages()
			checkRecorded(t, msgs, tt.want)
			for _, m := range msgs {
				if strings.Contains(string(m.Raw), token) {
					t.Errorf("Raw keeps the token: %s", m.Raw)
				}
			}
		})
	}
}

// checkRecorded compares what was recorded with want (nil: nothing).
func checkRecorded(t *testing.T, msgs []Message, want *Message) {
	t.Helper()
	if want == nil {
		if len(msgs) != 0 {
			t.Errorf("recorded %d messages, want none: %+v", len(msgs), msgs)
		}
		return
	}
	if len(msgs) != 1 {
		t.Fatalf("recorded %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.Via != want.Via || m.Channel != want.Channel || m.Text != want.Text || string(m.Blocks) != string(want.Blocks) {
		t.Errorf("recorded %+v, want %+v", m, *want)
	}
	if !json.Valid(m.Raw) || m.At.IsZero() {
		t.Errorf("recorded Raw %q (valid JSON: %v), At %v", m.Raw, json.Valid(m.Raw), m.At)
	}
}

func TestInjectedFailures(t *testing.T) {
	s := start(t)
	post := func() (int, string) {
		status, retryAfter, _ := do(t, http.MethodPost, s.WebhookURL(), "application/json", `{"text":"x"}`)
		return status, retryAfter
	}
	expect := func(step string, wantStatus int, wantRetryAfter string, wantMessages, wantFailures int) {
		t.Helper()
		status, retryAfter := post()
		if status != wantStatus || retryAfter != wantRetryAfter {
			t.Errorf("%s: answered %d (Retry-After %q), want %d (%q)", step, status, retryAfter, wantStatus, wantRetryAfter)
		}
		if n := len(s.Messages()); n != wantMessages {
			t.Errorf("%s: %d messages, want %d", step, n, wantMessages)
		}
		if n := s.Failures(); n != wantFailures {
			t.Errorf("%s: %d failures, want %d", step, n, wantFailures)
		}
	}

	s.FailNext(2, 500)
	expect("first of FailNext(2, 500)", 500, "", 0, 1)
	expect("second of FailNext(2, 500)", 500, "", 0, 2)
	expect("after FailNext is spent", 200, "", 1, 2)

	s.FailNext(1, 429)
	expect("a 429 asks to wait", 429, "1", 1, 3)
	expect("after the 429", 200, "", 2, 3)

	s.FailUntilCleared(503)
	for i := range 3 {
		expect("failing until cleared", 503, "", 2, 4+i)
	}
	s.Clear()
	expect("after Clear", 200, "", 3, 6)

	s.FailNext(5, 500)
	s.Clear()
	expect("Clear also drops what FailNext had left", 200, "", 4, 6)

	s.FailUntilCleared(500)
	s.Reset()
	if len(s.Messages()) != 0 || s.Failures() != 0 {
		t.Fatalf("after Reset: %d messages, %d failures", len(s.Messages()), s.Failures())
	}
	expect("Reset stops failing", 200, "", 1, 0)
}

func TestInjectedFailuresApplyToTheAPI(t *testing.T) {
	s := start(t)
	s.FailNext(1, 502)
	body := url.Values{"token": {token}, "channel": {"#x"}, "text": {"hi"}}.Encode()
	status, _, _ := do(t, http.MethodPost, s.APIURL()+"chat.postMessage", "application/x-www-form-urlencoded", body)
	if status != 502 || s.Failures() != 1 || len(s.Messages()) != 0 {
		t.Fatalf("answered %d with %d failures and %d messages, want 502, 1, 0", status, s.Failures(), len(s.Messages()))
	}
}

func TestWaitFor(t *testing.T) {
	s := start(t)
	post := func(text string) {
		if status, _, answer := do(t, http.MethodPost, s.WebhookURL(), "application/json", `{"text":"`+text+`"}`); status != 200 {
			t.Errorf("post %q: %d %s", text, status, answer)
		}
	}
	post("first")
	m, err := s.WaitFor(context.Background(), nil)
	if err != nil || m.Text != "first" {
		t.Fatalf("WaitFor(any) = %q, %v; want the message already there", m.Text, err)
	}

	got := make(chan Message, 1)
	go func() {
		m, err := s.WaitFor(context.Background(), func(m Message) bool { return m.Text == "third" })
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	post("second")
	post("third")
	if m := <-got; m.Text != "third" {
		t.Errorf("WaitFor(third) = %q", m.Text)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.WaitFor(ctx, func(m Message) bool { return m.Text == "never" }); err == nil || !strings.Contains(err.Error(), "3 received") {
		t.Errorf("WaitFor on a cancelled context = %v, want an error saying 3 were received", err)
	}
}

func TestCloseStopsServingAndCanBeRepeated(t *testing.T) {
	s, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := http.Post(s.WebhookURL(), "application/json", strings.NewReader(`{"text":"x"}`)); err == nil {
		t.Fatal("a closed server still answers")
	}
}

func TestStartReportsABadAddress(t *testing.T) {
	if _, err := Start("256.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "256.0.0.1:0") {
		t.Fatalf("Start(bad address) = %v, want an error naming it", err)
	}
}
