package main

// The commands of the request/reply API (contract §9): "topic" (push.api.topic.*),
// "certificate" (push.api.certificate) and "task detail" (push.api.task.detail). Each
// builds the request JSON from its flags, sends it to <prefix>.api.<call> and prints the
// reply's data as a table, or as JSON with --json.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
)

// defaultAPITimeout bounds one API request (--timeout).
const defaultAPITimeout = 15 * time.Second

// hiddenValue replaces the secrets of a certificate in table output.
const hiddenValue = "[hidden, use --json]"

// certificateSecrets are the certificate fields table output never shows.
var certificateSecrets = map[string]bool{"app_key": true, "app_secret": true, "certificate": true}

// apiCall is one subcommand of the API commands.
type apiCall struct {
	name    string // subcommand name ("create"), or "" for the certificate command
	subject string // relative to <prefix>.api
	args    string // usage after the command
	summary string
	// flags registers the call's flags; the returned build checks them (a usage error
	// otherwise) and returns the request fields besides app.
	flags func(fs *flag.FlagSet) func(set map[string]bool) (reqBody, error)
	// print writes the data of a successful reply as a table.
	print func(a *app, req reqBody, data json.RawMessage) error
}

var topicCalls = []apiCall{
	{name: "create", subject: "topic.create", args: "--account OWNER --name NAME [--extra S]", summary: "create a topic owned by an account",
		flags: topicCreateFlags, print: printKeyValues},
	{name: "update", subject: "topic.update", args: "--account OWNER --topic ID [--name NAME] [--owner ACCOUNT] [--extra S]", summary: "rename a topic, hand it to another owner or change its extra",
		flags: topicUpdateFlags, print: printKeyValues},
	{name: "delete", subject: "topic.delete", args: "--topic ID [--account OWNER]", summary: "delete a topic",
		flags: topicDeleteFlags, print: printDone("deleted topic %s")},
	{name: "members", subject: "topic.members", args: "--topic ID [--start-uuid UUID] [--all]", summary: "list the members of a topic (one page, or every page with --all)",
		flags: topicMembersFlags, print: printMembers},
	{name: "list", subject: "topic.list", args: "--account ACCOUNT", summary: "list the topics an account is a member of",
		flags: topicListFlags, print: printTopicList},
	{name: "info", subject: "topic.info", args: "--topic ID", summary: "show a topic's name, owner and member count",
		flags: topicOnlyFlags, print: printKeyValues},
	{name: "online", subject: "topic.online", args: "--topic ID", summary: "show how many members of a topic are online",
		flags: topicOnlyFlags, print: printOnline},
	{name: "forbid", subject: "topic.forbid", args: "--topic ID --user ACCOUNT --seconds N", summary: "forbid a member to send to a topic for N seconds (0 lifts the ban)",
		flags: topicForbidFlags, print: printForbid},
}

var certificateCall = apiCall{subject: "certificate", args: "--provider 1..7 [--environment 0|1]",
	summary: "show the notify push certificate of a provider", flags: certificateFlags, print: printCertificate}

var taskCalls = []apiCall{
	{name: "detail", subject: "task.detail", args: "--task ID [--task ID ...]", summary: "show the delivery stats of notify tasks per channel",
		flags: taskDetailFlags, print: printTaskDetail},
}

func runTopic(ctx context.Context, a *app, args []string) int {
	return a.runAPIGroup(ctx, "topic", topicCalls, args)
}

func runTask(ctx context.Context, a *app, args []string) int {
	return a.runAPIGroup(ctx, "task", taskCalls, args)
}

func runCertificate(ctx context.Context, a *app, args []string) int {
	return a.runAPICall(ctx, "certificate", &certificateCall, args)
}

// runAPIGroup dispatches "pushctl <group> <sub> [flags]".
func (a *app) runAPIGroup(ctx context.Context, group string, calls []apiCall, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help" {
		fmt.Fprintf(a.stderr, "Usage: pushctl %s <command> [flags]\n\nCommands:\n", group)
		tw := tabwriter.NewWriter(a.stderr, 2, 4, 2, ' ', 0)
		for _, c := range calls {
			fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
		}
		tw.Flush()
		fmt.Fprintf(a.stderr, "\nRun pushctl %s <command> -h for its flags.\n", group)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for i := range calls {
		if calls[i].name == args[0] {
			return a.runAPICall(ctx, group+" "+args[0], &calls[i], args[1:])
		}
	}
	names := make([]string, len(calls))
	for i, c := range calls {
		names[i] = c.name
	}
	return a.usageErr("unknown %s command %q: want %s", group, args[0], strings.Join(names, ", "))
}

