package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/pushworker/pushworker/broker"
	"github.com/pushworker/pushworker/jobs"
)

// maxListedErrors is how many failed publishes and bad lines the summary lists.
const maxListedErrors = 5

// lineError is a failed publish or a bad line of an NDJSON file.
type lineError struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// fileSummary is the outcome of "send --file".
type fileSummary struct {
	File        string      `json:"file"`
	Lines       int         `json:"lines"` // non-blank lines read
	Accepted    int64       `json:"accepted"`
	Duplicate   int64       `json:"duplicate"`
	Failed      int64       `json:"failed"`
	BadLines    int         `json:"bad_lines"`
	Unconfirmed int64       `json:"unconfirmed,omitempty"` // published, no ack when interrupted
	FailedList  []lineError `json:"failed_errors,omitempty"`
	BadList     []lineError `json:"bad_line_errors,omitempty"`
	Seconds     float64     `json:"seconds"`
	Interrupted bool        `json:"interrupted,omitempty"`
}

// filePublisher counts the outcomes of asynchronous publishes. Its handlers run on the
// JetStream context's ack goroutine.
type filePublisher struct {
	mu         sync.Mutex
	lines      map[*nats.Msg]int // line number of each publish awaiting its ack
	failedList []lineError

	accepted, duplicate, failed atomic.Int64
}

func (p *filePublisher) track(m *nats.Msg, line int) {
	p.mu.Lock()
	p.lines[m] = line
	p.mu.Unlock()
}

func (p *filePublisher) onAck(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) {
	p.mu.Lock()
	delete(p.lines, m)
	p.mu.Unlock()
	if ack.Duplicate {
		p.duplicate.Add(1)
	} else {
		p.accepted.Add(1)
	}
}

func (p *filePublisher) onErr(_ jetstream.JetStream, m *nats.Msg, err error) {
	p.mu.Lock()
	line := p.lines[m]
	delete(p.lines, m)
	p.mu.Unlock()
	p.fail(line, err)
}

func (p *filePublisher) fail(line int, err error) {
	p.failed.Add(1)
	p.mu.Lock()
	if len(p.failedList) < maxListedErrors {
		p.failedList = append(p.failedList, lineError{Line: line, Error: err.Error()})
	}
	p.mu.Unlock()
}

