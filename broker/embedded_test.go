package broker

import (
	"testing"
	"time"
)

// TestEmbeddedSyncReachesTheServer: PUSH_EMBEDDED_SYNC becomes the embedded server's
// JetStream sync setting, which the server hands to every file store it opens.
func TestEmbeddedSyncReachesTheServer(t *testing.T) {
	cases := []struct {
		value    string
		always   bool
		interval time.Duration
	}{
		{"", false, 2 * time.Minute}, // the server's default
		{"always", true, 2 * time.Minute},
		{"ALWAYS", true, 2 * time.Minute},
		{"10s", false, 10 * time.Second},
	}
	for _, tc := range cases {
		t.Run("sync="+tc.value, func(t *testing.T) {
			c := streamsTestConfig(t, map[string]string{
				"PUSH_EMBEDDED_SYNC":   tc.value,
				"PUSH_EMBEDDED_LISTEN": "127.0.0.1:-1",
				"PUSH_DATA_DIR":        t.TempDir(),
			})
			s, err := StartEmbedded(c)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
			jc := s.JetStreamConfig()
			if jc == nil {
				t.Fatal("the embedded server has no JetStream")
			}
			if jc.SyncAlways != tc.always || jc.SyncInterval != tc.interval {
				t.Fatalf("PUSH_EMBEDDED_SYNC=%q: server sync_always %v, sync_interval %s; want %v, %s",
					tc.value, jc.SyncAlways, jc.SyncInterval, tc.always, tc.interval)
			}
		})
	}
}
