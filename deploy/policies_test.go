package deploy_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/token"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/appsecret"
	"github.com/rotator/rotator/internal/vaultdev"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/storetest"
	"github.com/rotator/rotator/stores/vault"
)

// parseVaultPolicy reads a Vault ACL policy in HCL with Vault's own HCL
// library. Anything but path blocks holding a capabilities list fails.
func parseVaultPolicy(t *testing.T, file string) map[string][]string {
	t.Helper()
	src, err := os.ReadFile(file)
	require.NoError(t, err)
	f, err := hcl.ParseBytes(src)
	require.NoError(t, err, file)
	list, ok := f.Node.(*ast.ObjectList)
	require.True(t, ok, file)
	rules := map[string][]string{}
	for _, item := range list.Items {
		require.Len(t, item.Keys, 2, "%s: want path \"...\" { ... }", file)
		require.Equal(t, "path", item.Keys[0].Token.Text, file)
		p, ok := item.Keys[1].Token.Value().(string)
		require.True(t, ok, file)
		require.NotContains(t, rules, p, "%s: path %q twice", file, p)
		obj, ok := item.Val.(*ast.ObjectType)
		require.True(t, ok, "%s: path %q: want a block", file, p)
		var caps []string
		for _, field := range obj.List.Items {
			require.Equal(t, "capabilities", field.Keys[0].Token.Text, "%s: path %q: only capabilities are expected", file, p)
			l, ok := field.Val.(*ast.ListType)
			require.True(t, ok, "%s: path %q: capabilities is a list", file, p)
			for _, v := range l.List {
				lit, ok := v.(*ast.LiteralType)
				require.True(t, ok && lit.Token.Type == token.STRING, "%s: path %q: capabilities are strings", file, p)
				caps = append(caps, lit.Token.Value().(string))
			}
		}
		require.NotEmpty(t, caps, "%s: path %q", file, p)
		slices.Sort(caps)
		rules[p] = caps
	}
	return rules
}

// documentedVaultPolicy reads the policy stores/vault documents in its
// doc.go ("# Vault policy").
func documentedVaultPolicy(t *testing.T) (rules map[string][]string, text string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "stores", "vault", "doc.go"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(src), "// # Vault policy")
	require.True(t, ok, "stores/vault/doc.go has a \"# Vault policy\" section")
	section, _, _ = strings.Cut(section, "\n// # ")
	re := regexp.MustCompile(`path "([^"]+)"\s*\{\s*capabilities = \[([^\]]*)\]\s*\}`)
	rules = map[string][]string{}
	for _, m := range re.FindAllStringSubmatch(section, -1) {
		var caps []string
		for _, c := range strings.Split(m[2], ",") {
			caps = append(caps, strings.Trim(strings.TrimSpace(c), `"`))
		}
		slices.Sort(caps)
		rules[m[1]] = caps
	}
	require.NotEmpty(t, rules, "no path rules found in stores/vault/doc.go")
	return rules, section
}

// deploy/vault/rotator.hcl grants what stores/vault documents, no more: the
// same capabilities on the data and metadata trees of the mount (narrowed
// to a prefix), plus the token self-management the doc names.
func TestVaultPolicyMatchesStore(t *testing.T) {
	t.Parallel()
	got := parseVaultPolicy(t, filepath.Join("vault", "rotator.hcl"))
	doc, text := documentedVaultPolicy(t)

	selfPaths := map[string][]string{
		"auth/token/lookup-self": {"read"},
		"auth/token/renew-self":  {"update"},
		"auth/token/revoke-self": {"update"},
	}
	for p, caps := range selfPaths {
		require.Contains(t, text, strings.TrimPrefix(p, "auth/token/"), "doc.go names %s", p)
		require.Equal(t, caps, got[p], "rotator.hcl: %s", p)
	}
	matched := map[string]bool{}
	for docPath, caps := range doc {
		prefix := strings.TrimSuffix(docPath, "*")
		var found []string
		for p := range got {
			if strings.HasPrefix(p, prefix) {
				found = append(found, p)
			}
		}
		require.Len(t, found, 1, "rotator.hcl has one rule under %s", docPath)
		require.True(t, strings.HasSuffix(found[0], "/*"), "%s covers a subtree", found[0])
		require.Equal(t, caps, got[found[0]], "capabilities of %s (doc.go: %s)", found[0], docPath)
		matched[found[0]] = true
	}
	for p := range got {
		_, self := selfPaths[p]
		require.True(t, self || matched[p], "rotator.hcl grants %s, which stores/vault does not use", p)
	}
	// The data, metadata and delete rules cover the same subtree.
	var subtrees []string
	for p := range matched {
		_, rest, _ := strings.Cut(strings.TrimPrefix(p, "secret/"), "/")
		subtrees = append(subtrees, rest)
	}
	require.Len(t, subtrees, 3)
	require.Equal(t, subtrees[0], subtrees[1])
	require.Equal(t, subtrees[0], subtrees[2])
}

