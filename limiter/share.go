package limiter

// How one rate is split among the live replicas (see allocate).
const (
	// reserveFraction of every rate is set aside as a floor that each live replica keeps
	// whether it has demand or not, so that its first job of a quiet class goes without
	// waiting for the next heartbeat.
	reserveFraction = 0.02
	// hungryPressure is the average number of callers queued for tokens over a heartbeat
	// interval at which a replica counts as limited by its share.
	hungryPressure = 0.5
	// headroom is how many times its recent use a replica that is not hungry keeps.
	headroom = 2
)

// demand is what one replica reported about one (app, class).
type demand struct {
	used   float64 // fraction of the rate it asked for per second lately
	hungry bool    // callers queued for its tokens lately
}

// allocate splits one rate among the live replicas: out[i] is the share of the replica
// that reported d[i]. The shares sum to 1. Every replica keeps reserveFraction/len(d);
// a replica that is not hungry gets up to headroom times what it used, at most an equal
// part of the rest; the hungry replicas split what remains equally, or, when none is
// hungry, all replicas do.
func allocate(d []demand, out []float64) {
	n := len(d)
	if n == 0 {
		return
	}
	floor := reserveFraction / float64(n)
	fair := (1 - reserveFraction) / float64(n)
	rest := 1 - reserveFraction
	hungry := 0
	for i := range d {
		out[i] = floor
		if d[i].hungry {
			hungry++
			continue
		}
		x := min(fair, max(0, headroom*d[i].used-floor))
		out[i] += x
		rest -= x
	}
	rest = max(0, rest)
	for i := range d {
		switch {
		case hungry > 0 && d[i].hungry:
			out[i] += rest / float64(hungry)
		case hungry == 0:
			out[i] += rest / float64(n)
		}
	}
}
