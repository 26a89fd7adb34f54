package deploy

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
)

// alertSeverities are the severity labels the alerts may carry (what Alertmanager routes on).
var alertSeverities = []string{"critical", "warning", "info"}

// checkPrometheusRules checks every rule: its expression parses and names only metrics
// and labels the worker exports, an alert says how bad it is (severity), what happened
// and what to do (summary, description), and waits before firing (for).
func (m *manifests) checkPrometheusRules(c *checker, metrics map[string][]string) {
	if len(m.prometheusRules) != 1 {
		c.errorf("want 1 PrometheusRule, got %d", len(m.prometheusRules))
	}
	alerts := map[string]bool{}
	for _, pr := range m.prometheusRules {
		groups := map[string]bool{}
		if len(pr.Spec.Groups) == 0 {
			c.errorf("PrometheusRule %s has no groups", pr.Name)
		}
		for _, g := range pr.Spec.Groups {
			if g.Name == "" || groups[g.Name] {
				c.errorf("PrometheusRule %s: group name %q is empty or repeated", pr.Name, g.Name)
			}
			groups[g.Name] = true
			if len(g.Rules) == 0 {
				c.errorf("PrometheusRule %s group %s has no rules", pr.Name, g.Name)
			}
			for i, r := range g.Rules {
				where := fmt.Sprintf("PrometheusRule %s group %s rule %d %s%s", pr.Name, g.Name, i, r.Alert, r.Record)
				if (r.Alert == "") == (r.Record == "") {
					c.errorf("%s: set exactly one of alert and record", where)
					continue
				}
				if r.Expr.Type != intstr.String {
					c.errorf("%s: expr is not a string", where)
					continue
				}
				out, err := checkPromQL(r.Expr.StrVal, metrics)
				if err != nil {
					c.errorf("%s: expr: %v", where, err)
					continue
				}
				if r.Record != "" {
					continue
				}
				if alerts[r.Alert] {
					c.errorf("%s: alert name used twice", where)
				}
				alerts[r.Alert] = true
				if !slices.Contains(alertSeverities, r.Labels["severity"]) {
					c.errorf("%s: severity label %q, want one of %s", where, r.Labels["severity"], strings.Join(alertSeverities, ", "))
				}
				if r.For == nil {
					c.errorf("%s: no for: one bad evaluation would page", where)
				} else if d, err := model.ParseDuration(string(*r.For)); err != nil {
					c.errorf("%s: for %q: %v", where, *r.For, err)
				} else if time.Duration(d) < time.Minute {
					c.errorf("%s: for %s is under 1m: the alert would flap", where, d)
				}
				for _, a := range []string{"summary", "description"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						c.errorf("%s: no %s annotation", where, a)
					}
				}
				for _, k := range slices.Sorted(maps.Keys(r.Annotations)) {
					if err := checkAlertTemplate(r.Annotations[k], out); err != nil {
						c.errorf("%s: annotation %s: %v", where, k, err)
					}
				}
			}
		}
	}
}

// alertTemplateFuncs stand in for the functions Prometheus gives alert templates
// (prometheus/template), so that the templates parse and run as they will there.
var alertTemplateFuncs = func() template.FuncMap {
	str := func(v any) string { return fmt.Sprint(v) }
	fm := template.FuncMap{}
	for _, name := range []string{
		"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp",
		"title", "toUpper", "toLower", "safeHtml", "stripPort", "stripDomain", "pathPrefix",
		"externalURL", "graphLink", "tableLink", "urlQueryEscape", "toTime", "parseDuration",
	} {
		fm[name] = str
	}
	fm["reReplaceAll"] = func(pattern, repl, text string) string { return text }
	fm["match"] = func(pattern, text string) bool { return true }
	fm["args"] = func(args ...any) map[string]any { return map[string]any{} }
	for _, name := range []string{"query", "first", "label", "value", "strvalue", "sortByLabel"} {
		fm[name] = func(args ...any) (any, error) {
			return nil, fmt.Errorf("%s: queries in annotations are not checked; avoid them", name)
		}
	}
	return fm
}()

