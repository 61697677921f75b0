package flagd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	schema "github.com/open-feature/flagd-schemas/json"
	"github.com/open-feature/flagd/core/pkg/evaluator"
	"github.com/open-feature/flagd/core/pkg/logger"
	"github.com/open-feature/flagd/core/pkg/store"
	isync "github.com/open-feature/flagd/core/pkg/sync"
	"github.com/xeipuuv/gojsonschema"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
)

// Source is a flag document in flagd's JSON format, held in memory and fed
// to flagd's in-process provider (an isync.ISync): the content of a
// ConfigMap key, as an app reading that ConfigMap through the flagd
// provider sees it.
//
// Every document is validated before the provider gets it, as strictly as
// flagd's schema says (flagd itself only logs schema problems). An invalid
// document is not passed on: the provider keeps the last valid flags, and
// Err says what is wrong, so that a reader who must not guess (a gate)
// refuses to answer instead.
type Source struct {
	uri string

	mu      sync.Mutex
	doc     string
	err     error
	changed chan struct{} // closed and replaced on every accepted document
}

var _ isync.ISync = (*Source)(nil)

// emptyDocument is served before any document arrives: no flags, so every
// evaluation is FLAG_NOT_FOUND rather than a hang.
const emptyDocument = `{"flags":{}}`

// NewSource returns a source named uri (any unique string; the provider is
// given the same one) that has no document yet: Err reports that.
func NewSource(uri string) *Source {
	return &Source{uri: uri, doc: emptyDocument, err: fmt.Errorf("%s: no flag document yet", uri), changed: make(chan struct{})}
}

// URI is the name the provider knows the source by.
func (s *Source) URI() string { return s.uri }

// Set offers a new document. A valid one replaces the current document
// and clears Err; an invalid one is kept from the provider, and Err
// reports it.
func (s *Source) Set(doc []byte) error {
	err := Validate(doc)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.err = fmt.Errorf("%s: %w", s.uri, err)
		return s.err
	}
	s.err = nil
	if string(doc) == s.doc {
		return nil
	}
	s.doc = string(doc)
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// SetError marks the source unreadable (its ConfigMap or key is gone, say);
// the provider keeps the last valid flags.
func (s *Source) SetError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = fmt.Errorf("%s: %w", s.uri, err)
}

// SetConfigMap offers the document under key in cm; a nil cm, or one
// without key, makes the source unreadable.
func (s *Source) SetConfigMap(cm *corev1.ConfigMap, key string) error {
	if cm == nil {
		err := errors.New("configmap not found")
		s.SetError(err)
		return err
	}
	doc, ok := cm.Data[key]
	if !ok {
		err := fmt.Errorf("configmap %s/%s: data.%s: not found", cm.Namespace, cm.Name, key)
		s.SetError(err)
		return err
	}
	return s.Set([]byte(doc))
}

// Err says why the source cannot be trusted now, or nil.
func (s *Source) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Source) current() (string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.doc, s.changed
}

// Init implements isync.ISync.
func (s *Source) Init(context.Context) error { return nil }

// IsReady implements isync.ISync.
func (s *Source) IsReady() bool { return true }

// Sync implements isync.ISync: the current document at once, then every
// accepted change, until ctx ends.
func (s *Source) Sync(ctx context.Context, out chan<- isync.DataSync) error {
	for {
		doc, changed := s.current()
		select {
		case out <- isync.DataSync{FlagData: doc, Source: s.uri}:
		case <-ctx.Done():
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// ReSync implements isync.ISync.
func (s *Source) ReSync(ctx context.Context, out chan<- isync.DataSync) error {
	doc, _ := s.current()
	select {
	case out <- isync.DataSync{FlagData: doc, Source: s.uri}:
	case <-ctx.Done():
	}
	return nil
}

// Validate checks a flag document the way flagd loads it, and stricter:
// against flagd's JSON schema (which flagd itself only logs), then through
// flagd's own evaluator (which rejects, for example, a default variant
// that is not among the variants). Errors say where.
func Validate(doc []byte) error {
	s, err := flagdSchema()
	if err != nil {
		return fmt.Errorf("flagd schema: %w", err)
	}
	res, err := s.Validate(gojsonschema.NewBytesLoader(doc))
	if err != nil {
		return fmt.Errorf("not a flagd flag document: %w", err)
	}
	if !res.Valid() {
		var msgs []string
		for i, e := range res.Errors() {
			if i == 5 {
				msgs = append(msgs, fmt.Sprintf("and %d more", len(res.Errors())-5))
				break
			}
			msgs = append(msgs, e.String())
		}
		return fmt.Errorf("not a valid flagd flag document: %s", strings.Join(msgs, "; "))
	}
	var top struct {
		Flags map[string]json.RawMessage `json:"flags"`
	}
	if err := json.Unmarshal(doc, &top); err != nil || top.Flags == nil {
		return errors.New("not a valid flagd flag document: flags: want an object of flags")
	}
	ev := evaluator.NewJSON(logger.NewLogger(zap.NewNop(), false), store.NewFlags())
	if _, _, err := ev.SetState(isync.DataSync{FlagData: string(doc), Source: "validate"}); err != nil {
		return fmt.Errorf("flagd refuses the flag document: %w", err)
	}
	return nil
}

var flagdSchema = sync.OnceValues(func() (*gojsonschema.Schema, error) {
	sl := gojsonschema.NewSchemaLoader()
	if err := sl.AddSchemas(gojsonschema.NewStringLoader(schema.TargetingSchema)); err != nil {
		return nil, err
	}
	return sl.Compile(gojsonschema.NewStringLoader(schema.FlagSchema))
})
