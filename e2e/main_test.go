package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	// The binary under test is built from these packages with go build, which go test cannot
	// see: importing them makes a change to them a change to this test, so that go test does
	// not report a cached e2e result for code it never ran.
	_ "github.com/pushworker/pushworker/service"
)

// workerBin is the pushworker binary TestMain builds for this run.
var workerBin string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "pushworker-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	workerBin = filepath.Join(dir, "pushworker")
	build := exec.Command("go", "build", "-o", workerBin, "./cmd/pushworker")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building ./cmd/pushworker: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// moduleRoot is the directory of the module's go.mod, as `go env GOMOD` reports it.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module (go env GOMOD = %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}
