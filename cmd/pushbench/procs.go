package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process: a NATS server, the sandbox upstream or a worker. Every proc is
// registered until it is stopped, so that killAll can end them on exit or Ctrl-C; each
// also gets SIGKILL from the kernel if pushbench dies (Pdeathsig).
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // exit status, once done is closed
}

var (
	procsMu  sync.Mutex
	allProcs = map[*proc]struct{}{}
)

// startProc starts path with args and env; stderr (and stdout unless stdout is given) go
// to logPath.
func startProc(name, path string, args, env []string, logPath string, stdout *lineWriter) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stderr = f
	cmd.Stdout = f
	if stdout != nil {
		stdout.rest = f
		cmd.Stdout = stdout
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	procsMu.Lock()
	allProcs[p] = struct{}{}
	procsMu.Unlock()
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then kills.
func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	procsMu.Lock()
	delete(allProcs, p)
	procsMu.Unlock()
}

// exitError describes how a process ended, with the end of its log.
func (p *proc) exitError() error {
	return fmt.Errorf("%s exited (%v); last lines of %s:\n%s", p.name, p.err, p.logPath, p.tail(15))
}

func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// killAll kills every registered process at once (exit path, Ctrl-C).
func killAll() {
	procsMu.Lock()
	ps := make([]*proc, 0, len(allProcs))
	for p := range allProcs {
		ps = append(ps, p)
	}
	procsMu.Unlock()
	for _, p := range ps {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
		}
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(2 * time.Second):
		}
	}
}

// lineWriter hands the first line a process writes to stdout to first and copies
// everything after it to rest (the process's log).
type lineWriter struct {
	mu    sync.Mutex
	buf   []byte
	got   bool
	first chan string
	rest  *os.File
}

func newLineWriter() *lineWriter { return &lineWriter{first: make(chan string, 1)} }

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.got {
		return w.rest.Write(b)
	}
	w.buf = append(w.buf, b...)
	if i := bytes.IndexByte(w.buf, '\n'); i >= 0 {
		w.got = true
		w.first <- strings.TrimSpace(string(w.buf[:i]))
		if len(w.buf) > i+1 {
			_, _ = w.rest.Write(w.buf[i+1:])
		}
		w.buf = nil
	}
	return len(b), nil
}

// firstLine waits for the process's first stdout line.
func firstLine(ctx context.Context, p *proc, w *lineWriter, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case s := <-w.first:
		return s, nil
	case <-p.done:
		return "", p.exitError()
	case <-t.C:
		return "", fmt.Errorf("%s did not start within %s; last lines of %s:\n%s", p.name, timeout, p.logPath, p.tail(15))
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// procStat is what /proc tells about a process.
type procStat struct {
	CPU time.Duration // user + system time
	RSS uint64        // bytes resident now (VmRSS)
	HWM uint64        // peak resident bytes (VmHWM)
}

// clkTck is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on Linux).
const clkTck = 100

func readProcStat(pid int) (procStat, error) {
	var st procStat
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return st, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return st, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return st, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	st.CPU = time.Duration(ut+stime) * time.Second / clkTck
	s, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return st, err
	}
	defer s.Close()
	sc := bufio.NewScanner(s)
	for sc.Scan() {
		line := sc.Text()
		var dst *uint64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &st.RSS
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &st.HWM
		default:
			continue
		}
		if fs := strings.Fields(line); len(fs) >= 2 {
			kb, _ := strconv.ParseUint(fs[1], 10, 64)
			*dst = kb * 1024
		}
	}
	return st, nil
}

// build compiles the worker and the sandbox into dir.
func build(ctx context.Context, root, dir string) (worker, sandbox string, err error) {
	worker, sandbox = filepath.Join(dir, "pushworker"), filepath.Join(dir, "pushsandbox")
	for _, b := range []struct{ out, pkg string }{{worker, "./cmd/pushworker"}, {sandbox, "./cmd/pushsandbox"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return worker, sandbox, nil
}

// childEnv is the environment of a child: ours without PUSH_* and PUSHSANDBOX_* (so that a
// developer's settings do not change the benchmark), plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PUSH_") || strings.HasPrefix(kv, "PUSHSANDBOX_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
