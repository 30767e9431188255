package policy

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
	if onTimeout == OnTimeoutProceed {
		v.errf(where, "a keyring secret (%s) needs on_timeout: hold: proceeding without every client on the new ring would let its next key sign "+
			"before a lagging client can verify it; set on_timeout: hold on the secret", s.ID)
	}
}