// The policy is enough: the store's whole conformance suite passes on a
// real Vault with a token that holds rotator.hcl and nothing else (not
// even the default policy), on paths under the policy's prefix. And it is
// not wider than it says: a path outside the prefix is refused.
func TestVaultPolicyIsSufficient(t *testing.T) {
	t.Parallel()
	rules := parseVaultPolicy(t, filepath.Join("vault", "rotator.hcl"))
	prefix := ""
	for p := range rules {
		if strings.HasPrefix(p, "secret/data/") {
			prefix = strings.TrimSuffix(strings.TrimPrefix(p, "secret/data/"), "*")
		}
	}
	require.NotEmpty(t, prefix)

	v := vaultdev.New(t, vaultdev.Options{})
	writeVaultPolicy(t, v, "rotator", filepath.Join("vault", "rotator.hcl"))
	tok := v.CreateToken(t, vaultdev.TokenOptions{Policies: []string{"rotator"}, NoDefaultPolicy: true, TTL: time.Hour, Renewable: true})
	spec := &policy.VaultSpec{Address: v.Addr, Mount: "secret"}
	spec.Auth.Token = &policy.VaultTokenAuth{Token: policy.Ref{File: writeTokenFile(t, tok)}}
	require.NoError(t, vault.Validate(spec))

	newStore := func(t *testing.T) *vault.Store {
		s, err := vault.New(context.Background(), vault.Config{Spec: spec})
		require.NoError(t, err)
		t.Cleanup(s.Close)
		return s
	}
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) (rotation.Store, string) {
			return newStore(t), prefix + "db/" + storetest.RunID()
		},
	})

	t.Run("outside the prefix", func(t *testing.T) {
		s := newStore(t)
		err := s.Publish(context.Background(), rotation.PublishRequest{Path: "elsewhere/db", Version: storetest.Version(t, 1, storetest.RunID())})
		require.ErrorIs(t, err, vault.ErrPermissionDenied)
	})
}

// app-reader.hcl lets an application read what rotator publishes for it,
// the current and the previous version (through appsecret, as the
// application does), and nothing more: no write, no other path.
func TestVaultAppReaderPolicy(t *testing.T) {
	t.Parallel()
	rules := parseVaultPolicy(t, filepath.Join("vault", "app-reader.hcl"))
	appPath := ""
	for p := range rules {
		if rest, ok := strings.CutPrefix(p, "secret/data/"); ok {
			appPath = rest
		}
	}
	require.NotEmpty(t, appPath, "app-reader.hcl reads one secret under secret/data/")

	v := vaultdev.New(t, vaultdev.Options{})
	writeVaultPolicy(t, v, "app-reader", filepath.Join("vault", "app-reader.hcl"))
	writeVaultPolicy(t, v, "rotator", filepath.Join("vault", "rotator.hcl"))

	// rotator publishes two versions, with its own policy.
	rotTok := v.CreateToken(t, vaultdev.TokenOptions{Policies: []string{"rotator"}, NoDefaultPolicy: true, TTL: time.Hour, Renewable: true})
	spec := &policy.VaultSpec{Address: v.Addr, Mount: "secret"}
	spec.Auth.Token = &policy.VaultTokenAuth{Token: policy.Ref{File: writeTokenFile(t, rotTok)}}
	s, err := vault.New(context.Background(), vault.Config{Spec: spec})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	v1, v2 := storetest.Version(t, 1, storetest.RunID()), storetest.Version(t, 2, storetest.RunID())
	for _, ver := range []rotation.Version{v1, v2} {
		require.NoError(t, s.Publish(context.Background(), rotation.PublishRequest{Path: appPath, Version: ver}))
	}

	appTok := v.CreateToken(t, vaultdev.TokenOptions{Policies: []string{"app-reader"}, TTL: time.Hour})
	app, err := vaultapi.NewClient(&vaultapi.Config{Address: v.Addr})
	require.NoError(t, err)
	app.SetToken(appTok)

	mount, path, _ := strings.Cut("secret/"+appPath, "/")
	// A third version from a run that failed, put back (Discard): the
	// app's previous is v1 again, not the discarded version.
	v3 := storetest.Version(t, 3, storetest.RunID())
	require.NoError(t, s.Publish(context.Background(), rotation.PublishRequest{Path: appPath, Version: v3}))
	require.NoError(t, s.Rollback(context.Background(), rotation.RollbackRequest{Path: appPath, RunID: v3.RunID, Discard: true}))

	sec, err := appsecret.Open(context.Background(), appsecret.Options{
		Name: "db", VaultMount: mount, VaultPath: path, Vault: app,
		Getenv: func(string) string { return "" },
	})
	require.NoError(t, err)
	cur := sec.Current()
	prev, ok := sec.Previous()
	require.True(t, ok, "the app finds a previous version")
	require.Equal(t, appsecret.SourceVault, cur.Source)
	require.Equal(t, v2.Credential.Secret.Fingerprint(), cur.Fingerprint, "the app reads the current version")
	require.Equal(t, appsecret.SourceVault, prev.Source, "the app reads the previous version")
	require.Equal(t, v1.Credential.Secret.Fingerprint(), prev.Fingerprint, "the app's previous is the last really-current version, not the discarded one")

	// Read only.
	_, err = app.KVv2(mount).Put(context.Background(), path, map[string]any{"password": "x"})
	requireDenied(t, err)
	_, err = app.Logical().Write(mount+"/metadata/"+path, map[string]any{"custom_metadata": map[string]any{"a": "b"}})
	requireDenied(t, err)
	requireDenied(t, app.KVv2(mount).Delete(context.Background(), path))
	// Its own secret only.
	_, err = app.KVv2(mount).Get(context.Background(), "apps/other/app")
	requireDenied(t, err)
}

