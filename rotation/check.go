package rotation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/notify"
	"github.com/rotator/rotator/state"
)

// EventCredentialBroken is the kind of the event Check emits for a
// published credential that does not work.
const EventCredentialBroken = notify.KindCredentialBroken

// StepCheck names the published-credential check in events and logs.
const StepCheck state.Step = "check"

// Outcomes of the check of one publication.
const (
	// CheckOK: the store publishes a current version, its credential works
	// at the target, and every store publishes the same version.
	CheckOK = "ok"
	// CheckBroken: the credential the store publishes does not work at the
	// target (the login is refused, the provider rejects the key, the token
	// is missing or malformed), or the store describes a version it cannot
	// give back.
	CheckBroken = "broken"
	// CheckDisagrees: the credential works, but the stores do not publish
	// the same current version.
	CheckDisagrees = "disagrees"
	// CheckUnreachable: the store, or the target, did not answer (network
	// error, timeout): the credential could not be checked. A store that
	// answers with another error (a torn or corrupt file, access denied)
	// is CheckBroken.
	CheckUnreachable = "unreachable"
	// CheckUnpublished: no store publishes anything yet (never rotated).
	CheckUnpublished = "unpublished"
)

// DefaultCheckTimeout bounds each call of a check (one Describe, one Read,
// one Test) when Checker.Timeout is zero.
const DefaultCheckTimeout = 30 * time.Second

// CheckReport is what Check found for one secret: one StoreCheck per
// publication, in the order of Target.Publish. It holds no secret.
type CheckReport struct {
	SecretID  string       `json:"secret"`
	Class     string       `json:"class,omitempty"`
	CheckedAt time.Time    `json:"checked_at"`
	Stores    []StoreCheck `json:"stores"`
	// Note explains a finding that is not a failure (a run is publishing,
	// so stores may differ until it ends).
	Note string `json:"note,omitempty"`
}

// StoreCheck is the check of one publication.
type StoreCheck struct {
	// Store is the store's name, Path the path within it.
	Store string `json:"store"`
	Path  string `json:"path"`
	// Status is one of the Check* outcomes.
	Status string `json:"status"`
	// Current is what the store publishes as current (the fingerprint is
	// that of the value read); nil when it publishes nothing or could not
	// be read.
	Current *VersionMeta `json:"current,omitempty"`
	// Reason says why the credential is broken or unreachable (redacted).
	Reason string `json:"reason,omitempty"`
	// Differs says how this store differs from the others, and from its
	// own metadata.
	Differs []string `json:"differs,omitempty"`
	// Works is whether the credential passed the test at the target.
	Works bool `json:"works"`
}

// Publication names the store check as store:path.
func (s StoreCheck) Publication() string { return s.Store + ":" + s.Path }

// Broken reports whether any store publishes a credential that does not
// work, or the stores disagree: what `rotator check` exits non-zero for.
func (r CheckReport) Broken() bool {
	for _, s := range r.Stores {
		if s.Status == CheckBroken || s.Status == CheckDisagrees {
			return true
		}
	}
	return false
}

// Unreachable reports whether any store or the target could not be
// checked.
func (r CheckReport) Unreachable() bool {
	for _, s := range r.Stores {
		if s.Status == CheckUnreachable {
			return true
		}
	}
	return false
}

// Agree reports whether every store publishes the same current version
// (as far as the stores could be read).
func (r CheckReport) Agree() bool {
	for _, s := range r.Stores {
		if s.Status == CheckDisagrees || len(s.Differs) > 0 {
			return false
		}
	}
	return true
}

// CheckSummary is what a long-lived reader keeps of a CheckReport: when it
// was made, and per publication its outcome, its reason, how it differs
// and the number of the version it publishes. A daemon that serves a
// status page keeps one per secret: at 100,000 secrets the whole reports
// (their versions' run ids, fingerprints and names) cost about three
// times as much. It holds no secret.
type CheckSummary struct {
	// CheckedAt is when the check was made (Unix ns).
	CheckedAt int64
	Stores    []StoreSummary
}