// sendFile publishes one job per line of an NDJSON file, asynchronously with at most
// --max-pending publishes awaiting their ack.
func (a *app) sendFile(ctx context.Context, o *sendOpts) int {
	if o.typ != "" && !isJobType(o.typ) && !o.noValidate {
		return a.usageErr("--type %q: want one of %s", o.typ, typeList())
	}
	if o.maxPending < 1 {
		return a.usageErr("--max-pending must be at least 1")
	}
	if o.payload != "" || o.payloadFile != "" || o.requestID != "" || o.wait.on {
		return a.usageErr("--payload, --payload-file, --request-id and --wait do not apply to send --file")
	}
	var in io.Reader
	name := o.file
	if o.file == "-" {
		in, name = os.Stdin, "stdin"
	} else {
		f, err := os.Open(o.file)
		if err != nil {
			return a.fail(err)
		}
		defer f.Close()
		in = f
	}

	pub := &filePublisher{lines: make(map[*nats.Msg]int, o.maxPending)}
	sess, err := a.connect(
		jetstream.WithPublishAsyncMaxPending(o.maxPending),
		jetstream.WithPublishAsyncAckHandler(pub.onAck),
		jetstream.WithPublishAsyncErrHandler(pub.onErr),
		jetstream.WithPublishAsyncTimeout(time.Minute),
	)
	if err != nil {
		return a.fail(err)
	}
	defer sess.Close()
	// A missing stream would make every publish wait for "no responders" retries.
	actx, cancel := apiContext(ctx)
	_, err = sess.js.Stream(actx, sess.names.JobsStream())
	cancel()
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return a.fail(sess.streamErr(sess.names.JobsStream(), err))
	} // other errors (e.g. no permission for stream info): let the publishes tell

	var bar *progressbar.ProgressBar
	if !o.quiet && isTerminal(a.stderr) {
		total := int64(-1)
		if f, ok := in.(*os.File); ok && f != os.Stdin {
			total = countLines(f)
		}
		bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(a.stderr),
			progressbar.OptionSetDescription("publishing"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("jobs"),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionClearOnFinish(),
		)
	}

	sum := fileSummary{File: name}
	var bad atomic.Int64
	stopBar := a.runBar(bar, func() int64 { return pub.accepted.Load() + pub.duplicate.Load() + pub.failed.Load() + bad.Load() })
	start := time.Now()
	validate := !o.noValidate
	var published, syncFailed int64
	batches, wait := prepareLines(ctx, in, func(line []byte) preparedLine {
		var p preparedLine
		p.subject, p.data, p.id, p.skip, p.err = prepareLine(line, o.typ, sess.names, validate)
		return p
	})
	for b := range batches {
		<-b.done
		if ctx.Err() != nil {
			sum.Interrupted = true
			break
		}
		for i := range b.out {
			p, lineNo := &b.out[i], b.first+i
			switch {
			case p.skip:
			case p.err != nil:
				sum.Lines++
				sum.BadLines++
				bad.Add(1)
				if len(sum.BadList) < maxListedErrors {
					sum.BadList = append(sum.BadList, lineError{Line: lineNo, Error: p.err.Error()})
				}
			default:
				sum.Lines++
				m := &nats.Msg{Subject: p.subject, Data: p.data, Header: nats.Header{}}
				m.Header.Set(jetstream.MsgIDHeader, p.id)
				pub.track(m, lineNo)
				if _, err := sess.js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
					pub.mu.Lock()
					delete(pub.lines, m)
					pub.mu.Unlock()
					pub.fail(lineNo, err)
					syncFailed++
				} else {
					published++
				}
			}
		}
	}
	readErr := wait()

	// Wait for the outstanding acks (each ends within the publish timeout).
	select {
	case <-sess.js.PublishAsyncComplete():
	case <-ctx.Done():
		sum.Interrupted = true
	}
	stopBar()
	sum.Seconds = time.Since(start).Seconds()
	sum.Accepted, sum.Duplicate, sum.Failed = pub.accepted.Load(), pub.duplicate.Load(), pub.failed.Load()
	pub.mu.Lock()
	sum.FailedList = append([]lineError(nil), pub.failedList...)
	pub.mu.Unlock()
	if sum.Interrupted {
		sum.Unconfirmed = max(0, published-sum.Accepted-sum.Duplicate-(sum.Failed-syncFailed))
	}
	a.printFileSummary(sum)
	if readErr != nil {
		return a.fail(fmt.Errorf("reading %s stopped after line %d: %w", name, sum.Lines, readErr))
	}
	if sum.Failed > 0 || sum.BadLines > 0 || sum.Interrupted {
		return exitError
	}
	return exitOK
}

func (a *app) printFileSummary(s fileSummary) {
	if a.g.json {
		writeJSONLine(a.stdout, s)
		return
	}
	rate := 0.0
	if s.Seconds > 0 {
		rate = float64(s.Lines) / s.Seconds
	}
	fmt.Fprintf(a.stdout, "%s: %d lines: %d accepted, %d duplicate, %d failed, %d bad lines in %.2fs (%.0f lines/s)\n",
		s.File, s.Lines, s.Accepted, s.Duplicate, s.Failed, s.BadLines, s.Seconds, rate)
	if s.Interrupted {
		fmt.Fprintf(a.stdout, "interrupted: %d published jobs have no ack yet\n", s.Unconfirmed)
	}
	for _, e := range s.FailedList {
		fmt.Fprintf(a.stdout, "  failed line %d: %s\n", e.Line, e.Error)
	}
	if more := s.Failed - int64(len(s.FailedList)); more > 0 {
		fmt.Fprintf(a.stdout, "  ... and %d more failed publishes\n", more)
	}
	for _, e := range s.BadList {
		fmt.Fprintf(a.stdout, "  bad line %d: %s\n", e.Line, e.Error)
	}
	if more := s.BadLines - len(s.BadList); more > 0 {
		fmt.Fprintf(a.stdout, "  ... and %d more bad lines\n", more)
	}
}

// preparedLine is one line of an NDJSON file made ready to publish (see prepareLine).
type preparedLine struct {
	subject string
	data    []byte
	id      string
	skip    bool
	err     error
}

// lineBatch is a run of consecutive lines; done is closed when out is filled.
type lineBatch struct {
	first int // line number of raw[0]
	raw   [][]byte
	out   []preparedLine
	done  chan struct{}
}

// linesPerBatch sizes the batches that prepareLines hands to its workers.
const linesPerBatch = 256

