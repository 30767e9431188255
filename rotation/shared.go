package rotation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/rotator/rotator/internal/secret"
)

// DocStore is a store that can hold a document shared with other writers:
// a flat map of string fields, read with a revision and written only if
// the revision is still the latest (Vault: cas on the KV version; AWS: the
// new version becomes AWSCURRENT only if AWSCURRENT is still the version
// read; files: under the file's flock, compared with what was read).
// SharedFields builds a Store on it that owns some of the fields.
type DocStore interface {
	// ReadDoc returns the document at path and its revision; a path with
	// nothing returns a nil document and the revision "".
	ReadDoc(ctx context.Context, path string) (doc map[string]string, rev string, err error)
	// WriteDoc replaces the document at path if its revision is still rev
	// ("" = the path must hold nothing); otherwise it returns an error
	// matching ErrDocConflict and changes nothing.
	WriteDoc(ctx context.Context, path string, doc map[string]string, rev string) error
	// Where names the document for messages ("vault secret/data/app").
	Where(path string) string
}

// ErrDocConflict: another writer changed a shared document between its
// read and the compare-and-set write. SharedFields reads again and retries.
var ErrDocConflict = errors.New("the document changed since it was read (compare-and-set conflict)")

// SharedMetaPrefix starts the name of the field in which SharedFields keeps
// an owner's metadata; owned fields may not start with it.
const SharedMetaPrefix = "rotator."

// SharedMetaField is the metadata field of the secret id's owner group.
func SharedMetaField(secretID string) string {
	b := []byte(secretID)
	for i, c := range b {
		if c == '/' {
			b[i] = '.'
		}
	}
	return SharedMetaPrefix + string(b)
}

// sharedAttempts bounds the read-modify-write rounds of one call under
// conflicts with concurrent writers.
const sharedAttempts = 20

// SharedFields returns a Store that publishes a secret into some fields of
// a document others write too: fields maps the keys of Version.Data it
// owns ("password", "url") to the document's field names ("db_password",
// "database_url"). Every write is a read-modify-write of the whole
// document that changes only the owned fields and the metadata field
// meta, under the DocStore's compare-and-set, retried on a conflict: a
// concurrent writer's fields (another secret's, a person's) are kept.
//
// The owner group's current version is what its owned fields hold; its run
// id, number, fingerprint and the rest of Data are in meta (JSON), with the
// group's previous version whole (its owned values too, which is how a
// rollback restores them whatever happened to the document meanwhile) and
// the one before it (for a discarding rollback). Expect and Rollback's
// RunID compare the group's run id, not the document's: another group's
// or a person's write does not move this group. Owned values that no
// longer match the recorded fingerprint (changed by hand) are a current
// version without a run id, like a file put there by hand.
func SharedFields(doc DocStore, meta string, fields map[string]string) Store {
	return &sharedStore{doc: doc, meta: meta, fields: maps.Clone(fields)}
}

type sharedStore struct {
	doc    DocStore
	meta   string
	fields map[string]string
}

// sharedGroup is the JSON in the metadata field.
type sharedGroup struct {
	// Current is Data of the current version without the owned keys.
	Current map[string]string `json:"current,omitempty"`
	// Previous and PriorPrevious are whole Data.
	Previous      map[string]string `json:"previous,omitempty"`
	PriorPrevious map[string]string `json:"prior_previous,omitempty"`
	// Fields is the owned mapping (Data key -> document field), so that
	// readers (appsecret) find the version of the field they read.
	Fields map[string]string `json:"fields,omitempty"`
	// Withdrawn are the runs a discarding rollback withdrew (newest
	// first, at most sharedWithdrawnKept): a publish of one is refused
	// (Withdrawn), as the other stores refuse it.
	Withdrawn []string `json:"withdrawn,omitempty"`
}

// sharedWithdrawnKept bounds sharedGroup.Withdrawn.
const sharedWithdrawnKept = 10

