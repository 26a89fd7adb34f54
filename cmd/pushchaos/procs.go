package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pushworker/pushworker/internal/localhost"
)

// proc is one run of a child process (a NATS node or a worker). Its output is appended to
// a log file that every run of the same role shares; the kernel kills it if pushchaos dies
// (Pdeathsig), so a crashed soak leaves nothing behind.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // how it ended, once done is closed
}

// childNice is the niceness of every process pushchaos starts (--child-nice). The
// recorder in pushchaos stands for a remote upstream, which has CPUs of its own: on a
// small machine the workers' and NATS nodes' bursts of work would otherwise delay its
// time stamps of arriving calls, and calls that arrived apart would be counted together.
var childNice = 5

// startProc starts path with args and env, appending stdout and stderr to logPath. When
// ready is not nil, the first line the child writes to stdout is sent to it.
func startProc(name, path string, args, env []string, logPath string, ready chan<- string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "---- %s start %s\n", name, time.Now().Format(time.RFC3339Nano))
	if childNice != 0 {
		// nice execs the program in its place: the pid, signals and exit status are its.
		if nice, err := exec.LookPath("nice"); err == nil {
			path, args = nice, append([]string{"-n", strconv.Itoa(childNice), path}, args...)
		}
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stderr = f
	cmd.Stdout = f
	var pr *os.File
	if ready != nil {
		r, w, err := os.Pipe()
		if err != nil {
			f.Close()
			return nil, err
		}
		cmd.Stdout, pr = w, r
		defer w.Close()
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		if pr != nil {
			pr.Close()
		}
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	var copied sync.WaitGroup
	if pr != nil {
		copied.Add(1)
		go func() {
			defer copied.Done()
			defer pr.Close()
			sc := bufio.NewScanner(pr)
			first := true
			for sc.Scan() {
				if first {
					ready <- strings.TrimSpace(sc.Text())
					first = false
				}
				fmt.Fprintln(f, sc.Text())
			}
		}()
	}
	go func() {
		p.err = cmd.Wait()
		copied.Wait()
		fmt.Fprintf(f, "---- %s ended %s: %v\n", name, time.Now().Format(time.RFC3339Nano), p.err)
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// term sends SIGTERM and waits up to grace for the process to exit; then it kills it. It
// reports the exit code (-1 when a signal ended it) and whether it exited in time.
func (p *proc) term(grace time.Duration) (code int, inTime bool) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(grace):
		p.kill()
		return p.cmd.ProcessState.ExitCode(), false
	}
}

// buildWorker compiles ./cmd/pushworker into dir.
func buildWorker(ctx context.Context, dir string) (string, error) {
	root, err := localhost.ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "pushworker")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/pushworker")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/pushworker: %v\n%s", err, b)
	}
	return out, nil
}

// childEnv is the environment of a child: ours without PUSH_* (so that a developer's
// settings do not change the soak), plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PUSH_") || strings.HasPrefix(kv, "GOGC=") || strings.HasPrefix(kv, "GOMEMLIMIT=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
