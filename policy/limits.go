package policy

import (
	"encoding/json"
	"fmt"

	"github.com/rotator/rotator/appsecret"
	"github.com/rotator/rotator/internal/derive"
)

// The most bytes a store takes in one secret value.
const (
	// AWSSMValueLimit: AWS Secrets Manager's quota on a secret value
	// (SecretString), 65,536 bytes.
	AWSSMValueLimit = 65536
	// VaultValueLimit: Vault's default max_json_string_value_length on a
	// listener, 1,048,576 bytes for one JSON string in a request (a
	// KV v2 data field). Its default max_request_size, 33,554,432
	// bytes for the whole request, is larger.
	VaultValueLimit = 1048576
)

// ValueLimit returns the most bytes st takes in one secret value, and
// what that limit is, for messages; 0 when it sets none (files).
func ValueLimit(st *StoreSpec) (int, string) {
	switch {
	case st == nil:
		return 0, ""
	case st.AWSSM != nil:
		return AWSSMValueLimit, "AWS Secrets Manager's limit on a secret value"
	case st.Vault != nil:
		return VaultValueLimit, "Vault's default limit on one JSON string in a request (listener max_json_string_value_length)"
	}
	return 0, ""
}

// PublishLimit is the smallest limit among the stores s publishes to,
// on what the secret alone may take of one secret value (see
// File.PublishLimit): the limit, what it is, the store's name and the
// index of its publish entry; limit 0 when none has one.
type PublishLimit struct {
	Limit int
	What  string
	Store string
	Index int
}

// PublishLimit returns the smallest limit among the stores s publishes
// to (Limit 0: none), as a bound on appsecret.PublishedSize of the
// secret: a store's ValueLimit, less what the entry's derived fields
// take when they repeat the secret. Each {secret} of a plain template
// adds the secret again, as a JSON string like its own field; one in a
// URL adds it percent-escaped, at most three bytes for each of its
// bytes (every byte of a JSON string is at least one); the templates'
// names and literal text count as written and JSON-escaped.
func (f *File) PublishLimit(s *SecretSpec) PublishLimit {
	var out PublishLimit
	_, secretName := DerivePlaceholders(s.Rotator)
	for i, p := range s.Publish {
		if p == nil {
			continue
		}
		for _, st := range f.Stores {
			if st == nil || st.Name != p.Store {
				continue
			}
			n, what := ValueLimit(st)
			if n <= 0 {
				continue
			}
			copies, extra, fields := 1, 0, 0
			for _, name := range sortedKeys(p.Derive) {
				t, err := derive.Parse(p.Derive[name])
				if err != nil {
					continue // reported by derive
				}
				uses := 0
				for _, ph := range t.Placeholders() {
					if secretName != "" && ph.Name == secretName {
						uses++
					}
				}
				if uses == 0 {
					continue
				}
				fields++
				if t.IsURL() {
					copies += 3 * uses
				} else {
					copies += uses
				}
				nb, _ := json.Marshal(name)
				tb, _ := json.Marshal(t.Source())
				extra += len(nb) + len(tb) + 2 // ':' and ','
			}
			lim := n
			if copies > 1 {
				lim = (n-appsecret.PublishOverhead-extra)/copies + appsecret.PublishOverhead
				what = fmt.Sprintf("%s (%d bytes), shared with %d derived field(s) of publish[%d] that repeat the secret", what, n, fields, i)
			}
			if out.Limit == 0 || lim < out.Limit {
				out = PublishLimit{Limit: lim, What: what, Store: st.Name, Index: i}
			}
		}
	}
	return out
}
