package statuspage

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/rotator/rotator/daemon"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/report"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/state"
)

// DefaultRefresh is how long a read of the state database is served
// before the next view reads again, when Config.Refresh is zero.
const DefaultRefresh = 10 * time.Second

// DefaultRuns is how many runs a secret's page shows, newest first.
const DefaultRuns = 10

// DefaultRows is how many secrets one view of the list shows (the
// secrets that need a person first); the others are on the next pages
// (?page=N), and the search and the condition filter narrow all of them.
// At 100,000 secrets the whole list was a 51 MB page that took 10 s to
// render and took the daemon from 211 to 649 MB (docs/performance.md).
const DefaultRows = 200

// maxCachedSecrets bounds the per-secret reads kept in memory.
const maxCachedSecrets = 256

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Source is what the page reads besides the state database: the policies
// in force and the last published-credential checks (*daemon.Daemon).
// UseGeneration's done is called as soon as the page is done with the
// generation, before anything else waits (a lean reload of the daemon
// waits for it, and makes UseGeneration wait).
type Source interface {
	UseGeneration() (g *daemon.Generation, done func())
	LastCheck(id string) (rotation.CheckSummary, bool)
}

// Config is what the page needs.
type Config struct {
	DB     *state.DB
	Source Source
	// Refresh is how long a read is served (default DefaultRefresh).
	Refresh time.Duration
	// Token, when set, is required on every request (see the package doc).
	Token string
	// Runs per secret page (default DefaultRuns).
	Runs int
	// Rows per view of the list (default DefaultRows).
	Rows   int
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Page is the status page's http.Handler.
type Page struct {
	cfg  Config
	mux  *http.ServeMux
	tmpl *template.Template

	group singleflight.Group
	// sem lets one read of the state database run at a time.
	sem   chan struct{}
	reads atomic.Int64

	mu      sync.Mutex
	list    *listSnap
	secrets map[string]*secretSnap
}

// New builds the page.
func New(cfg Config) (*Page, error) {
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Runs <= 0 {
		cfg.Runs = DefaultRuns
	}
	if cfg.Rows <= 0 {
		cfg.Rows = DefaultRows
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tmpl, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("status page templates: %w", err)
	}
	p := &Page{cfg: cfg, tmpl: tmpl, sem: make(chan struct{}, 1), secrets: map[string]*secretSnap{}}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", p.serveList)
	m.HandleFunc("GET /secrets/{id...}", p.serveSecret)
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	p.mux = m
	return p, nil
}

// Reads counts the reads of the state database so far (one per list
// refresh, one per secret page refresh).
func (p *Page) Reads() int64 { return p.reads.Load() }

// ServeHTTP checks the token, sets the headers that keep the page inert
// (no script, no framing, no caching, no referrer) and serves it.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.cfg.Token != "" && !p.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="rotator status", charset="UTF-8"`)
		http.Error(w, "unauthorized: send the status page token as a bearer token or as the basic-auth password", http.StatusUnauthorized)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	p.mux.ServeHTTP(w, r)
}

func (p *Page) authorized(r *http.Request) bool {
	var got string
	if _, pass, ok := r.BasicAuth(); ok {
		got = pass
	} else if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
		got = strings.TrimPrefix(a, "Bearer ")
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(p.cfg.Token)) == 1
}

// read runs fn as the one read of the state database in flight, waiting
// for the running one (or for the viewer to leave).
func (p *Page) read(ctx context.Context, fn func(context.Context) error) error {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.sem }()
	p.reads.Add(1)
	// The read outlives a viewer who leaves: others may wait on it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return fn(rctx)
}

// listSnap is one read of every secret.
type listSnap struct {
	at   time.Time
	rows []listRow
}

// listRow is what the list keeps of a secret between views: what the
// search, the filter and the order read, and what view formats for the
// rows a view shows (at most Config.Rows). The list keeps one for every
// secret for the refresh interval: the policy's id and class are shared,
// the interval and outcome texts interned, what is rare is behind more,
// and the texts a row shows are made only for the rows shown (a rowView
// of each secret was about twice the size, with four texts of its own).
type listRow struct {
	ID, Class, User, KeyID string
	Interval, Outcome      string
	Cond                   report.Condition
	Version, Previous      int64
	// Age in seconds (never: not rotated yet), the interval in seconds,
	// the next due time (Unix ns; never: quarantined).
	Age, IntervalSeconds, Due int64
	Failures                  int
	more                      *rowMore
}

// rowMore is what few rows have.
type rowMore struct{ LastError, ActiveRun, ActiveStep string }

