package jobs

import (
	"encoding/json"
	"testing"
	"time"
)

// BenchmarkDecode measures decoding and validating a typical p2p job, the worker's most
// common first step (the benchmark program measures the whole path).
func BenchmarkDecode(b *testing.B) {
	data := []byte(`{"request_id":"order-8812-shipped","app":"default","payload":{"fromAccount":"shop","toAccount":"user-42","msg":"aGVsbG8gd29ybGQ=","msgType":"base64","isStore":true,"bizType":"order"}}`)
	m := Meta{Subject: "push.jobs.p2p", Seq: 1}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(m, data, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResultMarshal measures encoding a typical sent result.
func BenchmarkResultMarshal(b *testing.B) {
	r := Result{RequestID: "order-8812-shipped", Type: "p2p", App: "default", Status: StatusSent, PacketID: "Z9vR2k1-0000042",
		Attempts: 1, Upstream: &UpstreamAnswer{HTTPStatus: 200, Code: 200, Message: "success"}, JobSeq: 1187,
		EnqueuedAt: time.Now().UTC(), CompletedAt: time.Now().UTC()}
	b.ReportAllocs()
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(&r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		for b.Loop() {
			_ = r.AppendJSON(make([]byte, 0, 384))
		}
	})
}