func requireDenied(t *testing.T, err error) {
	t.Helper()
	var re *vaultapi.ResponseError
	require.ErrorAs(t, err, &re)
	require.Equal(t, 403, re.StatusCode, "%v", err)
}

// writeVaultPolicy writes the HCL file as it is, as `vault policy write`
// does.
func writeVaultPolicy(t *testing.T, v *vaultdev.Server, name, file string) {
	t.Helper()
	src, err := os.ReadFile(file)
	require.NoError(t, err)
	v.WritePolicy(t, name, string(src))
}

func writeTokenFile(t *testing.T, tok string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(f, []byte(tok), 0o600))
	return f
}

// deploy/aws/rotator-iam-policy.json allows exactly the Secrets Manager
// actions stores/awssm documents, on secrets only, and KMS only through
// Secrets Manager.
func TestIAMPolicyMatchesStore(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join("..", "stores", "awssm", "doc.go"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(src), "// # Required IAM actions")
	require.True(t, ok, "stores/awssm/doc.go has a \"# Required IAM actions\" section")
	section, _, _ = strings.Cut(section, "\n// # ")
	var wantSM, wantKMS []string
	for _, m := range regexp.MustCompile(`\b(secretsmanager|kms):([A-Z][a-z][A-Za-z]*)\b`).FindAllStringSubmatch(section, -1) {
		if m[1] == "kms" {
			wantKMS = append(wantKMS, m[0])
		} else {
			wantSM = append(wantSM, m[0])
		}
	}
	require.NotEmpty(t, wantSM)

	type statement struct {
		Sid       string                       `json:"Sid"`
		Effect    string                       `json:"Effect"`
		Action    []string                     `json:"Action"`
		Resource  string                       `json:"Resource"`
		Condition map[string]map[string]string `json:"Condition,omitempty"`
	}
	var doc struct {
		Version   string      `json:"Version"`
		Statement []statement `json:"Statement"`
	}
	data, err := os.ReadFile(filepath.Join("aws", "rotator-iam-policy.json"))
	require.NoError(t, err)
	require.NoError(t, strictJSON(data, &doc))
	require.Equal(t, "2012-10-17", doc.Version)
	var gotSM, gotKMS []string
	for _, s := range doc.Statement {
		require.Equal(t, "Allow", s.Effect, s.Sid)
		for _, a := range s.Action {
			require.NotContains(t, a, "*", "%s: no wildcard actions", s.Sid)
			switch {
			case strings.HasPrefix(a, "secretsmanager:"):
				gotSM = append(gotSM, a)
				require.Regexp(t, `^arn:aws:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+\*$`, s.Resource, "%s: secrets under a prefix", s.Sid)
			case strings.HasPrefix(a, "kms:"):
				gotKMS = append(gotKMS, a)
				require.Regexp(t, `^arn:aws:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}$`, s.Resource, "%s: one key", s.Sid)
				require.Contains(t, s.Condition["StringEquals"], "kms:ViaService", "%s: KMS only through Secrets Manager", s.Sid)
			default:
				t.Errorf("%s: unexpected action %s", s.Sid, a)
			}
		}
	}
	require.ElementsMatch(t, wantSM, gotSM, "secretsmanager actions: stores/awssm/doc.go vs rotator-iam-policy.json")
	require.ElementsMatch(t, wantKMS, gotKMS, "kms actions: stores/awssm/doc.go vs rotator-iam-policy.json")

	// The IRSA trust policy is valid JSON and names the ServiceAccount the
	// manifests run as.
	var trust map[string]any
	data, err = os.ReadFile(filepath.Join("aws", "irsa-trust-policy.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &trust))
	require.Contains(t, string(data), `"system:serviceaccount:rotator:rotator"`)
}
