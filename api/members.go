package api

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/pushworker/pushworker/config"
	"github.com/pushworker/pushworker/jobs"
	"github.com/pushworker/pushworker/upstream"
)

// MaxMemberPages bounds the pages one topic.members request with "all": true fetches, so
// that an upstream that never says isEnd cannot keep a request going forever.
const MaxMemberPages = 10000

// memberPage is the data of one answer of GET /api/uctopic/userlist: at most 100 members
// sorted by uuid. The doc shows isEnd quoted ("$isEnd"); it is read as a string or a bare
// value. The page's own count is not needed: the merged reply counts its members.
type memberPage struct {
	Members []json.RawMessage `json:"members"`
	IsEnd   json.RawMessage   `json:"isEnd"`
}

// allMembers is the reply of topic.members with "all": true. NextStartUUID is set, with
// IsEnd false, only when the walk stopped early (the reply would outgrow the NATS max
// payload, or MaxMemberPages were read): pass it as startUuid (with "all": true) to
// continue; an upstream that reads startUuid as inclusive repeats that one member.
type allMembers struct {
	Members       []json.RawMessage `json:"members"`
	Count         int               `json:"count"`
	IsEnd         bool              `json:"isEnd"`
	NextStartUUID string            `json:"nextStartUuid,omitempty"`
}

// walkMembers fetches every member page of a topic from the request's startUuid on and
// merges them. Each page is one upstream call through the breaker gate. A page starts
// at the greatest uuid seen so far; members seen before are dropped, so the walk is right
// whether the upstream reads startUuid as inclusive or exclusive.
func (s *apiService) walkMembers(ctx context.Context, app *config.App, r upstream.Request, p *params) answer {
	start := p.num["startUuid"]
	budget := int(s.nc.MaxPayload()) - 4096 // envelope and headers
	out := allMembers{Members: []json.RawMessage{}}
	seen := map[int64]bool{}
	size := 0
	full := false
	for pages := 0; !full; pages++ {
		if pages == MaxMemberPages {
			out.NextStartUUID = strconv.FormatInt(start, 10)
			break
		}
		if err := ctx.Err(); err != nil {
			return fail(CodeUnavailable, jobs.KindUpstreamUnavailable, "pushworker is stopping; the member walk was cancelled")
		}
		page := r
		page.Header = r.Header.Clone()
		setStartUUID(page.Header, start)
		a := s.call(ctx, app, page)
		if a.err != nil {
			return a
		}
		var mp memberPage
		if len(a.data) > 0 && string(a.data) != "null" {
			if err := json.Unmarshal(a.data, &mp); err != nil {
				return fail(CodeBadGateway, jobs.KindUpstreamUnavailable, "malformed member page from MIMC (startUuid %d): %v", start, err)
			}
		}
		next := start
		for i, m := range mp.Members {
			var mm struct {
				UUID json.RawMessage `json:"uuid"`
			}
			if json.Unmarshal(m, &mm) != nil {
				return fail(CodeBadGateway, jobs.KindUpstreamUnavailable, "malformed member page from MIMC (startUuid %d): member %d is not an object", start, i)
			}
			uuid, ok := parseInt(mm.UUID, true)
			if !ok {
				return fail(CodeBadGateway, jobs.KindUpstreamUnavailable, "malformed member page from MIMC (startUuid %d): member %d has no integer uuid", start, i)
			}
			if seen[uuid] {
				continue
			}
			if size+len(m)+1 > budget {
				if len(out.Members) == 0 {
					return fail(CodeTooLarge, jobs.KindTooLarge, "one member does not fit in the NATS max payload of %d bytes", s.nc.MaxPayload())
				}
				out.NextStartUUID = strconv.FormatInt(next, 10)
				full = true
				break
			}
			seen[uuid] = true
			out.Members = append(out.Members, m)
			size += len(m) + 1
			if uuid > next {
				next = uuid
			}
		}
		// The last page says isEnd; an empty page or one that does not advance ends the
		// walk too (asking again from the same uuid would return the same page).
		if !full && (isTrue(mp.IsEnd) || len(mp.Members) == 0 || next == start) {
			out.IsEnd = true
			break
		}
		start = next
	}
	out.Count = len(out.Members)
	b, err := json.Marshal(out)
	if err != nil {
		return fail(CodeBadGateway, jobs.KindUpstreamUnavailable, "member pages could not be merged: %v", err)
	}
	return answer{data: b}
}

// isTrue reads a flag the upstream may send as true, "true", 1 or "1".
func isTrue(raw json.RawMessage) bool {
	v := string(bytes.TrimSpace(raw))
	if len(v) > 1 && v[0] == '"' {
		if json.Unmarshal(raw, &v) != nil {
			return false
		}
	}
	v = strings.ToLower(strings.TrimSpace(v))
	return v == "true" || v == "1"
}
