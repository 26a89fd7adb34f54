package sandbox

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strconv"
)

// target is the recipient field of a push endpoint.
type target int

const (
	toAccount  target = iota // toAccount: one account
	toAccounts               // toAccounts: non-empty list of accounts; weight = length
	topicID                  // topicId: one topic
	topicIDs                 // topicIds: non-empty list of topics; weight = length
)

// content is the message field of a push endpoint.
type content int

const (
	fieldMsg      content = iota // msg
	fieldMessage                 // message
	fieldMessages                // messages: non-empty list; weight = length
)

// answerShape is the data of a push endpoint's success answer.
type answerShape int

const (
	shapePacketID   answerShape = iota // {"packetId": id}
	shapePacketIDs                     // {"packetIds": [id]}
	shapeMultiTopic                    // {"succPacketIds": [...], "failTopicIds": [...]}
)

// pushEndpoint describes one MIMC push endpoint of mimc-push-v2.
type pushEndpoint struct {
	path    string
	class   int
	target  target
	content content
	shape   answerShape
}

// pushEndpoints lists the MIMC push endpoints: the seven differ only by these columns.
var pushEndpoints = []pushEndpoint{
	{"/api/push/p2p/", classP2P, toAccount, fieldMsg, shapePacketID},
	{"/api/push/p2p/more", classP2P, toAccounts, fieldMsg, shapePacketID},
	{"/api/push/p2t/", classP2T, topicID, fieldMsg, shapePacketID},
	{"/api/push/p2t/more", classP2T, topicIDs, fieldMsg, shapePacketID},
	{"/api/push/ucs/singleMsgPush", classUCS, topicID, fieldMessage, shapePacketID},
	{"/api/push/ucs/multiMsgPush", classUCS, topicID, fieldMessages, shapePacketIDs},
	{"/api/push/ucs/multiTopicPush", classUCS, topicIDs, fieldMessage, shapeMultiTopic},
}

// pushBody is the union of the push endpoints' request fields.
type pushBody struct {
	AppID        json.RawMessage   `json:"appId"`
	AppKey       *string           `json:"appKey"`
	AppSecret    *string           `json:"appSecret"`
	FromAccount  *string           `json:"fromAccount"`
	FromResource *string           `json:"fromResource"`
	ToAccount    *string           `json:"toAccount"`
	ToAccounts   []string          `json:"toAccounts"`
	TopicID      json.RawMessage   `json:"topicId"`
	TopicIDs     []json.RawMessage `json:"topicIds"`
	Msg          *string           `json:"msg"`
	Message      *string           `json:"message"`
	Messages     []string          `json:"messages"`
	MsgType      *string           `json:"msgType"`
	IsStore      *bool             `json:"isStore"`
	BizType      *string           `json:"bizType"`
}

// handlePush answers one MIMC push: credentials, fields, rate limit, topics, packet ids.
func (s *Server) handlePush(w http.ResponseWriter, e *pushEndpoint, body []byte) {
	var b pushBody
	err := json.Unmarshal(body, &b)
	var typeErr *json.UnmarshalTypeError
	if err != nil && (!errors.As(err, &typeErr) || typeErr.Field == "") {
		writeError(w, http.StatusBadRequest, 400, "request body is not a JSON object: "+err.Error())
		return
	}
	app, status, msg := s.mimcBodyApp(&b)
	if app == nil {
		writeError(w, status, status, msg)
		return
	}
	if typeErr != nil {
		want := describeType(typeErr.Type)
		if typeErr.Field == "toAccounts" || typeErr.Field == "messages" {
			want = "a list of strings"
		}
		writeError(w, http.StatusBadRequest, 400, typeErr.Field+" must be "+want)
		return
	}
	weight, topics, msg := validatePush(e, &b)
	if msg != "" {
		writeError(w, http.StatusBadRequest, 400, msg)
		return
	}
	if !app.windows[e.class].admit(s.now(), weight) {
		writeError(w, http.StatusTooManyRequests, 429, "rate limit exceeded")
		return
	}
	out := make([]byte, 0, 96)
	switch e.shape {
	case shapePacketID, shapePacketIDs:
		for _, t := range topics {
			if s.topics.isDeleted(app.AppID, t) {
				writeError(w, http.StatusBadRequest, 400, "topic "+strconv.FormatInt(t, 10)+" not exist")
				return
			}
		}
		if e.shape == shapePacketID {
			out = append(out, `{"code":200,"message":"success","data":{"packetId":"`...)
			out = s.appendPacketID(out)
			out = append(out, `"}}`...)
		} else {
			out = append(out, `{"code":200,"message":"success","data":{"packetIds":["`...)
			out = s.appendPacketID(out)
			out = append(out, `"]}}`...)
		}
	case shapeMultiTopic:
		var failed []int64
		out = append(out, `{"code":200,"message":"success","data":{"succPacketIds":[`...)
		first := true
		for _, t := range topics {
			if s.topics.isDeleted(app.AppID, t) {
				failed = append(failed, t)
				continue
			}
			if !first {
				out = append(out, ',')
			}
			first = false
			out = append(out, '"')
			out = s.appendPacketID(out)
			out = append(out, '"')
		}
		out = append(out, `],"failTopicIds":[`...)
		for i, t := range failed {
			if i > 0 {
				out = append(out, ',')
			}
			out = strconv.AppendInt(out, t, 10)
		}
		out = append(out, `]}}`...)
	}
	writeRaw(w, http.StatusOK, out)
}