// StoreSummary is what a CheckSummary keeps of one StoreCheck (64 bytes:
// what is rare is behind Note).
type StoreSummary struct {
	Store, Path string
	// Status is one of the Check* outcomes.
	Status string
	// Version is the number of the current version the store publishes
	// (0: none, or it could not be read).
	Version int64
	// Note is the reason and the differences, when there are any.
	Note *StoreNote
}

// StoreNote is a StoreCheck's Reason and Differs.
type StoreNote struct {
	Reason  string
	Differs []string
}

// Summary is what a long-lived reader keeps of r.
func (r CheckReport) Summary() CheckSummary {
	s := CheckSummary{CheckedAt: r.CheckedAt.UnixNano(), Stores: make([]StoreSummary, len(r.Stores))}
	for i, c := range r.Stores {
		s.Stores[i] = StoreSummary{Store: c.Store, Path: c.Path, Status: status(c.Status)}
		if c.Current != nil {
			s.Stores[i].Version = c.Current.Number
		}
		if c.Reason != "" || len(c.Differs) > 0 {
			s.Stores[i].Note = &StoreNote{Reason: c.Reason, Differs: c.Differs}
		}
	}
	return s
}

// status returns the constant that equals st, so that a summary kept for
// long shares the constant's bytes instead of holding st's.
func status(st string) string {
	for _, c := range [...]string{CheckOK, CheckBroken, CheckDisagrees, CheckUnreachable, CheckUnpublished} {
		if st == c {
			return c
		}
	}
	return st
}

// Time is when the check was made.
func (s CheckSummary) Time() time.Time { return time.Unix(0, s.CheckedAt) }

// Broken is CheckReport.Broken of the report s summarises.
func (s CheckSummary) Broken() bool {
	for _, st := range s.Stores {
		if st.Status == CheckBroken || st.Status == CheckDisagrees {
			return true
		}
	}
	return false
}

// Publication names the store check as store:path.
func (s StoreSummary) Publication() string { return s.Store + ":" + s.Path }

// Reason says why the credential is broken or unreachable (redacted).
func (s StoreSummary) Reason() string {
	if s.Note == nil {
		return ""
	}
	return s.Note.Reason
}

// Differs says how this store differs from the others, and from its own
// metadata.
func (s StoreSummary) Differs() []string {
	if s.Note == nil {
		return nil
	}
	return s.Note.Differs
}

// Check runs the published-credential check once for t, with no memory of
// earlier checks: every broken credential it finds is reported as an event.
// See Checker.
func (e *Engine) Check(ctx context.Context, t Target) (CheckReport, error) {
	return (&Checker{Engine: e}).Check(ctx, t)
}

// Checker checks what the stores publish as current (safety rule 6: a
// published credential that does not work must never go unnoticed). It is
// read-only: it takes no lease and changes nothing, at the stores, the
// target or the state database, so it may run beside any rotation.
//
// For each publication of a target it reads the current version's
// metadata (Describe) and value (Read), tests the credential at the target
// (Rotator.Test: a Postgres login, the provider's verify call, or for
// self-issued tokens that the token is there and has the configured shape;
// each distinct credential once), and compares the stores with each other
// (version number, run id, fingerprint of the value, username). Every call
// has its own deadline (Timeout).
//
// It sets rotator_published_credential_ok{secret,store} and
// rotator_published_stores_agree{secret} (Engine.Metrics) and emits one
// credential_broken event (Engine.Events) per broken credential: a Checker
// that lives across checks (the daemon's) emits it once, when the
// credential is first found broken, and again only after it worked in
// between or was replaced.
type Checker struct {
	Engine *Engine
	// Timeout bounds each Describe, Read and Test (default
	// DefaultCheckTimeout).
	Timeout time.Duration

	mu sync.Mutex
	// alerted holds, per secret, the fingerprints of the broken
	// credentials already reported.
	alerted map[string]map[string]bool
}

func (c *Checker) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultCheckTimeout
}

