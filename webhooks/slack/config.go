package slack

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
)

// Keys of the Kubernetes Secret that configures Slack (its data, as
// ConfigFromSecret reads it).
const (
	// KeyWebhookURL holds an incoming-webhook URL. Alone it is enough.
	KeyWebhookURL = "webhook-url"
	// KeyToken holds a bot token (xoxb-...) for chat.postMessage; it needs
	// KeyChannel.
	KeyToken = "token"
	// KeyChannel is the channel a bot posts to: an id (C0123) or a name.
	KeyChannel = "channel"
	// KeyAPIURL overrides Slack's Web API base (https://slack.com/api/),
	// for the sandbox's receiver or a proxy. Token mode only.
	KeyAPIURL = "api-url"
)

// Config is where Slack notifications go: an incoming webhook, or a bot
// token and a channel. The webhook URL and the token are secrets: the URL
// itself grants posting. Config's String, GoString, Format, LogValue and
// MarshalJSON all redact them, so that printing or logging a Config in any
// way never leaks one.
type Config struct {
	WebhookURL string
	Token      string
	Channel    string
	// APIURL is the Web API base; empty means Slack's own.
	APIURL string
}

// ConfigFromSecret reads a Config from a Secret's data. Values are
// trimmed: a Secret made with `echo` ends in a newline that would
// otherwise become part of the token. Unknown keys are refused, so that a
// misspelt key ("webhook_url") is an error rather than a silent default.
func ConfigFromSecret(data map[string][]byte) (Config, error) {
	known := []string{KeyWebhookURL, KeyToken, KeyChannel, KeyAPIURL}
	var unknown []string
	for k := range data {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return Config{}, fmt.Errorf("slack secret: unknown keys %q (want %q)", unknown, known)
	}
	get := func(k string) string { return strings.TrimSpace(string(data[k])) }
	c := Config{WebhookURL: get(KeyWebhookURL), Token: get(KeyToken), Channel: get(KeyChannel), APIURL: get(KeyAPIURL)}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("slack secret: %w", err)
	}
	return c, nil
}

// Validate checks that c names exactly one way to post. Its errors name
// the key at fault and never quote a secret.
func (c Config) Validate() error {
	switch {
	case c.WebhookURL == "" && c.Token == "":
		return fmt.Errorf("set %s, or %s and %s", KeyWebhookURL, KeyToken, KeyChannel)
	case c.WebhookURL != "" && c.Token != "":
		return fmt.Errorf("%s and %s are exclusive: set one", KeyWebhookURL, KeyToken)
	case c.WebhookURL != "":
		if _, err := parseHTTPURL(c.WebhookURL); err != nil {
			return fmt.Errorf("%s: %w", KeyWebhookURL, err)
		}
		if c.Channel != "" {
			return fmt.Errorf("%s: only with %s (an incoming webhook posts to its own channel)", KeyChannel, KeyToken)
		}
		if c.APIURL != "" {
			return fmt.Errorf("%s: only with %s (set the webhook URL itself instead)", KeyAPIURL, KeyToken)
		}
	default:
		if strings.ContainsAny(c.Token, " \t\r\n") {
			return fmt.Errorf("%s: contains whitespace", KeyToken)
		}
		if c.Channel == "" {
			return fmt.Errorf("%s: required with %s", KeyChannel, KeyToken)
		}
		if c.APIURL != "" {
			if _, err := parseHTTPURL(c.APIURL); err != nil {
				return fmt.Errorf("%s: %w", KeyAPIURL, err)
			}
		}
	}
	return nil
}

// parseHTTPURL accepts an absolute http(s) URL. Its errors do not quote
// the URL (url.Parse's do), since the URL may be the secret.
func parseHTTPURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("not an absolute http(s) URL")
	}
	return u, nil
}

// redactURL keeps what says where a URL points (scheme, host, the first
// path segment) and hides the rest: an incoming webhook's URL is
// https://hooks.slack.com/services/***.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "***"
	}
	first, _, _ := strings.Cut(strings.TrimPrefix(u.EscapedPath(), "/"), "/")
	if first == "" {
		return u.Scheme + "://" + u.Host + "/***"
	}
	return u.Scheme + "://" + u.Host + "/" + first + "/***"
}

// redactToken keeps a token's type prefix ("xoxb-"), which helps tell a
// user token from a bot token, and hides the rest.
func redactToken(token string) string {
	if p, _, ok := strings.Cut(token, "-"); ok && strings.HasPrefix(p, "xox") && len(p) <= 5 {
		return p + "-***"
	}
	return "***"
}

// String describes c with its secrets redacted.
func (c Config) String() string {
	if c.WebhookURL != "" {
		return "slack webhook " + redactURL(c.WebhookURL)
	}
	if c.Token == "" {
		return "slack (not configured)"
	}
	s := fmt.Sprintf("slack token %s channel %s", redactToken(c.Token), c.Channel)
	if c.APIURL != "" {
		s += " api " + redactURL(c.APIURL)
	}
	return s
}

// GoString is String for %#v.
func (c Config) GoString() string { return "slack.Config{" + c.String() + "}" }

// Format makes every verb print the redacted String. Without it %d, %x
// or %+v on a struct holding a Config would print the raw fields, since
// fmt calls String only for some verbs.
func (c Config) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, c.GoString())
		return
	}
	fmt.Fprint(f, c.String())
}

// LogValue keeps slog's handlers (the JSON one marshals structs) from
// printing the secrets.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON writes the redacted String: a Config derived from a Secret
// has no business being serialised whole.
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }
