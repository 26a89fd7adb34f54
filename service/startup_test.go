package service

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/config"
)

// TestUnusableDataDirIsNamed: in embedded mode a PUSH_DATA_DIR the server cannot store in
// stops the start at once with an error naming it, not after the server's start timeout
// with the blame on PUSH_EMBEDDED_LISTEN.
func TestUnusableDataDirIsNamed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{"a file": file, "under a file": filepath.Join(file, "data")} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("PUSH_DATA_DIR", dir)
			t.Setenv("PUSH_EMBEDDED_LISTEN", "127.0.0.1:-1")
			t.Setenv("PUSH_ADMIN_ADDR", "127.0.0.1:0")
			c, err := config.Load()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			err = Run(ctx, c, zerolog.Nop())
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != "PUSH_DATA_DIR" {
				t.Fatalf("PUSH_DATA_DIR=%s: error %v after %v, want one naming PUSH_DATA_DIR", dir, err, time.Since(start).Round(time.Millisecond))
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("the error took %v", d)
			}
		})
	}
}
