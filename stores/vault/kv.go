package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/rotator/rotator/rotation"
)

// Keys rotator writes into a secret's custom_metadata. Vault keeps
// custom_metadata per secret, not per version, so these describe the
// latest version only; every version's own record is in its data
// (rotation.Version.Data: version, run_id, rotated_at, fingerprint).
const (
	MetaVersion     = "rotator_version"
	MetaRunID       = "rotator_run_id"
	MetaRotatedAt   = "rotator_rotated_at"
	MetaFingerprint = "rotator_fingerprint"
	// MetaRolledBack names the run a rollback undid.
	MetaRolledBack = "rotator_rolled_back_run_id"
	// MetaWithdrawn lists (space-separated, newest first, at most
	// withdrawnKept) the runs whose version a discarding rollback
	// withdrew from the secret: a publish of one is refused (withdraw).
	MetaWithdrawn = "rotator_withdrawn_run_ids"
)

// withdrawnKept bounds MetaWithdrawn (a custom_metadata value holds at
// most 512 bytes: 10 run ids of 36).
const withdrawnKept = 10

// kvMeta is the part of a KV v2 metadata read the store uses.
type kvMeta struct {
	current  int64
	custom   map[string]string
	versions map[int64]versionInfo
}

type versionInfo struct {
	created   time.Time
	deleted   time.Time // zero: not deleted (or deletion scheduled later)
	destroyed bool
}

// live reports whether version n can be read now.
func (m *kvMeta) live(n int64, now time.Time) bool {
	v, ok := m.versions[n]
	if !ok || v.destroyed {
		return false
	}
	return v.deleted.IsZero() || v.deleted.After(now)
}

// previousLive returns the newest readable version older than n, 0 if none.
func (m *kvMeta) previousLive(n int64, now time.Time) int64 {
	ns := make([]int64, 0, len(m.versions))
	for k := range m.versions {
		if k < n {
			ns = append(ns, k)
		}
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i] > ns[j] })
	for _, k := range ns {
		if m.live(k, now) {
			return k
		}
	}
	return 0
}

func cleanPath(p string) (string, error) {
	c := strings.Trim(p, "/")
	if c == "" || strings.Contains(c, "//") || hasDotSegment(c) {
		return "", rotation.Permanent(fmt.Errorf("vault store: bad secret path %q (want a relative path such as app/db)", p))
	}
	return c, nil
}

func (s *Store) dataPath(p string) string { return s.mount + "/data/" + p }
func (s *Store) metaPath(p string) string { return s.mount + "/metadata/" + p }

