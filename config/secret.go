package config

import "encoding/json"

// Secret holds a credential. Its String, GoString, MarshalJSON and MarshalText all print "[redacted]", so no log line, result or error can leak it by accident.
// Reveal returns the value for the one place that needs it: building an upstream request.
type Secret struct{ v string }

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{v: s} }

const redacted = "[redacted]"

// Reveal returns the secret value.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

func (s Secret) String() string   { return redacted }
func (s Secret) GoString() string { return redacted }

// MarshalJSON prints the redaction marker, never the value.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText prints the redaction marker, never the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// UnmarshalJSON reads a plain JSON string (apps file).
func (s *Secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	s.v = v
	return nil
}

// Decode lets envconfig fill a Secret from an environment variable.
func (s *Secret) Decode(v string) error { s.v = v; return nil }
