// Package schedule computes when secrets are due: intervals and cron rules,
// rotation windows, jitter, retries after a failed run, overdue checks, and
// the cron-driven ticker of the daemon. Apart from the Ticker it is pure: no
// clock, no database, no goroutines; callers pass now and store the result.
// Rules compiles them from a loaded policies file.
//
// # The one answer: Rule.Due
//
// Rule.Due(secretID, History, now) is the only function that says when a
// secret is next due; its answer is stored in one column
// (rotator_secrets.next_due_at) and every reader shows that. History is
// what the state records of the secret; the precedence is:
//
//  1. Quarantined: no due time at all, until `rotator resume`.
//  2. A failed last run (LastFailure, when the failed attempt began):
//     LastFailure + RetryAfter (retry.next_run), moved into the window,
//     plus the jitter, as steps 2 and 3 below.
//  3. Pinned: a time recorded once and never recomputed (a never-rotated
//     secret's first due time, the "due now" of a resume).
//  4. A last success: Next(LastSuccess), below.
//  5. Never rotated: Next from Adopted (adopt_age) or from now. This is the
//     only answer that depends on now; the caller records it and passes it
//     back as Pinned from then on.
//
// So the answer for a recorded history is the same whenever, and wherever,
// it is computed: by the engine after a run, by the schedule sync of `run
// --due` and of the daemon, and by plan, status and the dry run.
//
// # How a due time is computed
//
// Rule.Next(secretID, lastSuccess, now) takes three steps, each recorded in
// the Explanation that `rotator plan` prints:
//
//  1. Base. With an interval: lastSuccess + Interval. A whole number of days
//     is added as calendar days in the rule's zone, so "90d" keeps the wall
//     clock across DST; other intervals are elapsed time. If lastSuccess lies
//     inside an occurrence of a window with hours (and the interval is at
//     least a day), the interval counts from that occurrence's opening: the
//     rotation that started at 02:17 in a 02:00–05:00 window and succeeded
//     at 02:40 is next due 90 days after 02:00, not 02:40, so a secret keeps
//     its slot instead of creeping towards the window's end by the run time
//     plus its jitter every cycle. (The next rotation can therefore come up
//     to one window length earlier than lastSuccess + Interval.) With a cron
//     rule: the first firing after lastSuccess, in the rule's zone. A zero
//     lastSuccess means never rotated: the base is now. A caller that adopts
//     the age of an existing credential passes that version's creation time
//     as lastSuccess instead.
//  2. Window. The base moves to the first instant at or after it that the
//     window allows (see Windows). If there is none within Horizon (366
//     days), Next returns an error wrapping ErrNoSlot.
//  3. Jitter. A spread derived from the secret id is added (see Jitter).
//
// The result never precedes the base. It may precede now: the secret is
// overdue (the daemon was down, or the policy changed). The engine starts
// such a rotation at the first tick where Rule.Allows(now), i.e. inside the
// window; overdue secrets get no extra jitter, and the engine's per-target
// concurrency limit spaces them.
//
// For a never-rotated secret the result depends on now; compute it once and
// store it (the durable due set lives in the database), or it slides: Due
// does this through History.Pinned.
//
// # Jitter
//
// Each secret has a fraction in [0, 1): the first 53 bits of SHA-256 of its
// id, so it is stable across restarts and hosts and uniform over ids
// (Jitter(id, max) = fraction × max, in whole seconds). The jitter span is
// Rule.Jitter, shortened to what is left of the window's current open
// stretch when that is less: the jitter is the fraction times the span. So a
// jittered time never leaves the window occurrence the base was moved into.
// Scaling was chosen over the alternatives: clamping piles every secret with
// a long jitter onto the window's last instant, and taking the jitter modulo
// the remaining length scrambles the spacing of peers (below).
//
// Independent hashes cannot promise distinct minutes: 50 ids hashed into a
// 60-minute window share minutes like birthdays (about 34 distinct minutes
// expected). Secrets that must not rotate together (those on one database
// server) are listed as Rule.Peers: the peers are ordered by their hashes and
// the k-th of n gets the fraction (k+½)/n, so n peers due at the same moment
// land span/n apart: with a one-hour span, up to 60 peers get distinct
// minutes. Adding or removing a peer moves the others' slots.
//
// # Windows
//
// A Window (CompileWindow from policy.WindowSpec) has allowed weekdays,
// wall-clock hours Start–End in its zone, and inclusive blackout date
// ranges. An occurrence opens at Start on an allowed weekday and closes at
// End; when End < Start it wraps past midnight and belongs to the day it
// opens on ("mon 22:00-04:00" is Monday night into Tuesday morning). No
// hours means all day. An instant whose local date is blacked out is never
// allowed, even inside an occurrence that opened the day before. The hour
// is read from the wall clock, End excluded.
//
// # DST rules
//
// All arithmetic is on instants; wall clocks are only read, so a result is
// never before its base. Allowed instants are those whose local wall clock
// lies in the hours:
//
//   - Spring forward (Europe/Berlin 2026-03-29 02:00→03:00, America/New_York
//     2026-03-08): a window inside the skipped hour (02:00–03:00) does not
//     exist that day and the secret moves to the next allowed day's window;
//     a window that straddles the gap (02:30–04:00) opens at the transition
//     (03:00) and is shorter that day.
//   - Fall back (Europe/Berlin 2026-10-25 03:00→02:00, America/New_York
//     2026-11-01): the repeated hour is allowed both times, so the window is
//     longer that day; a base in the second pass stays where it is.
//   - Calendar-day intervals and cron rules are read in the rule's zone
//     (Rule.Loc, else the window's zone, else UTC).
//
// # Overdue
//
// Overdue(lastSuccess, now, interval) is true when the credential is older
// than 1.1 × interval (strictly); never rotated is not overdue. A window
// delays a rotation by up to one window period (a week for a weekly window),
// so an interval that is short next to its window can trip it: a 30-day
// interval in a weekly window may run 36 days apart.
//
// # Ticker
//
// Ticker runs a function on each firing of a cron spec (DefaultTick, every
// minute), in UTC, through cron.SkipIfStillRunning and cron.Recover: a tick
// that fires while the previous still runs is skipped and logged, and a
// panicking tick is logged and the next one runs. (Recover sits inside the
// skip wrapper: the other way round, a panic keeps the skip wrapper's token
// and every later tick is skipped.) It keeps
// no due times; each tick asks the database. Stop waits for a running tick;
// a stopped Ticker cannot be restarted.
package schedule
