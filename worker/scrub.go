package worker

import (
	"encoding/json"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
)

// redactCredentials replaces the values of credential fields in a job's payload.
func redactCredentials(data []byte) []byte {
	if len(data) == 0 {
		return data
	}
	var env map[string]json.RawMessage
	if json.Unmarshal(data, &env) != nil {
		return []byte(config.Redacted)
	}
	var p map[string]json.RawMessage
	if json.Unmarshal(env["payload"], &p) != nil {
		return []byte(config.Redacted)
	}
	for _, f := range jobs.CredentialFields {
		if _, ok := p[f]; ok {
			p[f] = json.RawMessage(`"` + config.Redacted + `"`)
		}
	}
	env["payload"], _ = json.Marshal(p)
	out, _ := json.Marshal(env)
	return out
}
