package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
)

// row is one line of the result table.
type row struct {
	Scenario string  `json:"scenario"`
	Metric   string  `json:"metric"`
	Value    string  `json:"value"`
	Num      float64 `json:"num"`            // Value as a number (NaN-free; 0 when not numeric)
	Unit     string  `json:"unit,omitempty"` // of Num
	Target   string  `json:"target,omitempty"`
	Ceiling  string  `json:"ceiling,omitempty"` // the machine's ceiling and the ratio to it
	Verdict  string  `json:"verdict,omitempty"` // "ok", "MISS" or "" (no target)
}

func (b *bench) add(r row) {
	if math.IsNaN(r.Num) || math.IsInf(r.Num, 0) {
		r.Num = 0
	}
	b.rows = append(b.rows, r)
	logf("%s | %s = %s %s", r.Scenario, r.Metric, r.Value, r.Verdict)
}

// verdict is "ok" when pass, else "MISS".
func verdict(pass bool) string {
	if pass {
		return "ok"
	}
	return "MISS"
}

// report is the machine-readable output (--json).
type report struct {
	Command  string    `json:"command"`
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	Machine  machine   `json:"machine"`
	Rows     []row     `json:"rows"`
	Errors   []string  `json:"errors,omitempty"`
	Notes    []string  `json:"notes,omitempty"`
}

type machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Go     string `json:"go"`
	Commit string `json:"commit"`
}

func (b *bench) printJSON(w io.Writer) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(report{
		Command: b.command, Started: b.started, Duration: time.Since(b.started).Round(time.Second).String(),
		Machine: b.machine, Rows: b.rows, Errors: b.errors, Notes: b.notes,
	})
}

func (b *bench) printTable(w io.Writer) {
	fmt.Fprintf(w, "\npushbench — %s, %d cores, %s, commit %s; %s; run took %s\n\n",
		b.machine.CPU, b.machine.Cores, b.machine.Go, b.machine.Commit, b.command, time.Since(b.started).Round(time.Second))
	cols := []string{"scenario", "metric", "value", "target", "", "ceiling / ratio"}
	cells := [][]string{cols}
	for _, r := range b.rows {
		cells = append(cells, []string{r.Scenario, r.Metric, r.Value, r.Target, r.Verdict, r.Ceiling})
	}
	width := make([]int, len(cols))
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], len([]rune(s)))
		}
	}
	line := func(c []string) {
		var sb strings.Builder
		sb.WriteString("|")
		for i, s := range c {
			sb.WriteString(" " + s + strings.Repeat(" ", width[i]-len([]rune(s))) + " |")
		}
		fmt.Fprintln(w, sb.String())
	}
	line(cells[0])
	sep := make([]string, len(cols))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, c := range cells[1:] {
		line(c)
	}
	for _, n := range b.notes {
		fmt.Fprintln(w, "\nNOTE:", n)
	}
	for _, e := range b.errors {
		fmt.Fprintln(w, "\nERROR:", e)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05")+" "+format+"\n", args...)
}

// Formatting helpers.

func fmtRate(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1fk/s", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2fk/s", v/1000)
	default:
		return fmt.Sprintf("%.0f/s", v)
	}
}

func fmtMiB(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
}

func pct(a, b float64) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*a/b)
}
