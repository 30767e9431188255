package rotation

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"

	"github.com/rotator/rotator/internal/derive"
	"github.com/rotator/rotator/internal/secret"
)

// DerivedField is a field a publish target adds to each version it
// publishes, rendered from the credential by a template (internal/derive):
// {username}, {key_id}, the secret under its field name ({password},
// {api_key}, {token}) and every Extra field ({host}, {port}, ...).
type DerivedField struct {
	Name     string
	Template *derive.Template
}

// DeriveFields returns store with fields added to every version it stages
// or publishes. They are written with the version, so the store's previous
// version and a rollback carry the derived fields of their own credential.
// A field whose template uses the secret is secret (Credential.Derived,
// listed under DataSecretFields); any other goes to Extra. No fields
// returns store itself.
func DeriveFields(store Store, fields []DerivedField) Store {
	if len(fields) == 0 {
		return store
	}
	return &derivingStore{Store: store, fields: fields}
}

type derivingStore struct {
	Store
	fields []DerivedField
}

// Derive returns v with the fields rendered into its credential. The
// error names the field and placeholder, never a value.
func Derive(v Version, fields []DerivedField) (Version, error) {
	c := v.Credential
	vals := make(map[string]string, len(c.Extra)+3)
	for k, x := range c.Extra {
		vals[k] = x
	}
	if c.Username != "" {
		vals[DataUsername] = c.Username
	}
	if c.KeyID != "" {
		vals[DataKeyID] = c.KeyID
	}
	vals[c.SecretField()] = c.Secret.Reveal()
	extra, derived := maps.Clone(c.Extra), maps.Clone(c.Derived)
	for _, f := range fields {
		s, err := f.Template.Render(vals)
		if err != nil {
			return v, Permanent(fmt.Errorf("derived field %q: %w", f.Name, err))
		}
		if f.Template.Uses(c.SecretField()) {
			if derived == nil {
				derived = map[string]secret.Value{}
			}
			derived[f.Name] = secret.New(s)
			delete(extra, f.Name)
		} else {
			if extra == nil {
				extra = map[string]string{}
			}
			extra[f.Name] = s
			delete(derived, f.Name)
		}
	}
	c.Extra, c.Derived = extra, derived
	v.Credential = c
	return v, nil
}

func (d *derivingStore) Stage(ctx context.Context, req StageRequest) error {
	v, err := Derive(req.Version, d.fields)
	if err != nil {
		return err
	}
	req.Version = v
	return d.Store.Stage(ctx, req)
}

func (d *derivingStore) Publish(ctx context.Context, req PublishRequest) error {
	v, err := Derive(req.Version, d.fields)
	if err != nil {
		return err
	}
	req.Version = v
	return d.Store.Publish(ctx, req)
}

// escapedForms returns the forms of p an escaping template may write
// (URL user info, path and query escaping) that differ from p.
func escapedForms(p string) []string {
	var out []string
	for _, f := range []string{url.User(p).String(), url.PathEscape(p), url.QueryEscape(p)} {
		if f != p && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}