// observed is what one store gave back.
type observed struct {
	check StoreCheck
	value secret.Value
	cred  Credential
	read  bool // a current version was read
}

// Check checks t's publications. It returns an error only when it could
// not check at all (no publication, ctx ended); every store's problem is a
// StoreCheck in the report.
func (c *Checker) Check(ctx context.Context, t Target) (CheckReport, error) {
	if len(t.Publish) == 0 {
		return CheckReport{SecretID: t.ID, Class: t.Class}, fmt.Errorf("check %s: it is published to no store", t.ID)
	}
	rep, disagree, err := c.checkOnce(ctx, t)
	if err == nil && disagree {
		// Stores that differ with no run publishing may have been read
		// across the end of a run's publish: look once more before saying
		// they disagree.
		rep, disagree, err = c.checkOnce(ctx, t)
	}
	if err != nil {
		return rep, err
	}
	c.record(t, rep, disagree)
	return rep, nil
}

// checkOnce observes, tests and compares once; disagree is whether stores
// differ with no run publishing to explain it.
func (c *Checker) checkOnce(ctx context.Context, t Target) (CheckReport, bool, error) {
	e := c.Engine
	rep := CheckReport{SecretID: t.ID, Class: t.Class, CheckedAt: e.now().UTC()}

	obs := make([]observed, len(t.Publish))
	var wg sync.WaitGroup
	for i, p := range t.Publish {
		wg.Add(1)
		go func() {
			defer wg.Done()
			obs[i] = c.observe(ctx, p)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return rep, false, fmt.Errorf("check %s: %w", t.ID, err)
	}
	var values []secret.Value
	for _, o := range obs {
		if o.read {
			values = append(values, o.value)
		}
	}
	redact := func(s string) string { return Redact(s, values...) }

	// Test each distinct credential once.
	type verdict struct {
		works       bool
		unreachable bool
		reason      string
	}
	tested := map[string]verdict{}
	for i := range obs {
		o := &obs[i]
		if !o.read {
			continue
		}
		k := o.cred.Username + "\x00" + o.check.Current.Fingerprint
		v, ok := tested[k]
		if !ok {
			tctx, cancel := context.WithTimeout(ctx, c.timeout())
			err := t.Rotator.Test(tctx, TestRequest{SecretID: t.ID, Credential: o.cred})
			if err != nil && tctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
				err = fmt.Errorf("no answer within %s: %w", c.timeout(), err)
			}
			cancel()
			if err := ctx.Err(); err != nil {
				return rep, false, fmt.Errorf("check %s: %w", t.ID, err)
			}
			switch {
			case err == nil:
				v = verdict{works: true}
			case unreachableErr(err):
				v = verdict{unreachable: true, reason: "target: " + redact(err.Error())}
			default:
				v = verdict{reason: redact(err.Error())}
			}
			tested[k] = v
		}
		o.check.Works = v.works
		switch {
		case v.works:
			o.check.Status = CheckOK
		case v.unreachable:
			o.check.Status, o.check.Reason = CheckUnreachable, v.reason
		default:
			o.check.Status, o.check.Reason = CheckBroken, v.reason
		}
	}

	c.compare(obs)
	disagree := false
	for _, o := range obs {
		if len(o.check.Differs) > 0 {
			disagree = true
		}
	}
	// A run that is publishing makes the stores differ for a while: that
	// is its work, not a fault (its own outcome is checked when it ends).
	// The state database is asked only then.
	if disagree {
		run := c.activeRun(ctx, t.ID)
		if run != nil && (run.Step == state.StepPublish || run.Step == state.StepGenerate) {
			rep.Note = fmt.Sprintf("run %s is publishing version %d: the stores may differ until it ends", run.ID, run.Version)
			disagree = false
		}
	}
	for i := range obs {
		o := &obs[i]
		o.check.Reason = redact(o.check.Reason)
		for j, d := range o.check.Differs {
			o.check.Differs[j] = redact(d)
		}
		if disagree && len(o.check.Differs) > 0 && o.check.Status == CheckOK {
			o.check.Status = CheckDisagrees
		}
		rep.Stores = append(rep.Stores, o.check)
	}
	return rep, disagree, nil
}

