package deploy

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/pushworker/pushworker/service"
)

// targetLabels are the labels Prometheus adds to every series it scrapes through the
// ServiceMonitor (Kubernetes endpoints discovery).
var targetLabels = []string{"namespace", "pod", "service", "endpoint", "container", "instance", "job"}

// exported returns the series the worker's /metrics can serve, each with the names of its
// labels: what service.RegisterMetrics registers, so that the list cannot drift from the
// code. Vectors count without any series (a CounterVec shows nothing until its first
// use); histograms are their _bucket, _sum and _count series, summaries their quantiles,
// _sum and _count.
var exported = sync.OnceValues(func() (map[string][]string, error) {
	rec := &recordingRegisterer{Registerer: prometheus.NewRegistry()}
	service.RegisterMetrics(rec)
	if len(rec.collectors) == 0 {
		return nil, errors.New("service.RegisterMetrics registered nothing")
	}
	out := map[string][]string{}
	var errs []error
	for _, c := range rec.collectors {
		kinds, err := seriesKinds(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, d := range describe(c) {
			name, lbls, err := parseDesc(d)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			kind, ok := kinds[name]
			if !ok {
				errs = append(errs, fmt.Errorf("%s (%T): cannot tell its type: it is not a vector and collects no sample", name, c))
				continue
			}
			lbls = append(lbls, targetLabels...)
			switch kind {
			case dto.MetricType_HISTOGRAM:
				out[name+"_bucket"] = append(slices.Clone(lbls), "le")
				out[name+"_sum"] = lbls
				out[name+"_count"] = lbls
			case dto.MetricType_SUMMARY:
				out[name] = append(slices.Clone(lbls), "quantile")
				out[name+"_sum"] = lbls
				out[name+"_count"] = lbls
			default:
				out[name] = lbls
			}
		}
	}
	return out, errors.Join(errs...)
})

// recordingRegisterer registers with a real registry, which still rejects duplicate or
// inconsistent collectors, and keeps the collectors to look at their types.
type recordingRegisterer struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// seriesKinds returns the metric type of each metric name c describes: from the vector's
// Go type, or else from the samples c collects now (the Go runtime and process collectors,
// plain gauges and counters always have them).
func seriesKinds(c prometheus.Collector) (map[string]dto.MetricType, error) {
	var vec *dto.MetricType
	switch c.(type) {
	case *prometheus.CounterVec:
		vec = dto.MetricType_COUNTER.Enum()
	case *prometheus.GaugeVec:
		vec = dto.MetricType_GAUGE.Enum()
	case *prometheus.HistogramVec:
		vec = dto.MetricType_HISTOGRAM.Enum()
	case *prometheus.SummaryVec:
		vec = dto.MetricType_SUMMARY.Enum()
	}
	out := map[string]dto.MetricType{}
	if vec != nil {
		for _, d := range describe(c) {
			name, _, err := parseDesc(d)
			if err != nil {
				return nil, err
			}
			out[name] = *vec
		}
		return out, nil
	}
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	var errs []error
	for m := range ch {
		name, _, err := parseDesc(m.Desc())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		switch {
		case pb.Histogram != nil:
			out[name] = dto.MetricType_HISTOGRAM
		case pb.Summary != nil:
			out[name] = dto.MetricType_SUMMARY
		case pb.Counter != nil:
			out[name] = dto.MetricType_COUNTER
		case pb.Gauge != nil:
			out[name] = dto.MetricType_GAUGE
		default:
			out[name] = dto.MetricType_UNTYPED
		}
	}
	return out, errors.Join(errs...)
}

func describe(c prometheus.Collector) []*prometheus.Desc {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	var out []*prometheus.Desc
	for d := range ch {
		out = append(out, d)
	}
	return out
}

// descFormat matches Desc.String() of client_golang, which has no getter for the name.
var (
	descFormat = regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*"), help: "(?:[^"\\]|\\.)*", unit: "(?:[^"\\]|\\.)*", constLabels: \{(.*)\}, variableLabels: \{(.*)\}\}$`)
	constLabel = regexp.MustCompile(`(?:^|,)([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
)

// parseDesc returns the metric name and label names of d.
func parseDesc(d *prometheus.Desc) (string, []string, error) {
	if err := d.Err(); err != nil {
		return "", nil, fmt.Errorf("invalid metric description %s: %w", d, err)
	}
	m := descFormat.FindStringSubmatch(d.String())
	if m == nil {
		return "", nil, fmt.Errorf("cannot read %s: has client_golang changed Desc.String?", d)
	}
	name, err := strconv.Unquote(m[1])
	if err != nil || !metricName.MatchString(name) {
		return "", nil, fmt.Errorf("cannot read the metric name of %s", d)
	}
	var lbls []string
	for _, cl := range constLabel.FindAllStringSubmatch(m[2], -1) {
		lbls = append(lbls, cl[1])
	}
	if m[3] != "" {
		for _, vl := range strings.Split(m[3], ",") {
			vl = strings.TrimSuffix(strings.TrimPrefix(vl, "c("), ")") // c(name): constrained
			if !labelName.MatchString(vl) {
				return "", nil, fmt.Errorf("cannot read the label %q of %s", vl, d)
			}
			lbls = append(lbls, vl)
		}
	}
	return name, lbls, nil
}

// promQL is the parser Prometheus itself uses for rule expressions and queries.
var promQL = parser.NewParser(parser.Options{})

// checkPromQL parses expr and checks that every selector names a metric of metrics (with
// its name, not a pattern) and only labels it has, and that grouping and matching clauses
// name labels their operands can have. It returns the labels the result can have, for the
// checks of templates that use them ({{ $labels.x }}, {{x}}).
func checkPromQL(expr string, metrics map[string][]string) (map[string]bool, error) {
	e, err := promQL.ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("does not parse: %w", err)
	}
	var errs []error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			name, err := selectorName(n)
			if err != nil {
				errs = append(errs, err)
				return nil
			}
			lbls, ok := metrics[name]
			if !ok {
				errs = append(errs, fmt.Errorf("%s is not a metric the worker exports", name))
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name != labels.MetricName && !slices.Contains(lbls, m.Name) {
					errs = append(errs, fmt.Errorf("%s has no label %q (it has %s)", name, m.Name, strings.Join(lbls, ", ")))
				}
			}
		}
		return nil
	})
	if len(errs) > 0 { // the clauses below would only repeat them
		return nil, errors.Join(errs...)
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.AggregateExpr:
			have := outputLabels(n.Expr, metrics)
			for _, l := range n.Grouping {
				if !have[l] {
					errs = append(errs, fmt.Errorf("%s: %s (%s) has no label %q", n.Op, n.Expr, labelList(have), l))
				}
			}
		case *parser.BinaryExpr:
			vm := n.VectorMatching
			if vm == nil || n.LHS.Type() != parser.ValueTypeVector || n.RHS.Type() != parser.ValueTypeVector {
				return nil
			}
			lhs, rhs := outputLabels(n.LHS, metrics), outputLabels(n.RHS, metrics)
			for _, l := range vm.MatchingLabels {
				switch {
				case vm.On && !lhs[l]:
					errs = append(errs, fmt.Errorf("%s on(%s): %s has no label %q", n.Op, l, n.LHS, l))
				case vm.On && !rhs[l]:
					errs = append(errs, fmt.Errorf("%s on(%s): %s has no label %q", n.Op, l, n.RHS, l))
				case !vm.On && !lhs[l] && !rhs[l]:
					errs = append(errs, fmt.Errorf("%s ignoring(%s): neither side has label %q", n.Op, l, l))
				}
			}
			one := rhs
			if vm.Card == parser.CardOneToMany {
				one = lhs
			}
			for _, l := range vm.Include {
				if !one[l] {
					errs = append(errs, fmt.Errorf("%s group_left/group_right(%s): the side with one match has no label %q", n.Op, l, l))
				}
			}
		}
		return nil
	})
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return outputLabels(e, metrics), nil
}

// selectorName returns the metric name a selector selects.
func selectorName(vs *parser.VectorSelector) (string, error) {
	if vs.Name != "" {
		return vs.Name, nil
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName {
			if m.Type != labels.MatchEqual {
				return "", fmt.Errorf("%s selects metric names by a pattern; name each metric", vs)
			}
			return m.Value, nil
		}
	}
	return "", fmt.Errorf("%s selects no metric name", vs)
}

// outputLabels returns the labels the series of e can have (a superset where PromQL
// decides at run time).
func outputLabels(e parser.Expr, metrics map[string][]string) map[string]bool {
	set := func(ls ...string) map[string]bool {
		out := map[string]bool{}
		for _, l := range ls {
			out[l] = true
		}
		return out
	}
	switch e := e.(type) {
	case *parser.VectorSelector:
		name, _ := selectorName(e)
		return set(metrics[name]...)
	case *parser.MatrixSelector:
		return outputLabels(e.VectorSelector, metrics)
	case *parser.SubqueryExpr:
		return outputLabels(e.Expr, metrics)
	case *parser.ParenExpr:
		return outputLabels(e.Expr, metrics)
	case *parser.UnaryExpr:
		return outputLabels(e.Expr, metrics)
	case *parser.StepInvariantExpr:
		return outputLabels(e.Expr, metrics)
	case *parser.AggregateExpr:
		in := outputLabels(e.Expr, metrics)
		var out map[string]bool
		switch {
		case e.Op == parser.TOPK || e.Op == parser.BOTTOMK || e.Op == parser.LIMITK || e.Op == parser.LIMIT_RATIO:
			out = in
		case e.Without:
			out = maps.Clone(in)
			for _, l := range e.Grouping {
				delete(out, l)
			}
		default:
			out = map[string]bool{}
			for _, l := range e.Grouping {
				if in[l] {
					out[l] = true
				}
			}
		}
		if s, ok := e.Param.(*parser.StringLiteral); ok && e.Op == parser.COUNT_VALUES {
			out[s.Val] = true
		}
		return out
	case *parser.Call:
		switch e.Func.Name {
		case "label_replace", "label_join":
			out := outputLabels(e.Args[0], metrics)
			if s, ok := e.Args[1].(*parser.StringLiteral); ok {
				out[s.Val] = true
			}
			return out
		case "histogram_quantile", "histogram_fraction":
			out := outputLabels(e.Args[len(e.Args)-1], metrics)
			delete(out, "le")
			return out
		case "absent", "absent_over_time":
			out := map[string]bool{}
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					for _, m := range vs.LabelMatchers {
						if m.Type == labels.MatchEqual && m.Name != labels.MetricName {
							out[m.Name] = true
						}
					}
				}
				return nil
			})
			return out
		}
		out := map[string]bool{}
		for _, a := range e.Args {
			if t := a.Type(); t == parser.ValueTypeVector || t == parser.ValueTypeMatrix {
				maps.Copy(out, outputLabels(a, metrics))
			}
		}
		return out
	case *parser.BinaryExpr:
		lt, rt := e.LHS.Type(), e.RHS.Type()
		lhs, rhs := outputLabels(e.LHS, metrics), outputLabels(e.RHS, metrics)
		switch {
		case lt != parser.ValueTypeVector:
			return rhs
		case rt != parser.ValueTypeVector:
			return lhs
		case e.Op == parser.LOR:
			maps.Copy(lhs, rhs)
			return lhs
		case e.Op == parser.LAND || e.Op == parser.LUNLESS:
			return lhs
		}
		out := lhs
		if e.VectorMatching != nil && e.VectorMatching.Card == parser.CardOneToMany {
			out = rhs
		}
		if e.VectorMatching != nil {
			for _, l := range e.VectorMatching.Include {
				out[l] = true
			}
		}
		return out
	}
	return map[string]bool{}
}

func labelList(m map[string]bool) string {
	if len(m) == 0 {
		return "no labels"
	}
	return "labels " + strings.Join(slices.Sorted(maps.Keys(m)), ", ")
}
