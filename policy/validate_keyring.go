package policy

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/rotator/rotator/appsecret"
)

// keyringRotator checks the keyring rotator's own block (the algorithm
// and key size, which need the algorithms' table, are
// rotators/keyring.Validate's).
func (v *validator) keyringRotator(path string, r RotatorSpec) {
	k := r.Keyring
	if k == nil {
		return
	}
	p := path + ".keyring"
	switch {
	case k.MaxTokenLifetime == nil:
		v.errf(p+".max_token_lifetime", "required: the longest lifetime of a token the keys sign, plus the clocks' skew "+
			"(such as 1h): a key that stopped signing stays in the ring that long")
	case *k.MaxTokenLifetime <= 0:
		v.errf(p+".max_token_lifetime", "must be longer than 0s: tokens signed just before a rotation must still verify after it")
	}
	if v.has(p+".size") && (k.Size < 1 || k.Size > MaxKeyringSize) {
		v.errf(p+".size", "must be between 32 and %d bytes, got %d", MaxKeyringSize, k.Size)
	}
	v.enum(p+".algorithm", k.Algorithm, "HS256", "HS384", "HS512")
	v.fieldName(p+".field", k.Field)
}

// keyringSecret checks what a keyring secret needs besides its rotator.
//
// A new key must be loaded by every client before it signs: the verify
// step is the only thing that knows, through an http check (each client's
// appsecret.KeyRing handler reports the ring it uses) or a delay longer
// than the clients' refresh. And verify must never give up and go on
// (on_timeout: proceed): the next rotation would make the announced key
// sign while a client that missed the ring cannot verify it.
func (v *validator) keyringSecret(path string, s *SecretSpec, class *Class) {
	if s.Rotator.Keyring == nil {
		return
	}
	checked := false
	for _, c := range s.Checks {
		if c != nil && (c.Delay != nil || c.HTTP != nil) {
			checked = true
		}
	}
	if !checked {
		v.errf(path+".checks", "a keyring secret needs an http check (each client's appsecret.KeyRing handler) or a delay longer than the clients' refresh: "+
			"a new key may sign only once every client holds it")
	}
	onTimeout, where := s.OnTimeout, path+".on_timeout"
	if onTimeout == "" && class != nil && class.OnTimeout != "" {
		onTimeout, where = class.OnTimeout, "classes."+s.Class+".on_timeout"
	}
	if onTimeout == "" && v.f.Defaults.OnTimeout != "" {
		onTimeout, where = v.f.Defaults.OnTimeout, "defaults.on_timeout"
	}
	v.keyringSize(path, s, class)
	if onTimeout == OnTimeoutProceed {
		v.errf(where, "a keyring secret (%s) needs on_timeout: hold: proceeding without every client on the new ring would let its next key sign "+
			"before a lagging client can verify it; set on_timeout: hold on the secret", s.ID)
	}
}

// keyringSize refuses a keyring secret whose ring can outgrow the
// smallest limit on one secret value among the stores it publishes to:
// every publish would fail once it did. A key stays in the ring until
// max_token_lifetime after the rotation that follows the one that
// demoted it, so a ring rotated every period P holds at most
// 3 + ceil(max_token_lifetime / P) keys: signing, next, the key the
// rotation demoted (accepted, no end yet) and the keys given an end at
// this rotation or the ceil(max_token_lifetime / P) - 1 before it (an end
// set at a rotation k periods ago has not passed while k*P is under
// max_token_lifetime). P is the interval (the secret's, else its class's) or the
// shortest gap between two times of its cron; a secret with neither is
// rotated by hand only and not checked here. Runs started by hand more
// often than that are caught at generate (rotators/keyring), before
// anything is published.
func (v *validator) keyringSize(path string, s *SecretSpec, class *Class) {
	k := s.Rotator.Keyring
	if k == nil || k.MaxTokenLifetime == nil || *k.MaxTokenLifetime <= 0 {
		return
	}
	lim := v.f.PublishLimit(s)
	if lim.Limit == 0 {
		return
	}
	period, how := time.Duration(0), ""
	switch {
	case s.Cron != "":
		period = minCronGap(s.Cron)
		how = fmt.Sprintf("cron %q can run it every %s", s.Cron, period)
	case s.Interval != nil:
		period, how = s.Interval.D(), fmt.Sprintf("interval %s", s.Interval.D())
	case class != nil && class.Interval != nil:
		period, how = class.Interval.D(), fmt.Sprintf("interval %s (class %s)", class.Interval.D(), s.Class)
	}
	if period <= 0 {
		return
	}
	alg := k.Algorithm
	if alg == "" {
		alg = DefaultKeyringAlgorithm
	}
	size := k.Size
	if size == 0 {
		size, _ = appsecret.MinKeySize(alg)
	}
	if size <= 0 {
		return // the algorithm or size is wrong; reported elsewhere
	}
	lifetime := k.MaxTokenLifetime.D()
	keys := 3 + int((lifetime+period-1)/period)
	worst := appsecret.MaxPublishedSize(alg, lifetime, size, keys)
	if worst <= lim.Limit {
		return
	}
	p := path + ".rotator.keyring.max_token_lifetime"
	v.errf(p, "the ring can outgrow store %s (publish[%d]): with max_token_lifetime %s and %s it can hold %d keys of %d bytes, "+
		"up to %d bytes published, above %s (%d bytes), and every publish would fail; "+
		"rotate less often, shorten max_token_lifetime or use smaller keys (a key stays in the ring max_token_lifetime after the rotation that follows the one it stopped signing at)",
		lim.Store, lim.Index, lifetime, how, keys, size, worst, lim.What, lim.Limit)
}

// minCronGap is the shortest gap between two consecutive times of the
// cron spec over its next 1000 times (0 when it does not parse, which is
// reported elsewhere).
func minCronGap(spec string) time.Duration {
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return 0
	}
	t := sched.Next(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	var gap time.Duration
	for range 1000 {
		n := sched.Next(t)
		if n.IsZero() {
			break
		}
		if d := n.Sub(t); gap == 0 || d < gap {
			gap = d
		}
		t = n
	}
	return gap
}