// runAPICall parses a call's flags, sends its request and prints the reply.
func (a *app) runAPICall(ctx context.Context, name string, c *apiCall, args []string) int {
	fs := a.newAPIFlagSet(name, c.args)
	appName := fs.String("app", "default", "the app (credential set) whose upstream account is used")
	timeout := fs.Duration("timeout", defaultAPITimeout, "how long to wait for the worker's answer")
	build := c.flags(fs)
	if pos, code, done := parseFlags(fs, args); done {
		return code
	} else if len(pos) > 0 {
		return a.usageErr("%s takes no arguments (got %q); see pushctl %s -h", name, pos[0], name)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	fields, err := build(set)
	if err != nil {
		return a.usageErr("%s: %v", name, err)
	}
	if *appName == "" {
		return a.usageErr("%s: --app must not be empty", name)
	}
	if *timeout <= 0 {
		return a.usageErr("%s: --timeout must be positive", name)
	}
	req := append(reqBody{{"app", *appName}}, fields...)
	body, err := json.Marshal(req)
	if err != nil {
		return a.fail(err)
	}

	sess, err := a.connect()
	if err != nil {
		return a.fail(err)
	}
	defer sess.Close()
	subject := sess.names.APISubject() + "." + c.subject
	data, code := a.apiRequest(ctx, sess.nc, subject, body, *timeout)
	if code != exitOK {
		return code
	}
	if a.g.json {
		var buf bytes.Buffer
		if err := json.Indent(&buf, data, "", "  "); err != nil {
			return a.fail(fmt.Errorf("the reply of %s has data that is not valid JSON: %v", subject, err))
		}
		buf.WriteByte('\n')
		_, _ = a.stdout.Write(buf.Bytes())
		return exitOK
	}
	if err := c.print(a, req, data); err != nil {
		return a.fail(fmt.Errorf("the reply of %s: %v", subject, err))
	}
	return exitOK
}

// newAPIFlagSet is newFlagSet for the API commands, whose --user (topic forbid: the member
// to ban) takes the place of the global NATS --user. The NATS user can still be given
// before the command name, or with PUSH_NATS_USER.
func (a *app) newAPIFlagSet(name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet("pushctl "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "Usage: pushctl %s %s\n\nFlags:\n", name, args)
		fs.PrintDefaults()
	}
	globals := flag.NewFlagSet("globals", flag.ContinueOnError)
	a.g.register(globals)
	globals.VisitAll(func(f *flag.Flag) {
		if f.Name != "user" {
			fs.Var(f.Value, f.Name, f.Usage)
		}
	})
	return fs
}

// apiReply is the body of every answer of the API.
type apiReply struct {
	OK    bool            `json:"ok"`
	Data  json.RawMessage `json:"data"`
	Error *struct {
		Kind   string `json:"kind"`
		Detail string `json:"detail"`
	} `json:"error"`
}

// apiRequest sends one request and returns the reply's data, or the exit code after
// printing why there is none.
func (a *app) apiRequest(ctx context.Context, nc *nats.Conn, subject string, body []byte, timeout time.Duration) (json.RawMessage, int) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := nc.RequestMsgWithContext(rctx, &nats.Msg{Subject: subject, Data: body})
	switch {
	case err == nil:
	case errors.Is(err, nats.ErrNoResponders):
		return nil, a.fail(fmt.Errorf("no pushworker is serving %s: is the worker running?", subject))
	case ctx.Err() != nil:
		return nil, a.fail(ctx.Err())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return nil, a.fail(fmt.Errorf("no answer on %s within %s (the worker may be busy or the upstream slow; see --timeout)", subject, timeout))
	default:
		return nil, a.fail(fmt.Errorf("request on %s: %w", subject, err))
	}
	var r apiReply
	jerr := json.Unmarshal(msg.Data, &r)
	if jerr == nil && r.OK {
		if len(r.Data) == 0 {
			r.Data = json.RawMessage("null")
		}
		return r.Data, exitOK
	}
	kind, detail := "", ""
	if jerr == nil && r.Error != nil {
		kind, detail = r.Error.Kind, r.Error.Detail
	}
	if kind == "" && msg.Header != nil { // no usable body: the micro error headers
		if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
			kind, detail = "service error "+code, msg.Header.Get("Nats-Service-Error")
		}
	}
	if kind == "" {
		if jerr != nil {
			return nil, a.fail(fmt.Errorf("the reply on %s is not valid JSON: %v", subject, jerr))
		}
		return nil, a.fail(fmt.Errorf("the reply on %s says neither ok nor an error", subject))
	}
	fmt.Fprintf(a.stderr, "error: %s: %s\n", kind, detail)
	return nil, exitError
}

