package slack

import (
	"math"
	"testing"
	"unicode/utf8"
)

func TestFormatValue(t *testing.T) {
	tests := []struct {
		name      string
		v         float64
		threshold string
		want      string
	}{
		{"keeps four significant digits of a ratio", 0.912345678, ">= 0.99", "0.9123"},
		{"writes a whole number plainly", 500, "<= 500", "500"},
		{"writes a latency in milliseconds without a fraction past four digits", 1234.5678, "<= 500", "1235"},
		{"writes a large count whole, not as an exponent", 123456.7, "<= 1000", "123457"},
		{"uses an exponent for huge values", 3.2e12, "<= 1", "3.2e+12"},
		{"uses an exponent for tiny values", 1.5e-7, "<= 0.001", "1.5e-07"},
		{"adds digits when rounding would read like the bound", 0.98996, ">= 0.99", "0.98996"},
		{"adds digits against either bound of a range", 1.00004, ">= 0.9 and <= 1", "1.00004"},
		{"rounds to the bound's text when it is the bound", 0.99, ">= 0.99", "0.99"},
		{"writes NaN as such", math.NaN(), ">= 0.99", "NaN"},
		{"writes infinity as such", math.Inf(1), "<= 500", "+Inf"},
		{"ignores an empty threshold", 0.98996, "", "0.99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatValue(tt.v, tt.threshold); got != tt.want {
				t.Errorf("formatValue(%v, %q) = %q, want %q", tt.v, tt.threshold, got, tt.want)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		name    string
		seconds int64
		want    string
	}{
		{"writes minutes and seconds", 252, "4m12s"},
		{"drops zero units", 7200, "2h"},
		{"writes days for long rollouts", 97200, "1d3h"},
		{"writes seconds alone", 45, "45s"},
		{"writes nothing known as 0s", 0, "0s"},
		{"writes a negative duration as 0s", -5, "0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatDuration(tt.seconds); got != tt.want {
				t.Errorf("formatDuration(%d) = %q, want %q", tt.seconds, got, tt.want)
			}
		})
	}
}

func TestFormatStepAndPlan(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"a plan ends in promote", formatPlan([]int32{10, 25, 50}), "10% → 25% → 50% → promote"},
		{"an empty plan promotes at once", formatPlan(nil), "promote"},
		{"a step is 1-based with the plan's length", formatStep(1, []int32{10, 25, 50}, 25), "step 2/3 (25%)"},
		{"a step without a plan has no total", formatStep(1, nil, 25), "step 2 (25%)"},
		{"before traffic has no step", formatStep(-1, []int32{10}, 0), "before traffic"},
		{"a sentence says at the step", atStep(0, []int32{10}, 10), "at step 1/1 (10%)"},
		{"cohort stages are named in the plan", formatPlan([]int32{0, 0, 25}, "staff", "beta"), "cohort staff → cohort beta → 25% → promote"},
		{"a cohort stage is named, not 0%", formatStep(1, []int32{0, 0, 25}, 0, "staff", "beta"), "step 2/3 (cohort beta)"},
		{"a weighted step after cohorts", atStep(2, []int32{0, 0, 25}, 25, "staff", "beta"), "at step 3/3 (25%)"},
		{"an API abort names who and how", formatBy("api:alice"), "by alice via api"},
		{"an annotation abort names how", formatBy("annotation"), "via annotation"},
		{"an abort by nobody named says so", formatBy(""), "by someone unknown"},
		{"steps taken count from one", stepsTaken(2, []int32{10, 25, 50}), "3/3"},
		{"no step taken is zero", stepsTaken(-1, []int32{10}), "0/1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestEscCutsWithoutBreakingEntities(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		limit int
		want  string
	}{
		{"escapes the three mrkdwn characters", "a<b>&c", 100, "a&lt;b&gt;&amp;c"},
		{"leaves short text whole", "hello", 5, "hello"},
		{"cuts long text with an ellipsis", "hello world", 6, "hello…"},
		{"drops an entity that would not fit whole", "ab&cd", 6, "ab…"},
		{"counts runes, not bytes", "ééééé", 4, "ééé…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := esc(tt.in, tt.limit)
			if got != tt.want {
				t.Errorf("esc(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
			}
			if n := utf8.RuneCountInString(got); n > tt.limit {
				t.Errorf("esc(%q, %d) is %d runes long", tt.in, tt.limit, n)
			}
		})
	}
}

func TestJoinWithinSaysHowManyWereLeftOut(t *testing.T) {
	parts := []string{"aaaa", "bbbb", "cccc", "dddd", "eeee"}
	tests := []struct {
		name  string
		limit int
		want  string
	}{
		{"joins all when they fit", 28, "aaaa, bbbb, cccc, dddd, eeee"},
		{"keeps what fits and counts the rest", 27, "aaaa, bbbb, …and 3 more"},
		{"counts all when none fits", 11, "…and 5 more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := joinWithin(parts, ", ", tt.limit)
			if got != tt.want {
				t.Errorf("joinWithin(limit %d) = %q, want %q", tt.limit, got, tt.want)
			}
			if utf8.RuneCountInString(got) > tt.limit {
				t.Errorf("joinWithin(limit %d) = %q: over the limit", tt.limit, got)
			}
		})
	}
}
