package jobs

import "testing"

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
