package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/jobs"
)

// scaledObjectCRD is KEDA's ScaledObject CRD (see testdata/README.md).
const scaledObjectCRD = "testdata/keda.sh_scaledobjects.yaml"

// contractVariables are the environment variables of CONTRACT.md §7. The
// worker reads nothing else, so any other PUSH_ name is a typo.
var contractVariables = []string{
	"PUSH_NATS_URL",
	"PUSH_NATS_CREDS", "PUSH_NATS_NKEY", "PUSH_NATS_USER", "PUSH_NATS_PASSWORD", "PUSH_NATS_TOKEN",
	"PUSH_NATS_TLS_CA", "PUSH_NATS_TLS_CERT", "PUSH_NATS_TLS_KEY",
	"PUSH_EMBEDDED_LISTEN", "PUSH_DATA_DIR",
	"PUSH_MIMC_URL", "PUSH_MIMC_APP_ID", "PUSH_MIMC_APP_KEY", "PUSH_MIMC_APP_SECRET",
	"PUSH_NOTIFY_URL", "PUSH_NOTIFY_APP_ID", "PUSH_NOTIFY_ACCESS_TOKEN",
	"PUSH_APPS_FILE",
	"PUSH_RATE_P2P", "PUSH_RATE_P2T", "PUSH_RATE_UCS", "PUSH_RATE_NOTIFY",
	"PUSH_CONCURRENCY", "PUSH_HTTP_TIMEOUT",
	"PUSH_MAX_ATTEMPTS", "PUSH_RETRY_INITIAL", "PUSH_RETRY_MAX",
	"PUSH_DEDUP_TTL", "PUSH_ADMIN_ADDR", "PUSH_LOG_LEVEL", "PUSH_LOG_FORMAT",
	"PUSH_SANDBOX", "PUSH_SHUTDOWN_TIMEOUT", "PUSH_MAX_JOB_BYTES",
	"PUSH_MANAGE_STREAMS", "PUSH_STREAM_REPLICAS", "PUSH_DUPLICATE_WINDOW",
	"PUSH_RESULTS_MAX_AGE", "PUSH_DLQ_MAX_AGE", "PUSH_SUBJECT_PREFIX", "PUSH_STREAM_PREFIX",
	"PUSH_NOTIFY_STATS_INTERVAL", "PUSH_NOTIFY_STATS_FOR",
}

// credentialVariables must come from a Secret, never from the ConfigMap or a
// literal value in the Deployment.
var credentialVariables = []string{
	"PUSH_MIMC_APP_ID", "PUSH_MIMC_APP_KEY", "PUSH_MIMC_APP_SECRET",
	"PUSH_NOTIFY_APP_ID", "PUSH_NOTIFY_ACCESS_TOKEN",
	"PUSH_NATS_NKEY", "PUSH_NATS_USER", "PUSH_NATS_PASSWORD", "PUSH_NATS_TOKEN",
}

// Value kinds of the contract variables, checked where a manifest sets them.
var (
	durationVariables = []string{
		"PUSH_HTTP_TIMEOUT", "PUSH_RETRY_INITIAL", "PUSH_RETRY_MAX", "PUSH_DEDUP_TTL",
		"PUSH_SHUTDOWN_TIMEOUT", "PUSH_DUPLICATE_WINDOW", "PUSH_RESULTS_MAX_AGE",
		"PUSH_DLQ_MAX_AGE", "PUSH_NOTIFY_STATS_INTERVAL", "PUSH_NOTIFY_STATS_FOR",
	}
	intVariables   = []string{"PUSH_CONCURRENCY", "PUSH_MAX_ATTEMPTS", "PUSH_MAX_JOB_BYTES", "PUSH_STREAM_REPLICAS"}
	floatVariables = []string{"PUSH_RATE_P2P", "PUSH_RATE_P2T", "PUSH_RATE_UCS", "PUSH_RATE_NOTIFY"}
	boolVariables  = []string{"PUSH_SANDBOX", "PUSH_MANAGE_STREAMS"}
)

// jobConsumers are the durable pull consumers on the jobs stream, one per job
// type and priority lane, as the worker names them; each needs its own KEDA trigger.
var jobConsumers = func() []string {
	var out []string
	for _, lane := range broker.ConsumerLanes {
		for _, s := range jobs.Specs() {
			out = append(out, broker.Names{}.LaneConsumer(string(s.Type), lane))
		}
	}
	return out
}()

// target is a kustomization directory under deploy/ and what its output must
// satisfy beyond the checks every output gets.
type target struct {
	dir            string
	namespace      string // "" for the base, which sets none
	streamReplicas int
	minReplicas    int32 // lowest allowed ScaledObject minReplicaCount
	addOns         bool  // renders the ScaledObject and ServiceMonitor
}

var targets = []target{
	{dir: "base", streamReplicas: 1},
	{dir: "overlays/dev", namespace: "pushworker-dev", streamReplicas: 1, minReplicas: 1, addOns: true},
	{dir: "overlays/prod", namespace: "pushworker", streamReplicas: 3, minReplicas: 2, addOns: true},
}