// reqBody is a request JSON object whose fields keep their order.
type reqBody []field

type field struct {
	name  string
	value any
}

func (b reqBody) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, f := range b {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(f.name)
		v, err := json.Marshal(f.value)
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// get returns the value of a field, nil when absent.
func (b reqBody) get(name string) any {
	for _, f := range b {
		if f.name == name {
			return f.value
		}
	}
	return nil
}

// parseID checks a 64-bit id given as a flag and returns it as a canonical decimal
// string, which the API takes with every digit.
func parseID(flagName, s string) (string, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return "", fmt.Errorf("--%s %q is not a 64-bit integer", flagName, s)
	}
	return strconv.FormatInt(v, 10), nil
}

func requireFlag(set map[string]bool, value, name string) error {
	if !set[name] || value == "" {
		return fmt.Errorf("--%s is required", name)
	}
	return nil
}

func topicFlag(fs *flag.FlagSet) *string {
	return fs.String("topic", "", "the topic id (a 64-bit integer)")
}

func requiredTopic(set map[string]bool, topic string) (string, error) {
	if err := requireFlag(set, topic, "topic"); err != nil {
		return "", err
	}
	return parseID("topic", topic)
}

func topicCreateFlags(fs *flag.FlagSet) func(map[string]bool) (reqBody, error) {
	account := fs.String("account", "", "the owner's account (it joins the topic)")
	name := fs.String("name", "", "the topic's name")
	extra := fs.String("extra", "", "the topic's custom data (at most 10 KB)")
	return func(set map[string]bool) (reqBody, error) {
		if err := requireFlag(set, *account, "account"); err != nil {
			return nil, err
		}
		if err := requireFlag(set, *name, "name"); err != nil {
			return nil, err
		}
		b := reqBody{{"account", *account}, {"topicName", *name}}
		if set["extra"] {
			b = append(b, field{"extra", *extra})
		}
		return b, nil
	}
}

func topicUpdateFlags(fs *flag.FlagSet) func(map[string]bool) (reqBody, error) {
	account := fs.String("account", "", "the current owner's account (only the owner may update a topic)")
	topic := topicFlag(fs)
	name := fs.String("name", "", "the new name")
	owner := fs.String("owner", "", "the new owner's account (a member of the topic)")
	extra := fs.String("extra", "", "the new custom data (at most 10 KB)")
	return func(set map[string]bool) (reqBody, error) {
		if err := requireFlag(set, *account, "account"); err != nil {
			return nil, err
		}
		id, err := requiredTopic(set, *topic)
		if err != nil {
			return nil, err
		}
		b := reqBody{{"account", *account}, {"topicId", id}}
		if set["name"] {
			if *name == "" {
				return nil, errors.New("--name must not be empty")
			}
			b = append(b, field{"topicName", *name})
		}
		if set["owner"] {
			if *owner == "" {
				return nil, errors.New("--owner must not be empty")
			}
			b = append(b, field{"ownerAccount", *owner})
		}
		if set["extra"] {
			b = append(b, field{"extra", *extra})
		}
		if len(b) == 2 {
			return nil, errors.New("give at least one of --name, --owner, --extra")
		}
		return b, nil
	}
}

func topicDeleteFlags(fs *flag.FlagSet) func(map[string]bool) (reqBody, error) {
	topic := topicFlag(fs)
	account := fs.String("account", "", "the owner's account (the upstream may require it: only the owner may delete a topic)")
	return func(set map[string]bool) (reqBody, error) {
		id, err := requiredTopic(set, *topic)
		if err != nil {
			return nil, err
		}
		b := reqBody{{"topicId", id}}
		if set["account"] {
			if *account == "" {
				return nil, errors.New("--account must not be empty")
			}
			b = append(b, field{"account", *account})
		}
		return b, nil
	}
}