// checkAlertTemplate parses and runs an annotation the way Prometheus does, with $labels
// holding exactly the labels the alert's expression can have: a label the expression
// aggregates away is an error, where Prometheus would print "<no value>".
func checkAlertTemplate(text string, labels map[string]bool) error {
	const defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	t, err := template.New("annotation").Funcs(alertTemplateFuncs).Option("missingkey=error").Parse(defs + text)
	if err != nil {
		return err
	}
	data := struct {
		Labels, ExternalLabels map[string]string
		ExternalURL            string
		Value                  float64
	}{Labels: map[string]string{}, ExternalLabels: map[string]string{}, Value: 0.5}
	for l := range labels {
		data.Labels[l] = "x"
	}
	if err := t.Execute(io.Discard, data); err != nil {
		return fmt.Errorf("%w (the expression's result has %s)", err, labelList(labels))
	}
	return nil
}

// dashboard holds the parts of a Grafana dashboard the checks read.
type dashboard struct {
	UID           string           `json:"uid"`
	Title         string           `json:"title"`
	SchemaVersion int              `json:"schemaVersion"`
	Panels        []dashboardPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type dashboardPanel struct {
	ID         int                 `json:"id"`
	Type       string              `json:"type"`
	Title      string              `json:"title"`
	Datasource *panelDatasource    `json:"datasource"`
	GridPos    *struct{ W, H int } `json:"gridPos"`
	Panels     []dashboardPanel    `json:"panels"` // a row's
	Targets    []struct {
		RefID        string           `json:"refId"`
		Expr         string           `json:"expr"`
		LegendFormat string           `json:"legendFormat"`
		Datasource   *panelDatasource `json:"datasource"`
	} `json:"targets"`
}

type panelDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// grafanaVariable matches $name, ${name}, ${name:format} and [[name]].
var (
	grafanaVariable = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]`)
	legendLabel     = regexp.MustCompile(`\{\{\s*([^}\s]*)\s*\}\}`)
	labelValues     = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\s*\)$`)
)

// grafanaIntervals are Grafana's built-in interval variables, replaced by a duration
// before an expression is parsed.
var grafanaIntervals = []string{"__rate_interval", "__interval", "__range"}

// checkDashboards checks the dashboard ConfigMaps: labelled for the Grafana sidecar, valid
// JSON with a stable uid, every panel's query parses and names only metrics and labels the
// worker exports (Grafana variables substituted), and legends name labels the query has.
func (m *manifests) checkDashboards(c *checker, metrics map[string][]string) {
	if len(m.dashboards) != 1 {
		c.errorf("want 1 dashboard ConfigMap, got %d", len(m.dashboards))
	}
	for _, cm := range m.dashboards {
		if cm.Labels["grafana_dashboard"] != "1" {
			c.errorf("ConfigMap %s: label grafana_dashboard is %q; the Grafana sidecar looks for \"1\"", cm.Name, cm.Labels["grafana_dashboard"])
		}
		if len(cm.Data) == 0 {
			c.errorf("ConfigMap %s holds no dashboard", cm.Name)
		}
		for _, k := range slices.Sorted(maps.Keys(cm.Data)) {
			where := fmt.Sprintf("ConfigMap %s key %s", cm.Name, k)
			if !strings.HasSuffix(k, ".json") {
				c.errorf("%s: the sidecar writes keys as files; end it in .json", where)
			}
			checkDashboard(c, where, []byte(cm.Data[k]), metrics)
		}
	}
}

