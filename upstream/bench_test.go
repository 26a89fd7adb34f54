package upstream

import (
	"testing"

	"github.com/pushworker/pushworker/jobs"
)

// BenchmarkClassify measures classifying a successful MIMC answer.
func BenchmarkClassify(b *testing.B) {
	body := []byte(`{"code":200,"message":"success","data":{"packetId":"Z9vR2k1-0000042"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if o := Classify(jobs.UpstreamMIMC, jobs.ShapePacketID, nil, 200, body); o.Kind != Sent || o.PacketID == "" {
			b.Fatal(o)
		}
	}
}
