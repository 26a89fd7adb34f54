package config

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Redacted replaces a secret wherever one is found.
const Redacted = "[redacted]"

// Scrubber replaces known secret values in text with Redacted: the last line of defence,
// behind Secret, for text that comes from outside (an upstream's answer echoing a
// credential, a job carrying one) and leaves the worker in a result, a DLQ entry or a log.
// A nil *Scrubber scrubs nothing.
type Scrubber struct {
	secrets [][]byte
	r       *strings.Replacer
}

// NewScrubber returns a Scrubber of secrets. Values shorter than 4 bytes are skipped: they
// cannot be scrubbed without mangling ordinary text.
func NewScrubber(secrets []string) *Scrubber {
	s := &Scrubber{}
	var pairs []string
	for _, v := range secrets {
		if len(v) < 4 {
			continue
		}
		forms := []string{v}
		// Inside JSON a secret with quotes, backslashes or <>& is escaped: scrub that too.
		if b, err := json.Marshal(v); err == nil {
			if esc := string(b[1 : len(b)-1]); esc != v {
				forms = append(forms, esc)
			}
		}
		for _, f := range forms {
			s.secrets = append(s.secrets, []byte(f))
			pairs = append(pairs, f, Redacted)
		}
	}
	s.r = strings.NewReplacer(pairs...)
	return s
}

// Bytes returns b with every secret replaced; b itself is returned when it holds none.
func (s *Scrubber) Bytes(b []byte) []byte {
	if s == nil {
		return b
	}
	for _, v := range s.secrets {
		if bytes.Contains(b, v) {
			b = bytes.ReplaceAll(b, v, []byte(Redacted))
		}
	}
	return b
}

// String returns v with every secret replaced.
func (s *Scrubber) String(v string) string {
	if s == nil || len(s.secrets) == 0 {
		return v
	}
	return s.r.Replace(v)
}
