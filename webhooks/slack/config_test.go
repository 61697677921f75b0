package slack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	secretPath  = "T0AAAAAAA/B0BBBBBBB/s3cretW3bh00kK3y"
	webhookURL  = "https://hooks.slack.com/services/" + secretPath
	secretToken = "xoxb-1111-2222-s3cretT0k3n"
)

func TestConfigFromSecret(t *testing.T) {
	tests := []struct {
		name    string
		data    map[string][]byte
		want    Config
		wantErr string
	}{
		{
			name: "reads an incoming webhook, trimming echo's newline",
			data: map[string][]byte{KeyWebhookURL: []byte(webhookURL + "\n")},
			want: Config{WebhookURL: webhookURL},
		},
		{
			name: "reads a bot token and channel",
			data: map[string][]byte{KeyToken: []byte(secretToken), KeyChannel: []byte("#rollouts")},
			want: Config{Token: secretToken, Channel: "#rollouts"},
		},
		{
			name: "reads an API base override for a token",
			data: map[string][]byte{KeyToken: []byte(secretToken), KeyChannel: []byte("C0123"), KeyAPIURL: []byte("http://127.0.0.1:8080/api/")},
			want: Config{Token: secretToken, Channel: "C0123", APIURL: "http://127.0.0.1:8080/api/"},
		},
		{
			name:    "refuses an empty secret",
			data:    map[string][]byte{},
			wantErr: "set webhook-url, or token and channel",
		},
		{
			name:    "refuses a misspelt key",
			data:    map[string][]byte{"webhook_url": []byte(webhookURL)},
			wantErr: `unknown keys ["webhook_url"]`,
		},
		{
			name:    "refuses both a webhook and a token",
			data:    map[string][]byte{KeyWebhookURL: []byte(webhookURL), KeyToken: []byte(secretToken), KeyChannel: []byte("#x")},
			wantErr: "webhook-url and token are exclusive",
		},
		{
			name:    "refuses a token without a channel",
			data:    map[string][]byte{KeyToken: []byte(secretToken)},
			wantErr: "channel: required with token",
		},
		{
			name:    "refuses a webhook that is not an http URL, without quoting it",
			data:    map[string][]byte{KeyWebhookURL: []byte("hooks.slack.com/services/" + secretPath)},
			wantErr: "webhook-url: not an absolute http(s) URL",
		},
		{
			name:    "refuses an unparsable webhook, without quoting it",
			data:    map[string][]byte{KeyWebhookURL: []byte("https://hooks.slack.com/%zz/" + secretPath)},
			wantErr: "webhook-url: not a valid URL",
		},
		{
			name:    "refuses a channel beside a webhook",
			data:    map[string][]byte{KeyWebhookURL: []byte(webhookURL), KeyChannel: []byte("#x")},
			wantErr: "channel: only with token",
		},
		{
			name:    "refuses an API base beside a webhook",
			data:    map[string][]byte{KeyWebhookURL: []byte(webhookURL), KeyAPIURL: []byte("http://x/api/")},
			wantErr: "api-url: only with token",
		},
		{
			name:    "refuses a token with whitespace inside",
			data:    map[string][]byte{KeyToken: []byte("xoxb-1 2"), KeyChannel: []byte("#x")},
			wantErr: "token: contains whitespace",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ConfigFromSecret(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ConfigFromSecret error = %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error quotes the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ConfigFromSecret: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigNeverPrintsItsSecrets(t *testing.T) {
	configs := []struct {
		name string
		c    Config
		want string // what String shows instead
	}{
		{"a webhook", Config{WebhookURL: webhookURL}, "https://hooks.slack.com/services/***"},
		{"a token", Config{Token: secretToken, Channel: "#rollouts", APIURL: "http://127.0.0.1:1/api/"}, "xoxb-*** channel #rollouts"},
	}
	for _, cc := range configs {
		sender, err := New(cc.c)
		if err != nil {
			t.Fatalf("New(%s): %v", cc.name, err)
		}
		// A struct holding a Config in an exported field: fmt calls its
		// methods. (In an unexported field fmt prints any type's fields
		// raw; nothing a type does can prevent that.)
		holder := struct {
			Name string
			C    Config
			S    *Sender
		}{"holder", cc.c, sender}
		var text, js bytes.Buffer
		slog.New(slog.NewTextHandler(&text, nil)).Info("config", "config", cc.c, "sender", sender, "holder", holder)
		slog.New(slog.NewJSONHandler(&js, nil)).Info("config", "config", cc.c, "sender", sender, "holder", holder)
		marshalled, err := json.Marshal(holder)
		if err != nil {
			t.Fatal(err)
		}
		outputs := map[string]string{
			"String":      cc.c.String(),
			"GoString":    cc.c.GoString(),
			"%v":          fmt.Sprintf("%v", cc.c),
			"%+v":         fmt.Sprintf("%+v", cc.c),
			"%#v":         fmt.Sprintf("%#v", cc.c),
			"%s":          fmt.Sprintf("%s", cc.c),
			"%q":          fmt.Sprintf("%q", cc.c),
			"%d":          fmt.Sprintf("%d", cc.c),
			"%x":          fmt.Sprintf("%x", cc.c),
			"holder %+v":  fmt.Sprintf("%+v", holder),
			"holder %#v":  fmt.Sprintf("%#v", holder),
			"sender %v":   fmt.Sprintf("%v", sender),
			"sender %+v":  fmt.Sprintf("%+v", *sender),
			"sender %#v":  fmt.Sprintf("%#v", sender),
			"slog text":   text.String(),
			"slog JSON":   js.String(),
			"encode JSON": string(marshalled),
		}
		for how, out := range outputs {
			if strings.Contains(out, "s3cret") || strings.Contains(out, secretPath) {
				t.Errorf("%s: %s leaks the secret: %s", cc.name, how, out)
			}
		}
		if s := cc.c.String(); !strings.Contains(s, cc.want) {
			t.Errorf("%s: String() = %q, want it to show %q", cc.name, s, cc.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"keeps host and first segment of a webhook", webhookURL, "https://hooks.slack.com/services/***"},
		{"keeps the sandbox's address", "http://127.0.0.1:4000/services/T000/B000/XXXX", "http://127.0.0.1:4000/services/***"},
		{"hides a query", "https://example.com/?token=abc", "https://example.com/***"},
		{"hides what it cannot parse", "::", "***"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redactURL(tt.in); got != tt.want {
				t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
