package policy

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

// PublishLimit is the smallest ValueLimit among the stores s publishes
// to: the limit, what it is, the store's name and the index of its
// publish entry; limit 0 when none has one.
type PublishLimit struct {
	Limit int
	What  string
	Store string
	Index int
}

// PublishLimit returns the smallest limit on one secret value among the
// stores s publishes to (Limit 0: none).
func (f *File) PublishLimit(s *SecretSpec) PublishLimit {
	var out PublishLimit
	for i, p := range s.Publish {
		if p == nil {
			continue
		}
		for _, st := range f.Stores {
			if st == nil || st.Name != p.Store {
				continue
			}
			if n, what := ValueLimit(st); n > 0 && (out.Limit == 0 || n < out.Limit) {
				out = PublishLimit{Limit: n, What: what, Store: st.Name, Index: i}
			}
		}
	}
	return out
}
