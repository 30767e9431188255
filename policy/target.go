package policy

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"
)

// target is the place a publish entry writes to, normalised so that two
// spellings of one place compare equal: the store's identity (not its
// name) and the cleaned path in it.
type target struct {
	key  string // compared
	desc string // for messages
}

// publishTarget returns where pub writes in store s; ok is false when the
// store or the path is not valid enough to say (that is reported
// elsewhere).
func (f *File) publishTarget(s *StoreSpec, pub *PublishSpec) (t target, ok bool) {
	switch {
	case s.Files != nil:
		if s.Files.Dir == "" {
			return target{}, false
		}
		dir := filepath.FromSlash(s.Files.Dir)
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(f.dir, dir)
		}
		p := filepath.Join(filepath.Clean(dir), filepath.Clean(filepath.FromSlash(pub.Path)))
		return target{key: "files\x00" + p, desc: "the file " + p}, true
	case s.Vault != nil:
		addr := "VAULT_ADDR"
		if s.Vault.Address != "" {
			addr = normalURL(s.Vault.Address)
		}
		mount := strings.Trim(s.Vault.Mount, "/")
		if mount == "" {
			mount = DefaultVaultMount
		}
		ns := strings.Trim(s.Vault.Namespace, "/")
		p := path.Clean(strings.Trim(pub.Path, "/"))
		desc := fmt.Sprintf("Vault %s", addr)
		if ns != "" {
			desc += " namespace " + ns
		}
		desc += fmt.Sprintf(" mount %s path %s", mount, p)
		return target{key: strings.Join([]string{"vault", addr, ns, mount, p}, "\x00"), desc: desc}, true
	case s.AWSSM != nil:
		region := s.AWSSM.Region
		if region == "" {
			region = "AWS_REGION"
		}
		endpoint := "AWS"
		if s.AWSSM.Endpoint != "" {
			endpoint = normalURL(s.AWSSM.Endpoint)
		}
		// Secrets Manager names are taken as written: "./x" and "x" are
		// two secrets there. A secret's ARN is its name spelled another
		// way (awsARNName).
		name := pub.Path
		if n, ok := awsARNName(pub.Path); ok {
			name = n
		}
		desc := fmt.Sprintf("AWS Secrets Manager secret %q in region %s", name, region)
		if endpoint != "AWS" {
			desc += " at " + endpoint
		}
		return target{key: strings.Join([]string{"awssm", region, endpoint, name}, "\x00"), desc: desc}, true
	}
	return target{}, false
}

// awsARNName is the name a Secrets Manager ARN names
// (arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME), ok false when
// path is not such an ARN. A complete ARN ends in "-" and six characters
// AWS adds to the name; they are dropped, so that the complete ARN, the
// partial one and the name are one place. The comparison errs towards
// one place: the partial ARN of a secret whose name itself ends in "-"
// and six letters or digits is taken for a shorter name (two entries
// that may write to one secret are refused; spelling both the same way
// is the way out). The ARN's region and account are not compared: the
// store's region is the one its calls go to.
func awsARNName(path string) (string, bool) {
	parts := strings.SplitN(path, ":", 7)
	if len(parts) != 7 || parts[0] != "arn" || parts[2] != "secretsmanager" || parts[5] != "secret" || parts[6] == "" {
		return "", false
	}
	name := parts[6]
	if i := len(name) - 7; i > 0 && name[i] == '-' && isAlnum(name[i+1:]) {
		name = name[:i]
	}
	return name, true
}

// isAlnum reports whether s is ASCII letters and digits only.
func isAlnum(s string) bool {
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// normalURL lowercases a URL's scheme and host, drops a default port and
// trailing slashes; a URL that does not parse is returned as written.
func normalURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	u.Scheme = strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	u.Host = host
	if port != "" {
		u.Host = host + ":" + port
	} else if strings.Contains(host, ":") {
		u.Host = "[" + host + "]"
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String()
}
