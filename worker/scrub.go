package worker

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/pushworker/pushworker/jobs"
)

// scrubber replaces every configured secret in text that leaves the worker (results, DLQ
// entries, log details) with a marker: a last line of defence behind config.Secret.
type scrubber struct {
	secrets [][]byte
	r       *strings.Replacer
}

const redacted = "[redacted]"

func newScrubber(secrets []string) *scrubber {
	s := &scrubber{}
	var pairs []string
	for _, v := range secrets {
		if len(v) < 4 {
			continue // too short to scrub without mangling ordinary text
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
			pairs = append(pairs, f, redacted)
		}
	}
	s.r = strings.NewReplacer(pairs...)
	return s
}

func (s *scrubber) bytes(b []byte) []byte {
	for _, v := range s.secrets {
		if bytes.Contains(b, v) {
			b = bytes.ReplaceAll(b, v, []byte(redacted))
		}
	}
	return b
}

func (s *scrubber) string(v string) string {
	if len(s.secrets) == 0 {
		return v
	}
	return s.r.Replace(v)
}

// redactCredentials replaces the values of credential fields in a job's payload.
func redactCredentials(data []byte) []byte {
	if len(data) == 0 {
		return data
	}
	var env map[string]json.RawMessage
	if json.Unmarshal(data, &env) != nil {
		return []byte(redacted)
	}
	var p map[string]json.RawMessage
	if json.Unmarshal(env["payload"], &p) != nil {
		return []byte(redacted)
	}
	for _, f := range jobs.CredentialFields {
		if _, ok := p[f]; ok {
			p[f] = json.RawMessage(`"` + redacted + `"`)
		}
	}
	env["payload"], _ = json.Marshal(p)
	out, _ := json.Marshal(env)
	return out
}
