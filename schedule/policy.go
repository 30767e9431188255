package schedule

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/rotator/rotator/policy"
)

// Rules compiles every secret's schedule from a loaded policies file, keyed
// by secret id. Secrets that rotate against the same server are each
// other's Peers, so their jitter puts them in different minutes.
//
// Secrets with the same settings and peers share one *Rule (treat it as
// read-only), and the secrets of one server share one Peers slice: at
// 100,000 secrets the map is of pointers to a few rules, not 100,000
// copies, and each zone is loaded and each cron schedule parsed once
// (compiled).
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
	c := &compiled{zones: map[string]*time.Location{}, crons: map[string]cron.Schedule{}}
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
			rule, err := ruleFor(set, c)
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

// compiled holds what Rules made once for all its rules: each time zone
// and each cron schedule. A secret with a window of its own has a rule of
// its own (rules are shared by the window's identity, not its text), and
// each rule loaded its zones again (time.LoadLocation reads and parses
// the zone at every call; its *time.Location holds the zone's
// transitions: 43 MB at 20,000 secrets) and parsed its cron schedule
// again (ParseCron looks at 400 firings: ~1 ms a weekly schedule).
// docs/performance.md.
type compiled struct {
	zones map[string]*time.Location
	crons map[string]cron.Schedule
}

func (c *compiled) zone(name string) (*time.Location, error) {
	if loc, ok := c.zones[name]; ok {
		return loc, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	c.zones[name] = loc
	return loc, nil
}

// cron is ParseCron(spec), once per spec (a parsed schedule is read-only).
func (c *compiled) cron(spec string) (cron.Schedule, error) {
	if s, ok := c.crons[spec]; ok {
		return s, nil
	}
	s, err := ParseCron(spec)
	if err != nil {
		return nil, err
	}
	c.crons[spec] = s
	return s, nil
}

func ruleFor(set policy.Settings, c *compiled) (Rule, error) {
	r := Rule{Interval: set.Interval, Jitter: set.Jitter, RetryAfter: set.Retry.NextRun}
	loc, err := c.zone(set.TimeZone)
	if err != nil {
		return r, err
	}
	r.Loc = loc
	if set.Cron != "" {
		if r.Cron, err = c.cron(set.Cron); err != nil {
			return r, err
		}
	}
	if set.Window != nil {
		if r.Window, err = compileWindowWith(set.Window, set.TimeZone, c.zone); err != nil {
			return r, err
		}
	}
	return r, nil
}