func TestManifests(t *testing.T) {
	crd := mustLoadCRD(t)
	for _, tg := range targets {
		t.Run(tg.dir, func(t *testing.T) {
			t.Parallel()
			m, err := build(filesys.MakeFsOnDisk(), tg.dir, crd)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.check(tg); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestManifestMistakes copies deploy/ to a temporary directory, makes one
// mistake in it and expects the check of the rendered overlay to name it.
func TestManifestMistakes(t *testing.T) {
	crd := mustLoadCRD(t)
	tests := []struct {
		name    string
		file    string // under deploy/
		old     string // replaced everywhere in file
		new     string
		overlay string // default overlays/prod
		want    string // in the error; "" means no error
	}{
		{name: "unchanged copy passes", want: ""},

		// Fields unknown to the API types (strict decoding).
		{name: "misspelt Deployment field", file: "base/deployment.yaml",
			old: "  revisionHistoryLimit: 5\n", new: "  replicass: 2\n  revisionHistoryLimit: 5\n", want: `unknown field "spec.replicass"`},
		{name: "field with wrong case", file: "base/deployment.yaml",
			old: "readOnlyRootFilesystem:", new: "readOnlyRootFileSystem:", want: "readOnlyRootFileSystem"},
		{name: "misspelt field in overlay patch", file: "overlays/prod/deployment-patch.yaml",
			old: "whenUnsatisfiable: ScheduleAnyway", new: "whenUnsatisfiable: ScheduleAnyway\n          maxSkews: 2", want: "maxSkews"},
		{name: "misspelt field in dev overlay", file: "overlays/dev/scaledobject-patch.yaml", overlay: "overlays/dev",
			old: "  maxReplicaCount: 2", new: "  maxReplicaCont: 2", want: `unknown field "maxReplicaCont"`},
		{name: "misspelt Service field", file: "base/service.yaml",
			old: "targetPort: admin", new: "targetport: admin", want: "targetport"},
		{name: "misspelt PodDisruptionBudget field", file: "base/poddisruptionbudget.yaml",
			old: "maxUnavailable: 1", new: "maxUnavailble: 1", want: "maxUnavailble"},
		{name: "misspelt ServiceAccount field", file: "base/serviceaccount.yaml",
			old: "automountServiceAccountToken:", new: "automountServiceAcountToken:", want: "automountServiceAcountToken"},
		{name: "misspelt ServiceMonitor field", file: "components/monitoring/servicemonitor.yaml",
			old: "interval: 30s", new: "intervall: 30s", want: "intervall"},
		{name: "misspelt ScaledObject field", file: "components/autoscaling/scaledobject.yaml",
			old: "pollingInterval: 15", new: "pollingIntervall: 15", want: `unknown field "pollingIntervall"`},
		{name: "misspelt ScaledObject metadata field", file: "components/autoscaling/scaledobject.yaml",
			old: "  name: pushworker\n  labels:", new: "  name: pushworker\n  label:", want: "label"},
		{name: "ScaledObject value of the wrong type", file: "components/autoscaling/scaledobject.yaml",
			old: `lagThreshold: "100"`, new: `lagThreshold: 100`, want: "want a string"},
		{name: "ScaledObject value out of range", file: "overlays/prod/scaledobject-patch.yaml",
			old: "replicas: 4", new: "replicas: -1", want: "below the minimum"},
		{name: "ScaledObject CEL rule", file: "overlays/prod/scaledobject-patch.yaml",
			old: "maxReplicaCount: 8", new: "maxReplicaCount: 1", want: "minReplicaCount must be less than or equal to maxReplicaCount"},

		// Valid objects that break what the worker needs (semantic checks).
		{name: "grace period not above shutdown timeout", file: "base/deployment.yaml",
			old: "terminationGracePeriodSeconds: 45", new: "terminationGracePeriodSeconds: 30", want: "terminationGracePeriodSeconds"},
		{name: "env name not in the contract", file: "base/config.env",
			old: "PUSH_CONCURRENCY=64", new: "PUSH_CONCURENCY=64", want: "PUSH_CONCURENCY is not a variable of CONTRACT.md §7"},
		{name: "bad duration", file: "base/config.env",
			old: "PUSH_SHUTDOWN_TIMEOUT=30s", new: "PUSH_SHUTDOWN_TIMEOUT=30", overlay: "overlays/dev", want: "PUSH_SHUTDOWN_TIMEOUT"},
		{name: "prod streams not replicated", file: "overlays/prod/config.env",
			old: "PUSH_STREAM_REPLICAS=3", new: "PUSH_STREAM_REPLICAS=1", want: "PUSH_STREAM_REPLICAS"},
		{name: "credential in the ConfigMap", file: "overlays/prod/config.env",
			old: "PUSH_LOG_LEVEL=info", new: "PUSH_LOG_LEVEL=info\nPUSH_NATS_PASSWORD=REPLACE_ME", want: "must come from a Secret"},
		{name: "real-looking secret", file: "base/secrets/credentials.env",
			old: "REPLACE_ME_MIMC_APP_SECRET", new: "not-a-placeholder", want: "placeholder"},
		{name: "readiness on the wrong path", file: "base/deployment.yaml",
			old: "path: /readyz", new: "path: /healthz", want: "readinessProbe"},
		{name: "root user allowed", file: "base/deployment.yaml",
			old: "runAsNonRoot: true", new: "runAsNonRoot: false", want: "runAsNonRoot"},
		{name: "writable root filesystem", file: "base/deployment.yaml",
			old: "readOnlyRootFilesystem: true", new: "readOnlyRootFilesystem: false", want: "readOnlyRootFilesystem"},
		{name: "admin port only on loopback", file: "base/config.env",
			old: "PUSH_ADMIN_ADDR=0.0.0.0:8080", new: "PUSH_ADMIN_ADDR=127.0.0.1:8080", want: "PUSH_ADMIN_ADDR"},
		{name: "consumer missing a trigger", file: "components/autoscaling/scaledobject.yaml",
			old: "consumer: pushworker-notify", new: "consumer: pushworker-notfy", want: "pushworker-notify"},
		{name: "ScaledObject on another Deployment", file: "components/autoscaling/scaledobject.yaml",
			old: "kind: Deployment\n    name: pushworker", new: "kind: Deployment\n    name: pushworkers", want: "scaleTargetRef"},
		{name: "KEDA reads another NATS", file: "components/autoscaling/scaledobject.yaml",
			old: "nats-headless.nats.svc", new: "nats-headless.other.svc", want: "is not the NATS that PUSH_NATS_URL names"},
		{name: "prod scales to one", file: "overlays/prod/scaledobject-patch.yaml",
			old: "minReplicaCount: 2", new: "minReplicaCount: 1", want: "minReplicaCount"},
		{name: "ServiceMonitor on a missing port", file: "components/monitoring/servicemonitor.yaml",
			old: "port: admin", new: "port: metrics", want: "ServiceMonitor"},

		// Alerts and the dashboard: the expressions must parse and name only what
		// the worker exports (see monitoring_test.go).
		{name: "misspelt PrometheusRule field", file: "components/monitoring/prometheusrule.yaml",
			old: "for: 5m", new: "forr: 5m", want: `unknown field "spec.groups[0].rules[3].forr"`},
		{name: "alert on a metric that does not exist", file: "components/monitoring/prometheusrule.yaml",
			old: "pushworker_dlq_messages[30m]", new: "pushworker_dlq_message[30m]", want: "PushworkerDLQGrowing: expr: pushworker_dlq_message is not a metric the worker exports"},
		{name: "alert expression does not parse", file: "components/monitoring/prometheusrule.yaml",
			old: "> 0.9", new: "> > 0.9", want: "PushworkerRateBudgetSaturated: expr: does not parse"},
		{name: "alert on a label that does not exist", file: "components/monitoring/prometheusrule.yaml",
			old: `kind="configuration"`, new: `knd="configuration"`, want: `pushworker_breaker_open has no label "knd"`},
		{name: "alert grouping by a label that does not exist", file: "components/monitoring/prometheusrule.yaml",
			old: "max by (namespace, app, upstream, host)", new: "max by (namespace, app, upstream, hots)", want: `has no label "hots"`},
		{name: "alert without a known severity", file: "components/monitoring/prometheusrule.yaml",
			old: "severity: critical", new: "severity: page", want: `severity label "page"`},
		{name: "alert that fires at once", file: "components/monitoring/prometheusrule.yaml",
			old: "for: 5m", new: "for: 30s", want: "under 1m"},
		{name: "annotation on a label the alert aggregates away", file: "components/monitoring/prometheusrule.yaml",
			old: "of its {{ $labels.class }} rate", new: "of its {{ $labels.status }} rate", want: `map has no entry for key "status"`},
		{name: "dashboard on a metric that does not exist", file: "components/monitoring/dashboard.json",
			old: "pushworker_notify_stats_tasks{", new: "pushworker_notify_tasks{", want: "pushworker_notify_tasks is not a metric the worker exports"},
		{name: "dashboard on a histogram without _bucket", file: "components/monitoring/dashboard.json",
			old: "pushworker_upstream_request_duration_seconds_bucket{", new: "pushworker_upstream_request_duration_seconds{", want: "pushworker_upstream_request_duration_seconds is not a metric"},
		{name: "dashboard with an undefined variable", file: "components/monitoring/dashboard.json",
			old: `app=~\"$app\"`, new: `app=~\"$apps\"`, want: "undefined Grafana variable $apps"},
		{name: "dashboard legend on a missing label", file: "components/monitoring/dashboard.json",
			old: `"legendFormat": "{{pod}}"`, new: `"legendFormat": "{{replica}}"`, want: "legend {{replica}}"},
		{name: "dashboard not JSON", file: "components/monitoring/dashboard.json",
			old: `"uid": "pushworker",`, new: `"uid": "pushworker",,`, want: "not JSON"},
		{name: "dashboard without the sidecar label", file: "components/monitoring/kustomization.yaml",
			old: `grafana_dashboard: "1"`, new: `grafana_dashboard: "true"`, want: `label grafana_dashboard is "true"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyTree(t, ".")
			if tc.file != "" {
				p := filepath.Join(dir, tc.file)
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Contains(b, []byte(tc.old)) {
					t.Fatalf("%s does not contain %q: the mutation would test nothing", tc.file, tc.old)
				}
				b = bytes.ReplaceAll(b, []byte(tc.old), []byte(tc.new))
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			overlay := tc.overlay
			if overlay == "" {
				overlay = "overlays/prod"
			}
			tg := targetFor(t, overlay)
			m, err := build(filesys.MakeFsOnDisk(), filepath.Join(dir, overlay), crd)
			if err == nil {
				err = m.check(tg)
			}
			if err != nil {
				t.Logf("error (expected when want is set):\n%v", err)
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("no error; want one containing %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error does not contain %q:\n%v", tc.want, err)
			}
		})
	}
}

// TestScaledObjectSchemaLoaded guards the schema checker itself: the parts of
// the CRD the manifests use must be there, or every check would pass.
func TestScaledObjectSchemaLoaded(t *testing.T) {
	crd := mustLoadCRD(t)
	s := crd.versions["v1alpha1"]
	if s == nil {
		t.Fatal("CRD has no served v1alpha1")
	}
	spec := s.Properties["spec"]
	if spec == nil || spec.Properties["triggers"] == nil || spec.Properties["triggers"].Items == nil {
		t.Fatal("CRD schema has no spec.triggers[]")
	}
	md := spec.Properties["triggers"].Items.Properties["metadata"]
	if md == nil || md.AdditionalProperties == nil || md.AdditionalProperties.Type != "string" {
		t.Fatal("CRD schema: spec.triggers[].metadata is not a map of strings")
	}
	for _, f := range []string{"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "pollingInterval"} {
		if spec.Properties[f] == nil {
			t.Errorf("CRD schema has no spec.%s", f)
		}
	}
	if len(spec.XValidations) == 0 {
		t.Error("CRD schema: the CEL rule on spec is gone; update celRules")
	}
}

func mustLoadCRD(t *testing.T) *crdValidator {
	t.Helper()
	crd, err := loadCRD(scaledObjectCRD)
	if err != nil {
		t.Fatal(err)
	}
	return crd
}

func targetFor(t *testing.T, dir string) target {
	t.Helper()
	for _, tg := range targets {
		if tg.dir == dir {
			return tg
		}
	}
	t.Fatalf("no target %s", dir)
	return target{}
}

// copyTree copies the manifests under src (everything but Go files) to a
// temporary directory.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if strings.HasSuffix(p, ".go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// manifests is the rendered output of one kustomization, each object decoded
// into its API type.
type manifests struct {
	deployments     []appsv1.Deployment
	configMaps      []corev1.ConfigMap
	secrets         []corev1.Secret
	services        []corev1.Service
	serviceAccounts []corev1.ServiceAccount
	namespaces      []corev1.Namespace
	pdbs            []policyv1.PodDisruptionBudget
	serviceMonitors []monitoringv1.ServiceMonitor
	prometheusRules []monitoringv1.PrometheusRule
	dashboards      []corev1.ConfigMap // labelled grafana_dashboard
	scaledObjects   []scaledObject
	namespaced      []metav1.ObjectMeta // every namespaced object
}

// scaledObject holds the fields of a KEDA ScaledObject the semantic checks
// read. It is filled only after the object passed the CRD schema check.
type scaledObject struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		Fallback        *struct {
			FailureThreshold int32 `json:"failureThreshold"`
			Replicas         int32 `json:"replicas"`
		} `json:"fallback"`
		Triggers []struct {
			Type     string            `json:"type"`
			Name     string            `json:"name"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// kustomizeMu serializes kustomize builds.
var kustomizeMu sync.Mutex

// build renders the kustomization in dir with krusty (no network, no
// plugins) and decodes every object strictly into its API type: an unknown,
// misspelt or wrongly cased field, or a kind this test does not know, is an
// error.
func build(fsys filesys.FileSystem, dir string, crd *crdValidator) (*manifests, error) {
	// kustomize loads its OpenAPI schema into package state on first use, unguarded:
	// parallel builds raced there (-race, a clean-clone run of .ci/run).
	kustomizeMu.Lock()
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	kustomizeMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	m := new(manifests)
	var errs []error
	for _, res := range resMap.Resources() {
		data, err := res.MarshalJSON()
		if err != nil {
			return nil, err
		}
		id := res.GetKind() + "/" + res.GetName()
		if err := m.add(res.GetApiVersion(), res.GetKind(), data, crd); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", dir, id, err))
		}
	}
	return m, errors.Join(errs...)
}

func (m *manifests) add(apiVersion, kind string, data []byte, crd *crdValidator) error {
	decode := func(into any, meta *metav1.ObjectMeta, namespaced bool) error {
		if err := decodeStrict(data, into); err != nil {
			return err
		}
		if namespaced {
			m.namespaced = append(m.namespaced, *meta)
		}
		return nil
	}
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		var o appsv1.Deployment
		if err := decode(&o, &o.ObjectMeta, true); err != nil {
			return err
		}
		m.deployments = append(m.deployments, o)
	case "v1 ConfigMap":
		var o corev1.ConfigMap
		if err := decode(&o, &o.ObjectMeta, true); err != nil {
			return err
		}
		if _, ok := o.Labels["grafana_dashboard"]; ok {
			m.dashboards = append(m.dashboards, o)
		} else {
			m.configMaps = append(m.configMaps, o)
		}
	case "v1 Secret":
		var o corev1.Secret
		if err := decode(&o, &o.ObjectMeta, true); err != nil {
			return err
		}
		m.secrets = append(m.secrets, o)
	case "v1 Service":
		var o corev1.Service
		if err := decode(&o, &o.ObjectMeta, true); err != nil {
			return err
		}
		m.services = append(m.services, o)
	case "v1 ServiceAccount":
		var o corev1.ServiceAccount
		if err := decode(&o, &o.ObjectMeta, true); err != nil {
			return err
		}
		m.serviceAccounts = append(m.serviceAccounts, o)
	case "v1 Namespace":
		var o corev1.Namespace
		if err := decode(&o, &o.ObjectMeta, false); err != nil {
			return err
		}
		m.namespaces = append(m.namespaces, o)
	case "policy/v1 PodDisruptionBudget":
		var o policyv1.PodDisruptionBudget
		if err := decode(&o, &o.ObjectMeta, true); err != nil {
			return err
		}
		m.pdbs = append(m.pdbs, o)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		var o monitoringv1.ServiceMonitor
		if err := decode(&o, &o.ObjectMeta, true); err != nil {
			return err
		}
		m.serviceMonitors = append(m.serviceMonitors, o)
	case "monitoring.coreos.com/v1 PrometheusRule":
		var o monitoringv1.PrometheusRule
		if err := decode(&o, &o.ObjectMeta, true); err != nil {
			return err
		}
		m.prometheusRules = append(m.prometheusRules, o)
	case "keda.sh/v1alpha1 ScaledObject":
		if err := crd.validate(data); err != nil {
			return err
		}
		var o scaledObject
		if err := json.Unmarshal(data, &o); err != nil {
			return err
		}
		m.scaledObjects = append(m.scaledObjects, o)
		m.namespaced = append(m.namespaced, o.Metadata)
	default:
		return fmt.Errorf("no strict check for %s %s: add its API type to manifests.add", apiVersion, kind)
	}
	return nil
}

// decodeStrict decodes JSON the way the API server does with strict field
// validation: field names are case-sensitive, and unknown or duplicate
// fields are errors.
func decodeStrict(data []byte, into any) error {
	strictErrs, err := sigsjson.UnmarshalStrict(data, into, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// check runs the semantic checks: what the worker and the cluster need from
// the objects beyond their being well-formed.
func (m *manifests) check(tg target) error {
	var c checker
	if len(m.deployments) != 1 {
		return fmt.Errorf("want 1 Deployment, got %d", len(m.deployments))
	}
	d := &m.deployments[0]
	pod := &d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		return fmt.Errorf("Deployment %s: want 1 container, got %d", d.Name, len(pod.Containers))
	}
	ctr := &pod.Containers[0]
	env := m.environment(&c, pod, ctr)

	m.checkEnvironment(&c, env, tg)
	m.checkPod(&c, d, env)
	m.checkSecrets(&c, pod, ctr, env)
	m.checkSelectors(&c, d)
	m.checkNamespace(&c, tg)
	if tg.addOns {
		m.checkScaledObject(&c, d, env, tg)
		m.checkServiceMonitor(&c)
		if metrics, err := exported(); err != nil {
			c.errorf("the metrics the worker exports: %v", err)
		} else {
			m.checkPrometheusRules(&c, metrics)
			m.checkDashboards(&c, metrics)
		}
	} else if len(m.scaledObjects)+len(m.serviceMonitors)+len(m.prometheusRules)+len(m.dashboards) > 0 {
		c.errorf("%s: the base must not need KEDA, the Prometheus operator or Grafana", tg.dir)
	}
	return c.err()
}

type checker struct{ errs []error }

func (c *checker) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}
func (c *checker) err() error { return errors.Join(c.errs...) }

// envVar is one environment variable of the worker container.
type envVar struct {
	value      string // literal or ConfigMap value
	fromSecret bool
}

// environment resolves the container's environment from env and envFrom
// and checks that every ConfigMap and Secret it names is rendered.
func (m *manifests) environment(c *checker, pod *corev1.PodSpec, ctr *corev1.Container) map[string]envVar {
	env := map[string]envVar{}
	set := func(name string, v envVar) {
		if _, dup := env[name]; dup {
			c.errorf("container %s: %s is set twice", ctr.Name, name)
		}
		env[name] = v
	}
	for _, from := range ctr.EnvFrom {
		if from.Prefix != "" {
			c.errorf("container %s: envFrom with prefix %q", ctr.Name, from.Prefix)
		}
		switch {
		case from.ConfigMapRef != nil:
			cm := m.configMap(from.ConfigMapRef.Name)
			if cm == nil {
				c.errorf("container %s: envFrom ConfigMap %s is not rendered", ctr.Name, from.ConfigMapRef.Name)
				continue
			}
			for _, k := range slices.Sorted(maps.Keys(cm.Data)) {
				set(k, envVar{value: cm.Data[k]})
			}
			for k := range cm.BinaryData {
				c.errorf("ConfigMap %s: binary key %s cannot be an environment variable", cm.Name, k)
			}
		case from.SecretRef != nil:
			s := m.secret(from.SecretRef.Name)
			if s == nil {
				c.errorf("container %s: envFrom Secret %s is not rendered", ctr.Name, from.SecretRef.Name)
				continue
			}
			for _, k := range slices.Sorted(maps.Keys(s.Data)) {
				set(k, envVar{fromSecret: true})
			}
		}
	}
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			set(e.Name, envVar{value: e.Value})
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if s := m.secret(ref.Name); s == nil {
				c.errorf("env %s: Secret %s is not rendered", e.Name, ref.Name)
			} else if _, ok := s.Data[ref.Key]; !ok {
				c.errorf("env %s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			set(e.Name, envVar{fromSecret: true})
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm := m.configMap(ref.Name)
			if cm == nil {
				c.errorf("env %s: ConfigMap %s is not rendered", e.Name, ref.Name)
				continue
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				c.errorf("env %s: ConfigMap %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			set(e.Name, envVar{value: v})
		default:
			set(e.Name, envVar{})
		}
	}
	return env
}

// value returns a setting of the worker as the container sees it, or the
// contract's default.
func value(env map[string]envVar, name, def string) string {
	if v, ok := env[name]; ok {
		return v.value
	}
	return def
}

func (m *manifests) checkEnvironment(c *checker, env map[string]envVar, tg target) {
	for _, name := range slices.Sorted(maps.Keys(env)) {
		v := env[name]
		if strings.HasPrefix(name, "PUSH_") && !slices.Contains(contractVariables, name) {
			c.errorf("%s is not a variable of CONTRACT.md §7", name)
		}
		if slices.Contains(credentialVariables, name) && !v.fromSecret {
			c.errorf("%s is a credential and must come from a Secret", name)
		}
		if v.fromSecret {
			continue
		}
		var err error
		switch {
		case slices.Contains(durationVariables, name):
			_, err = time.ParseDuration(v.value)
		case slices.Contains(intVariables, name):
			_, err = strconv.Atoi(v.value)
		case slices.Contains(floatVariables, name):
			_, err = strconv.ParseFloat(v.value, 64)
		case slices.Contains(boolVariables, name):
			_, err = strconv.ParseBool(v.value)
		}
		if err != nil {
			c.errorf("%s=%q: %v", name, v.value, err)
		}
	}
	for _, cm := range m.configMaps {
		for k := range cm.Data {
			if !slices.Contains(contractVariables, k) {
				c.errorf("ConfigMap %s: key %s is not a variable of CONTRACT.md §7", cm.Name, k)
			}
		}
	}

	natsURL := value(env, "PUSH_NATS_URL", "")
	if natsURL == "" {
		c.errorf("PUSH_NATS_URL is empty: the worker would start an embedded NATS server in the pod")
	}
	for _, u := range strings.Split(natsURL, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil || (pu.Scheme != "nats" && pu.Scheme != "tls") || pu.Host == "" {
			c.errorf("PUSH_NATS_URL: %q is not a nats:// or tls:// URL", u)
		}
	}
	if b, _ := strconv.ParseBool(value(env, "PUSH_SANDBOX", "false")); b {
		c.errorf("PUSH_SANDBOX must not be set in a deployment")
	}
	if got := value(env, "PUSH_STREAM_REPLICAS", "1"); got != strconv.Itoa(tg.streamReplicas) {
		c.errorf("%s: PUSH_STREAM_REPLICAS=%s, want %d", tg.dir, got, tg.streamReplicas)
	}
	if got := value(env, "PUSH_LOG_FORMAT", "json"); got != "json" {
		c.errorf("PUSH_LOG_FORMAT=%s: logs in the cluster must be json", got)
	}
}

func (m *manifests) checkPod(c *checker, d *appsv1.Deployment, env map[string]envVar) {
	pod := &d.Spec.Template.Spec
	ctr := &pod.Containers[0]

	// Admin endpoint: reachable from the kubelet and Prometheus.
	host, port, err := net.SplitHostPort(value(env, "PUSH_ADMIN_ADDR", "127.0.0.1:8080"))
	if err != nil {
		c.errorf("PUSH_ADMIN_ADDR: %v", err)
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		c.errorf("PUSH_ADMIN_ADDR listens on %q: probes and Prometheus cannot reach it", host)
	}
	var adminPort *corev1.ContainerPort
	for i := range ctr.Ports {
		if strconv.Itoa(int(ctr.Ports[i].ContainerPort)) == port {
			adminPort = &ctr.Ports[i]
		}
	}
	if adminPort == nil {
		c.errorf("PUSH_ADMIN_ADDR port %s is not a container port", port)
		adminPort = &corev1.ContainerPort{}
	}

	probe := func(field string, p *corev1.Probe, wantPath string) {
		switch {
		case p == nil:
			c.errorf("%s missing", field)
		case p.HTTPGet == nil:
			c.errorf("%s: want an HTTP GET on %s", field, wantPath)
		default:
			if p.HTTPGet.Path != wantPath {
				c.errorf("%s: path %s, want %s", field, p.HTTPGet.Path, wantPath)
			}
			if !portIs(p.HTTPGet.Port, *adminPort) {
				c.errorf("%s: port %s is not the admin port %d", field, p.HTTPGet.Port.String(), adminPort.ContainerPort)
			}
		}
	}
	probe("livenessProbe", ctr.LivenessProbe, "/healthz")
	probe("readinessProbe", ctr.ReadinessProbe, "/readyz")
	if ctr.StartupProbe != nil {
		probe("startupProbe", ctr.StartupProbe, "/healthz")
	}

	// Graceful stop: the kubelet must not kill the worker before
	// PUSH_SHUTDOWN_TIMEOUT has passed.
	shutdown, err := time.ParseDuration(value(env, "PUSH_SHUTDOWN_TIMEOUT", "30s"))
	if err == nil {
		grace := 30 * time.Second // Kubernetes default
		if pod.TerminationGracePeriodSeconds != nil {
			grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		}
		if grace <= shutdown {
			c.errorf("terminationGracePeriodSeconds %v is not above PUSH_SHUTDOWN_TIMEOUT %v", grace, shutdown)
		}
	}

	// Non-root, read-only, no privileges.
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	csc := ctr.SecurityContext
	if csc == nil {
		csc = &corev1.SecurityContext{}
	}
	runAsNonRoot := firstBool(csc.RunAsNonRoot, psc.RunAsNonRoot)
	if runAsNonRoot == nil || !*runAsNonRoot {
		c.errorf("container %s: runAsNonRoot is not true", ctr.Name)
	}
	if uid := firstInt64(csc.RunAsUser, psc.RunAsUser); uid == nil || *uid == 0 {
		c.errorf("container %s: runAsUser must be set to a non-root uid (the image's 65532)", ctr.Name)
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		c.errorf("container %s: readOnlyRootFilesystem is not true", ctr.Name)
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		c.errorf("container %s: allowPrivilegeEscalation is not false", ctr.Name)
	}
	if csc.Privileged != nil && *csc.Privileged {
		c.errorf("container %s: privileged", ctr.Name)
	}
	if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") || len(csc.Capabilities.Add) > 0 {
		c.errorf("container %s: capabilities must drop ALL and add none", ctr.Name)
	}
	if sp := firstSeccomp(csc.SeccompProfile, psc.SeccompProfile); sp == nil || sp.Type == corev1.SeccompProfileTypeUnconfined {
		c.errorf("container %s: no seccomp profile", ctr.Name)
	}

	// Resources.
	req, lim := ctr.Resources.Requests, ctr.Resources.Limits
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := req[r]; !ok || q.Sign() <= 0 {
			c.errorf("container %s: no %s request", ctr.Name, r)
		}
	}
	memLim, ok := lim[corev1.ResourceMemory]
	if !ok || memLim.Sign() <= 0 {
		c.errorf("container %s: no memory limit", ctr.Name)
	} else if memReq := req[corev1.ResourceMemory]; memReq.Cmp(memLim) > 0 {
		c.errorf("container %s: memory request %s above limit %s", ctr.Name, memReq.String(), memLim.String())
	}

	if ctr.Image == "" {
		c.errorf("container %s: no image", ctr.Name)
	}
	if pod.ServiceAccountName != "" && !slices.ContainsFunc(m.serviceAccounts, func(sa corev1.ServiceAccount) bool { return sa.Name == pod.ServiceAccountName }) {
		c.errorf("ServiceAccount %s is not rendered", pod.ServiceAccountName)
	}
}

// checkSecrets checks the Secret volumes, PUSH_APPS_FILE and that every
// rendered credential is an obvious placeholder.
func (m *manifests) checkSecrets(c *checker, pod *corev1.PodSpec, ctr *corev1.Container, env map[string]envVar) {
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
		if v.Secret != nil {
			if s := m.secret(v.Secret.SecretName); s == nil && (v.Secret.Optional == nil || !*v.Secret.Optional) {
				c.errorf("volume %s: Secret %s is not rendered", v.Name, v.Secret.SecretName)
			}
		}
	}
	for _, vm := range ctr.VolumeMounts {
		v, ok := volumes[vm.Name]
		if !ok {
			c.errorf("volumeMount %s: no such volume", vm.Name)
			continue
		}
		if v.Secret != nil && !vm.ReadOnly {
			c.errorf("volumeMount %s: Secret mounted writable", vm.Name)
		}
	}

	if appsFile := value(env, "PUSH_APPS_FILE", ""); appsFile != "" {
		found := false
		for _, vm := range ctr.VolumeMounts {
			v := volumes[vm.Name]
			if v.Secret == nil || path.Dir(appsFile) != path.Clean(vm.MountPath) {
				continue
			}
			found = true
			if s := m.secret(v.Secret.SecretName); s != nil {
				if _, ok := s.Data[path.Base(appsFile)]; !ok {
					c.errorf("PUSH_APPS_FILE %s: Secret %s has no key %s", appsFile, s.Name, path.Base(appsFile))
				}
			}
		}
		if !found {
			c.errorf("PUSH_APPS_FILE %s is not in a mounted Secret", appsFile)
		}
	}

	for _, s := range m.secrets {
		for _, k := range slices.Sorted(maps.Keys(s.Data)) {
			v := string(s.Data[k])
			if strings.HasSuffix(k, ".json") {
				var doc any
				if err := json.Unmarshal(s.Data[k], &doc); err != nil {
					c.errorf("Secret %s key %s: %v", s.Name, k, err)
					continue
				}
				for _, str := range jsonStrings(doc) {
					if str != "" && !strings.Contains(str, "REPLACE_ME") {
						c.errorf("Secret %s key %s: %q is not a placeholder (REPLACE_ME...); real credentials never go into the repository", s.Name, k, str)
					}
				}
				continue
			}
			if !strings.Contains(v, "REPLACE_ME") {
				c.errorf("Secret %s key %s is not a placeholder (REPLACE_ME...); real credentials never go into the repository", s.Name, k)
			}
		}
		for k := range s.StringData {
			c.errorf("Secret %s: stringData key %s; use the secretGenerator", s.Name, k)
		}
	}
}

// checkSelectors checks that the Service and the PodDisruptionBudget select
// the worker's pods and that the Service targets the admin port.
func (m *manifests) checkSelectors(c *checker, d *appsv1.Deployment) {
	podLabels := d.Spec.Template.Labels
	if d.Spec.Selector == nil || !subset(d.Spec.Selector.MatchLabels, podLabels) || len(d.Spec.Selector.MatchExpressions) > 0 {
		c.errorf("Deployment %s: selector does not match its pod labels", d.Name)
	}
	if len(m.services) != 1 {
		c.errorf("want 1 Service, got %d", len(m.services))
	}
	for _, s := range m.services {
		if len(s.Spec.Selector) == 0 || !subset(s.Spec.Selector, podLabels) {
			c.errorf("Service %s does not select the worker pods", s.Name)
		}
		for _, p := range s.Spec.Ports {
			if !slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].Ports, func(cp corev1.ContainerPort) bool { return portIs(p.TargetPort, cp) }) {
				c.errorf("Service %s port %s: targetPort %s is not a container port", s.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	if len(m.pdbs) != 1 {
		c.errorf("want 1 PodDisruptionBudget, got %d", len(m.pdbs))
	}
	for _, p := range m.pdbs {
		if p.Spec.Selector == nil || len(p.Spec.Selector.MatchLabels) == 0 || !subset(p.Spec.Selector.MatchLabels, podLabels) {
			c.errorf("PodDisruptionBudget %s does not select the worker pods", p.Name)
		}
		if p.Spec.MinAvailable == nil && p.Spec.MaxUnavailable == nil {
			c.errorf("PodDisruptionBudget %s sets neither minAvailable nor maxUnavailable", p.Name)
		}
	}
}

func (m *manifests) checkNamespace(c *checker, tg target) {
	for _, md := range m.namespaced {
		if md.Namespace != tg.namespace {
			c.errorf("%s: object %s in namespace %q, want %q", tg.dir, md.Name, md.Namespace, tg.namespace)
		}
	}
	if tg.namespace != "" && !slices.ContainsFunc(m.namespaces, func(n corev1.Namespace) bool { return n.Name == tg.namespace }) {
		c.errorf("%s: Namespace %s is not rendered", tg.dir, tg.namespace)
	}
}

func (m *manifests) checkScaledObject(c *checker, d *appsv1.Deployment, env map[string]envVar, tg target) {
	if len(m.scaledObjects) != 1 {
		c.errorf("want 1 ScaledObject, got %d", len(m.scaledObjects))
		return
	}
	so := &m.scaledObjects[0]
	ref := so.Spec.ScaleTargetRef
	if ref.Name != d.Name || (ref.Kind != "" && ref.Kind != "Deployment") || (ref.APIVersion != "" && ref.APIVersion != "apps/v1") {
		c.errorf("ScaledObject %s: scaleTargetRef %s %s/%s is not Deployment %s", so.Metadata.Name, ref.APIVersion, ref.Kind, ref.Name, d.Name)
	}
	if d.Spec.Replicas != nil {
		c.errorf("Deployment %s sets replicas, which the ScaledObject owns: every apply would reset the scale", d.Name)
	}
	minR, maxR := int32(0), int32(100) // KEDA defaults
	if so.Spec.MinReplicaCount != nil {
		minR = *so.Spec.MinReplicaCount
	}
	if so.Spec.MaxReplicaCount != nil {
		maxR = *so.Spec.MaxReplicaCount
	}
	if minR < tg.minReplicas || minR < 1 {
		c.errorf("%s: ScaledObject minReplicaCount %d, want at least %d (the worker also serves the request/reply API and polls notify stats)", tg.dir, minR, max(tg.minReplicas, 1))
	}
	if so.Spec.MaxReplicaCount == nil {
		c.errorf("ScaledObject %s: set maxReplicaCount from the upstream budget", so.Metadata.Name)
	}
	if fb := so.Spec.Fallback; fb != nil && (fb.Replicas < minR || fb.Replicas > maxR) {
		c.errorf("ScaledObject %s: fallback replicas %d outside [%d, %d]", so.Metadata.Name, fb.Replicas, minR, maxR)
	}

	stream := value(env, "PUSH_STREAM_PREFIX", "PUSH") + "_JOBS"
	var consumers []string
	for i, tr := range so.Spec.Triggers {
		where := fmt.Sprintf("ScaledObject %s trigger %d", so.Metadata.Name, i)
		if tr.Type != "nats-jetstream" {
			c.errorf("%s: type %s, want nats-jetstream", where, tr.Type)
			continue
		}
		md := tr.Metadata
		for _, k := range slices.Sorted(maps.Keys(md)) {
			if !slices.Contains([]string{"natsServerMonitoringEndpoint", "account", "accountID", "stream", "consumer", "lagThreshold", "activationLagThreshold", "useHttps"}, k) {
				c.errorf("%s: metadata %s is not a nats-jetstream scaler parameter", where, k)
			}
		}
		if md["stream"] != stream {
			c.errorf("%s: stream %q, want %q", where, md["stream"], stream)
		}
		if md["account"] == "" && md["accountID"] == "" {
			c.errorf("%s: no account", where)
		}
		if h, p, err := net.SplitHostPort(md["natsServerMonitoringEndpoint"]); err != nil || p != "8222" {
			c.errorf("%s: natsServerMonitoringEndpoint %q is not host:8222 (the NATS monitoring port)", where, md["natsServerMonitoringEndpoint"])
		} else if !sameNATS(h, value(env, "PUSH_NATS_URL", "")) {
			c.errorf("%s: natsServerMonitoringEndpoint %s is not the NATS that PUSH_NATS_URL names", where, h)
		}
		if n, err := strconv.ParseInt(md["lagThreshold"], 10, 64); err != nil || n <= 0 {
			c.errorf("%s: lagThreshold %q is not a positive integer", where, md["lagThreshold"])
		}
		if s, ok := md["activationLagThreshold"]; ok {
			if n, err := strconv.ParseInt(s, 10, 64); err != nil || n < 0 {
				c.errorf("%s: activationLagThreshold %q is not a non-negative integer", where, s)
			}
		}
		if s, ok := md["useHttps"]; ok {
			if _, err := strconv.ParseBool(s); err != nil {
				c.errorf("%s: useHttps %q is not a boolean", where, s)
			}
		}
		if slices.Contains(consumers, md["consumer"]) {
			c.errorf("%s: consumer %s has two triggers", where, md["consumer"])
		}
		consumers = append(consumers, md["consumer"])
	}
	for _, want := range jobConsumers {
		if !slices.Contains(consumers, want) {
			c.errorf("ScaledObject %s: no trigger for consumer %s", so.Metadata.Name, want)
		}
	}
	for _, got := range consumers {
		if !slices.Contains(jobConsumers, got) {
			c.errorf("ScaledObject %s: trigger for unknown consumer %q", so.Metadata.Name, got)
		}
	}
}

func (m *manifests) checkServiceMonitor(c *checker) {
	if len(m.serviceMonitors) != 1 || len(m.services) != 1 {
		c.errorf("want 1 ServiceMonitor and 1 Service, got %d and %d", len(m.serviceMonitors), len(m.services))
		return
	}
	sm, svc := &m.serviceMonitors[0], &m.services[0]
	if len(sm.Spec.Selector.MatchLabels) == 0 || !subset(sm.Spec.Selector.MatchLabels, svc.Labels) {
		c.errorf("ServiceMonitor %s does not select Service %s", sm.Name, svc.Name)
	}
	if len(sm.Spec.Endpoints) == 0 {
		c.errorf("ServiceMonitor %s has no endpoints", sm.Name)
	}
	for _, ep := range sm.Spec.Endpoints {
		if ep.Port == "" || !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
			c.errorf("ServiceMonitor %s: endpoint port is not a named port of Service %s", sm.Name, svc.Name)
		}
		if ep.Path != "" && ep.Path != "/metrics" {
			c.errorf("ServiceMonitor %s: path %s, want /metrics", sm.Name, ep.Path)
		}
	}
}

func (m *manifests) configMap(name string) *corev1.ConfigMap {
	for i := range m.configMaps {
		if m.configMaps[i].Name == name {
			return &m.configMaps[i]
		}
	}
	return nil
}

func (m *manifests) secret(name string) *corev1.Secret {
	for i := range m.secrets {
		if m.secrets[i].Name == name {
			return &m.secrets[i]
		}
	}
	return nil
}

// sameNATS reports whether the monitoring host belongs to the NATS
// installation of the first PUSH_NATS_URL: for in-cluster service names
// ("nats.nats.svc.cluster.local") the same service or its "-headless" twin
// in the same namespace; other hosts must be equal.
func sameNATS(monitorHost, natsURLs string) bool {
	u, err := url.Parse(strings.TrimSpace(strings.Split(natsURLs, ",")[0]))
	if err != nil {
		return false
	}
	clientHost := u.Hostname()
	if monitorHost == clientHost {
		return true
	}
	cSvc, cRest, ok1 := strings.Cut(clientHost, ".")
	mSvc, mRest, ok2 := strings.Cut(monitorHost, ".")
	return ok1 && ok2 && cRest == mRest && strings.Contains(cRest, ".svc") && mSvc == cSvc+"-headless"
}

// portIs reports whether an int-or-string port reference names p.
func portIs(ref intstr.IntOrString, p corev1.ContainerPort) bool {
	if ref.Type == intstr.String {
		return ref.StrVal != "" && ref.StrVal == p.Name
	}
	return ref.IntVal == p.ContainerPort
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func firstBool(vs ...*bool) *bool {
	for _, v := range vs {
		if v != nil {
			return v
		}
	}
	return nil
}

func firstInt64(vs ...*int64) *int64 {
	for _, v := range vs {
		if v != nil {
			return v
		}
	}
	return nil
}

func firstSeccomp(vs ...*corev1.SeccompProfile) *corev1.SeccompProfile {
	for _, v := range vs {
		if v != nil {
			return v
		}
	}
	return nil
}

// jsonStrings returns every string value in a decoded JSON document.
func jsonStrings(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, jsonStrings(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, e := range x {
			out = append(out, jsonStrings(e)...)
		}
		return out
	}
	return nil
}
