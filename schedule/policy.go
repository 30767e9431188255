package schedule

import (
	"fmt"
	"time"

	"github.com/rotator/rotator/policy"
)

// Rules compiles every secret's schedule from a loaded policies file, keyed
// by secret id. Secrets that rotate against the same server are each
// other's Peers, so their jitter puts them in different minutes.
//
// Secrets with the same settings and peers share one *Rule (treat it as
// read-only), and the secrets of one server share one Peers slice: at
// 100,000 secrets the map is of pointers to a few rules, not 100,000
// copies, and each zone is loaded once (zones).
func Rules(f *policy.File) (map[string]*Rule, error) {
	ids := map[string][]string{}
	for _, s := range f.Secrets {
		ids[ServerKey(s)] = append(ids[ServerKey(s)], s.ID)
	}
	peers := map[string]*Peers{}
	for k, p := range ids {
		if len(p) >= 2 { // no peers: the key stays out of the rule's identity
			peers[k] = NewPeers(p...)
		}
	}
	type ruleKey struct {
		interval, jitter, nextRun time.Duration
		cron, zone                string
		window                    *policy.WindowSpec
		server                    string // "" without peers
	}
	shared := map[ruleKey]*Rule{}
	z := zones{}
	out := make(map[string]*Rule, len(f.Secrets))
	for _, s := range f.Secrets {
		set := f.Settings(s)
		k := ruleKey{interval: set.Interval, jitter: set.Jitter, nextRun: set.Retry.NextRun, cron: set.Cron,
			zone: set.TimeZone, window: set.Window}
		p, ok := peers[ServerKey(s)]
		if ok {
			k.server = ServerKey(s)
		}
		r, ok := shared[k]
		if !ok {
			rule, err := ruleFor(set, z)
			if err != nil {
				return nil, fmt.Errorf("secret %s (%s): schedule: %w", s.ID, s.Pos, err)
			}
			rule.Peers = p
			r = &rule
			shared[k] = r
		}
		out[s.ID] = r
	}
	return out, nil
}

// ServerKey groups secrets that rotate against the same server, without
// resolving any secret: secrets whose admin DSN comes from the same
// reference share a server.
func ServerKey(s *policy.SecretSpec) string {
	if s.Rotator.Postgres != nil {
		return "postgres " + s.Rotator.Postgres.AdminDSN.String()
	}
	if s.Rotator.MySQL != nil {
		return "mysql " + s.Rotator.MySQL.AdminDSN.String()
	}
	return "secret " + s.ID
}

// zones loads each time zone once. time.LoadLocation reads and parses
// the zone at every call, and its *time.Location holds the zone's
// transitions: a rule of its own for each secret with a window of its own
// (the rules are shared by the window's identity, not its text) held one
// copy each, 43 MB at 20,000 secrets (docs/performance.md).
type zones map[string]*time.Location

func (z zones) load(name string) (*time.Location, error) {
	if loc, ok := z[name]; ok {
		return loc, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	z[name] = loc
	return loc, nil
}

func ruleFor(set policy.Settings, z zones) (Rule, error) {
	r := Rule{Interval: set.Interval, Jitter: set.Jitter, RetryAfter: set.Retry.NextRun}
	loc, err := z.load(set.TimeZone)
	if err != nil {
		return r, err
	}
	r.Loc = loc
	if set.Cron != "" {
		if r.Cron, err = ParseCron(set.Cron); err != nil {
			return r, err
		}
	}
	if set.Window != nil {
		if r.Window, err = compileWindowWith(set.Window, set.TimeZone, z.load); err != nil {
			return r, err
		}
	}
	return r, nil
}