// readMeta reads the secret's metadata; nil when the secret does not exist.
func (s *Store) readMeta(ctx context.Context, p string) (*kvMeta, error) {
	sec, found, err := s.read(ctx, op{http.MethodGet, s.metaPath(p), "read"}, nil)
	if err != nil {
		return nil, err
	}
	if !found || sec == nil || sec.Data == nil {
		return nil, nil
	}
	m := &kvMeta{current: jsonInt(sec.Data["current_version"]), custom: map[string]string{}, versions: map[int64]versionInfo{}}
	if cm, ok := sec.Data["custom_metadata"].(map[string]any); ok {
		for k, v := range cm {
			if str, ok := v.(string); ok {
				m.custom[k] = str
			}
		}
	}
	if vs, ok := sec.Data["versions"].(map[string]any); ok {
		for k, raw := range vs {
			n, err := strconv.ParseInt(k, 10, 64)
			if err != nil {
				continue
			}
			vi := versionInfo{}
			if e, ok := raw.(map[string]any); ok {
				vi.created, _ = time.Parse(time.RFC3339Nano, str(e["created_time"]))
				vi.deleted, _ = time.Parse(time.RFC3339Nano, str(e["deletion_time"]))
				vi.destroyed, _ = e["destroyed"].(bool)
			}
			m.versions[n] = vi
		}
	}
	return m, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// readData reads version n's data as a flat map; found=false when Vault
// has no readable data for it (deleted, destroyed, pruned).
func (s *Store) readData(ctx context.Context, p string, n int64) (map[string]string, bool, error) {
	var sec *api.KVSecret
	err := s.withToken(ctx, func() error {
		var err error
		sec, err = s.client.KVv2(s.mount).GetVersion(ctx, p, int(n))
		return err
	})
	if errors.Is(err, api.ErrSecretNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, s.classify(ctx, op{http.MethodGet, s.dataPath(p), "read"}, s.explainDenied(ctx, err))
	}
	if sec == nil || sec.Data == nil {
		return nil, false, nil
	}
	d := make(map[string]string, len(sec.Data))
	for k, v := range sec.Data {
		switch x := v.(type) {
		case string:
			d[k] = x
		case nil:
			d[k] = ""
		default:
			// Written by someone else as a number or object: keep its
			// JSON form rather than drop it.
			b, _ := json.Marshal(x)
			d[k] = string(b)
		}
	}
	return d, true, nil
}

// writeData writes d as a new version with check-and-set cas.
func (s *Store) writeData(ctx context.Context, p string, d map[string]string, cas int64) (int64, error) {
	data := make(map[string]any, len(d))
	for k, v := range d {
		data[k] = v
	}
	var sec *api.KVSecret
	err := s.withToken(ctx, func() error {
		var err error
		sec, err = s.client.KVv2(s.mount).Put(ctx, p, data, api.WithCheckAndSet(int(cas)))
		return err
	})
	if err != nil {
		return 0, s.classify(ctx, op{http.MethodPut, s.dataPath(p), "create/update"}, s.explainDenied(ctx, err))
	}
	if sec == nil || sec.VersionMetadata == nil {
		return cas + 1, nil
	}
	return int64(sec.VersionMetadata.Version), nil
}

// writeCustom merges rotator's keys into the secret's custom_metadata,
// keeping keys others set (a POST replaces custom_metadata whole).
func (s *Store) writeCustom(ctx context.Context, p string, have map[string]string, d map[string]string, rolledBack string) error {
	cm := make(map[string]string, len(have)+5)
	for k, v := range have {
		cm[k] = v
	}
	cm[MetaVersion] = d[rotation.DataVersion]
	cm[MetaRunID] = d[rotation.DataRunID]
	cm[MetaRotatedAt] = d[rotation.DataRotatedAt]
	cm[MetaFingerprint] = d[rotation.DataFingerprint]
	if rolledBack != "" {
		cm[MetaRolledBack] = rolledBack
	} else {
		delete(cm, MetaRolledBack)
	}
	same := len(cm) == len(have)
	for k, v := range cm {
		if have[k] != v {
			same = false
		}
	}
	if same {
		return nil
	}
	// Only custom_metadata is sent: KVv2.PutMetadata would also reset
	// max_versions, cas_required and delete_version_after that others
	// set, and PatchMetadata needs the "patch" capability.
	_, err := s.write(ctx, op{http.MethodPut, s.metaPath(p), "create/update"}, map[string]any{"custom_metadata": cm})
	return err
}

// Stage does nothing: KV v2 has no pending label.
func (s *Store) Stage(context.Context, rotation.StageRequest) error { return nil }

// Abort does nothing: KV v2 has no pending label, so nothing was staged.
func (s *Store) Abort(context.Context, rotation.AbortRequest) error { return nil }

// Publish writes req.Version as a new KV version with check-and-set on the
// version read just before, so a concurrent writer makes it fail with
// ErrConflict instead of being overwritten. If the latest version already
// carries req.Version.RunID it only makes sure custom_metadata says so.
func (s *Store) Publish(ctx context.Context, req rotation.PublishRequest) error {
	p, err := cleanPath(req.Path)
	if err != nil {
		return err
	}
	if req.Version.RunID == "" {
		return rotation.Permanent(fmt.Errorf("vault publish %s: version has no run id", s.dataPath(p)))
	}
	m, err := s.readMeta(ctx, p)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if m != nil && slices.Contains(strings.Fields(m.custom[MetaWithdrawn]), req.Version.RunID) && !req.RollForward {
		return rotation.Withdrawn("vault "+s.where(s.dataPath(p)), req.Version.RunID)
	}
	var cas int64
	have := map[string]string{}
	found := ""
	if m != nil {
		cas, have = m.current, m.custom
		if m.live(m.current, s.now()) {
			d, ok, err := s.readData(ctx, p, m.current)
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			if ok && d[rotation.DataRunID] == req.Version.RunID {
				s.log.Debug("vault: run already published", "path", p, "run_id", req.Version.RunID, "kv_version", m.current)
				return s.writeCustom(ctx, p, have, d, "")
			}
			found = d[rotation.DataRunID]
		}
	}
	// The fence: the latest version must be the one the caller observed;
	// the write below carries cas on exactly the version compared here, so
	// a writer in between makes Vault refuse it (ErrConflict).
	if e := req.Expect; e != nil && found != e.RunID {
		return rotation.StoreMoved("vault "+s.where(s.dataPath(p)), e.RunID, found, fmt.Sprintf("KV version %d", cas))
	}
	if s.beforeWrite != nil {
		s.beforeWrite()
	}
	d := req.Version.Data()
	n, err := s.writeData(ctx, p, d, cas)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if err := s.writeCustom(ctx, p, have, d, ""); err != nil {
		// The version is written; a retry finds it by run id and comes
		// back here to finish the metadata.
		return fmt.Errorf("publish: version %d written, custom_metadata not: %w", n, err)
	}
	s.log.Info("vault: published", "path", p, "kv_version", n, "version", req.Version.Number, "run_id", req.Version.RunID)
	return nil
}

// Describe returns the latest readable version as current and the newest
// readable one before it as previous. A latest version that was deleted
// leaves current nil: that is what clients reading the secret see.
func (s *Store) Describe(ctx context.Context, req rotation.DescribeRequest) (rotation.DescribeResponse, error) {
	var out rotation.DescribeResponse
	p, err := cleanPath(req.Path)
	if err != nil {
		return out, err
	}
	m, err := s.readMeta(ctx, p)
	if err != nil || m == nil {
		return out, err
	}
	now := s.now()
	if m.live(m.current, now) {
		vm, ok, err := s.describeVersion(ctx, p, m, m.current)
		if err != nil {
			return out, err
		}
		if ok {
			out.Current = &vm
		}
	}
	if prev := m.previousLive(m.current, now); prev > 0 {
		vm, ok, err := s.describeVersion(ctx, p, m, prev)
		if err != nil {
			return out, err
		}
		if ok {
			out.Previous = &vm
		}
	}
	return out, nil
}

func (s *Store) describeVersion(ctx context.Context, p string, m *kvMeta, n int64) (rotation.VersionMeta, bool, error) {
	d, ok, err := s.readData(ctx, p, n)
	if err != nil || !ok {
		return rotation.VersionMeta{}, false, err
	}
	v, err := rotation.ParseData(d)
	var vm rotation.VersionMeta
	if err == nil {
		vm = v.Meta()
	} else {
		// Not written by rotator (no secret field it knows): describe
		// what can be told.
		vm = rotation.VersionMeta{RunID: d[rotation.DataRunID], Username: d[rotation.DataUsername]}
	}
	if vm.RotatedAt.IsZero() {
		vm.RotatedAt = m.versions[n].created
	}
	return vm, true, nil
}

// Read returns the current or previous version with its secret.
func (s *Store) Read(ctx context.Context, req rotation.ReadRequest) (rotation.Version, error) {
	p, err := cleanPath(req.Path)
	if err != nil {
		return rotation.Version{}, err
	}
	m, err := s.readMeta(ctx, p)
	if err != nil {
		return rotation.Version{}, err
	}
	which := "current"
	if req.Which == rotation.Previous {
		which = "previous"
	}
	if m == nil {
		return rotation.Version{}, fmt.Errorf("vault %s: no %s version: %w", s.where(s.dataPath(p)), which, rotation.ErrNotFound)
	}
	now := s.now()
	n := int64(0)
	switch req.Which {
	case rotation.Current:
		if m.live(m.current, now) {
			n = m.current
		}
	case rotation.Previous:
		n = m.previousLive(m.current, now)
	default:
		return rotation.Version{}, fmt.Errorf("vault read: unknown version selector %d", req.Which)
	}
	if n == 0 {
		return rotation.Version{}, fmt.Errorf("vault %s: no %s version: %w", s.where(s.dataPath(p)), which, rotation.ErrNotFound)
	}
	d, ok, err := s.readData(ctx, p, n)
	if err != nil {
		return rotation.Version{}, err
	}
	if !ok {
		return rotation.Version{}, fmt.Errorf("vault %s version %d: %w", s.where(s.dataPath(p)), n, rotation.ErrNotFound)
	}
	v, err := rotation.ParseData(d)
	if err != nil {
		return rotation.Version{}, rotation.Permanent(fmt.Errorf("vault %s version %d: %w", s.where(s.dataPath(p)), n, err))
	}
	if v.RotatedAt.IsZero() {
		v.RotatedAt = m.versions[n].created
	}
	return v, nil
}

// Rollback writes the previous version's data again as a new version
// (KV history is never rewritten), with check-and-set, if and only if the
// latest version is the one req.RunID published. With req.Number set, the
// new version carries that rotator version number.
func (s *Store) Rollback(ctx context.Context, req rotation.RollbackRequest) error {
	p, err := cleanPath(req.Path)
	if err != nil {
		return err
	}
	m, err := s.readMeta(ctx, p)
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if req.Discard {
		if wm, err := s.withdraw(ctx, p, m, req.RunID); err != nil {
			// The put back matters more than the record (a token that
			// may not write the metadata, a failing server: the rest
			// fails too and the compensation is tried again).
			s.log.Warn("vault: could not record the withdrawn run in custom_metadata: putting the secret back anyway, "+
				"without the guard against a delayed publish of the run", "path", p, "run_id", req.RunID, "err", err.Error())
		} else {
			m = wm
		}
	}
	now := s.now()
	if m == nil || !m.live(m.current, now) {
		return nil
	}
	cur, ok, err := s.readData(ctx, p, m.current)
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if !ok || cur[rotation.DataRunID] != req.RunID {
		if req.Discard && ok {
			// A discard whose write landed but whose deletes did not
			// (a crash, a lost answer) is finished here.
			return s.finishDiscard(ctx, p, m, cur[rotation.DataRunID], req.RunID)
		}
		return nil
	}
	prev := m.previousLive(m.current, now)
	if prev == 0 {
		return rotation.Permanent(fmt.Errorf("vault rollback %s: run %s published the only readable version; nothing to roll back to: %w",
			s.where(s.dataPath(p)), req.RunID, rotation.ErrNotFound))
	}
	d, ok, err := s.readData(ctx, p, prev)
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if !ok {
		return fmt.Errorf("vault rollback %s: version %d vanished while reading it: %w", s.where(s.dataPath(p)), prev, rotation.ErrNotFound)
	}
	if e := req.Expect; e != nil && e.RunID != "" && d[rotation.DataRunID] != e.RunID {
		return rotation.PreviousMoved("vault "+s.where(s.dataPath(p))+" (previous)", e.RunID, d[rotation.DataRunID], fmt.Sprintf("KV version %d", prev))
	}
	if req.Number != 0 {
		d[rotation.DataVersion] = strconv.FormatInt(req.Number, 10)
	}
	if s.beforeWrite != nil {
		s.beforeWrite()
	}
	n, err := s.writeData(ctx, p, d, m.current)
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if err := s.writeCustom(ctx, p, m.custom, d, req.RunID); err != nil {
		return fmt.Errorf("rollback: version %d written, custom_metadata not: %w", n, err)
	}
	s.log.Info("vault: rolled back", "path", p, "kv_version", n, "restored_kv_version", prev, "run_id", req.RunID)
	if req.Discard {
		if err := s.deleteVersions(ctx, p, prev, m.current); err != nil {
			return fmt.Errorf("rollback: version %d written, the discarded versions %d and %d not deleted: %w", n, prev, m.current, err)
		}
	}
	return nil
}

// withdraw records run in the secret's custom_metadata (MetaWithdrawn)
// before a discarding rollback puts the secret back, whether or not the
// secret holds run's version, creating the metadata when there is no
// secret yet: a publish of run's version that arrives after it (a process
// that lost its lease and whose request was delayed, while the process
// that took over resumed the same run, failed and compensated) is refused
// instead of making current a credential the target has disabled. The
// fence (Expect) cannot tell: after the put back the latest version holds
// again the run the delayed request observed. A publish that read the
// metadata before this write and writes after the put back fails its
// check-and-set (the put back is a new version). A run whose version was
// discarded never publishes again. It returns m with the list updated
// (m.custom is what later custom_metadata writes start from).
func (s *Store) withdraw(ctx context.Context, p string, m *kvMeta, run string) (*kvMeta, error) {
	have := map[string]string{}
	if m != nil && m.custom != nil {
		have = m.custom
	}
	runs := strings.Fields(have[MetaWithdrawn])
	if slices.Contains(runs, run) {
		return m, nil
	}
	runs = append([]string{run}, runs...)
	if len(runs) > withdrawnKept {
		runs = runs[:withdrawnKept]
	}
	cm := make(map[string]string, len(have)+1)
	for k, v := range have {
		cm[k] = v
	}
	cm[MetaWithdrawn] = strings.Join(runs, " ")
	if _, err := s.write(ctx, op{http.MethodPut, s.metaPath(p), "create/update"}, map[string]any{"custom_metadata": cm}); err != nil {
		return m, err
	}
	if m != nil {
		m.custom = cm
	}
	return m, nil
}

// finishDiscard completes a discarding rollback of run whose new version
// (the restored data, run id restored) is the latest: if the newest
// readable version before it is still run's, and the one before that the
// restored version's original, both are soft-deleted, so that previous is
// again what it was before run published.
func (s *Store) finishDiscard(ctx context.Context, p string, m *kvMeta, restored, run string) error {
	now := s.now()
	disc := m.previousLive(m.current, now)
	if disc == 0 {
		return nil
	}
	d, ok, err := s.readData(ctx, p, disc)
	if err != nil || !ok || d[rotation.DataRunID] != run {
		return err
	}
	orig := m.previousLive(disc, now)
	if orig == 0 {
		return nil
	}
	o, ok, err := s.readData(ctx, p, orig)
	if err != nil || !ok || o[rotation.DataRunID] != restored {
		return err
	}
	if err := s.deleteVersions(ctx, p, orig, disc); err != nil {
		return fmt.Errorf("rollback: the discarded versions %d and %d not deleted: %w", orig, disc, err)
	}
	return nil
}

// deleteVersions soft-deletes KV versions (reversible with undelete; the
// data stays until destroyed): used by a discarding rollback on the
// discarded version and on the older copy of the version it restored, so
// that every reader that takes "the newest readable version before the
// latest" as previous (Describe, Read, appsecret) finds the version that
// was previous before the discarded publish. Deleting versions that are
// already deleted is not an error.
func (s *Store) deleteVersions(ctx context.Context, p string, ns ...int64) error {
	vs := make([]any, 0, len(ns))
	for _, n := range ns {
		vs = append(vs, n)
	}
	_, err := s.write(ctx, op{http.MethodPost, s.mount + "/delete/" + p, "update"}, map[string]any{"versions": vs})
	if err == nil {
		s.log.Info("vault: deleted discarded versions", "path", p, "kv_versions", ns)
	}
	return err
}

// ReadDoc returns the latest version's data and its KV version number as
// the revision (rotation.DocStore); nil and "" when the path holds
// nothing. A latest version that was deleted reads as an empty document
// whose revision is its number (a write with cas on it replaces it).
func (s *Store) ReadDoc(ctx context.Context, path string) (map[string]string, string, error) {
	p, err := cleanPath(path)
	if err != nil {
		return nil, "", err
	}
	m, err := s.readMeta(ctx, p)
	if err != nil || m == nil || m.current == 0 {
		return nil, "", err
	}
	rev := strconv.FormatInt(m.current, 10)
	if !m.live(m.current, s.now()) {
		return nil, rev, nil
	}
	d, ok, err := s.readData(ctx, p, m.current)
	if err != nil || !ok {
		return nil, rev, err
	}
	return d, rev, nil
}

// WriteDoc writes doc as a new KV version with cas on rev
// (rotation.DocStore): Vault refuses it, and WriteDoc returns an error
// matching rotation.ErrDocConflict, when another version was written since.
func (s *Store) WriteDoc(ctx context.Context, path string, doc map[string]string, rev string) error {
	p, err := cleanPath(path)
	if err != nil {
		return err
	}
	var cas int64
	if rev != "" {
		if cas, err = strconv.ParseInt(rev, 10, 64); err != nil {
			return rotation.Permanent(fmt.Errorf("vault %s: bad revision %q", s.where(s.dataPath(p)), rev))
		}
	}
	n, err := s.writeData(ctx, p, doc, cas)
	if errors.Is(err, ErrConflict) {
		return fmt.Errorf("%w: %w", rotation.ErrDocConflict, err)
	}
	if err != nil {
		return err
	}
	s.log.Info("vault: wrote shared document", "path", p, "kv_version", n)
	return nil
}

// Where names the document at path for messages (rotation.DocStore).
func (s *Store) Where(path string) string {
	return "vault " + s.where(s.dataPath(strings.Trim(path, "/")))
}