// observe reads one publication's current version: metadata, then value.
func (c *Checker) observe(ctx context.Context, p Publication) observed {
	o := observed{check: StoreCheck{Store: p.StoreName, Path: p.Path}}
	dctx, cancel := context.WithTimeout(ctx, c.timeout())
	desc, err := p.Store.Describe(dctx, DescribeRequest{Path: p.Path})
	cancel()
	if err != nil {
		o.check.Status, o.check.Reason = storeErrStatus(err), "describe: "+err.Error()
		return o
	}
	if desc.Current == nil {
		o.check.Status = CheckUnpublished
		return o
	}
	rctx, cancel := context.WithTimeout(ctx, c.timeout())
	v, err := p.Store.Read(rctx, ReadRequest{Path: p.Path, Which: Current})
	cancel()
	switch {
	case errors.Is(err, ErrNotFound):
		m := *desc.Current
		o.check.Current = &m
		o.check.Status, o.check.Reason = CheckBroken, fmt.Sprintf("the store describes version %d but holds no value for it", m.Number)
		return o
	case err != nil:
		o.check.Status, o.check.Reason = storeErrStatus(err), "read: "+err.Error()
		return o
	}
	o.read, o.value, o.cred = true, v.Credential.Secret, v.Credential
	m := v.Meta()
	o.check.Current = &m
	if v.Credential.Secret.IsZero() {
		// Nothing to test: the store publishes an empty secret.
		o.read = false
		o.check.Status, o.check.Reason = CheckBroken, fmt.Sprintf("version %d has an empty %s", m.Number, v.Credential.SecretField())
		return o
	}
	// The store's own metadata must describe the value it serves (a hand
	// edit of the value, or a half-written version, shows here).
	d := desc.Current
	if d.Fingerprint != "" && d.Fingerprint != m.Fingerprint {
		o.check.Differs = append(o.check.Differs, fmt.Sprintf("its metadata names fingerprint %s but the value has %s", d.Fingerprint, m.Fingerprint))
	}
	if d.Number != 0 && m.Number != 0 && d.Number != m.Number {
		o.check.Differs = append(o.check.Differs, fmt.Sprintf("its metadata names version %d but the value is version %d", d.Number, m.Number))
	}
	return o
}

// compare adds to each store's Differs how what it publishes differs from
// every other store.
func (c *Checker) compare(obs []observed) {
	some := false
	for _, o := range obs {
		if o.check.Current != nil {
			some = true
		}
	}
	if !some {
		return
	}
	for i := range obs {
		a := &obs[i]
		if a.check.Status == CheckUnreachable {
			continue
		}
		for j := range obs {
			b := obs[j]
			if i == j || b.check.Status == CheckUnreachable {
				continue
			}
			var diff []string
			switch {
			case a.check.Current == nil && b.check.Current == nil:
			case a.check.Current == nil:
				diff = append(diff, fmt.Sprintf("nothing is published here; it publishes version %d", b.check.Current.Number))
			case b.check.Current == nil:
				diff = append(diff, "it publishes nothing")
			default:
				diff = metaDiff(*a.check.Current, *b.check.Current)
			}
			if len(diff) > 0 {
				a.check.Differs = append(a.check.Differs, b.check.Publication()+": "+strings.Join(diff, ", "))
			}
		}
	}
}

