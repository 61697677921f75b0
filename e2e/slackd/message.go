package slackd

import (
	"bytes"
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"time"
)

// Message is one message the server accepted.
type Message struct {
	// Via is "webhook" or "api" (chat.postMessage).
	Via string
	// Channel is chat.postMessage's channel, or the channel a webhook
	// payload asked for (usually none: a webhook has its own).
	Channel string
	// Text is the message's text as sent (mrkdwn: "&lt;" for "<").
	Text string
	// Blocks is the blocks array as sent, nil when there were none.
	Blocks json.RawMessage
	// Raw is everything the client sent, as JSON, without the token (a
	// form's fields become string members; blocks stay JSON).
	Raw json.RawMessage
	At  time.Time
}

func (m Message) clone() Message {
	m.Blocks = bytes.Clone(m.Blocks)
	m.Raw = bytes.Clone(m.Raw)
	return m
}

// BlockText flattens the blocks to the text a person would read, one text
// object or element a line, in order: mrkdwn's entities are undone and
// links and dates show their labels. (Text is the fallback line, which
// Slack shows only in notifications.)
func (m Message) BlockText() string {
	var lines []string
	collectText(m.Blocks, &lines)
	return readable(strings.Join(lines, "\n"))
}

// Contains reports whether sub is in what a person reads of the
// message: its blocks or its text.
func (m Message) Contains(sub string) bool {
	return strings.Contains(m.BlockText(), sub) || strings.Contains(readable(m.Text), sub)
}

// collectText appends every string member named "text" in the JSON, in
// document order (decoding into maps would lose it): text objects and
// rich-text elements both keep their words there.
func collectText(raw json.RawMessage, out *[]string) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	var inObject []bool
	key, expectKey := "", false
	for {
		tok, err := dec.Token()
		if err == io.EOF || err != nil {
			return // Blocks were checked on arrival; stop at anything else
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				inObject = append(inObject, d == '{')
				expectKey = d == '{'
				continue
			}
			inObject = inObject[:len(inObject)-1]
		} else if s, ok := tok.(string); ok && expectKey {
			key, expectKey = s, false
			continue
		} else if ok && key == "text" {
			*out = append(*out, s)
		}
		expectKey = len(inObject) > 0 && inObject[len(inObject)-1]
	}
}

// special is Slack's markup in angle brackets: <url|label>, <!here>,
// <@U123>, <!date^...|fallback>.
var special = regexp.MustCompile(`<([^<>|]*)(?:\|([^<>]*))?>`)

var entities = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

// readable renders mrkdwn's markup as Slack shows it, as far as text
// goes: labels for links and dates, "@here" for <!here>, entities undone.
func readable(s string) string {
	s = special.ReplaceAllStringFunc(s, func(m string) string {
		sub := special.FindStringSubmatch(m)
		if sub[2] != "" {
			return sub[2]
		}
		if rest, ok := strings.CutPrefix(sub[1], "!"); ok {
			return "@" + rest
		}
		return sub[1]
	})
	return entities.Replace(s)
}
