package appsecret

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Status is what the handler answers: the versions in use, never a secret.
type Status struct {
	Name                string     `json:"name"`
	Version             int64      `json:"version"`
	Fingerprint         string     `json:"fingerprint"`
	RotatedAt           *time.Time `json:"rotated_at,omitempty"`
	Source              string     `json:"source"`
	PreviousVersion     int64      `json:"previous_version,omitempty"`
	PreviousFingerprint string     `json:"previous_fingerprint,omitempty"`
}

// Status returns what the handler answers.
func (s *Secret) Status() Status {
	cur := s.Current()
	st := Status{Name: s.opts.Name, Version: cur.Number, Fingerprint: cur.Fingerprint, Source: cur.Source}
	if !cur.RotatedAt.IsZero() {
		t := cur.RotatedAt.UTC()
		st.RotatedAt = &t
	}
	if p, ok := s.Previous(); ok {
		st.PreviousVersion, st.PreviousFingerprint = p.Number, p.Fingerprint
	}
	return st
}

// ServeHTTP answers GET and HEAD with the version in use, as the rotator's
// http check asks:
//
//	X-Secret-Version: 7
//	X-Secret-Fingerprint: 3f9a1c0b7e22
//
//	{"name": "api/openrouter", "version": 7, "fingerprint": "3f9a1c0b7e22", ...}
//
// The fingerprint is Version.Fingerprint: the rotator's recorded one for
// a version it published, a keyed one for anything else; the secret
// itself is never in the answer.
func (s *Secret) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	st := s.Status()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Secret-Version", strconv.FormatInt(st.Version, 10))
	h.Set("X-Secret-Fingerprint", st.Fingerprint)
	if r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(st)
}

var _ http.Handler = (*Secret)(nil)
