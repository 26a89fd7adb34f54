package limiter

import (
	"testing"
	"time"
)

// TestReleasedWindow checks the guard on actual releases: a second of releases never holds
// more than the limit, a late bunch is spread out, and a release heavier than the limit
// goes alone once the window is empty.
func TestReleasedWindow(t *testing.T) {
	var r released
	t0 := time.Now().UnixNano()
	ms := int64(time.Millisecond)
	for i := range 10 {
		if ok, _ := r.take(t0+int64(i)*ms, 1, 10); !ok {
			t.Fatalf("release %d refused below the limit", i)
		}
	}
	ok, retry := r.take(t0+100*ms, 1, 10)
	if ok {
		t.Fatal("an 11th token within one second was let go")
	}
	if want := t0 + window + 1; retry != want {
		t.Fatalf("retry at %d, want %d (when the oldest release leaves the window)", retry-t0, want-t0)
	}
	if ok, _ := r.take(retry, 1, 10); !ok {
		t.Fatal("refused once the oldest release left the window")
	}
	ok, retry = r.take(retry, 25, 10)
	if ok {
		t.Fatal("a release heavier than the limit went into a non-empty window")
	}
	if ok, _ := r.take(retry, 25, 10); !ok {
		t.Fatal("a heavy release did not go once the window was empty")
	}
	if ok, _ := r.take(retry+window/2, 1, 10); ok {
		t.Fatal("a token went into the window of a heavy release")
	}
}