// state is what the document says about the owner group.
type sharedState struct {
	doc   map[string]string
	rev   string
	group sharedGroup
	// cur is the group's current version as Data (nil: none), runID its
	// run id ("" for a version of unknown origin).
	cur   map[string]string
	runID string
}

func (s *sharedStore) load(ctx context.Context, path string) (sharedState, error) {
	doc, rev, err := s.doc.ReadDoc(ctx, path)
	if err != nil {
		return sharedState{}, err
	}
	st := sharedState{doc: doc, rev: rev}
	if raw, ok := doc[s.meta]; ok && raw != "" {
		if err := json.Unmarshal([]byte(raw), &st.group); err != nil {
			return st, Permanent(fmt.Errorf("%s: field %q does not hold rotator's metadata (%v): fix or remove it", s.doc.Where(path), s.meta, err))
		}
	}
	owned := map[string]string{}
	for k, f := range s.fields {
		if x, ok := doc[f]; ok {
			owned[k] = x
		}
	}
	if st.group.Current != nil {
		cur := maps.Clone(st.group.Current)
		maps.Copy(cur, owned)
		field := cur[DataField]
		if field == "" {
			field = "password"
		}
		if secret.New(cur[field]).Fingerprint() == cur[DataFingerprint] {
			st.cur, st.runID = cur, cur[DataRunID]
			return st, nil
		}
	}
	// Owned fields without (matching) metadata: put there by hand.
	if len(owned) > 0 {
		st.cur = owned
	}
	return st, nil
}

// write stores the group's state g with the owned fields of cur (Data).
func (s *sharedStore) write(ctx context.Context, path string, st sharedState, cur map[string]string, g sharedGroup) error {
	doc := maps.Clone(st.doc)
	if doc == nil {
		doc = map[string]string{}
	}
	g.Current = maps.Clone(cur)
	g.Fields = s.fields
	for k, f := range s.fields {
		// An owned field the version does not have is removed: the owned
		// fields are the version's, nothing else.
		if x, ok := cur[k]; ok {
			doc[f] = x
		} else {
			delete(doc, f)
		}
		delete(g.Current, k)
	}
	b, err := json.Marshal(g)
	if err != nil {
		return err
	}
	doc[s.meta] = string(b)
	return s.doc.WriteDoc(ctx, path, doc, st.rev)
}

// retry runs fn until it does not report a conflict, at most
// sharedAttempts times.
func (s *sharedStore) retry(path string, fn func() error) error {
	var err error
	for range sharedAttempts {
		if err = fn(); !errors.Is(err, ErrDocConflict) {
			return err
		}
	}
	return fmt.Errorf("%s: %d compare-and-set conflicts in a row with other writers: %w", s.doc.Where(path), sharedAttempts, err)
}

// Stage does nothing: a shared document has no pending slot.
func (s *sharedStore) Stage(context.Context, StageRequest) error { return nil }

// Abort does nothing (see Stage).
func (s *sharedStore) Abort(context.Context, AbortRequest) error { return nil }

func (s *sharedStore) Publish(ctx context.Context, req PublishRequest) error {
	if req.Version.RunID == "" {
		return Permanent(fmt.Errorf("%s: version has no run id", s.doc.Where(req.Path)))
	}
	return s.retry(req.Path, func() error {
		st, err := s.load(ctx, req.Path)
		if err != nil {
			return err
		}
		if st.runID == req.Version.RunID {
			return nil
		}
		if slices.Contains(st.group.Withdrawn, req.Version.RunID) && !req.RollForward {
			return Withdrawn(s.doc.Where(req.Path)+" (fields of "+s.meta+")", req.Version.RunID)
		}
		if e := req.Expect; e != nil && st.runID != e.RunID {
			return StoreMoved(s.doc.Where(req.Path)+" (fields of "+s.meta+")", e.RunID, st.runID, "revision "+st.rev)
		}
		prev := st.cur
		if prev != nil && st.runID == "" && prev[DataField] == "" && req.Version.Credential.SecretField() != "password" {
			// Put there by hand: it holds the secret under the field this
			// secret publishes (api_key, token).
			prev = maps.Clone(prev)
			prev[DataField] = req.Version.Credential.SecretField()
		}
		g := sharedGroup{Previous: prev, PriorPrevious: st.group.Previous, Withdrawn: st.group.Withdrawn}
		return s.write(ctx, req.Path, st, req.Version.Data(), g)
	})
}

