package slackd

import (
	"encoding/json"
	"testing"
)

func TestBlockText(t *testing.T) {
	tests := []struct {
		name   string
		blocks string
		want   string
	}{
		{
			name:   "reads a header, a section's text and its fields in order",
			blocks: `[{"type":"header","text":{"type":"plain_text","text":"Rolled back: checkout"}},{"type":"section","text":{"type":"mrkdwn","text":"*Why:* failed"},"fields":[{"type":"mrkdwn","text":"*App*\ncheckout"},{"type":"mrkdwn","text":"*When*\nstep 2/3"}]}]`,
			want:   "Rolled back: checkout\n*Why:* failed\n*App*\ncheckout\n*When*\nstep 2/3",
		},
		{
			name:   "undoes mrkdwn's entities",
			blocks: `[{"type":"section","text":{"type":"mrkdwn","text":"threshold &gt;= 0.99 &amp; &lt;= 1"}}]`,
			want:   "threshold >= 0.99 & <= 1",
		},
		{
			name:   "shows a date's fallback and a link's label",
			blocks: `[{"type":"context","elements":[{"type":"mrkdwn","text":"at <!date^1700000000^{time}|12:00 UTC> see <https://x.example|the runbook>"}]}]`,
			want:   "at 12:00 UTC see the runbook",
		},
		{
			name:   "shows a mention as Slack does",
			blocks: `[{"type":"section","text":{"type":"mrkdwn","text":"<!here> <@U123> <https://x.example>"}}]`,
			want:   "@here @U123 https://x.example",
		},
		{
			name:   "reads rich text elements",
			blocks: `[{"type":"rich_text","elements":[{"type":"rich_text_section","elements":[{"type":"text","text":"success-rate"},{"type":"link","url":"https://x","text":" 0.91"}]}]}]`,
			want:   "success-rate\n 0.91",
		},
		{
			name:   "ignores strings that are not text",
			blocks: `[{"type":"image","image_url":"https://x/text","alt_text":"text"}]`,
			want:   "",
		},
		{name: "reads no blocks as nothing", blocks: ``, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Message{Blocks: json.RawMessage(tt.blocks)}
			if got := m.BlockText(); got != tt.want {
				t.Errorf("BlockText() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestContainsSearchesBlocksAndText(t *testing.T) {
	m := Message{
		Text:   "Rolled back shop/checkout &amp; more",
		Blocks: json.RawMessage(`[{"type":"section","text":{"type":"mrkdwn","text":"*success-rate* 0.9123 (threshold &gt;= 0.99)"}}]`),
	}
	tests := []struct {
		name string
		sub  string
		want bool
	}{
		{"finds a metric in the blocks", "success-rate", true},
		{"finds a threshold as a person reads it", ">= 0.99", true},
		{"finds the fallback text as read", "shop/checkout & more", true},
		{"does not find what is absent", "latency-p99", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.Contains(tt.sub); got != tt.want {
				t.Errorf("Contains(%q) = %v, want %v", tt.sub, got, tt.want)
			}
		})
	}
}

func TestMessagesAreCopies(t *testing.T) {
	s := &Server{arrived: make(chan struct{})}
	s.accept(Message{Via: "api", Blocks: json.RawMessage(`[1]`)})
	got := s.Messages()
	got[0].Blocks[1] = '2'
	got[0].Via = "changed"
	if again := s.Messages(); string(again[0].Blocks) != `[1]` || again[0].Via != "api" {
		t.Errorf("changing a returned message changed the record: %+v", again[0])
	}
}
