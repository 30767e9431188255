package policy

import (
	"errors"
	"net/url"
	"slices"
	"strings"

	"github.com/rotator/rotator/internal/derive"
)

// DerivePlaceholders returns the placeholders a derived field of a secret
// with rotator r may use, and the one among them that is the secret.
func DerivePlaceholders(r RotatorSpec) (names []string, secretName string) {
	switch {
	case r.Postgres != nil:
		names = append([]string{"username", "password"}, sortedKeys(r.Postgres.Connection)...)
		return names, "password"
	case r.MySQL != nil:
		names = append([]string{"username", "password"}, sortedKeys(r.MySQL.Connection)...)
		return names, "password"
	case r.HTTPAPI != nil:
		f := r.HTTPAPI.Field
		if f == "" {
			f = DefaultAPIKeyField
		}
		return []string{f, "key_id", "key_name"}, f
	case r.Token != nil:
		f := r.Token.Field
		if f == "" {
			f = DefaultTokenField
		}
		return []string{f, "key_id"}, f
	case r.Redis != nil:
		names = append([]string{"username", "password", "key_id"}, sortedKeys(r.Redis.Connection)...)
		return names, "password"
	case r.Keyring != nil:
		f := r.Keyring.Field
		if f == "" {
			f = DefaultKeyringField
		}
		return []string{f, "key_id"}, f
	case r.AWSIAM != nil:
		names = append([]string{"username", AWSIAMKeyIDField, AWSIAMSecretField, "key_id"}, sortedKeys(r.AWSIAM.Connection)...)
		return names, AWSIAMSecretField
	}
	return nil, ""
}

// derive checks the derived fields of one publish entry: names that
// collide with nothing rotator writes, templates that parse and use only
// the placeholders the secret's rotator provides, and, for a URL, a
// rendering that parses as one.
func (v *validator) derive(p string, s *SecretSpec, pub *PublishSpec) {
	if len(pub.Derive) == 0 {
		return
	}
	names, secretName := DerivePlaceholders(s.Rotator)
	if secretName == "" {
		return // no rotator: reported
	}
	if st, ok := v.f.Store(pub.Store); ok && st.Files != nil && st.Files.Format == FormatRaw {
		v.errf(p+".derive", "store %q has format raw: its file holds the secret alone, with no room for derived fields; use format json", pub.Store)
		return
	}
	for _, name := range sortedKeys(pub.Derive) {
		fp := p + ".derive." + name
		switch {
		case !fieldNameRE.MatchString(name):
			v.errf(fp, "expected a field name of lowercase letters, digits and _, starting with a letter, got %q", name)
			continue
		case name == secretName || slices.Contains(reservedConnectionKeys, name):
			v.errf(fp, "field %q is written by rotator itself (%s); name the derived field otherwise, such as url", name, strings.Join(append([]string{secretName}, reservedConnectionKeys...), ", "))
			continue
		case slices.Contains(names, name):
			v.errf(fp, "field %q is already published from the rotator's connection settings; name the derived field otherwise", name)
			continue
		}
		t, err := derive.Parse(pub.Derive[name])
		var de *derive.Error
		if errors.As(err, &de) {
			v.errf(fp, "template: %s", de)
			continue
		}
		sample := map[string]string{}
		bad := false
		for _, ph := range t.Placeholders() {
			if !slices.Contains(names, ph.Name) {
				v.errf(fp, "template: character %d: unknown placeholder {%s}; a %s secret's placeholders are {%s}",
					ph.Offset+1, ph.Name, s.Rotator.Type(), strings.Join(names, "}, {"))
				bad = true
			}
			sample[ph.Name] = "x"
			if c, ok := connectionOf(s.Rotator)[ph.Name]; ok {
				sample[ph.Name] = c // known now: a host or port that breaks the URL is reported here
			}
		}
		if bad || !t.IsURL() {
			continue
		}
		if r, err := t.Render(sample); err != nil {
			v.errf(fp, "template: %v", err)
		} else if _, err := url.Parse(r); err != nil {
			v.errf(fp, "template: not a valid URL once filled in: %v", unwrapURLError(err))
		}
	}
}

// unwrapURLError drops net/url's repetition of the URL (a sample).
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// sharedFields checks the fields a publish entry owns in a shared
// document: known credential fields, the secret's own among them, document
// names that are unique and clear of rotator's metadata field.
func (v *validator) sharedFields(p string, s *SecretSpec, pub *PublishSpec) {
	if len(pub.Fields) == 0 {
		return
	}
	names, secretName := DerivePlaceholders(s.Rotator)
	if secretName == "" {
		return
	}
	if st, ok := v.f.Store(pub.Store); ok && st.Files != nil && st.Files.Format == FormatRaw {
		v.errf(p+".fields", "store %q has format raw: its file holds one secret alone, not a document of fields; use format json", pub.Store)
		return
	}
	known := append(slices.Clone(names), sortedKeys(pub.Derive)...)
	if _, ok := pub.Fields[secretName]; !ok {
		v.errf(p+".fields", "must publish the secret itself: add %s: <the document's field for it>", secretName)
	}
	seen := map[string]string{}
	for _, k := range sortedKeys(pub.Fields) {
		fp := p + ".fields." + k
		doc := pub.Fields[k]
		switch {
		case !slices.Contains(known, k):
			v.errf(fp, "unknown field %q; a %s secret publishes %s (and its derived fields)", k, s.Rotator.Type(), strings.Join(names, ", "))
		case doc == "":
			v.errf(fp, "required: the name of the document's field")
		case strings.HasPrefix(doc, rotationMetaPrefix):
			v.errf(fp, "document field %q collides with rotator's metadata fields (%s<secret id>); name it otherwise", doc, rotationMetaPrefix)
		case seen[doc] != "":
			v.errf(fp, "document field %q is already published from %s", doc, seen[doc])
		default:
			seen[doc] = k
		}
	}
}

// rotationMetaPrefix is rotation.SharedMetaPrefix (policy does not import
// rotation).
const rotationMetaPrefix = "rotator."

// connectionOf returns the connection fields a rotator publishes.
func connectionOf(r RotatorSpec) map[string]string {
	switch {
	case r.Postgres != nil:
		return r.Postgres.Connection
	case r.MySQL != nil:
		return r.MySQL.Connection
	case r.Redis != nil:
		return r.Redis.Connection
	case r.AWSIAM != nil:
		return r.AWSIAM.Connection
	}
	return nil
}