func (s *sharedStore) Rollback(ctx context.Context, req RollbackRequest) error {
	return s.retry(req.Path, func() error {
		st, err := s.load(ctx, req.Path)
		if err != nil {
			return err
		}
		withdrawn := st.group.Withdrawn
		if req.Discard && req.RunID != "" && !slices.Contains(withdrawn, req.RunID) {
			withdrawn = append([]string{req.RunID}, withdrawn...)
			withdrawn = withdrawn[:min(len(withdrawn), sharedWithdrawnKept)]
		}
		if req.RunID == "" || st.runID != req.RunID {
			if len(withdrawn) != len(st.group.Withdrawn) && st.cur != nil {
				// Recorded even where the group does not hold the run's
				// version (see Withdrawn), as well as it can: a write that
				// fails other than by a conflict (retried) leaves the
				// document as it was, which is what the rollback owes.
				// A document that holds no version of the group is not
				// written.
				g := st.group
				g.Withdrawn = withdrawn
				if err := s.write(ctx, req.Path, st, st.cur, g); errors.Is(err, ErrDocConflict) {
					return err
				}
			}
			return nil
		}
		prev := st.group.Previous
		if prev == nil {
			return Permanent(fmt.Errorf("%s: run %s published the group's only version; nothing to roll back to: %w", s.doc.Where(req.Path), req.RunID, ErrNotFound))
		}
		if e := req.Expect; e != nil && e.RunID != "" && prev[DataRunID] != e.RunID {
			return PreviousMoved(s.doc.Where(req.Path)+" (fields of "+s.meta+")", e.RunID, prev[DataRunID], "revision "+st.rev)
		}
		restore := maps.Clone(prev)
		if req.Number != 0 && restore[DataRunID] != "" {
			restore[DataVersion] = fmt.Sprint(req.Number)
		}
		g := sharedGroup{Previous: st.cur, PriorPrevious: nil, Withdrawn: withdrawn}
		if req.Discard {
			g.Previous = st.group.PriorPrevious
		}
		return s.write(ctx, req.Path, st, restore, g)
	})
}

func (s *sharedStore) Describe(ctx context.Context, req DescribeRequest) (DescribeResponse, error) {
	st, err := s.load(ctx, req.Path)
	if err != nil {
		return DescribeResponse{}, err
	}
	var r DescribeResponse
	if m, ok := metaOf(st.cur); ok {
		r.Current = &m
	}
	if m, ok := metaOf(st.group.Previous); ok {
		r.Previous = &m
	}
	return r, nil
}

func metaOf(d map[string]string) (VersionMeta, bool) {
	if d == nil {
		return VersionMeta{}, false
	}
	v, err := ParseData(d)
	if err != nil {
		return VersionMeta{}, false
	}
	return v.Meta(), true
}

func (s *sharedStore) Read(ctx context.Context, req ReadRequest) (Version, error) {
	st, err := s.load(ctx, req.Path)
	if err != nil {
		return Version{}, err
	}
	d := st.cur
	if req.Which == Previous {
		d = st.group.Previous
	}
	if d == nil {
		return Version{}, fmt.Errorf("%s: no %s version of fields of %s: %w", s.doc.Where(req.Path), whichName(req.Which), s.meta, ErrNotFound)
	}
	v, err := ParseData(d)
	if err != nil {
		return Version{}, Permanent(fmt.Errorf("%s: fields of %s: %w", s.doc.Where(req.Path), s.meta, err))
	}
	return v, nil
}

func whichName(w Which) string {
	if w == Previous {
		return "previous"
	}
	return "current"
}

// Owned returns the document fields the store owns, sorted.
func (s *sharedStore) Owned() []string {
	out := make([]string, 0, len(s.fields))
	for _, f := range s.fields {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}
