package main

import (
	"encoding/json"
	"net/url"

	"github.com/rotator/rotator/internal/dsn"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
)

// resolvedSecrets returns the secrets that the configuration of s
// resolves (its admin DSN's password in every form, its management key)
// for the engine's redaction (rotation.Target.Redact). A reference that
// does not resolve gives nothing: building the rotator reports it.
func resolvedSecrets(s *policy.SecretSpec) []secret.Value {
	var out []secret.Value
	if pg := s.Rotator.Postgres; pg != nil && !pg.AdminDSN.IsZero() {
		if v, err := pg.AdminDSN.Resolve(); err == nil {
			out = append(out, dsn.Secrets(v.Reveal())...)
		}
	}
	out = append(out, mysqlSecrets(s)...)
	out = append(out, awsIAMSecrets(s)...)
	if h := s.Rotator.HTTPAPI; h != nil && h.Management != nil {
		if v, err := h.Management.Resolve(); err == nil {
			out = append(out, forms(v)...)
		}
	}
	return out
}

// fileSecrets returns the resolved secrets of every secret of f and of
// its notify section, for the notifier's redaction.
func fileSecrets(f *policy.File) []secret.Value {
	var out []secret.Value
	for _, s := range f.Secrets {
		out = append(out, resolvedSecrets(s)...)
	}
	refs := []*policy.Ref{}
	if sl := f.Notify.Slack; sl != nil {
		refs = append(refs, sl.WebhookURL, sl.Token)
	}
	for _, wh := range f.Notify.Webhooks {
		refs = append(refs, &wh.Secret)
	}
	for _, r := range refs {
		if r == nil || r.IsZero() {
			continue
		}
		if v, err := r.Resolve(); err == nil {
			out = append(out, forms(v)...)
		}
	}
	return out
}

// forms is v as written, %-escaped and JSON-escaped (the engine's
// redaction replaces exact text; the notifier's adds its own forms).
func forms(v secret.Value) []secret.Value {
	p := v.Reveal()
	if p == "" {
		return nil
	}
	out := []secret.Value{v}
	for _, f := range []string{url.QueryEscape(p), url.PathEscape(p)} {
		if f != p {
			out = append(out, secret.New(f))
		}
	}
	if b, err := json.Marshal(p); err == nil && string(b[1:len(b)-1]) != p {
		out = append(out, secret.New(string(b[1:len(b)-1])))
	}
	return out
}
