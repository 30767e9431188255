package schedule

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// MinInterval is the shortest interval a rule may have, and the shortest gap
// allowed between two firings of a cron rule.
const MinInterval = time.Hour

// Horizon is how far past the base time Next looks for an open window.
const Horizon = 366 * day

// ErrNoSlot means a window has no allowed instant within Horizon of the
// base time: every allowed day is blacked out, or the only allowed hour
// never exists (a DST gap). Next wraps it; test with errors.Is.
var ErrNoSlot = errors.New("no allowed start time")

// Rule is the compiled schedule of one secret.
type Rule struct {
	// Interval between rotations, at least MinInterval. A whole number of
	// days is added as calendar days in Loc (the same wall-clock time, DST
	// or not); anything else is added as elapsed time.
	Interval time.Duration
	// Cron replaces Interval when set: the base is its next firing after
	// the last success, read in Loc. Build it with ParseCron.
	Cron cron.Schedule
	// Window limits when rotations may start; nil allows any time.
	Window *Window
	// Jitter is the maximum spread added after the window, derived from
	// the secret id; 0 disables it.
	Jitter time.Duration
	// RetryAfter (retry.next_run) is how long after a failed attempt began
	// the secret is due again (see Due).
	RetryAfter time.Duration
	// Loc is the zone for Cron and for whole-day intervals; nil means the
	// window's zone, then UTC.
	Loc *time.Location
	// Peers, when it lists the secret itself and at least one other id,
	// are the secrets that should not rotate in the same minute as this
	// one (those sharing a database server, say). Their jitter is then
	// placed by rank instead of by the id's hash alone: evenly spaced over
	// the span, so n peers due together are span/n apart. Changing the set
	// moves the slots of its members.
	Peers *Peers
}

// Validate checks the rule; Next calls it.
func (r Rule) Validate() error {
	if r.Cron == nil && r.Interval < MinInterval {
		return fmt.Errorf("schedule interval %s: want at least %s", fmtDuration(r.Interval), fmtDuration(MinInterval))
	}
	if r.Jitter < 0 {
		return fmt.Errorf("schedule jitter %s: want zero or more", r.Jitter)
	}
	return nil
}

// Allows reports whether a rotation may start at t (inside the window).
func (r Rule) Allows(t time.Time) bool { return r.Window.Contains(t) }

func (r Rule) location() *time.Location {
	switch {
	case r.Loc != nil:
		return r.Loc
	case r.Window != nil:
		return r.Window.loc()
	}
	return time.UTC
}

// Explanation tells how Next arrived at a due time, for `rotator plan`.
type Explanation struct {
	// Base is the due time before the window and the jitter.
	Base time.Time
	// Reason says where Base comes from.
	Reason string
	// Steps are the adjustments made to Base, in order.
	Steps []string
}

// String joins the reason and the steps in one line.
func (e Explanation) String() string {
	return strings.Join(append([]string{e.Reason}, e.Steps...), "; ")
}

