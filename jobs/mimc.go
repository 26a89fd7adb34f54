package jobs

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
)

// Payload is a typed payload of one job type.
type Payload interface{ JobType() Type }

// TopicID is a MIMC topic id: a 64-bit integer. It decodes from a JSON number or a decimal
// string and encodes as a JSON number with every digit.
type TopicID int64

// UnmarshalJSON accepts 123 or "123".
func (t *TopicID) UnmarshalJSON(b []byte) error {
	v, err := parseTopicID(b)
	if err != nil {
		return err
	}
	*t = TopicID(v)
	return nil
}

// MarshalJSON writes the id as a JSON number.
func (t TopicID) MarshalJSON() ([]byte, error) { return strconv.AppendInt(nil, int64(t), 10), nil }

func parseTopicID(b []byte) (int64, error) {
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return 0, err
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s is not a 64-bit integer topic id", b)
	}
	return v, nil
}

// MIMC payloads (mimc-push-v2). Optional fields are pointers: they are forwarded when set.

// P2PPayload is the payload of a p2p job.
type P2PPayload struct {
	FromAccount  string  `json:"fromAccount"`
	FromResource *string `json:"fromResource,omitempty"`
	ToAccount    string  `json:"toAccount"`
	Msg          string  `json:"msg"`
	MsgType      string  `json:"msgType,omitempty"`
	IsStore      *bool   `json:"isStore,omitempty"`
	BizType      *string `json:"bizType,omitempty"`
}

// P2PMorePayload is the payload of a p2p_more job.
type P2PMorePayload struct {
	FromAccount  string   `json:"fromAccount"`
	FromResource *string  `json:"fromResource,omitempty"`
	ToAccounts   []string `json:"toAccounts"`
	Msg          string   `json:"msg"`
	MsgType      string   `json:"msgType,omitempty"`
	IsStore      *bool    `json:"isStore,omitempty"`
	BizType      *string  `json:"bizType,omitempty"`
}

// P2TPayload is the payload of a p2t job.
type P2TPayload struct {
	FromAccount  string  `json:"fromAccount"`
	FromResource *string `json:"fromResource,omitempty"`
	TopicID      TopicID `json:"topicId"`
	Msg          string  `json:"msg"`
	MsgType      string  `json:"msgType,omitempty"`
	IsStore      *bool   `json:"isStore,omitempty"`
	BizType      *string `json:"bizType,omitempty"`
}

// P2TMorePayload is the payload of a p2t_more job.
type P2TMorePayload struct {
	FromAccount  string    `json:"fromAccount"`
	FromResource *string   `json:"fromResource,omitempty"`
	TopicIDs     []TopicID `json:"topicIds"`
	Msg          string    `json:"msg"`
	MsgType      string    `json:"msgType,omitempty"`
	IsStore      *bool     `json:"isStore,omitempty"`
	BizType      *string   `json:"bizType,omitempty"`
}

// UCSPayload is the payload of a ucs job (one message to one unlimited group).
type UCSPayload struct {
	FromAccount  string  `json:"fromAccount"`
	FromResource *string `json:"fromResource,omitempty"`
	TopicID      TopicID `json:"topicId"`
	Message      string  `json:"message"`
	MsgType      string  `json:"msgType,omitempty"`
	IsStore      *bool   `json:"isStore,omitempty"`
	BizType      *string `json:"bizType,omitempty"`
}

// UCSMultiMsgPayload is the payload of a ucs_multi_msg job (several messages to one group).
type UCSMultiMsgPayload struct {
	FromAccount  string   `json:"fromAccount"`
	FromResource *string  `json:"fromResource,omitempty"`
	TopicID      TopicID  `json:"topicId"`
	Messages     []string `json:"messages"`
	MsgType      string   `json:"msgType,omitempty"`
	IsStore      *bool    `json:"isStore,omitempty"`
	BizType      *string  `json:"bizType,omitempty"`
}