// metaDiff lists the fields in which b differs from a, as "field b (here a)".
func metaDiff(a, b VersionMeta) []string {
	var d []string
	if a.Number != b.Number {
		d = append(d, fmt.Sprintf("version %d (here %d)", b.Number, a.Number))
	}
	if a.RunID != b.RunID {
		d = append(d, fmt.Sprintf("run %s (here %s)", orNone(b.RunID), orNone(a.RunID)))
	}
	if a.Fingerprint != b.Fingerprint {
		d = append(d, fmt.Sprintf("fingerprint %s (here %s)", orNone(b.Fingerprint), orNone(a.Fingerprint)))
	}
	if a.Username != b.Username {
		d = append(d, fmt.Sprintf("username %s (here %s)", orNone(b.Username), orNone(a.Username)))
	}
	return d
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// unreachableErr reports whether err says the other side did not answer
// (network error, timeout) rather than that it refused the credential.
func unreachableErr(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// storeErrStatus classifies a store's error: a store that does not answer
// is unreachable; one that answers but cannot give back its current
// version (a torn or corrupt file, a denied read) is broken, since the
// clients reading it are no better off.
func storeErrStatus(err error) string {
	if unreachableErr(err) {
		return CheckUnreachable
	}
	return CheckBroken
}

// activeRun returns the secret's unfinished run, nil when there is none or
// the engine has no state database (a check needs none).
func (c *Checker) activeRun(ctx context.Context, id string) *state.Run {
	if c.Engine.DB == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	run, err := c.Engine.DB.ActiveRun(rctx, id)
	if err != nil {
		c.Engine.log().Warn("check: could not read the active run", "secret", id, "err", err.Error())
		return nil
	}
	return run
}

// record sets the metrics, logs what is wrong and emits credential_broken
// once per broken credential.
func (c *Checker) record(t Target, rep CheckReport, disagree bool) {
	e := c.Engine
	if m := e.Metrics; m != nil {
		for _, s := range rep.Stores {
			m.Published(t.ID, s.Store, s.Status == CheckOK || s.Status == CheckDisagrees, s.Status == CheckUnpublished)
		}
		m.Agreed(t.ID, !disagree)
	}

	// Group the broken stores by the credential they publish.
	type group struct {
		meta   VersionMeta
		stores []string
		reason string
	}
	var broken []*group
	byFP := map[string]*group{}
	for _, s := range rep.Stores {
		switch s.Status {
		case CheckOK, CheckUnpublished:
			continue
		case CheckBroken:
		default:
			e.log().Warn("published credential check", "secret", t.ID, "store", s.Publication(), "status", s.Status,
				"reason", s.Reason, "differs", strings.Join(s.Differs, "; "))
			continue
		}
		e.log().Error("published credential does not work", "secret", t.ID, "store", s.Publication(), "reason", s.Reason)
		var meta VersionMeta
		if s.Current != nil {
			meta = *s.Current
		}
		k := meta.Fingerprint + "\x00" + meta.Username
		g, ok := byFP[k]
		if !ok {
			g = &group{meta: meta, reason: s.Reason}
			byFP[k] = g
			broken = append(broken, g)
		}
		g.stores = append(g.stores, s.Publication())
	}

	c.mu.Lock()
	if c.alerted == nil {
		c.alerted = map[string]map[string]bool{}
	}
	seen := c.alerted[t.ID]
	now := map[string]bool{}
	var fresh []*group
	for _, g := range broken {
		k := g.meta.Fingerprint + "\x00" + g.meta.Username
		now[k] = true
		if !seen[k] {
			fresh = append(fresh, g)
		}
	}
	if len(now) == 0 {
		delete(c.alerted, t.ID)
	} else {
		c.alerted[t.ID] = now
	}
	c.mu.Unlock()

	for _, g := range fresh {
		sort.Strings(g.stores)
		cred := ""
		if g.meta.Username != "" {
			cred = " (" + g.meta.Username + ")"
		}
		e.emit(notify.Event{Kind: EventCredentialBroken, SecretID: t.ID, Class: t.Class, RunID: g.meta.RunID, Step: StepCheck,
			Error: g.reason, Channel: t.Channel,
			Detail: fmt.Sprintf("%s publish version %d%s as current, and it does not work at the target: clients reading it fail. "+
				"Check what is wrong, then rotate to a fresh, tested credential.", strings.Join(g.stores, ", "), g.meta.Number, cred),
			Commands: []string{"rotator check --secret " + t.ID, "rotator run --secret " + t.ID, "rotator history --secret " + t.ID}})
	}
}