func topicMembersFlags(fs *flag.FlagSet) func(map[string]bool) (reqBody, error) {
	topic := topicFlag(fs)
	start := fs.String("start-uuid", "", "start the listing at this member uuid (default 0: the first page)")
	all := fs.Bool("all", false, "fetch every page and merge them")
	return func(set map[string]bool) (reqBody, error) {
		id, err := requiredTopic(set, *topic)
		if err != nil {
			return nil, err
		}
		b := reqBody{{"topicId", id}}
		if set["start-uuid"] {
			s, err := parseID("start-uuid", *start)
			if err != nil {
				return nil, err
			}
			if strings.HasPrefix(s, "-") {
				return nil, errors.New("--start-uuid must not be negative")
			}
			b = append(b, field{"startUuid", s})
		}
		if *all {
			b = append(b, field{"all", true})
		}
		return b, nil
	}
}

func topicListFlags(fs *flag.FlagSet) func(map[string]bool) (reqBody, error) {
	account := fs.String("account", "", "the account whose topics are listed")
	return func(set map[string]bool) (reqBody, error) {
		if err := requireFlag(set, *account, "account"); err != nil {
			return nil, err
		}
		return reqBody{{"account", *account}}, nil
	}
}

func topicOnlyFlags(fs *flag.FlagSet) func(map[string]bool) (reqBody, error) {
	topic := topicFlag(fs)
	return func(set map[string]bool) (reqBody, error) {
		id, err := requiredTopic(set, *topic)
		if err != nil {
			return nil, err
		}
		return reqBody{{"topicId", id}}, nil
	}
}

func topicForbidFlags(fs *flag.FlagSet) func(map[string]bool) (reqBody, error) {
	topic := topicFlag(fs)
	user := fs.String("user", "", "the member's account (this --user is not the NATS user: give that before the command)")
	seconds := fs.Int64("seconds", 0, "how long the member may not send, in seconds (0 lifts the ban; at most 315360000)")
	return func(set map[string]bool) (reqBody, error) {
		id, err := requiredTopic(set, *topic)
		if err != nil {
			return nil, err
		}
		if err := requireFlag(set, *user, "user"); err != nil {
			return nil, err
		}
		if !set["seconds"] {
			return nil, errors.New("--seconds is required (0 lifts the ban)")
		}
		if *seconds < 0 || *seconds > 315360000 {
			return nil, fmt.Errorf("--seconds must be between 0 and 315360000 (ten years), got %d", *seconds)
		}
		return reqBody{{"topicId", id}, {"user", *user}, {"forbidSeconds", *seconds}}, nil
	}
}

func certificateFlags(fs *flag.FlagSet) func(map[string]bool) (reqBody, error) {
	env := fs.Int("environment", 1, "0 development, 1 production")
	provider := fs.Int("provider", 0, "1 APNs, 2 Huawei, 3 Xiaomi, 4 Meizu, 5 VIVO, 6 OPPO, 7 FCM")
	return func(set map[string]bool) (reqBody, error) {
		if *env != 0 && *env != 1 {
			return nil, fmt.Errorf("--environment must be 0 (development) or 1 (production), got %d", *env)
		}
		if !set["provider"] {
			return nil, errors.New("--provider is required (1 APNs, 2 Huawei, 3 Xiaomi, 4 Meizu, 5 VIVO, 6 OPPO, 7 FCM)")
		}
		if *provider < 1 || *provider > 7 {
			return nil, fmt.Errorf("--provider must be between 1 and 7, got %d", *provider)
		}
		return reqBody{{"environment", *env}, {"provider", *provider}}, nil
	}
}

func taskDetailFlags(fs *flag.FlagSet) func(map[string]bool) (reqBody, error) {
	tasks := &listFlag{split: true}
	fs.Var(tasks, "task", "a notify task id (repeatable, or a comma-separated list)")
	return func(map[string]bool) (reqBody, error) {
		if len(tasks.values) == 0 {
			return nil, errors.New("--task is required")
		}
		ids := make([]json.Number, len(tasks.values))
		for i, v := range tasks.values {
			s, err := parseID("task", v)
			if err != nil {
				return nil, err
			}
			ids[i] = json.Number(s)
		}
		return reqBody{{"task_ids", ids}}, nil
	}
}

// Table output.

// scalar returns a JSON value as text: a string's content, a number's digits, the JSON of
// anything else.
func scalar(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	if string(raw) == "null" {
		return ""
	}
	return string(raw)
}

