// Package notify tells people about rotations: Slack (an incoming webhook,
// or a bot token with chat.postMessage) and generic webhooks that receive
// signed JSON.
//
// # Contract
//
//   - New(cfg, sinks...) starts one goroutine and one bounded queue per
//     sink. Notify(e) never blocks: it redacts the event, offers it to every
//     queue and returns. A full queue drops the event for that sink, logs
//     it and counts it. A slow or unreachable destination delays only its
//     own queue, and never a rotation.
//   - Each message is tried up to Retry.Attempts times with exponential
//     backoff (cenkalti/backoff), each try bounded by Retry.Timeout. A sink
//     marks errors retrying cannot fix with Permanent (HTTP 4xx, Slack
//     ok:false answers such as invalid_auth or channel_not_found).
//   - Close(ctx) stops intake and drains the queues until ctx is done; then
//     it cancels in-flight sends, drops what is left and says how many.
//   - Test(ctx) sends a test message to every sink at once, one try each,
//     and returns each sink's receipt or error (`rotator notify test`).
//   - FromPolicy maps policies.yaml's notify: section to sinks; the engine
//     sets Event.Channel from the secret's or class's slack_channel.
//
// # Events and filters
//
// Event is the module's one event type: the engine emits it (rotation's
// Engine.Events), the daemon's announcer emits overdue and upcoming, and the
// Notifier delivers it. Its Kind is a Kind (KindRotationFailed, ...), typed
// from the policy.Event* names policies.yaml may list. Each sink sends only
// the kinds its policy lists; the default is rotation_failed, rollback,
// quarantined, overdue, credential_broken and resolved. A Slack message is
// Block Kit: a header, fields (secret, class, failed step, attempt n of m,
// next try, run), the error in a code block, the detail, and a context
// block with the exact commands to retry or roll back. A webhook receives WebhookPayload as JSON.
//
// # Failure episodes
//
// Per secret and per sink, an alert kind (rotation_failed, rollback,
// quarantined, overdue, credential_broken) opens a failure episode when the
// alert is delivered. While the episode is open a repeat of a kind already posted is
// suppressed (counted with outcome "suppressed"); a new kind, such as a
// rollback after failures, is posted. The next rotation_succeeded (or
// resolved) for the secret ends the episode and posts one short "resolved"
// message: in Slack bot mode as a reply in the alert's thread (the alert's
// channel and ts are kept in the episode), in webhook modes as a plain
// message; a sink that lists rotation_succeeded but not resolved gets the
// success message instead. A success outside an episode is sent only to
// sinks that list rotation_succeeded. An alert that could not be delivered opens no
// episode, so the next one is tried again.
//
// Episodes live behind EpisodeStore. MemoryEpisodes keeps them in the
// process: a restart (or a new CronJob run) forgets them, so the first
// alert after it posts again and a success after it posts no "resolved".
// A store backed by the state database removes both effects; two processes
// sharing one may still both post an alert in a race, never lose one.
//
// # Redaction
//
// No plaintext secret may reach a message, a log line or a metric label.
// The engine redacts Error and Detail; Notify redacts every free-text field
// again (Error, Detail, Step, Commands) with Config.Redactor and the
// event's own Redactor before queueing. NewRedactor(values...) replaces
// each value, and its URL-escaped and base64 forms, with REDACTED. Sinks
// scrub their own credentials (a Slack webhook URL, a bot token) from the
// errors they return. Metric labels are only sink name, event kind (a fixed
// set) and outcome.
//
// # Metrics and logs
//
// rotator_notifications_total{sink, kind, outcome} counts every message by
// outcome: sent, failed, suppressed, dropped. Failures are logged with
// log/slog at error level ("notification failed") with snake_case keys:
// sink, kind, secret_id, run_id, tries, error.
//
// # Verifying a webhook
//
// Each POST carries:
//
//	Content-Type: application/json
//	X-Rotator-Event: rotation_failed
//	X-Rotator-Delivery: <id, the same on every retry of one message>
//	X-Rotator-Timestamp: <Unix seconds when this try was signed>
//	X-Rotator-Signature: sha256=<hex HMAC-SHA256(key, timestamp + "." + body)>
//
// The key is the webhook's secret from policies.yaml. A receiver reads the
// raw body (before any JSON parsing), computes the HMAC-SHA256 of the
// timestamp header, a ".", and the body, compares its hex form with the
// signature in constant time, and rejects a timestamp more than a few
// minutes from its own clock: the timestamp is signed, so an attacker who
// captured a delivery can neither replay it later nor change its time.
// Deduplicate retries with X-Rotator-Delivery. In Go:
//
//	err := notify.VerifySignature(key, r.Header.Get("X-Rotator-Timestamp"), body,
//		r.Header.Get("X-Rotator-Signature"), time.Now(), 5*time.Minute)
//
// With openssl:
//
//	printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$KEY"
//
// # What is left
//
// Episodes are in memory only (see above). Slack's Retry-After on HTTP 429
// is not honoured beyond the normal backoff.
package notify