// UCSMultiTopicPayload is the payload of a ucs_multi_topic job (one message to several groups).
type UCSMultiTopicPayload struct {
	FromAccount  string    `json:"fromAccount"`
	FromResource *string   `json:"fromResource,omitempty"`
	TopicIDs     []TopicID `json:"topicIds"`
	Message      string    `json:"message"`
	MsgType      string    `json:"msgType,omitempty"`
	IsStore      *bool     `json:"isStore,omitempty"`
	BizType      *string   `json:"bizType,omitempty"`
}

// JobType implementations.
func (P2PPayload) JobType() Type           { return P2P }
func (P2PMorePayload) JobType() Type       { return P2PMore }
func (P2TPayload) JobType() Type           { return P2T }
func (P2TMorePayload) JobType() Type       { return P2TMore }
func (UCSPayload) JobType() Type           { return UCS }
func (UCSMultiMsgPayload) JobType() Type   { return UCSMultiMsg }
func (UCSMultiTopicPayload) JobType() Type { return UCSMultiTopic }

// field kinds of MIMC payloads
type fkind int

const (
	fString     fkind = iota // non-empty string
	fOptString               // any string
	fStringList              // non-empty list of non-empty strings
	fTopic                   // 64-bit integer, number or decimal string
	fTopicList               // non-empty list of topic ids
	fBool
	fMsgType
	fMessage     // non-empty string, base64 when msgType is base64
	fMessageList // non-empty list of messages
)

type mimcField struct {
	name     string
	kind     fkind
	required bool
	weight   bool // the job's weight is this list's length
}

// mimcFields lists, per type, the payload fields in the order of the upstream docs;
// mimcKnown holds the same names as sets.
var (
	mimcFields = map[Type][]mimcField{}
	mimcKnown  = map[Type]map[string]bool{}
)

func init() {
	head := []mimcField{{name: "fromAccount", kind: fString, required: true}, {name: "fromResource", kind: fOptString}}
	tail := []mimcField{{name: "msgType", kind: fMsgType}, {name: "isStore", kind: fBool}, {name: "bizType", kind: fOptString}}
	def := func(t Type, mid ...mimcField) {
		f := append(append(append([]mimcField{}, head...), mid...), tail...)
		mimcFields[t] = f
		mimcKnown[t] = map[string]bool{}
		for _, x := range f {
			mimcKnown[t][x.name] = true
		}
	}
	def(P2P, mimcField{name: "toAccount", kind: fString, required: true}, mimcField{name: "msg", kind: fMessage, required: true})
	def(P2PMore, mimcField{name: "toAccounts", kind: fStringList, required: true, weight: true}, mimcField{name: "msg", kind: fMessage, required: true})
	def(P2T, mimcField{name: "topicId", kind: fTopic, required: true}, mimcField{name: "msg", kind: fMessage, required: true})
	def(P2TMore, mimcField{name: "topicIds", kind: fTopicList, required: true, weight: true}, mimcField{name: "msg", kind: fMessage, required: true})
	def(UCS, mimcField{name: "topicId", kind: fTopic, required: true}, mimcField{name: "message", kind: fMessage, required: true})
	def(UCSMultiMsg, mimcField{name: "topicId", kind: fTopic, required: true}, mimcField{name: "messages", kind: fMessageList, required: true, weight: true})
	def(UCSMultiTopic, mimcField{name: "topicIds", kind: fTopicList, required: true, weight: true}, mimcField{name: "message", kind: fMessage, required: true})
}

func invalid(format string, a ...any) *Error {
	return Errorf(KindInvalidJob, fmt.Sprintf(format, a...))
}

