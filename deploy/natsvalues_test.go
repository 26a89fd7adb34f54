package deploy

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	natsValues      = "nats/values.yaml"
	natsChartValues = "testdata/nats-chart-2.14.2-values.yaml" // the chart's defaults
)

// TestNATSValues checks the values for the reference JetStream cluster
// against the NATS chart's own values file: a misspelt key would be ignored
// by Helm without a word, so every key must exist in the chart.
func TestNATSValues(t *testing.T) {
	ours, err := os.ReadFile(natsValues)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkNATSValues(t, ours); err != nil {
		t.Fatal(err)
	}
}

func TestNATSValuesMistakes(t *testing.T) {
	ours, err := os.ReadFile(natsValues)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, old, new, want string }{
		{"misspelt key", "    replicas: 3\n", "    replica: 3\n", `config.cluster: key "replica"`},
		{"key at the wrong level", "  monitor:\n", "  monitoring:\n", `config: key "monitoring"`},
		{"two nodes", "    replicas: 3\n", "    replicas: 2\n", "config.cluster.replicas"},
		{"memory storage", "    fileStore:\n      enabled: true\n", "    fileStore:\n      enabled: false\n", "config.jetstream.fileStore.enabled"},
		{"monitoring on another port", "    port: 8222\n", "    port: 8223\n", "config.monitor.port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(ours, []byte(tc.old)) {
				t.Fatalf("%s does not contain %q", natsValues, tc.old)
			}
			err := checkNATSValues(t, bytes.Replace(ours, []byte(tc.old), []byte(tc.new), 1))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func checkNATSValues(t *testing.T, ours []byte) error {
	t.Helper()
	defaults, err := os.ReadFile(natsChartValues)
	if err != nil {
		t.Fatal(err)
	}
	var o, d map[string]any
	if err := yaml.UnmarshalStrict(ours, &o); err != nil {
		return fmt.Errorf("%s: %w", natsValues, err)
	}
	if err := yaml.Unmarshal(defaults, &d); err != nil {
		t.Fatal(err)
	}
	var errs []string
	errs = append(errs, chartKeys("", o, d)...)

	// What pushworker relies on: 3 JetStream nodes with file storage (R3
	// streams survive a node), monitoring on 8222 (KEDA reads /jsz there),
	// payloads large enough for a 1 MiB job in a DLQ entry.
	for _, want := range []struct {
		path string
		val  any
	}{
		{"config.cluster.enabled", true},
		{"config.cluster.replicas", float64(3)},
		{"config.jetstream.enabled", true},
		{"config.jetstream.fileStore.enabled", true},
		{"config.jetstream.fileStore.pvc.enabled", true},
		{"config.monitor.enabled", true},
		{"config.monitor.port", float64(8222)},
		{"config.merge.max_payload", "<< 4MB >>"},
	} {
		if got := lookup(o, want.path); got != want.val {
			errs = append(errs, fmt.Sprintf("%s = %v, want %v", want.path, got, want.val))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s:\n%s", natsValues, strings.Join(errs, "\n"))
}

// chartKeys reports keys of ours that the chart's defaults do not have. A
// default that is an empty map or null is free-form (env, resources, merge
// blocks), so anything below it is accepted.
func chartKeys(path string, ours, defaults map[string]any) []string {
	var errs []string
	keys := make([]string, 0, len(ours))
	for k := range ours {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		def, ok := defaults[k]
		where := strings.TrimPrefix(path+"."+k, ".")
		if !ok {
			errs = append(errs, fmt.Sprintf("%s: key %q is not a value of the chart", strings.TrimPrefix(path, "."), k))
			continue
		}
		defMap, defIsMap := def.(map[string]any)
		ourMap, ourIsMap := ours[k].(map[string]any)
		switch {
		case def == nil || (defIsMap && len(defMap) == 0):
		case defIsMap && ourIsMap:
			errs = append(errs, chartKeys(where, ourMap, defMap)...)
		case defIsMap != ourIsMap:
			errs = append(errs, fmt.Sprintf("%s: the chart wants a %T here, got %T", where, def, ours[k]))
		}
	}
	return errs
}

func lookup(m map[string]any, path string) any {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}
