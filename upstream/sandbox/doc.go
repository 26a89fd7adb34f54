// Package sandbox is an in-memory stand-in for the two upstreams pushworker delivers to
// (contract §8): Xiaomi MIMC's server push API (mimc-push-v2), its unlimited-group topic
// management API (mimc-topic) and the multi-vendor notification API (notify-push). It
// checks credentials and required fields, enforces the MIMC rate limits per app and class,
// hands out packet ids and task ids, keeps topics and notify task statistics, and can
// inject latency, errors and outages. Use it in tests (New + httptest, or Start on
// "127.0.0.1:0"), inside `pushworker --sandbox`, and as the program cmd/pushsandbox for
// benchmarks.
//
// # Answers
//
// Every answer is JSON of the upstreams' envelope {"code":C,"message":M,"data":D}.
// Where the docs leave the error answers open, the sandbox answers so that a client
// classifying by HTTP status first and the body code second (contract §10) reaches the
// right class:
//
//   - MIMC push and topic API, bad credentials (appId, appKey, appSecret missing, unknown
//     or wrong): HTTP 401, code 401. Token authentication (the "token" header) is not
//     supported and answers the same.
//   - MIMC, bad request (malformed JSON, a required field missing, a field of the wrong
//     type, msgType neither "" nor "base64", a message that is not valid base64 with
//     msgType "base64", a topic id given as a string to the push API, an appId that is not
//     a JSON integer): HTTP 400, code 400, the message naming the field.
//   - MIMC push to a topic deleted through the topic API (p2t, p2t/more, singleMsgPush,
//     multiMsgPush): HTTP 400, code 400, "topic <id> not exist". multiTopicPush instead
//     lists such topics in data.failTopicIds. Topic ids never created through the topic API
//     count as existing, so tests can push to any id.
//   - MIMC rate limit exceeded: HTTP 429, code 429, "rate limit exceeded".
//   - MIMC topic API, a topic that does not exist for the app (never created or deleted):
//     HTTP 400, code 404, "topic <id> not exist".
//   - MIMC topic API, an action only the owner may take asked by another account: HTTP
//     400, code 403. Not HTTP 403: pushworker reads HTTP 401/403 as "the app's credentials
//     are wrong" and pauses the app, while this is a rejection of one request.
//   - Notify: HTTP 200 with the documented codes: 10003 access-token missing, 40000 app_id
//     missing or unknown, 10008 access-token wrong, 10002 bad parameter, 12005 more than
//     500 targets. The rate limit, when one is configured for the "notify" class, answers
//     HTTP 429 as MIMC does.
//   - Any POST whose Content-Type is not application/json: HTTP 415, code 415.
//   - Unknown path: HTTP 404, code 404. Wrong method: HTTP 405, code 405.
//   - Outage (SetOutage): HTTP 503, code 503. FailNext: the status and body given.
//
// # Rate limits
//
// Each MIMC app has one limiter per class (p2p: /api/push/p2p/ and /api/push/p2p/more;
// p2t: /api/push/p2t/ and /api/push/p2t/more; ucs: the three /api/push/ucs/ endpoints)
// over an exact sliding one-second window of accepted tokens. A call of weight w is
// refused with 429 when the window already holds tokens and tokens + w exceed
// rate × (1 + RateTolerance). A call heavier than that bound is accepted into an empty
// window, so that a job heavier than one second of budget can still be delivered after
// its sender waited for its weight. Stats reports, per class, the worst window seen.
//
// # Topics
//
// Topic ids are 64-bit integers above 2^53 (so that a float64 round trip changes them),
// uuids are allocated per app and account on first sight. Member pages (userlist) hold at
// most 100 members with uuid greater than startUuid, sorted by uuid; "count" is the number
// of members on the page and "isEnd" is "true" on the last page. Values the doc shows
// quoted ("$topicId", "$memberNum", "$isEnd", ...) are JSON strings; values it shows bare
// (the create and update answers' topicId and ownerUuid, the topics list) are JSON numbers.
//
// # Control
//
// Go code controls the sandbox with SetLatency, SetOutage, FailNext, Reset and
// SetNotifyBoolAnswer, observes it with Requests, Stats, Topic and NotifyTask, and shapes
// topics with AddMember and SetOnline. The same is reachable over HTTP for another process
// (control requests are neither recorded, counted nor subject to faults):
//
//	GET  /_sandbox/health    {"ok":true}
//	GET  /_sandbox/stats     Stats as JSON
//	GET  /_sandbox/requests  the recorded requests, oldest first; ?path=<prefix> filters, ?limit=N keeps the last N
//	POST /_sandbox/reset     Reset
//	GET  /_sandbox/fault     the faults in force
//	POST /_sandbox/fault     {"latency_ms":N,"outage":bool,"fail_next":{"path":"/api/push/p2p/","n":3,"status":500,"body":"..."}}
//	                         every field optional; fail_next may be a list; answers the faults in force
//	POST /_sandbox/topic     {"topicId":N,"members":["a","b"],"online":N}: AddMember and SetOnline
//	POST /_sandbox/notify    {"bool_answer":bool}: SetNotifyBoolAnswer
//
// # Notify tasks
//
// A task's targets are set at creation from its audience ("all": 1000 devices, a tag: 20
// devices, an alias, user id or push token: one device) and spread over the mxpush channel
// and three vendor channels (only mxpush for distribution_strategy mxpush_only, no mxpush
// for ospush_only). Every StatsStep, "sent" grows by a third of the target and "received"
// follows one step behind, until both reach the target.
package sandbox
