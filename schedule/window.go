package schedule

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rotator/rotator/policy"
)

// day is the length of a civil day on the wall clock.
const day = 24 * time.Hour

// Date is a civil date (no time, no zone); it is read in the window's zone.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// dateOf returns the civil date of t in t's location.
func dateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date{y, m, d}
}

func (d Date) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, d.Month, d.Day) }

// compare orders dates: -1, 0 or +1.
func (d Date) compare(o Date) int {
	switch {
	case d.Year != o.Year:
		return cmpInt(d.Year, o.Year)
	case d.Month != o.Month:
		return cmpInt(int(d.Month), int(o.Month))
	default:
		return cmpInt(d.Day, o.Day)
	}
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// DateRange is an inclusive range of civil dates.
type DateRange struct {
	First, Last Date
}

// Contains reports whether d lies in the range, both ends included.
func (r DateRange) Contains(d Date) bool {
	return r.First.compare(d) <= 0 && d.compare(r.Last) <= 0
}

func (r DateRange) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	return r.First.String() + ".." + r.Last.String()
}

// Window limits when rotations may start. A nil *Window allows every
// instant.
//
// An occurrence of the window opens at Start (a wall-clock offset in the
// day, in Loc) on each allowed weekday and closes at End; End < Start wraps
// past midnight, so the occurrence belongs to the weekday it opens on
// ("mon 22:00-04:00" runs from Monday night into Tuesday morning). Start ==
// End == 0 means all day. An instant whose local date is a blackout date is
// never allowed, whatever occurrence it belongs to.
type Window struct {
	// Days are the allowed weekdays; empty means every day.
	Days []time.Weekday
	// Start and End are wall-clock offsets from midnight, 0 ≤ Start < 24h,
	// 0 ≤ End ≤ 24h.
	Start, End time.Duration
	// Loc is the zone the window is read in; nil means UTC.
	Loc *time.Location
	// Blackouts are inclusive date ranges, in Loc, on which nothing starts.
	Blackouts []DateRange
}

// CompileWindow checks a window from policies.yaml and compiles it. A nil
// spec gives a nil *Window (no restriction). The zone is the spec's own,
// then defaultTZ, then UTC.
func CompileWindow(spec *policy.WindowSpec, defaultTZ string) (*Window, error) {
	return compileWindowWith(spec, defaultTZ, time.LoadLocation)
}

// compileWindowWith is CompileWindow with load to load the zone.
func compileWindowWith(spec *policy.WindowSpec, defaultTZ string, load func(string) (*time.Location, error)) (*Window, error) {
	if spec == nil {
		return nil, nil
	}
	w, err := compileWindow(spec, defaultTZ, load)
	if err != nil && spec.Pos.File != "" {
		return nil, fmt.Errorf("%s: %w", spec.Pos, err)
	}
	return w, err
}

