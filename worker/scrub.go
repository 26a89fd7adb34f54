package worker

import (
	"bytes"
	"encoding/json"
	"slices"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
)

// redactCredentials replaces the values of credential fields, at any depth, in a job that
// was rejected for carrying them. Numbers keep every digit; the keys come out sorted.
func redactCredentials(data []byte) []byte {
	if len(data) == 0 {
		return data
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return []byte(config.Redacted)
	}
	out, err := json.Marshal(redactValue(v))
	if err != nil {
		return []byte(config.Redacted)
	}
	return out
}

func redactValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if slices.Contains(jobs.CredentialFields, k) {
				v[k] = config.Redacted
			} else {
				v[k] = redactValue(e)
			}
		}
	case []any:
		for i, e := range v {
			v[i] = redactValue(e)
		}
	}
	return v
}
