package flags

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// A release flag linked to a rollout follows it: during a cohort stage its
// on-variant is served to that cohort only, during the weighted steps to a
// fractional share of users matching the canary's weight, and on rollback
// or abort it goes off in the same transition as the routing. Rewrite
// computes the flag document for a stage; it is pure, so the decision core
// can decide on it and the executor can write it (with a compare-and-swap
// on the ConfigMap that holds it).

// Link is a release flag as a policy links it to rollouts.
type Link struct {
	// Flag is the flag's key in the flagd document.
	Flag string
	// On and Off are the variants served to the canary's users and to
	// the others (default "on" and "off").
	On, Off string
	// BucketBy is the evaluation context attribute a fractional split
	// buckets users by (default targetingKey). Buckets depend on it
	// alone, not on the flag, so a user lands on the same side of every
	// linked flag.
	BucketBy string
	// Final, if set, is the variant served after a promotion: it must
	// exist from the first stage on, so that a missing one holds the
	// rollout before any traffic rather than at its end.
	Final string
}

// StageKind is what a linked flag is set to serve.
type StageKind string

const (
	// StageCohort serves On to a cohort (a context attribute's value), Off
	// to everyone else.
	StageCohort StageKind = "Cohort"
	// StageWeighted serves On to Weight percent of users, bucketed.
	StageWeighted StageKind = "Weighted"
	// StageOff serves Off to everyone: rollback, abort, or before a
	// rollout starts.
	StageOff StageKind = "Off"
	// StageFinal serves one variant to everyone: after a promotion, the
	// state the policy names.
	StageFinal StageKind = "Final"
)

// Stage is where the rollout stands, for its linked flags.
type Stage struct {
	Kind StageKind
	// Attribute and Value select the cohort (StageCohort): for example
	// "tier" and "beta".
	Attribute, Value string
	// Weight is the canary's share in percent (StageWeighted), 0..100.
	Weight int32
	// Variant is served to everyone (StageFinal).
	Variant string
}

func (l Link) withDefaults() Link {
	if l.On == "" {
		l.On = "on"
	}
	if l.Off == "" {
		l.Off = "off"
	}
	if l.BucketBy == "" {
		l.BucketBy = "targetingKey"
	}
	return l
}

// Rewrite returns doc (a flagd flag document) with the linked flag set to
// serve what stage asks, and every other flag as it was. The flag must
// exist, be enabled, and have the link's variants; errors name the flag
// and the field.
func Rewrite(doc []byte, link Link, stage Stage) ([]byte, error) {
	link = link.withDefaults()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(doc, &top); err != nil {
		return nil, fmt.Errorf("flag document: not a JSON object: %w", err)
	}
	var flags map[string]json.RawMessage
	if err := json.Unmarshal(top["flags"], &flags); err != nil || flags == nil {
		return nil, errors.New("flag document: flags: want an object of flags")
	}
	raw, ok := flags[link.Flag]
	if !ok {
		return nil, fmt.Errorf("flag %q: not in the document", link.Flag)
	}
	var flag map[string]json.RawMessage
	if err := json.Unmarshal(raw, &flag); err != nil {
		return nil, fmt.Errorf("flag %q: not an object", link.Flag)
	}
	if err := checkFlag(link, flag, stage); err != nil {
		return nil, err
	}
	targeting, defaultVariant, err := targetingFor(link, stage)
	if err != nil {
		return nil, fmt.Errorf("flag %q: %w", link.Flag, err)
	}
	if targeting == nil {
		delete(flag, "targeting")
	} else {
		flag["targeting"] = targeting
	}
	flag["defaultVariant"], _ = marshal(defaultVariant, false)
	if flags[link.Flag], err = marshal(flag, false); err != nil {
		return nil, err
	}
	if top["flags"], err = marshal(flags, false); err != nil {
		return nil, err
	}
	return marshal(top, true)
}