func compileWindow(spec *policy.WindowSpec, defaultTZ string, load func(string) (*time.Location, error)) (*Window, error) {
	w := &Window{}
	for _, s := range spec.Days {
		d, ok := weekdays[strings.ToLower(strings.TrimSpace(s))]
		if !ok {
			return nil, fmt.Errorf("window days: unknown day %q (want mon, tue, wed, thu, fri, sat or sun)", s)
		}
		if !slices.Contains(w.Days, d) {
			w.Days = append(w.Days, d)
		}
	}
	slices.Sort(w.Days)
	if len(w.Days) == 7 {
		w.Days = nil
	}
	if h := strings.TrimSpace(spec.Hours); h != "" {
		from, to, ok := strings.Cut(h, "-")
		var err1, err2 error
		if ok {
			w.Start, err1 = parseClock(from, false)
			w.End, err2 = parseClock(to, true)
		}
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("window hours %q: want HH:MM-HH:MM, e.g. 02:00-05:00 (may wrap past midnight: 22:00-04:00)", spec.Hours)
		}
		if w.Start == 0 && w.End == day {
			w.End = 0 // 00:00-24:00 is all day; 22:00-24:00 keeps End = 24h
		}
		if w.Start == w.End && w.Start != 0 {
			return nil, fmt.Errorf("window hours %q: the window is empty; leave hours out for all day", spec.Hours)
		}
	}
	tz := spec.TimeZone
	if tz == "" {
		tz = defaultTZ
	}
	if tz == "" {
		tz = "UTC"
	}
	loc, err := load(tz)
	if err != nil {
		return nil, fmt.Errorf("window time zone %q: want an IANA name such as Europe/Berlin: %w", tz, err)
	}
	w.Loc = loc
	for _, b := range spec.Blackouts {
		r, err := parseDateRange(strings.TrimSpace(b))
		if err != nil {
			return nil, fmt.Errorf("window blackout %q: %w", b, err)
		}
		w.Blackouts = append(w.Blackouts, r)
	}
	return w, nil
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// parseClock parses "HH:MM"; "24:00" only when allow24.
func parseClock(s string, allow24 bool) (time.Duration, error) {
	hs, ms, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok || len(hs) != 2 || len(ms) != 2 {
		return 0, fmt.Errorf("bad clock %q", s)
	}
	h, err1 := strconv.Atoi(hs)
	m, err2 := strconv.Atoi(ms)
	if err1 != nil || err2 != nil || h < 0 || m < 0 || m > 59 || h > 24 || (h == 24 && (m != 0 || !allow24)) {
		return 0, fmt.Errorf("bad clock %q", s)
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute, nil
}

func parseDateRange(s string) (DateRange, error) {
	from, to, isRange := strings.Cut(s, "..")
	first, err := parseDate(from)
	if err != nil {
		return DateRange{}, err
	}
	last := first
	if isRange {
		if last, err = parseDate(to); err != nil {
			return DateRange{}, err
		}
		if last.compare(first) < 0 {
			return DateRange{}, fmt.Errorf("range ends before it starts (want FIRST..LAST)")
		}
	}
	return DateRange{first, last}, nil
}

func parseDate(s string) (Date, error) {
	t, err := time.Parse(time.DateOnly, strings.TrimSpace(s))
	if err != nil {
		return Date{}, fmt.Errorf("want a date YYYY-MM-DD or a range YYYY-MM-DD..YYYY-MM-DD")
	}
	return dateOf(t), nil
}

func (w *Window) loc() *time.Location {
	if w.Loc == nil {
		return time.UTC
	}
	return w.Loc
}

func (w *Window) allDay() bool { return w.Start == 0 && w.End == 0 }

func (w *Window) dayAllowed(d time.Weekday) bool {
	return len(w.Days) == 0 || slices.Contains(w.Days, d)
}

func (w *Window) blackedOut(d Date) bool {
	for _, r := range w.Blackouts {
		if r.Contains(d) {
			return true
		}
	}
	return false
}

// Contains reports whether a rotation may start at t. A nil window allows
// every instant.
func (w *Window) Contains(t time.Time) bool {
	if w == nil {
		return true
	}
	lt := t.In(w.loc())
	if w.blackedOut(dateOf(lt)) {
		return false
	}
	wd := lt.Weekday()
	if w.allDay() {
		return w.dayAllowed(wd)
	}
	c := clockOf(lt)
	if w.Start < w.End {
		return c >= w.Start && c < w.End && w.dayAllowed(wd)
	}
	// Wraps past midnight: the part after midnight belongs to yesterday's
	// occurrence.
	if c >= w.Start {
		return w.dayAllowed(wd)
	}
	if c < w.End {
		return w.dayAllowed((wd + 6) % 7)
	}
	return false
}

// clockOf is the wall-clock offset of lt from its midnight.
func clockOf(lt time.Time) time.Duration {
	h, m, s := lt.Clock()
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute +
		time.Duration(s)*time.Second + time.Duration(lt.Nanosecond())
}

// flips returns, in order, every instant in [from, to) at which Contains can
// change its answer: from itself, each instant whose wall clock reads
// 00:00, Start or End (none in a DST gap, two in a repeated hour), and each
// zone transition. Between two consecutive flips Contains is constant.
func (w *Window) flips(from, to time.Time) []time.Time {
	loc := w.loc()
	clocks := []time.Duration{0, w.Start, w.End}
	out := []time.Time{from}
	for a := from; a.Before(to); {
		la := a.In(loc)
		_, off := la.Zone()
		_, next := la.ZoneBounds()
		b := to
		if !next.IsZero() && next.Before(to) {
			b = next
		}
		o := time.Duration(off) * time.Second
		// Wall clock read as UTC over the span [a, b) with a fixed offset.
		wa, wb := a.UTC().Add(o), b.UTC().Add(o)
		for d := time.Date(wa.Year(), wa.Month(), wa.Day(), 0, 0, 0, 0, time.UTC); d.Before(wb); d = d.AddDate(0, 0, 1) {
			for _, c := range clocks {
				inst := d.Add(c).Add(-o)
				if !inst.Before(a) && inst.Before(b) {
					out = append(out, inst)
				}
			}
		}
		if b.Before(to) {
			out = append(out, b)
		}
		a = b
	}
	slices.SortFunc(out, func(x, y time.Time) int { return x.Compare(y) })
	return slices.CompactFunc(out, func(x, y time.Time) bool { return x.Equal(y) })
}

// searchChunk bounds how much of the calendar one call to flips covers.
const searchChunk = 8 * day

// firstAllowed returns the first instant ≥ t inside the window, looking no
// further than t+horizon.
func (w *Window) firstAllowed(t time.Time, horizon time.Duration) (time.Time, bool) {
	if w.Contains(t) {
		return t, true
	}
	end := t.Add(horizon)
	for from := t; from.Before(end); from = from.Add(searchChunk) {
		to := end
		if from.Add(searchChunk).Before(end) {
			to = from.Add(searchChunk)
		}
		for _, p := range w.flips(from, to) {
			if w.Contains(p) {
				return p, true
			}
		}
	}
	return time.Time{}, false
}

// firstClosed returns the first instant ≥ t outside the window, looking no
// further than t+horizon; ok is false when the window stays open that long.
func (w *Window) firstClosed(t time.Time, horizon time.Duration) (time.Time, bool) {
	if w == nil {
		return time.Time{}, false
	}
	end := t.Add(horizon)
	for from := t; from.Before(end); from = from.Add(searchChunk) {
		to := end
		if from.Add(searchChunk).Before(end) {
			to = from.Add(searchChunk)
		}
		for _, p := range w.flips(from, to) {
			if !w.Contains(p) {
				return p, true
			}
		}
	}
	return time.Time{}, false
}

// opening returns the instant the occurrence containing t opened, for a
// window with hours; ok is false when t is outside every occurrence (a
// blackout does not matter here) or the window is all day.
func (w *Window) opening(t time.Time) (time.Time, bool) {
	if w == nil || w.allDay() {
		return time.Time{}, false
	}
	lt := t.In(w.loc())
	c := clockOf(lt)
	y, m, d := lt.Date()
	var open time.Time
	switch {
	case w.Start < w.End && c >= w.Start && c < w.End && w.dayAllowed(lt.Weekday()):
		open = time.Date(y, m, d, 0, 0, 0, 0, w.loc())
	case w.Start > w.End && c >= w.Start && w.dayAllowed(lt.Weekday()):
		open = time.Date(y, m, d, 0, 0, 0, 0, w.loc())
	case w.Start > w.End && c < w.End && w.dayAllowed((lt.Weekday()+6)%7):
		open = time.Date(y, m, d-1, 0, 0, 0, 0, w.loc())
	default:
		return time.Time{}, false
	}
	// The first instant of that day whose wall clock reads Start or later
	// (the transition instant when Start falls in a DST gap).
	for _, p := range w.flips(open.Add(-3*time.Hour), open.Add(day+3*time.Hour)) {
		lp := p.In(w.loc())
		if dateOf(lp) == (Date{open.Year(), open.Month(), open.Day()}) && clockOf(lp) >= w.Start && !p.After(t) {
			return p, true
		}
	}
	return time.Time{}, false
}

// String describes the window for people: "Tue 02:00–05:00 Europe/Berlin".
func (w *Window) String() string {
	if w == nil {
		return "any time"
	}
	var b strings.Builder
	if len(w.Days) == 0 {
		b.WriteString("every day")
	} else {
		for i, d := range w.Days {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(d.String()[:3])
		}
	}
	if w.allDay() {
		b.WriteString(" all day")
	} else {
		fmt.Fprintf(&b, " %s–%s", fmtClock(w.Start), fmtClock(w.End))
	}
	b.WriteString(" " + w.loc().String())
	if n := len(w.Blackouts); n > 0 {
		parts := make([]string, n)
		for i, r := range w.Blackouts {
			parts[i] = r.String()
		}
		b.WriteString(" except " + strings.Join(parts, ", "))
	}
	return b.String()
}

func fmtClock(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
}