// never marks a listRow's Age or Due as none.
const never = math.MinInt64

// compact is what the list keeps of r (see listRow); spec, when given,
// lends the policy's id and class, intern the texts many rows share.
func compact(r report.StatusRow, cond report.Condition, spec *policy.SecretSpec, intern func(string) string) listRow {
	l := listRow{ID: r.ID, Class: r.Class, User: r.Current.Username, KeyID: r.Current.KeyID,
		Interval: intern(r.Interval), Outcome: intern(string(r.LastOutcome)), Cond: cond,
		Version: r.CurrentVersion, Previous: r.PreviousVersion, Age: never, IntervalSeconds: r.IntervalSeconds,
		Due: never, Failures: r.ConsecutiveFailures}
	if spec != nil && spec.ID == l.ID && spec.Class == l.Class {
		l.ID, l.Class = spec.ID, spec.Class
	}
	if r.AgeSeconds != nil {
		l.Age = *r.AgeSeconds
	}
	if r.Due != nil {
		l.Due = r.Due.UnixNano()
	}
	if r.LastError != "" || r.ActiveRun != "" || r.ActiveStep != "" {
		l.more = &rowMore{LastError: r.LastError, ActiveRun: r.ActiveRun, ActiveStep: intern(r.ActiveStep)}
	}
	return l
}

// credential is the row's credential as the page shows it.
func (l listRow) credential() string {
	return rotation.CredentialMeta{Username: l.User, KeyID: l.KeyID}.String()
}

// view is the row as the page shows it, read at now.
func (l listRow) view(now time.Time) rowView {
	v := rowView{ID: l.ID, Class: l.Class, Version: l.Version, Previous: l.Previous,
		Credential: l.credential(), Age: "never rotated", Interval: l.Interval, NextDue: "never (quarantined)",
		LastOutcome: l.Outcome, Cond: l.Cond, Failures: l.Failures}
	if m := l.more; m != nil {
		v.LastError, v.ActiveRun, v.ActiveStep = m.LastError, m.ActiveRun, m.ActiveStep
	}
	if v.LastOutcome == "" {
		v.LastOutcome = "-"
	}
	if l.Age != never {
		v.Age = report.Age(time.Duration(l.Age) * time.Second)
		if l.IntervalSeconds > 0 {
			v.AgeRatio = min(float64(l.Age)/float64(l.IntervalSeconds), 1.5)
			v.AgePercent = int(float64(l.Age) / float64(l.IntervalSeconds) * 100)
		}
	}
	if l.Due != never {
		due := time.Unix(0, l.Due).UTC()
		v.NextDue = due.Format("2006-01-02 15:04Z")
		if !due.After(now) {
			v.NextDue += " (now)"
		}
	}
	return v
}

// rowView is one secret as the page shows it.
type rowView struct {
	ID, Class   string
	Version     int64
	Credential  string
	Age         string
	AgeRatio    float64 // age / interval, for the bar (capped at 1.5)
	AgePercent  int
	Interval    string
	NextDue     string
	LastOutcome string
	LastError   string
	Cond        report.Condition
	ActiveRun   string
	ActiveStep  string
	Failures    int
	Previous    int64
}