// marshal encodes without escaping <, > and &: JSON Logic is full of them
// (">=", "<"), and people read the ConfigMap.
func marshal(v any, indent bool) ([]byte, error) {
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if indent {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if indent {
		return out.Bytes(), nil
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

func checkFlag(link Link, flag map[string]json.RawMessage, stage Stage) error {
	var state string
	if s, ok := flag["state"]; ok {
		if err := json.Unmarshal(s, &state); err != nil || state != "ENABLED" && state != "DISABLED" {
			return fmt.Errorf("flag %q: state: want ENABLED or DISABLED", link.Flag)
		}
	}
	if state != "ENABLED" {
		return fmt.Errorf("flag %q: state: %q: a linked flag must be ENABLED", link.Flag, state)
	}
	var variants map[string]json.RawMessage
	if err := json.Unmarshal(flag["variants"], &variants); err != nil || len(variants) == 0 {
		return fmt.Errorf("flag %q: variants: want an object of variants", link.Flag)
	}
	want := []string{link.On, link.Off}
	if stage.Kind == StageFinal {
		want = append(want, stage.Variant)
	}
	if link.Final != "" {
		want = append(want, link.Final)
	}
	for _, v := range want {
		if _, ok := variants[v]; !ok {
			return fmt.Errorf("flag %q: variants: no variant %q", link.Flag, v)
		}
	}
	return nil
}

// targetingFor builds the JSON Logic targeting and the default variant of
// a stage. A nil targeting means the default variant alone.
func targetingFor(link Link, st Stage) (json.RawMessage, string, error) {
	var rule any
	def := link.Off
	switch st.Kind {
	case StageOff:
	case StageFinal:
		def = st.Variant
	case StageCohort:
		if st.Attribute == "" || st.Value == "" {
			return nil, "", errors.New("a cohort stage needs an attribute and a value")
		}
		rule = map[string]any{"if": []any{
			map[string]any{"==": []any{map[string]any{"var": st.Attribute}, st.Value}}, link.On, link.Off,
		}}
	case StageWeighted:
		if st.Weight < 0 || st.Weight > 100 {
			return nil, "", fmt.Errorf("weight %d is outside 0..100", st.Weight)
		}
		switch st.Weight {
		case 0:
		case 100:
			def = link.On
		default:
			// Weights are literal numbers: flagd takes a variable there
			// as 1, so the document is rewritten at every step.
			rule = map[string]any{"fractional": []any{
				map[string]any{"var": link.BucketBy},
				[]any{link.On, st.Weight}, []any{link.Off, 100 - st.Weight},
			}}
		}
	default:
		return nil, "", fmt.Errorf("unknown stage %q", st.Kind)
	}
	if rule == nil {
		return nil, def, nil
	}
	b, err := marshal(rule, false)
	return b, def, err
}

// DefinitionHash identifies a flag's definition in a document, whatever
// its formatting and key order: two documents serve the flag alike when
// the hashes match. It tells fledge's own writes from a person's edits.
func DefinitionHash(doc []byte, flag string) (string, error) {
	var top struct {
		Flags map[string]json.RawMessage `json:"flags"`
	}
	if err := json.Unmarshal(doc, &top); err != nil {
		return "", fmt.Errorf("flag document: not a JSON object: %w", err)
	}
	raw, ok := top.Flags[flag]
	if !ok {
		return "", fmt.Errorf("flag %q: not in the document", flag)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", fmt.Errorf("flag %q: %w", flag, err)
	}
	canonical, err := marshal(v, false) // maps encode with sorted keys
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:8]), nil
}

// Serving says in words what a stage serves, for people: "on for
// x-user-tier=beta, off otherwise", "on for 20% of users", "off".
func Serving(link Link, st Stage) string {
	link = link.withDefaults()
	switch st.Kind {
	case StageCohort:
		return fmt.Sprintf("%s for %s=%s, %s otherwise", link.On, st.Attribute, st.Value, link.Off)
	case StageWeighted:
		switch st.Weight {
		case 0:
			return link.Off
		case 100:
			return link.On
		}
		return fmt.Sprintf("%s for %d%% of users", link.On, st.Weight)
	case StageFinal:
		return st.Variant + " (final)"
	default:
		return link.Off
	}
}