func checkDashboard(c *checker, where string, data []byte, metrics map[string][]string) {
	var doc map[string]any
	strictErrs, err := sigsjson.UnmarshalStrict(data, &doc, sigsjson.DisallowDuplicateFields)
	if err == nil && len(strictErrs) > 0 {
		err = strictErrs[0]
	}
	if err != nil {
		c.errorf("%s: not JSON: %v", where, err)
		return
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		c.errorf("%s: %v", where, err)
		return
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		c.errorf("%s: set uid (links and the sidecar's updates follow it), title and schemaVersion", where)
	}

	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		if vars[v.Name] {
			c.errorf("%s: variable %s defined twice", where, v.Name)
		}
		vars[v.Name] = true
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		var obj struct{ Query string }
		if json.Unmarshal(v.Query, &q) != nil {
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				c.errorf("%s: variable %s: query is neither a string nor {query: ...}", where, v.Name)
				continue
			}
			q = obj.Query
		}
		lv := labelValues.FindStringSubmatch(strings.TrimSpace(q))
		if lv == nil {
			c.errorf("%s: variable %s: query %q is not label_values(<selector>, <label>)", where, v.Name, q)
			continue
		}
		expr, err := substituteGrafana(lv[1], vars)
		if err == nil {
			var out map[string]bool
			if out, err = checkPromQL(expr, metrics); err == nil && !out[lv[2]] {
				err = fmt.Errorf("%s has no label %q", lv[1], lv[2])
			}
		}
		if err != nil {
			c.errorf("%s: variable %s: %v", where, v.Name, err)
		}
	}

	ids := map[int]bool{}
	var walk func(ps []dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			pw := fmt.Sprintf("%s: panel %d %q", where, p.ID, p.Title)
			if p.ID == 0 || ids[p.ID] {
				c.errorf("%s: id missing or repeated", pw)
			}
			ids[p.ID] = true
			if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 {
				c.errorf("%s: no gridPos", pw)
			}
			walk(p.Panels)
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				c.errorf("%s: datasource must be the ${datasource} variable", pw)
			}
			if len(p.Targets) == 0 {
				c.errorf("%s: no queries", pw)
			}
			for _, t := range p.Targets {
				tw := fmt.Sprintf("%s query %s", pw, t.RefID)
				if t.Datasource != nil && t.Datasource.UID != "${datasource}" {
					c.errorf("%s: datasource must be the ${datasource} variable", tw)
				}
				expr, err := substituteGrafana(t.Expr, vars)
				if err != nil {
					c.errorf("%s: %v", tw, err)
					continue
				}
				out, err := checkPromQL(expr, metrics)
				if err != nil {
					c.errorf("%s: %v", tw, err)
					continue
				}
				for _, l := range legendLabel.FindAllStringSubmatch(t.LegendFormat, -1) {
					if !out[l[1]] {
						c.errorf("%s: legend {{%s}}: the query's result has %s", tw, l[1], labelList(out))
					}
				}
			}
		}
	}
	walk(d.Panels)
	if len(ids) == 0 {
		c.errorf("%s: no panels", where)
	}
}

// substituteGrafana replaces Grafana's variables in a query as Grafana would before
// sending it: its interval variables by a duration, the dashboard's own by a value.
// A variable the dashboard does not define is an error.
func substituteGrafana(expr string, vars map[string]bool) (string, error) {
	var errs []string
	out := grafanaVariable.ReplaceAllStringFunc(expr, func(s string) string {
		sm := grafanaVariable.FindStringSubmatch(s)
		name := sm[1] + sm[2] + sm[3]
		switch {
		case slices.Contains(grafanaIntervals, name):
			return "5m"
		case vars[name]:
			return "x"
		}
		errs = append(errs, "$"+name)
		return s
	})
	if len(errs) > 0 {
		return "", fmt.Errorf("undefined Grafana variable %s", strings.Join(errs, ", "))
	}
	return out, nil
}