// mimcBodyApp checks the credentials of a push body. It returns the app, or nil with the
// HTTP status and message of the refusal.
func (s *Server) mimcBodyApp(b *pushBody) (*mimcApp, int, string) {
	if len(b.AppID) == 0 || string(b.AppID) == "null" || b.AppKey == nil || b.AppSecret == nil {
		return nil, http.StatusUnauthorized, "appId, appKey and appSecret are required"
	}
	if !isDigits(b.AppID) {
		return nil, http.StatusBadRequest, "appId must be a JSON number holding the decimal app id"
	}
	app := s.mimcApps[string(b.AppID)]
	if app == nil {
		return nil, http.StatusUnauthorized, "unknown appId " + string(b.AppID)
	}
	if *b.AppKey != app.AppKey || *b.AppSecret != app.AppSecret {
		return nil, http.StatusUnauthorized, "appKey or appSecret is wrong for appId " + app.AppID
	}
	return app, 0, ""
}

func isDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// validatePush checks the fields an endpoint needs. It returns the call's weight and its
// topic ids, or the message of a 400 answer.
func validatePush(e *pushEndpoint, b *pushBody) (weight int64, topics []int64, msg string) {
	if b.FromAccount == nil {
		return 0, nil, "fromAccount is required"
	}
	if *b.FromAccount == "" {
		return 0, nil, "fromAccount must not be empty"
	}
	isBase64 := false
	if b.MsgType != nil {
		switch *b.MsgType {
		case "":
		case "base64":
			isBase64 = true
		default:
			return 0, nil, `msgType must be "" or "base64"`
		}
	}
	weight = 1
	switch e.target {
	case toAccount:
		if b.ToAccount == nil {
			return 0, nil, "toAccount is required"
		}
		if *b.ToAccount == "" {
			return 0, nil, "toAccount must not be empty"
		}
	case toAccounts:
		if len(b.ToAccounts) == 0 {
			return 0, nil, "toAccounts is required: a non-empty list of accounts"
		}
		for i, a := range b.ToAccounts {
			if a == "" {
				return 0, nil, "toAccounts[" + strconv.Itoa(i) + "] must not be empty"
			}
		}
		weight = int64(len(b.ToAccounts))
	case topicID:
		id, m := parseTopicID("topicId", b.TopicID)
		if m != "" {
			return 0, nil, m
		}
		topics = []int64{id}
	case topicIDs:
		if len(b.TopicIDs) == 0 {
			return 0, nil, "topicIds is required: a non-empty list of topic ids"
		}
		topics = make([]int64, len(b.TopicIDs))
		for i, raw := range b.TopicIDs {
			id, m := parseTopicID("topicIds["+strconv.Itoa(i)+"]", raw)
			if m != "" {
				return 0, nil, m
			}
			topics[i] = id
		}
		weight = int64(len(topics))
	}
	switch e.content {
	case fieldMsg:
		if m := checkMessage("msg", b.Msg, isBase64); m != "" {
			return 0, nil, m
		}
	case fieldMessage:
		if m := checkMessage("message", b.Message, isBase64); m != "" {
			return 0, nil, m
		}
	case fieldMessages:
		if len(b.Messages) == 0 {
			return 0, nil, "messages is required: a non-empty list of messages"
		}
		for i := range b.Messages {
			if m := checkMessage("messages["+strconv.Itoa(i)+"]", &b.Messages[i], isBase64); m != "" {
				return 0, nil, m
			}
		}
		weight = int64(len(b.Messages))
	}
	return weight, topics, ""
}

func checkMessage(name string, m *string, isBase64 bool) string {
	switch {
	case m == nil:
		return name + " is required"
	case *m == "":
		return name + " must not be empty"
	case isBase64:
		if _, err := base64.StdEncoding.DecodeString(*m); err != nil {
			return name + ` is not valid standard base64 (msgType is "base64")`
		}
	}
	return ""
}

// parseTopicID reads a push API topic id: a JSON number holding a 64-bit integer.
func parseTopicID(name string, raw json.RawMessage) (int64, string) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, name + " is required"
	}
	if raw[0] == '"' {
		return 0, name + " must be a JSON number, not a string"
	}
	id, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, name + " must be a 64-bit integer"
	}
	return id, ""
}

// describeType names the JSON a Go field type expects, for error messages.
func describeType(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Float64:
		return "a number"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "a list of strings"
		}
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "of another type"
}