// object decodes data that should be a JSON object, keeping each value's text.
func object(data json.RawMessage) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return nil, fmt.Errorf("data is not a JSON object: %s", abbreviate(data))
	}
	return m, nil
}

func abbreviate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// keyOrder is the order known fields are shown in; other fields follow, sorted.
var keyOrder = []string{"topicId", "topicName", "ownerAccount", "ownerUuid", "memberNum", "userCnt", "extra",
	"name", "app_id", "app_key", "app_secret", "certificate"}

func orderedKeys(m map[string]json.RawMessage) []string {
	rank := map[string]int{}
	for i, k := range keyOrder {
		rank[k] = i + 1
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		ri, rj := rank[keys[i]], rank[keys[j]]
		switch {
		case ri != 0 && rj != 0:
			return ri < rj
		case ri != 0 || rj != 0:
			return ri != 0
		}
		return keys[i] < keys[j]
	})
	return keys
}

// printObject prints an object's fields as key/value rows; hide names fields whose values
// are replaced by hiddenValue.
func (a *app) printObject(m map[string]json.RawMessage, hide map[string]bool) {
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	for _, k := range orderedKeys(m) {
		v := scalar(m[k])
		if hide[k] {
			v = hiddenValue
		}
		fmt.Fprintf(tw, "%s\t%s\n", k, oneLine(v))
	}
	tw.Flush()
}