// TestExportedMetrics guards the metric list itself: it must hold the worker's metrics
// as series names, histograms expanded, with their labels.
func TestExportedMetrics(t *testing.T) {
	metrics, err := exported()
	if err != nil {
		t.Fatal(err)
	}
	for name, labels := range map[string][]string{
		"pushworker_jobs_total":                               {"type", "status", "namespace", "pod"},
		"pushworker_breaker_open":                             {"app", "upstream", "host", "kind"},
		"pushworker_upstream_request_duration_seconds_bucket": {"upstream", "path", "outcome", "le"},
		"pushworker_upstream_request_duration_seconds_count":  {"upstream", "path", "outcome"},
		"pushworker_limiter_wait_seconds_sum":                 {"class"},
		"pushworker_notify_stats_polls_total":                 {"outcome"},
		"go_goroutines":                                       {"namespace"},
		"go_gc_duration_seconds":                              {"quantile"},
		"process_cpu_seconds_total":                           {"pod"},
	} {
		got, ok := metrics[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		for _, l := range labels {
			if !slices.Contains(got, l) {
				t.Errorf("%s: no label %s in %v", name, l, got)
			}
		}
	}
	for _, name := range []string{"pushworker_upstream_request_duration_seconds", "pushworker_jobs_total_count"} {
		if _, ok := metrics[name]; ok {
			t.Errorf("%s listed: a histogram has only _bucket, _sum and _count series, a counter none of them", name)
		}
	}
	if _, ok := metrics["pushworker_jobs_pending_bucket"]; ok {
		t.Error("a gauge got histogram series")
	}
	if len(metrics) < 40 {
		t.Errorf("only %d series names", len(metrics))
	}
}

// TestCheckPromQL: the expression check must fail on what would silently select nothing.
func TestCheckPromQL(t *testing.T) {
	metrics, err := exported()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		expr string
		want string // in the error; "" means valid
	}{
		{expr: `sum by (namespace, type) (rate(pushworker_jobs_total{status="failed"}[5m]))`},
		{expr: `histogram_quantile(0.99, sum by (le, path) (rate(pushworker_upstream_request_duration_seconds_bucket[5m])))`},
		{expr: `max by (type) (pushworker_jobs_pending) unless on (type) sum by (type) (pushworker_dlq_messages)`},
		{expr: `absent(pushworker_replicas)`},
		{expr: `{__name__="pushworker_jobs_in_flight"}`},

		{expr: `sum(rate(pushworker_jobs_total[5m])`, want: "does not parse"},
		{expr: `rate(pushworker_jobs_total)`, want: "does not parse"},
		{expr: `pushworker_jobs_totals`, want: "pushworker_jobs_totals is not a metric the worker exports"},
		{expr: `rate(pushworker_upstream_request_duration_seconds[5m])`, want: "pushworker_upstream_request_duration_seconds is not a metric"},
		{expr: `up == 0`, want: "up is not a metric the worker exports"},
		{expr: `{__name__=~"pushworker_.*"}`, want: "by a pattern"},
		{expr: `pushworker_jobs_total{statuss="failed"}`, want: `has no label "statuss"`},
		{expr: `sum by (typ) (pushworker_jobs_pending)`, want: `has no label "typ"`},
		{expr: `sum by (namespace) (pushworker_jobs_pending) and on (type) pushworker_dlq_messages`, want: `has no label "type"`},
		{expr: `histogram_quantile(0.5, sum by (class) (rate(pushworker_limiter_wait_seconds_bucket[5m]))) and on (le) pushworker_replicas`, want: `has no label "le"`},
	}
	for _, tc := range tests {
		_, err := checkPromQL(tc.expr, metrics)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.expr, err)
		case tc.want != "" && err == nil:
			t.Errorf("%s: no error; want one containing %q", tc.expr, tc.want)
		case tc.want != "" && !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s: error %q does not contain %q", tc.expr, err, tc.want)
		}
	}
}

// TestAlertTemplates: annotations run as Prometheus runs them, with the labels of the
// alert's result.
func TestAlertTemplates(t *testing.T) {
	labels := map[string]bool{"namespace": true, "type": true}
	for text, want := range map[string]string{
		`{{ $labels.type }} in {{ $labels.namespace }}: {{ $value | humanizePercentage }}`: "",
		`{{ $labels.app }} is paused`:         `map has no entry for key "app"`,
		`{{ $labels.type | humanise }}`:       `function "humanise" not defined`,
		`{{ if $labels.type }}unclosed`:       "unexpected EOF",
		`{{ query "up" | first | value }} up`: "queries in annotations are not checked",
	} {
		err := checkAlertTemplate(text, labels)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", text, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: error %v, want one containing %q", text, err, want)
		}
	}
}
