package broker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// scanBatch is how many messages ScanRange asks for at a time (at most).
const scanBatch = 500

// ScanRange calls fn with the messages of st on the filter subjects (none: every subject)
// whose stream sequences are in [from, to], oldest first, through an ordered consumer;
// with headersOnly the server leaves their data out. fn returns false to stop. ScanRange
// returns how many messages fn saw. Callers bound the range: it never reads more than
// to-from+1 messages.
func ScanRange(ctx context.Context, st jetstream.Stream, filters []string, from, to uint64, headersOnly bool, fn func(jetstream.Msg) bool) (int, error) {
	from = max(from, 1)
	if to < from {
		return 0, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
		HeadersOnly: headersOnly, InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return 0, err
	}
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		return 0, nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(int(min(uint64(scanBatch), to-from+1))))
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	n := 0
	for {
		// A message counted as pending can go (deleted, expired) before it is delivered:
		// a second without one ends the scan.
		nctx, cancel := context.WithTimeout(ctx, time.Second)
		m, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				return n, nil
			}
			return n, err
		}
		meta, err := m.Metadata()
		if err != nil {
			return n, err
		}
		seq := meta.Sequence.Stream
		if seq > to {
			return n, nil
		}
		n++
		if !fn(m) || seq == to || meta.NumPending == 0 {
			return n, nil
		}
	}
}