// Next returns when the secret is next due: the base (the last success plus
// the interval, or the next cron firing after it; now when the secret was
// never rotated, i.e. lastSuccess is zero), moved to the first instant at or
// after it inside the window, plus the jitter kept inside that stretch of the
// window. See the package documentation for the rules.
//
// The result depends on now only for a never-rotated secret: compute it once
// and store it. It may lie before now (the secret is overdue); the caller
// then starts the rotation at the first tick where Allows(now).
func (r Rule) Next(secretID string, lastSuccess, now time.Time) (time.Time, Explanation, error) {
	var ex Explanation
	if err := r.Validate(); err != nil {
		return time.Time{}, ex, err
	}
	loc := r.location()
	var base time.Time
	switch {
	case lastSuccess.IsZero():
		base = now.In(loc)
		ex.Reason = "never rotated: due now " + fmtTime(base)
	case r.Cron != nil:
		base = r.Cron.Next(lastSuccess.In(loc))
		if base.IsZero() {
			return time.Time{}, ex, fmt.Errorf("secret %q: cron schedule never fires after %s: %w", secretID, fmtTime(lastSuccess.In(loc)), ErrNoSlot)
		}
		ex.Reason = fmt.Sprintf("last success %s; next cron firing %s", fmtTime(lastSuccess.In(loc)), fmtTime(base))
	default:
		from := lastSuccess.In(loc)
		ex.Reason = "last success " + fmtTime(from)
		// A success inside a window counts from the window's opening, so
		// the secret keeps its slot instead of drifting later each time.
		if open, ok := r.Window.opening(lastSuccess); ok && r.Interval >= day {
			from = open.In(loc)
			ex.Reason += fmt.Sprintf(" (in the window opened %s)", fmtTime(from))
		}
		base = addInterval(from, r.Interval, loc)
		ex.Reason += fmt.Sprintf(" + %s = %s", fmtDuration(r.Interval), fmtTime(base))
	}
	ex.Base = base
	due, err := r.place(secretID, base, &ex)
	if err != nil {
		return time.Time{}, ex, err
	}
	if !lastSuccess.IsZero() && due.Before(now) {
		ex.Steps = append(ex.Steps, fmt.Sprintf("overdue since %s: starts at the first tick inside the window", fmtTime(due.In(loc))))
	}
	return due.In(loc), ex, nil
}

// place moves base into the window and adds the jitter kept inside that
// stretch of the window (steps 2 and 3 of Next), noting each move in ex.
func (r Rule) place(secretID string, base time.Time, ex *Explanation) (time.Time, error) {
	loc := r.location()
	due, ok := r.Window.firstAllowed(base, Horizon)
	if !ok {
		return time.Time{}, fmt.Errorf("secret %q: window %s is closed for %d days after %s: %w",
			secretID, r.Window, Horizon/day, fmtTime(base.In(loc)), ErrNoSlot)
	}
	if !due.Equal(base) {
		ex.Steps = append(ex.Steps, fmt.Sprintf("moved to the window %s: %s", r.Window, fmtTime(due.In(loc))))
	}
	if r.Jitter > 0 {
		span, note := r.Jitter, ""
		if r.Window != nil {
			if closes, ok := r.Window.firstClosed(due, r.Jitter); ok {
				span = closes.Sub(due)
				note = fmt.Sprintf("; scaled to the %s left in the window", fmtDuration(span))
			}
		}
		frac, from := fraction(secretID, r.Peers)
		j := scale(frac, span)
		due = due.Add(j)
		ex.Steps = append(ex.Steps, fmt.Sprintf("jitter +%s (%s%s) = %s", fmtDuration(j), from, note, fmtTime(due.In(loc))))
	}
	return due, nil
}

// addInterval adds d to t: whole days as calendar days in loc, anything
// else as elapsed time.
func addInterval(t time.Time, d time.Duration, loc *time.Location) time.Time {
	if d%day == 0 {
		return t.In(loc).AddDate(0, 0, int(d/day))
	}
	return t.Add(d)
}

// Jitter returns the secret's deterministic spread in [0, max): the first 53
// bits of SHA-256(secretID) as a fraction of max, in whole seconds. It is
// what Next adds when neither the window nor Peers limit it.
func Jitter(secretID string, max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return scale(hashFraction(secretID), max)
}

func scale(frac float64, span time.Duration) time.Duration {
	return time.Duration(frac * float64(span)).Truncate(time.Second)
}

func hashFraction(id string) float64 {
	sum := sha256.Sum256([]byte(id))
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
}

// fraction is where in the jitter span the secret lands, in [0, 1), and
// where that came from.
func fraction(id string, peers *Peers) (float64, string) {
	k, n, ok := peers.slot(id)
	if !ok {
		return hashFraction(id), "derived from id"
	}
	return (float64(k) + 0.5) / float64(n), fmt.Sprintf("slot %d of %d peers, derived from ids", k+1, n)
}