// oneLine keeps a value on its row.
func oneLine(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`, "\t", `\t`).Replace(s)
}

// printKeyValues prints object data as key/value rows (topic create, update, info).
func printKeyValues(a *app, req reqBody, data json.RawMessage) error {
	if isEmpty(data) {
		if id := req.get("topicId"); id != nil {
			fmt.Fprintf(a.stdout, "ok: topic %v\n", id)
		} else {
			fmt.Fprintln(a.stdout, "ok")
		}
		return nil
	}
	m, err := object(data)
	if err != nil {
		return err
	}
	a.printObject(m, nil)
	return nil
}

// isEmpty is true for data that says nothing: null or "".
func isEmpty(data json.RawMessage) bool {
	s := string(bytes.TrimSpace(data))
	return s == "" || s == "null" || s == `""` || s == "{}"
}

// printDone prints a line for calls whose data is empty (topic delete).
func printDone(format string) func(*app, reqBody, json.RawMessage) error {
	return func(a *app, req reqBody, data json.RawMessage) error {
		fmt.Fprintf(a.stdout, format+"\n", req.get("topicId"))
		if !isEmpty(data) {
			fmt.Fprintln(a.stdout, scalar(data))
		}
		return nil
	}
}

func printForbid(a *app, req reqBody, data json.RawMessage) error {
	topic, user, secs := req.get("topicId"), req.get("user"), req.get("forbidSeconds")
	if secs == int64(0) {
		fmt.Fprintf(a.stdout, "user %s may send to topic %s again\n", user, topic)
	} else {
		fmt.Fprintf(a.stdout, "user %s may not send to topic %s for %ds\n", user, topic, secs)
	}
	if !isEmpty(data) {
		fmt.Fprintln(a.stdout, scalar(data))
	}
	return nil
}

// printMembers prints the members of a topic: ACCOUNT and UUID columns, then a count line
// and, when there are more, how to continue.
func printMembers(a *app, req reqBody, data json.RawMessage) error {
	if isEmpty(data) {
		fmt.Fprintln(a.stdout, "0 members")
		return nil
	}
	var page struct {
		Members       []map[string]json.RawMessage `json:"members"`
		Count         json.RawMessage              `json:"count"`
		IsEnd         json.RawMessage              `json:"isEnd"`
		NextStartUUID string                       `json:"nextStartUuid"`
	}
	if err := json.Unmarshal(data, &page); err != nil {
		return fmt.Errorf("data is not a member list: %v: %s", err, abbreviate(data))
	}
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tUUID")
	last := ""
	var lastN int64 = -1
	for _, m := range page.Members {
		account := m["appAccount"]
		if account == nil {
			account = m["appAccout"] // sic: the doc's spelling
		}
		uuid := scalar(m["uuid"])
		if n, err := strconv.ParseInt(uuid, 10, 64); err == nil && n > lastN {
			lastN, last = n, uuid
		}
		fmt.Fprintf(tw, "%s\t%s\n", oneLine(scalar(account)), uuid)
	}
	tw.Flush()
	line := fmt.Sprintf("%d members", len(page.Members))
	if c := scalar(page.Count); c != "" && c != strconv.Itoa(len(page.Members)) {
		line += " (count " + c + ")"
	}
	fmt.Fprintln(a.stdout, line)
	next := page.NextStartUUID
	if next == "" && !jsonTrue(page.IsEnd) && page.IsEnd != nil && last != "" {
		next = last
	}
	if next != "" {
		again := fmt.Sprintf("pushctl topic members --topic %v --start-uuid %s", req.get("topicId"), next)
		if req.get("all") != nil {
			again += " --all"
		}
		fmt.Fprintf(a.stdout, "more members follow: %s\n", again)
	}
	return nil
}

// jsonTrue reads a flag sent as true, "true", 1 or "1".
func jsonTrue(raw json.RawMessage) bool {
	v := strings.ToLower(strings.TrimSpace(scalar(raw)))
	return v == "true" || v == "1"
}

// printTopicList prints one topic id per row.
func printTopicList(a *app, req reqBody, data json.RawMessage) error {
	var ids []json.RawMessage
	if !isEmpty(data) {
		if err := json.Unmarshal(data, &ids); err != nil {
			return fmt.Errorf("data is not a list of topic ids: %s", abbreviate(data))
		}
	}
	if len(ids) == 0 {
		fmt.Fprintf(a.stdout, "account %s is a member of no topic\n", req.get("account"))
		return nil
	}
	fmt.Fprintln(a.stdout, "TOPIC ID")
	for _, id := range ids {
		fmt.Fprintln(a.stdout, scalar(id))
	}
	return nil
}

// printOnline prints a topic's id and its online user count.
func printOnline(a *app, req reqBody, data json.RawMessage) error {
	m, err := object(data)
	if err != nil {
		return err
	}
	topic := scalar(m["topicId"])
	if topic == "" {
		topic = fmt.Sprint(req.get("topicId"))
	}
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC ID\tONLINE USERS")
	fmt.Fprintf(tw, "%s\t%s\n", topic, scalar(m["userCnt"]))
	return tw.Flush()
}

// printCertificate prints a certificate's fields, its secrets hidden.
func printCertificate(a *app, _ reqBody, data json.RawMessage) error {
	if isEmpty(data) {
		fmt.Fprintln(a.stdout, "no certificate")
		return nil
	}
	m, err := object(data)
	if err != nil {
		return err
	}
	a.printObject(m, certificateSecrets)
	return nil
}

// taskSuffixes are the per-channel counters of a task's stats, in column order.
var taskSuffixes = []string{"_target", "_sent", "_received"}

// printTaskDetail prints one row per task and channel: TASK, CHANNEL, TARGET, SENT,
// RECEIVED. Requested tasks missing from the answer are named on stderr.
func printTaskDetail(a *app, req reqBody, data json.RawMessage) error {
	var tasks []map[string]json.RawMessage
	if !isEmpty(data) {
		if err := json.Unmarshal(data, &tasks); err != nil {
			return fmt.Errorf("data is not a list of task stats: %s", abbreviate(data))
		}
	}
	seen := map[string]bool{}
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	if len(tasks) > 0 {
		fmt.Fprintln(tw, "TASK\tCHANNEL\tTARGET\tSENT\tRECEIVED")
	}
	for _, t := range tasks {
		id := scalar(t["task_id"])
		seen[id] = true
		channels := map[string]bool{}
		for k := range t {
			for _, s := range taskSuffixes {
				if c, ok := strings.CutSuffix(k, s); ok && c != "" {
					channels[c] = true
				}
			}
		}
		names := make([]string, 0, len(channels))
		for c := range channels {
			names = append(names, c)
		}
		sort.Strings(names)
		for _, c := range names {
			row := []string{id, c}
			for _, s := range taskSuffixes {
				v := scalar(t[c+s])
				if v == "" {
					v = "-"
				}
				row = append(row, v)
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		if len(names) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\n", id)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	ids, _ := req.get("task_ids").([]json.Number)
	var missing []string
	for _, id := range ids {
		if !seen[string(id)] {
			missing = append(missing, string(id))
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(a.stderr, "pushctl: no stats for task %s (unknown task, or of another app)\n", strings.Join(missing, ", "))
	}
	return nil
}
