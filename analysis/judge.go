package analysis

import (
	"fmt"
	"math"
	"strconv"
)

// Judge decides one threshold check from what was measured: the canary's
// sample count and the query's value. It is pure; Evaluate does the I/O.
//
// The order matters. Too few samples is NotEnoughData whatever the value,
// since a ratio over a handful of requests says nothing. A NaN or infinite
// value is an Error, never compared: NaN is neither below a minimum nor
// above a maximum, so a naive comparison would pass it. Only then are the
// bounds applied, inclusively.
//
// The message says why for every outcome but Pass, in words meant for the
// decision log and Slack; the metric's name is beside it in the Check.
func Judge(m Metric, samples int64, value float64) (Outcome, string) {
	if outcome, msg, decided := judgeSamples(m, samples); decided {
		return outcome, msg
	}
	return judgeValue(m, value)
}

// judgeSamples is the samples half of Judge, which Evaluate also uses to
// skip the value query when there are too few samples to judge it.
func judgeSamples(m Metric, samples int64) (outcome Outcome, msg string, decided bool) {
	if samples < 0 {
		return Error, fmt.Sprintf("the samples query counted %d; a count cannot be negative", samples), true
	}
	if samples < m.MinSamples {
		counted := "samples"
		if m.SamplesQuery == "" {
			counted = "requests served by the canary"
		}
		// "%d %s in the last %s, fewer than the %d required", written
		// with strconv: a threshold check short of samples says so at
		// every round.
		var buf [128]byte
		b := strconv.AppendInt(buf[:0], samples, 10)
		b = append(append(append(b, ' '), counted...), " in the last "...)
		b = append(append(b, intervalText(m)...), ", fewer than the "...)
		b = append(strconv.AppendInt(b, m.MinSamples, 10), " required"...)
		return NotEnoughData, string(b), true
	}
	return "", "", false
}

func judgeValue(m Metric, value float64) (Outcome, string) {
	switch {
	case math.IsNaN(value):
		return Error, "the value is NaN (a ratio over no requests?): nothing to judge"
	case math.IsInf(value, 0):
		return Error, fmt.Sprintf("the value is %s: nothing to judge", formatFloat(value))
	case m.Min == nil && m.Max == nil:
		return Error, "the metric has neither min nor max: nothing to judge against"
	case m.Min != nil && value < *m.Min:
		return Fail, fmt.Sprintf("%s is below the minimum of %s", formatValue(value, *m.Min), formatFloat(*m.Min))
	case m.Max != nil && value > *m.Max:
		return Fail, fmt.Sprintf("%s is above the maximum of %s", formatValue(value, *m.Max), formatFloat(*m.Max))
	}
	return Pass, ""
}

// threshold writes a metric's bounds as the decision log shows them:
// ">= 0.99", "<= 500", ">= 0.9 and <= 1".
func threshold(m Metric) string {
	if m.IsComparison() {
		if m.Compare != nil && m.Compare.MaxRatio > 0 {
			return "<= stable x " + strconv.FormatFloat(m.Compare.MaxRatio, 'g', 3, 64)
		}
		margin := 0.0
		if m.Compare != nil {
			margin = m.Compare.MaxIncrease
		}
		return "<= stable + " + FormatPoints(margin)
	}
	switch {
	case m.Min != nil && m.Max != nil:
		return ">= " + formatFloat(*m.Min) + " and <= " + formatFloat(*m.Max)
	case m.Min != nil:
		return ">= " + formatFloat(*m.Min)
	case m.Max != nil:
		return "<= " + formatFloat(*m.Max)
	}
	return ""
}

// intervalText is the metric's interval for messages: "1m", not "1m0s".
func intervalText(m Metric) string {
	if s, err := FormatInterval(m.Interval); err == nil {
		return s
	}
	return m.Interval.String()
}

// formatFloat writes a bound exactly as the shortest decimal that reads
// back as it: 0.99, 500, 1e-06.
func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// formatValue writes a measured value with six significant digits
// (0.901234 rather than 0.9012345678901), unless rounding would make it
// read like the bound it was compared with ("0.99 is below the minimum of
// 0.99"): then in full.
func formatValue(v, bound float64) string {
	s := strconv.FormatFloat(v, 'g', 6, 64)
	if v != bound && s == formatFloat(bound) {
		return formatFloat(v)
	}
	return s
}

// FormatPercent writes a rate as a percentage with two significant
// digits and no exponent: "7.4%", "0.52%", "100%", as comparisons'
// messages and Slack show rates; below a thousandth of a percent,
// "<0.001%".
func FormatPercent(r float64) string {
	switch p := 100 * r; {
	case p == 0:
		return "0%"
	case p < 0.001:
		return "<0.001%"
	}
	var buf [24]byte
	return string(AppendPercent(buf[:0], r))
}

// AppendPercent appends FormatPercent(r) to b.
func AppendPercent(b []byte, r float64) []byte {
	p := 100 * r
	switch {
	case p == 0:
		return append(b, "0%"...)
	case p >= 10:
		b = strconv.AppendFloat(b, p, 'f', 0, 64)
	case p >= 1:
		b = strconv.AppendFloat(b, p, 'f', 1, 64)
	case p < 0.001:
		return append(b, "<0.001%"...)
	default:
		b = strconv.AppendFloat(b, p, 'g', 2, 64)
	}
	return append(b, '%')
}

// FormatMargin writes a comparison's margin: "+1 pt" (absolute), or
// "x2" (relative, with a ratio).
func FormatMargin(maxIncrease, maxRatio float64) string {
	if maxRatio > 0 {
		return "x" + strconv.FormatFloat(maxRatio, 'g', 3, 64)
	}
	return "+" + FormatPoints(maxIncrease)
}

// AppendMargin appends FormatMargin(maxIncrease, maxRatio) to b.
func AppendMargin(b []byte, maxIncrease, maxRatio float64) []byte {
	if maxRatio > 0 {
		return strconv.AppendFloat(append(b, 'x'), maxRatio, 'g', 3, 64)
	}
	b = strconv.AppendFloat(append(b, '+'), 100*maxIncrease, 'g', 3, 64)
	return append(b, " pt"...)
}

// FormatPoints writes a rate difference in percentage points: "1 pt",
// "0.5 pt".
func FormatPoints(d float64) string {
	return strconv.FormatFloat(100*d, 'g', 3, 64) + " pt"
}
