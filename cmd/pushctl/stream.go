package main

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// readOpts select the messages readStream delivers.
type readOpts struct {
	stream  string
	filters []string  // subject filters; none: every subject
	since   time.Time // zero: from the first message
	follow  bool      // keep delivering new messages until ctx ends
}

// errStop ends readStream early without an error.
var errStop = errors.New("stop")

// snapshotIdle bounds the wait for a stored message without --follow: messages that were
// counted as pending can disappear (expire, be deleted) before they are delivered.
const snapshotIdle = 5 * time.Second

// readStream calls fn with every matching message of a stream, oldest first, through an
// ordered consumer. Without follow it returns once the messages stored when it started are
// delivered; with follow it waits for new ones until ctx ends (then it returns nil).
func (s *session) readStream(ctx context.Context, o readOpts, fn func(jetstream.Msg) error) error {
	actx, cancel := apiContext(ctx)
	st, err := s.stream(actx, o.stream)
	cancel()
	if err != nil {
		return err
	}
	lastSeq := st.CachedInfo().State.LastSeq
	if !o.follow && st.CachedInfo().State.Msgs == 0 {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: o.filters, InactiveThreshold: time.Minute}
	if !o.since.IsZero() {
		t := o.since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &t
	}
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return s.streamErr(o.stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return s.streamErr(o.stream, err)
	}
	defer it.Stop()
	if !o.follow {
		if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
			return nil
		}
	}
	for {
		if ctx.Err() != nil {
			if o.follow {
				return nil
			}
			return ctx.Err()
		}
		var msg jetstream.Msg
		if o.follow {
			msg, err = it.Next(jetstream.NextContext(ctx))
		} else {
			nctx, cancel := context.WithTimeout(ctx, snapshotIdle)
			msg, err = it.Next(jetstream.NextContext(nctx))
			cancel()
		}
		if err != nil {
			if ctx.Err() != nil {
				if o.follow {
					return nil
				}
				return ctx.Err()
			}
			if !o.follow && errors.Is(err, context.DeadlineExceeded) {
				return nil // nothing more arrived: the snapshot is done
			}
			return s.streamErr(o.stream, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return err
		}
		if !o.follow && meta.Sequence.Stream > lastSeq {
			return nil
		}
		if err := fn(msg); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
		if !o.follow && (meta.NumPending == 0 || meta.Sequence.Stream >= lastSeq) {
			return nil
		}
	}
}