// prepareLines reads lines and prepares them (parsing, validation) on several goroutines,
// delivering the batches in file order. The caller ranges over the channel to its end (or
// stops early after ctx is cancelled), then calls wait, which returns the read error.
func prepareLines(ctx context.Context, in io.Reader, prepare func([]byte) preparedLine) (<-chan *lineBatch, func() error) {
	workers := min(max(runtime.GOMAXPROCS(0)-1, 1), 8)
	ordered := make(chan *lineBatch, 2*workers)
	work := make(chan *lineBatch, 2*workers)
	var wg sync.WaitGroup
	var readErr error
	wg.Add(workers + 1)
	for range workers {
		go func() {
			defer wg.Done()
			for b := range work {
				for i, raw := range b.raw {
					b.out[i] = prepare(raw)
				}
				close(b.done)
			}
		}()
	}
	go func() {
		defer wg.Done()
		defer close(ordered)
		defer close(work)
		r := bufio.NewReaderSize(in, 1<<20)
		line := 0
		for ctx.Err() == nil {
			b := &lineBatch{first: line + 1, done: make(chan struct{})}
			var err error
			for len(b.raw) < linesPerBatch {
				var l []byte
				l, err = r.ReadBytes('\n')
				if len(l) > 0 {
					b.raw = append(b.raw, l)
					line++
				}
				if err != nil {
					break
				}
			}
			if len(b.raw) > 0 {
				b.out = make([]preparedLine, len(b.raw))
				select { // work first: a batch in ordered is always being prepared
				case work <- b:
				case <-ctx.Done():
					return
				}
				select {
				case ordered <- b:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				if err != io.EOF {
					readErr = err
				}
				return
			}
		}
	}()
	return ordered, func() error {
		for range ordered { // let the reader finish when the caller stopped early
		}
		wg.Wait()
		return readErr
	}
}

// prepareLine turns one NDJSON line into a job message: its subject, data and request id.
// A "type" field picks the subject and is removed; without one, defType does. A job
// without a request id gets a random one, written into the job so that the worker sees
// the same id as the Nats-Msg-Id. skip reports a blank line.
func prepareLine(line []byte, defType string, n broker.Names, validate bool) (subject string, data []byte, reqID string, skip bool, err error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return "", nil, "", true, nil
	}
	if line[0] != '{' {
		return "", nil, "", false, errors.New("not a JSON object")
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(line, &env); err != nil {
		return "", nil, "", false, fmt.Errorf("not valid JSON: %v", err)
	}
	changed := false
	typ := defType
	if raw, ok := env["type"]; ok {
		if json.Unmarshal(raw, &typ) != nil || typ == "" {
			return "", nil, "", false, errors.New(`"type" must be a job type`)
		}
		delete(env, "type")
		changed = true
	}
	if typ == "" {
		return "", nil, "", false, errors.New(`no job type: give the line a "type" field or use --type`)
	}
	if !isJobType(typ) && (validate || !validSubjectToken(typ)) {
		return "", nil, "", false, fmt.Errorf("unknown job type %q", typ)
	}
	if raw, ok := env["request_id"]; ok && string(raw) != "null" {
		if json.Unmarshal(raw, &reqID) != nil || reqID == "" {
			return "", nil, "", false, errors.New("request_id must be a non-empty string")
		}
	} else {
		reqID = nuid.Next()
		env["request_id"], _ = json.Marshal(reqID)
		changed = true
	}
	data = line
	if changed {
		if data, err = json.Marshal(env); err != nil {
			return "", nil, "", false, err
		}
	} else {
		data = append([]byte(nil), line...)
	}
	subject = n.JobSubject(typ)
	if validate {
		if _, jerr := jobs.Decode(jobs.Meta{Subject: subject, MsgID: reqID}, data, jobs.Options{SubjectPrefix: n.Subject}); jerr != nil {
			return "", nil, "", false, fmt.Errorf("invalid %s job: %s", typ, jerr.Detail)
		}
	}
	return subject, data, reqID, false, nil
}

func validSubjectToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == '.' || c == '*' || c == '>' {
			return false
		}
	}
	return s != ""
}

// runBar updates the bar from count until the returned stop function is called.
func (a *app) runBar(bar *progressbar.ProgressBar, count func() int64) (stop func()) {
	if bar == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				_ = bar.Set64(count())
				_ = bar.Finish()
				return
			case <-t.C:
				_ = bar.Set64(count())
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// countLines counts the lines of a file and rewinds it (for the progress bar's total).
func countLines(f *os.File) int64 {
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return -1
	}
	buf := make([]byte, 1<<20)
	var n int64
	var last byte = '\n'
	for {
		k, err := f.Read(buf)
		if k > 0 {
			n += int64(bytes.Count(buf[:k], []byte{'\n'}))
			last = buf[k-1]
		}
		if err != nil {
			break
		}
	}
	if last != '\n' {
		n++
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return -1
	}
	return n
}
