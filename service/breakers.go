package service

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/pushworker/pushworker/upstream"
)

// gateNews is what a replica tells the others when one of its gates opens or closes.
type gateNews struct {
	Replica  string    `json:"replica"`
	App      string    `json:"app"`
	Upstream string    `json:"upstream"`
	Host     string    `json:"host"`
	Open     bool      `json:"open"`
	Until    time.Time `json:"until,omitempty"`
}

// breakerBus shares breaker state between replicas over core NATS: when a gate opens (or an
// app is paused) on one replica, every replica stops calling that upstream within the
// message's delivery time, and only the replica that opened it probes; the others wait for
// its "closed" news, or at most remoteHold if that replica dies.
type breakerBus struct {
	nc       *nats.Conn
	subject  string
	replica  string
	breakers *upstream.Breakers
	log      zerolog.Logger
	hold     time.Duration
}

func (b *breakerBus) publish(g upstream.GateState) {
	if b.nc == nil {
		return
	}
	n := gateNews{Replica: b.replica, App: g.App, Upstream: g.Upstream, Host: g.Host, Open: g.Open || g.Paused}
	if n.Open {
		n.Until = time.Now().Add(b.hold)
	}
	data, _ := json.Marshal(n)
	if err := b.nc.Publish(b.subject, data); err != nil {
		b.log.Warn().Err(err).Msg("could not share breaker state")
	}
}

func (b *breakerBus) subscribe() (*nats.Subscription, error) {
	return b.nc.Subscribe(b.subject, func(m *nats.Msg) {
		var n gateNews
		if json.Unmarshal(m.Data, &n) != nil || n.Replica == b.replica {
			return
		}
		g := b.breakers.For(n.App, n.Upstream, n.Host)
		if n.Open {
			g.OpenUntil(n.Until)
		} else {
			g.ClearRemote()
		}
	})
}
