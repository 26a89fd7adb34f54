package api

import (
	"bytes"
	"encoding/json"
	"strings"
)

const redacted = "[redacted]"

// scrubber replaces every configured secret in replies and log details with a marker: a
// last line of defence behind config.Secret, in case an upstream echoes a credential.
type scrubber struct {
	secrets []string
	forms   [][]byte // each secret as it may appear in JSON text: raw and escaped
	r       *strings.Replacer
}

func newScrubber(secrets []string) *scrubber {
	s := &scrubber{}
	var pairs []string
	for _, v := range secrets {
		if len(v) < 4 {
			continue // too short to scrub without mangling ordinary text
		}
		s.secrets = append(s.secrets, v)
		pairs = append(pairs, v, redacted)
		s.forms = append(s.forms, []byte(v))
		if q, _ := json.Marshal(v); !bytes.Equal(q[1:len(q)-1], []byte(v)) {
			s.forms = append(s.forms, q[1:len(q)-1])
		}
	}
	s.r = strings.NewReplacer(pairs...)
	return s
}

// text scrubs a string.
func (s *scrubber) text(v string) string {
	if len(s.secrets) == 0 {
		return v
	}
	return s.r.Replace(v)
}

// json scrubs a JSON document and keeps it valid JSON. The common case (no secret, no
// escape that could hide one) returns b untouched; otherwise the document is decoded and,
// when a string, key or number holds a secret, encoded again with it redacted.
func (s *scrubber) json(b []byte) []byte {
	if len(s.secrets) == 0 || !s.suspect(b) {
		return b
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return []byte(s.text(string(b)))
	}
	v, changed := s.walk(v)
	if !changed {
		return b
	}
	out, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"ok":false,"error":{"kind":"internal","detail":"reply could not be scrubbed"}}`)
	}
	return out
}

// suspect reports whether b may hold a secret: as written, or behind a \u escape.
func (s *scrubber) suspect(b []byte) bool {
	if bytes.Contains(b, []byte(`\u`)) {
		return true
	}
	for _, f := range s.forms {
		if bytes.Contains(b, f) {
			return true
		}
	}
	return false
}

func (s *scrubber) walk(v any) (any, bool) {
	switch t := v.(type) {
	case string:
		r := s.text(t)
		return r, r != t
	case json.Number:
		if r := s.text(t.String()); r != t.String() {
			return r, true
		}
		return t, false
	case []any:
		changed := false
		for i := range t {
			var c bool
			t[i], c = s.walk(t[i])
			changed = changed || c
		}
		return t, changed
	case map[string]any:
		changed := false
		out := make(map[string]any, len(t))
		for k, e := range t {
			e, c := s.walk(e)
			k2 := s.text(k)
			changed = changed || c || k2 != k
			out[k2] = e
		}
		return out, changed
	}
	return v, false
}
