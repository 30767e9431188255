package policy

import (
	"net/url"
	"regexp"
	"slices"
	"time"
)

// Defaults of an awsiam rotator.
const (
	DefaultAWSIAMNewKeyWait = 30 * time.Second
	// AWSIAMKeyIDField and AWSIAMSecretField are the names the access
	// key id and the secret access key are published under.
	AWSIAMKeyIDField  = "access_key_id"
	AWSIAMSecretField = "secret_access_key"
)

var (
	// IAM user names: 1..64 of letters, digits and +=,.@_-.
	awsIAMUserRE = regexp.MustCompile(`^[A-Za-z0-9+=,.@_-]{1,64}$`)
	awsRegionRE  = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)+$`)
)

func (v *validator) awsIAMRotator(path string, r RotatorSpec) {
	a := r.AWSIAM
	if a == nil {
		return
	}
	p := path + ".awsiam"
	switch {
	case a.User == "":
		v.errf(p+".user", "required: the IAM user whose access keys are rotated")
	case !awsIAMUserRE.MatchString(a.User):
		v.errf(p+".user", "an IAM user name is 1 to 64 letters, digits and + = , . @ _ -, got %q", a.User)
	}
	if a.Region != "" && !awsRegionRE.MatchString(a.Region) {
		v.errf(p+".region", "%q is not an AWS region name (like eu-west-1)", a.Region)
	}
	if a.Endpoint != "" {
		u, err := url.Parse(a.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.errf(p+".endpoint", "%q is not an http(s) URL (like https://iam.amazonaws.com)", a.Endpoint)
		}
	}
	if a.NewKeyWait != nil && (*a.NewKeyWait <= 0 || a.NewKeyWait.D() > 10*time.Minute) {
		v.errf(p+".new_key_wait", "must be between 1s and 10m, got %s", *a.NewKeyWait)
	}
	for _, k := range sortedKeys(a.Connection) {
		if slices.Contains(reservedConnectionKeys, k) || k == AWSIAMKeyIDField || k == AWSIAMSecretField {
			v.errf(p+".connection."+k, "%q is written by rotator itself; connection holds non-secret fields such as region", k)
		}
	}
}

// awsIAMChecks: an awsiam secret needs a delay, http or last_used check:
// IAM cannot say which clients use a key, so without one the old key
// would be deactivated as soon as the new one is published.
func (v *validator) awsIAMChecks(path string, s *SecretSpec) {
	if s.Rotator.AWSIAM == nil {
		return
	}
	for _, c := range s.Checks {
		if c.Delay != nil || c.HTTP != nil || c.LastUsed != nil {
			return
		}
	}
	v.errf(path+".checks", "an awsiam secret needs a delay, http or last_used check: IAM cannot tell which clients use a key, "+
		"so without one the old key would be deactivated as soon as the new one is published; "+
		"add `- delay: <the clients' refresh interval plus a call>` or `- last_used: {unused_for: 4h}`")
}
