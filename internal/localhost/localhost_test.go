package localhost

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil || p <= 0 {
		t.Fatalf("FreePort = %d, %v", p, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("port %d is not free: %v", p, err)
	}
	_ = ln.Close()
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("ModuleRoot = %s without go.mod", root)
	}
}

func TestMachineCPU(t *testing.T) {
	busy, total := MachineCPU()
	if total == 0 || busy > total {
		t.Fatalf("MachineCPU = %d busy of %d", busy, total)
	}
}
