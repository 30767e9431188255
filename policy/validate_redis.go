package policy

import "strings"

// redisRotator checks the redis rotator (the rest of its checks, which
// need no policy knowledge, are rotators/redis.Validate).
//
// A redis secret needs a delay or http check: Redis cannot say which
// password a connection used, so without one retire would follow publish
// at once and clients that have not re-read the store would fail.
func (v *validator) redisChecks(path string, s *SecretSpec) {
	if s.Rotator.Redis == nil {
		return
	}
	for _, c := range s.Checks {
		if c.Delay != nil || c.HTTP != nil {
			return
		}
	}
	v.errf(path+".checks", "a redis secret needs a delay or http check: Redis cannot tell which password a client uses, "+
		"so without one the old password would be removed as soon as the new one is published; "+
		"add `- delay: <the clients' refresh interval plus a login>`")
}

func (v *validator) redisRotator(path string, r RotatorSpec) {
	rd := r.Redis
	if rd == nil {
		return
	}
	p := path + ".redis"
	if rd.AdminURL.IsZero() {
		v.errf(p+".admin_url", "required: {env: NAME} or {file: PATH} holding redis://user:password@host:6379/0 of rotator's own user (deploy/redis/rotator.acl)")
	}
	switch {
	case rd.User == "":
		v.errf(p+".user", "required: the Redis ACL user whose password is rotated")
	case rd.User == "default":
		v.errf(p+".user", `"default" cannot be rotated: clients that send no user name use it; create a named user`)
	case strings.ContainsAny(rd.User, " \t\r\n"):
		v.errf(p+".user", "a Redis user name has no white space, got %q", rd.User)
	}
}