// decodeMIMC validates a MIMC payload and writes the upstream body without credentials.
func decodeMIMC(in *payloadInput) ([]Call, *Error) {
	fields, known := mimcFields[in.spec.Type], mimcKnown[in.spec.Type]
	var unknown []string
	for k := range in.fields {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, invalid("payload.%s: unknown field for a %s job", unknown[0], in.spec.Type)
	}
	base64Msg := false
	if raw, ok := in.fields["msgType"]; ok {
		var mt string
		if json.Unmarshal(raw, &mt) != nil || (mt != "" && mt != "base64") {
			return nil, invalid(`payload.msgType must be "" or "base64"`)
		}
		base64Msg = mt == "base64"
	}
	var buf bytes.Buffer
	buf.Grow(len(in.raw) + 16)
	buf.WriteByte('{')
	weight := 1
	first := true
	for _, f := range fields {
		raw, ok := in.fields[f.name]
		if !ok || string(raw) == "null" {
			if f.required {
				return nil, invalid("payload.%s is required for a %s job", f.name, in.spec.Type)
			}
			continue
		}
		var out []byte
		n := 1
		switch f.kind {
		case fString, fOptString, fMsgType:
			s, enc, ok := stringValue(raw)
			if !ok {
				return nil, invalid("%s must be a string", "payload."+f.name)
			}
			if f.kind == fString && s == "" {
				return nil, invalid("%s must not be empty", "payload."+f.name)
			}
			out = enc
		case fMessage:
			s, enc, ok := stringValue(raw)
			if !ok {
				return nil, invalid("%s must be a string", "payload."+f.name)
			}
			if err := checkMessage("payload."+f.name, s, base64Msg); err != nil {
				return nil, err
			}
			out = enc
		case fBool:
			if s := string(raw); s != "true" && s != "false" { // raw is valid JSON
				return nil, invalid("%s must be true or false", "payload."+f.name)
			}
			out = raw
		case fStringList, fMessageList:
			var l []string
			if json.Unmarshal(raw, &l) != nil {
				return nil, invalid("%s must be a list of strings", "payload."+f.name)
			}
			if len(l) == 0 {
				return nil, invalid("%s must not be empty", "payload."+f.name)
			}
			for i, s := range l {
				p := fmt.Sprintf("%s[%d]", "payload."+f.name, i)
				if f.kind == fMessageList {
					if err := checkMessage(p, s, base64Msg); err != nil {
						return nil, err
					}
				} else if s == "" {
					return nil, invalid("%s must not be empty", p)
				}
			}
			out, _ = json.Marshal(l)
			n = len(l)
		case fTopic:
			v, err := parseTopicID(raw)
			if err != nil {
				return nil, invalid("%s: %v", "payload."+f.name, err)
			}
			out = strconv.AppendInt(nil, v, 10)
		case fTopicList:
			var l []json.RawMessage
			if json.Unmarshal(raw, &l) != nil {
				return nil, invalid("%s must be a list of topic ids", "payload."+f.name)
			}
			if len(l) == 0 {
				return nil, invalid("%s must not be empty", "payload."+f.name)
			}
			out = append(out, '[')
			for i, r := range l {
				v, err := parseTopicID(r)
				if err != nil {
					return nil, invalid("%s[%d]: %v", "payload."+f.name, i, err)
				}
				if i > 0 {
					out = append(out, ',')
				}
				out = strconv.AppendInt(out, v, 10)
			}
			out = append(out, ']')
			n = len(l)
		}
		if f.weight {
			weight = n
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		buf.WriteByte('"')
		buf.WriteString(f.name)
		buf.WriteString(`":`)
		buf.Write(out)
	}
	buf.WriteByte('}')
	return []Call{{Body: buf.Bytes(), Weight: weight}}, nil
}

// stringValue reads a JSON string value and returns it with its canonical encoding. A plain
// string (no escapes, valid UTF-8, the common case) is passed through without decoding
// and encoding it again.
func stringValue(raw json.RawMessage) (s string, enc []byte, ok bool) {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		plain := true
		for _, c := range raw[1 : len(raw)-1] {
			if c == '\\' || c == '"' || c < 0x20 || c == '<' || c == '>' || c == '&' || c >= 0x80 {
				plain = false
				break
			}
		}
		if plain {
			return string(raw[1 : len(raw)-1]), raw, true
		}
	}
	if json.Unmarshal(raw, &s) != nil {
		return "", nil, false
	}
	enc, _ = json.Marshal(s)
	return s, enc, true
}

func checkMessage(path, s string, isBase64 bool) *Error {
	if s == "" {
		return invalid("%s must not be empty", path)
	}
	if isBase64 {
		if _, err := base64.StdEncoding.DecodeString(s); err != nil {
			return invalid(`%s is not valid standard base64 (msgType is "base64")`, path)
		}
	}
	return nil
}