// Peers is a set of secrets that should not rotate in the same minute
// (Rule.Peers). It ranks its members by their ids' hashes once, on first
// use, and is then read-only: safe for concurrent use. (Ranking them at
// each due time made a sync of n peers cost n² log n hashes: 31 ms a due
// time at 5,000 peers, BenchmarkNextWithPeers.)
type Peers struct {
	ids []string
	// listed is how many ids were given, duplicates included: fewer than
	// two rank nothing.
	listed int
	once   sync.Once
	ranked []peer
}

// peer is a member and its id's hash fraction, the order of the ranks.
type peer struct {
	frac float64
	id   string
}

func (a peer) compare(b peer) int {
	return cmp.Or(cmp.Compare(a.frac, b.frac), strings.Compare(a.id, b.id))
}

// NewPeers is the set of ids (duplicates count once); it keeps ids until
// its first use.
func NewPeers(ids ...string) *Peers { return &Peers{ids: ids, listed: len(ids)} }

// slot is id's rank k among n distinct peers; ok false when p lists fewer
// than two ids or not id (its jitter is then its hash's).
func (p *Peers) slot(id string) (k, n int, ok bool) {
	if p == nil {
		return 0, 0, false
	}
	if p.listed < 2 {
		return 0, 0, false
	}
	p.once.Do(p.rank)
	want := peer{frac: hashFraction(id), id: id}
	k, found := slices.BinarySearchFunc(p.ranked, want, peer.compare)
	if !found {
		return 0, 0, false
	}
	return k, len(p.ranked), true
}

// rank orders the ids by their hashes (then by id), once.
func (p *Peers) rank() {
	r := make([]peer, len(p.ids))
	for i, id := range p.ids {
		r[i] = peer{frac: hashFraction(id), id: id}
	}
	slices.SortFunc(r, peer.compare)
	p.ranked = slices.CompactFunc(r, func(a, b peer) bool { return a.id == b.id })
	p.ids = nil
}

// Overdue reports whether a credential last rotated at lastSuccess is older
// than 1.1 × interval at now. A never-rotated secret (zero lastSuccess) is
// due, not overdue: its age is unknown.
func Overdue(lastSuccess, now time.Time, interval time.Duration) bool {
	if lastSuccess.IsZero() || interval <= 0 {
		return false
	}
	return now.Sub(lastSuccess) > interval+interval/10
}

// ParseCron parses a 5-field cron spec or a descriptor (@weekly, @every 24h)
// with robfig/cron's standard parser ("CRON_TZ=Europe/Berlin 0 3 * * 1"
// fixes the zone; otherwise the rule's zone applies). A spec that fires more
// often than once per MinInterval, or never, is an error.
func ParseCron(spec string) (cron.Schedule, error) {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("cron %q: %w (want 5 fields such as \"0 3 * * 1\", or @weekly)", spec, err)
	}
	// The pattern of firings within a day repeats on every matching day, so
	// a few hundred firings show the shortest gap.
	prev := s.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if prev.IsZero() {
		return nil, fmt.Errorf("cron %q: never fires", spec)
	}
	for range 400 {
		next := s.Next(prev)
		if next.IsZero() {
			break
		}
		if gap := next.Sub(prev); gap < MinInterval {
			return nil, fmt.Errorf("cron %q: fires %s apart; rotations must be at least %s apart", spec, fmtDuration(gap), fmtDuration(MinInterval))
		}
		prev = next
	}
	return s, nil
}

// fmtDuration writes 90d, 1d12h, 17m30s, 0s.
func fmtDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	if d < 0 {
		b.WriteString("-")
		d = -d
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.unit
		}
	}
	if d > 0 {
		fmt.Fprintf(&b, "%dns", d)
	}
	return b.String()
}

func fmtTime(t time.Time) string { return t.Format("Mon 2006-01-02 15:04:05 MST") }