func (p *Page) listRows(ctx context.Context) (*listSnap, error) {
	p.mu.Lock()
	s := p.list
	p.mu.Unlock()
	if s != nil && p.cfg.Now().Sub(s.at) < p.cfg.Refresh {
		return s, nil
	}
	v, err, _ := p.group.Do("list", func() (any, error) {
		p.mu.Lock()
		s := p.list
		p.mu.Unlock()
		if s != nil && p.cfg.Now().Sub(s.at) < p.cfg.Refresh {
			return s, nil // read by the flight that just ended
		}
		var snap *listSnap
		err := p.read(ctx, func(ctx context.Context) error {
			g, done := p.cfg.Source.UseGeneration()
			defer done()
			if g == nil {
				return errors.New("policies not loaded yet")
			}
			now := p.cfg.Now()
			// Every secret is read, a batch at a time, and only its
			// row kept; the collector runs as during a reload.
			defer daemon.HoldGC()()
			snap = &listSnap{at: now, rows: make([]listRow, 0, len(g.File.Secrets))}
			texts := map[string]string{}
			intern := func(s string) string {
				if t, ok := texts[s]; ok {
					return t
				}
				if len(texts) < 1000 {
					texts[s] = s
				}
				return s
			}
			err := g.PreviewEach(ctx, p.cfg.DB, now, func(decs []daemon.Decision) error {
				for _, r := range report.Status(g, decs, now) {
					spec, _ := g.Spec(r.ID)
					snap.rows = append(snap.rows, compact(r, p.cond(r, now), spec, intern))
				}
				return nil
			})
			if err != nil {
				return err
			}
			sort.SliceStable(snap.rows, func(i, j int) bool {
				return snap.rows[i].Cond.Rank() < snap.rows[j].Cond.Rank()
			})
			return nil
		})
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		p.list = snap
		p.mu.Unlock()
		return snap, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*listSnap), nil
}

// row is r as the page shows it, read at now.
func (p *Page) row(r report.StatusRow, now time.Time) rowView {
	return compact(r, p.cond(r, now), nil, func(s string) string { return s }).view(now)
}

// cond is r's condition at now, with the secret's last check.
func (p *Page) cond(r report.StatusRow, now time.Time) report.Condition {
	broken := false
	if rep, ok := p.cfg.Source.LastCheck(r.ID); ok {
		broken = rep.Broken()
	}
	return report.ConditionOf(r, broken, now)
}

type countView struct {
	Cond   report.Condition
	N      int
	Active bool
}

type listView struct {
	Rows         []rowView
	Counts       []countView
	Query, State string
	Total, Shown int
	NeedPerson   int
	// Page of Pages shows the matching rows From to To (1-based);
	// PrevURL and NextURL, when set, are the neighbouring pages.
	Page, Pages, From, To int
	PrevURL, NextURL      string
	ReadAt, Refresh       string
	Conditions            []report.Condition
}

func (p *Page) serveList(w http.ResponseWriter, r *http.Request) {
	snap, err := p.listRows(r.Context())
	if err != nil {
		p.fail(w, err)
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	st := r.URL.Query().Get("state")
	v := listView{Query: q, State: st, Total: len(snap.rows), Conditions: report.Conditions,
		ReadAt: snap.at.UTC().Format("2006-01-02 15:04:05Z"), Refresh: p.cfg.Refresh.String()}
	// The counts over every row; the matching rows counted, and only
	// the page's kept (100,000 secrets are one read, not one page).
	n := map[report.Condition]int{}
	for _, row := range snap.rows {
		n[row.Cond]++
		if row.Cond.NeedsPerson() {
			v.NeedPerson++
		}
		if matches(row, q, st) {
			v.Shown++
		}
	}
	v.Pages = max(1, (v.Shown+p.cfg.Rows-1)/p.cfg.Rows)
	v.Page = 1
	// A number beyond an int is past the end too: Atoi gives the
	// largest int with ErrRange.
	if n, err := strconv.Atoi(r.URL.Query().Get("page")); (err == nil || errors.Is(err, strconv.ErrRange)) && n > 1 {
		v.Page = min(n, v.Pages)
	}
	from, to := (v.Page-1)*p.cfg.Rows, min(v.Page*p.cfg.Rows, v.Shown)
	v.Rows = make([]rowView, 0, to-from)
	i := 0
	for _, row := range snap.rows {
		if !matches(row, q, st) {
			continue
		}
		if i >= from && i < to {
			v.Rows = append(v.Rows, row.view(snap.at))
		}
		if i++; i >= to {
			break
		}
	}
	v.From, v.To = from+1, to
	pageURL := func(n int) string {
		u := url.Values{}
		if q != "" {
			u.Set("q", q)
		}
		if st != "" {
			u.Set("state", st)
		}
		if n > 1 {
			u.Set("page", strconv.Itoa(n))
		}
		if len(u) == 0 {
			return "/"
		}
		return "/?" + u.Encode()
	}
	if v.Page > 1 {
		v.PrevURL = pageURL(v.Page - 1)
	}
	if v.Page < v.Pages {
		v.NextURL = pageURL(v.Page + 1)
	}
	for _, c := range report.Conditions {
		if n[c] > 0 {
			v.Counts = append(v.Counts, countView{Cond: c, N: n[c], Active: string(c) == st})
		}
	}
	p.render(w, "list.html", v)
}

// matches reports whether a row passes the search (q: a substring of its
// id, class or credential, any case) and the state filter (a condition,
// "attention" for every condition that needs a person, "" for all).
func matches(r listRow, q, st string) bool {
	switch st {
	case "":
	case "attention":
		if !r.Cond.NeedsPerson() {
			return false
		}
	default:
		if string(r.Cond) != st {
			return false
		}
	}
	if q == "" {
		return true
	}
	q = strings.ToLower(q)
	for _, s := range []string{r.ID, r.Class} {
		if strings.Contains(strings.ToLower(s), q) {
			return true
		}
	}
	return strings.Contains(strings.ToLower(r.credential()), q)
}

// secretSnap is one read of a secret's runs.
type secretSnap struct {
	at   time.Time
	runs []*state.Run
	// row is the secret's row of the list, read with its runs (a view of
	// one secret reads that secret, not the list of every one).
	row    rowView
	hasRow bool
}

func (p *Page) secretRuns(ctx context.Context, id string) (*secretSnap, error) {
	p.mu.Lock()
	s := p.secrets[id]
	p.mu.Unlock()
	if s != nil && p.cfg.Now().Sub(s.at) < p.cfg.Refresh {
		return s, nil
	}
	v, err, _ := p.group.Do("secret\x00"+id, func() (any, error) {
		p.mu.Lock()
		s := p.secrets[id]
		p.mu.Unlock()
		if s != nil && p.cfg.Now().Sub(s.at) < p.cfg.Refresh {
			return s, nil
		}
		var snap *secretSnap
		err := p.read(ctx, func(ctx context.Context) error {
			now := p.cfg.Now()
			runs, err := p.cfg.DB.Runs(ctx, id, p.cfg.Runs)
			if err != nil {
				return err
			}
			snap = &secretSnap{at: now, runs: runs}
			g, done := p.cfg.Source.UseGeneration()
			defer done()
			if g == nil {
				return nil
			}
			decs, err := g.PreviewOf(ctx, p.cfg.DB, now, id)
			if err != nil {
				return err
			}
			for _, r := range report.Status(g, decs, now) {
				snap.row, snap.hasRow = p.row(r, now), true
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		if len(p.secrets) >= maxCachedSecrets {
			p.secrets = map[string]*secretSnap{}
		}
		p.secrets[id] = snap
		p.mu.Unlock()
		return snap, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*secretSnap), nil
}

type storeView struct {
	Publication, Status, Version, Reason string
	Differs                              []string
}

type stepView struct {
	Step, Outcome, Took, Detail, Error string
	Attempt                            int
	Retry                              bool
	X, W, TookX                        float64 // on a 1000-wide axis
	Y, TextY                           int
}

type runView struct {
	ID, Trigger, Status, Old, New, Started, Took, Detail, Error string
	Version                                                     int64
	Held                                                        bool
	Steps                                                       []stepView
	Publications                                                []stepView
	Retries                                                     int
	Height                                                      int
}

type commandView struct {
	What, Command, When string
	Suggested           bool
}

type secretView struct {
	Row      rowView
	Grace    string
	OnTime   string
	Checked  string
	Stores   []storeView
	Runs     []runView
	Commands []commandView
	ReadAt   string
	Refresh  string
}

func (p *Page) serveSecret(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	g, done := p.cfg.Source.UseGeneration()
	if g == nil {
		done()
		p.fail(w, errors.New("policies not loaded yet"))
		return
	}
	set, ok := g.Settings(id)
	done() // before secretRuns, which uses the generation again
	if !ok {
		http.Error(w, fmt.Sprintf("no secret %q in the policies", id), http.StatusNotFound)
		return
	}
	snap, err := p.secretRuns(r.Context(), id)
	if err != nil {
		p.fail(w, err)
		return
	}
	v := secretView{Grace: policy.Duration(set.Grace).String(), OnTime: set.OnTimeout,
		ReadAt: snap.at.UTC().Format("2006-01-02 15:04:05Z"), Refresh: p.cfg.Refresh.String()}
	if snap.hasRow {
		v.Row = snap.row
	}
	if v.Row.ID == "" {
		v.Row = rowView{ID: id, Class: set.Class, Cond: report.CondOK}
	}
	if rep, ok := p.cfg.Source.LastCheck(id); ok {
		v.Checked = rep.Time().UTC().Format("2006-01-02 15:04:05Z")
		for _, s := range rep.Stores {
			sv := storeView{Publication: s.Publication(), Status: s.Status, Reason: s.Reason(), Differs: s.Differs()}
			if s.Version != 0 {
				sv.Version = fmt.Sprint(s.Version)
			}
			v.Stores = append(v.Stores, sv)
		}
	}
	for _, run := range snap.runs {
		v.Runs = append(v.Runs, runOf(run, p.cfg.Now()))
	}
	v.Commands = commands(v.Row)
	p.render(w, "secret.html", v)
}

// runOf lays a run's journal out as a timeline.
func runOf(r *state.Run, now time.Time) runView {
	end := now
	if r.FinishedAt != nil {
		end = *r.FinishedAt
	}
	for _, s := range r.Steps {
		if s.FinishedAt != nil && s.FinishedAt.After(end) {
			end = *s.FinishedAt
		}
	}
	span := end.Sub(r.StartedAt)
	v := runView{ID: r.ID, Trigger: string(r.Trigger), Status: string(r.Status), Version: r.Version,
		Old:     rotation.CredentialMeta{Username: r.Old.Username, KeyID: r.Old.KeyID}.String(),
		New:     rotation.CredentialMeta{Username: r.New.Username, KeyID: r.New.KeyID}.String(),
		Started: r.StartedAt.UTC().Format("2006-01-02 15:04:05Z"), Took: "…", Detail: r.Detail, Error: r.Error,
		Held: report.IsHeld(r)}
	if v.Held {
		v.Status = "held"
	}
	if r.FinishedAt != nil {
		v.Took = r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond).String()
	}
	for i, s := range r.Steps {
		sv := stepView{Step: string(s.Step), Attempt: s.Attempt, Retry: s.Attempt > 1, Outcome: string(s.Outcome),
			Detail: s.Detail, Error: s.Error, Took: "…", Y: i * 18}
		if sv.Outcome == "" {
			sv.Outcome = "unfinished"
		}
		stop := now
		if s.FinishedAt != nil {
			stop = *s.FinishedAt
			sv.Took = s.FinishedAt.Sub(s.StartedAt).Round(time.Millisecond).String()
		}
		if span > 0 {
			sv.X = 1000 * float64(s.StartedAt.Sub(r.StartedAt)) / float64(span)
			sv.W = 1000 * float64(stop.Sub(s.StartedAt)) / float64(span)
		}
		// Labels take the first 140 units; the run's span the next 800;
		// the last 60 are for a bar's duration.
		sv.X = 140 + min(max(sv.X, 0), 996)*0.8
		sv.W = min(max(sv.W*0.8, 3), 940-sv.X)
		sv.TookX, sv.TextY = sv.X+sv.W+4, sv.Y+11
		if sv.Retry {
			v.Retries++
		}
		v.Steps = append(v.Steps, sv)
		if s.Step == state.StepPublish || s.Step == state.StepStage || s.Step == state.StepRollback || s.Step == state.StepCompensate {
			v.Publications = append(v.Publications, sv)
		}
	}
	v.Height = max(len(v.Steps)*18, 18)
	return v
}

// commands are the exact commands that act on the secret, the ones that
// fit its condition marked.
func commands(r rowView) []commandView {
	id := r.ID
	return []commandView{
		{What: "retry now", Command: "rotator run --secret " + id,
			When:      "rotate now, whatever the schedule; resumes an unfinished run from its last step",
			Suggested: r.Cond == report.CondFailed || r.Cond == report.CondHeld || r.Cond == report.CondOverdue || r.Cond == report.CondNeedsAttention},
		{What: "roll back", Command: "rotator rollback --secret " + id,
			When:      "make the previous version current again (only if it still logs in)",
			Suggested: r.Cond == report.CondBroken},
		{What: "resume", Command: "rotator resume --secret " + id,
			When:      "lift the quarantine: automatic attempts start again",
			Suggested: r.Cond == report.CondQuarantined},
		{What: "adopt", Command: "rotator adopt --secret " + id,
			When:      "take what the stores publish as the truth after drift (shows what differs; --yes to apply)",
			Suggested: r.Cond == report.CondDrift},
		{What: "history", Command: "rotator history --secret " + id, When: "the same runs in a terminal"},
		{What: "check", Command: "rotator check --secret " + id, When: "test what every store publishes now"},
	}
}

func (p *Page) render(w http.ResponseWriter, name string, v any) {
	var b strings.Builder
	if err := p.tmpl.ExecuteTemplate(&b, name, v); err != nil {
		p.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

func (p *Page) fail(w http.ResponseWriter, err error) {
	p.cfg.Logger.Warn("status page: could not read the state", "err", err.Error())
	http.Error(w, "could not read the state database; see the daemon's log", http.StatusServiceUnavailable)
}

var funcs = template.FuncMap{
	"condLabel": func(c report.Condition) string { return strings.ReplaceAll(string(c), "_", " ") },
	"needsPerson": func(c report.Condition) bool {
		return c.NeedsPerson()
	},
	"secretURL": func(id string) string { return "/secrets/" + id },
}
