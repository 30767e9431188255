package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"

	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/stores/awssm"
	"github.com/rotator/rotator/stores/vault"
)

const k8sDir = "kubernetes"

// ---- strict decoding ----

// newObject returns an empty value of the API type of apiVersion/kind.
// The External Secrets Operator kinds are not in k8s.io/api: they decode
// into the local types below, which carry only the fields of ESO's
// external-secrets.io/v1 API that the examples use, so a typo still fails.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}, nil
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "batch/v1/CronJob":
		return &batchv1.CronJob{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "rbac.authorization.k8s.io/v1/Role":
		return &rbacv1.Role{}, nil
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		return &rbacv1.RoleBinding{}, nil
	case "rbac.authorization.k8s.io/v1/ClusterRole":
		return &rbacv1.ClusterRole{}, nil
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}, nil
	case "external-secrets.io/v1/SecretStore":
		return &esoSecretStore{}, nil
	case "external-secrets.io/v1/ExternalSecret":
		return &esoExternalSecret{}, nil
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &prometheusRule{}, nil
	}
	return nil, fmt.Errorf("no API type known for apiVersion %q kind %q", apiVersion, kind)
}

type esoRef struct {
	Name string `json:"name"`
}

type esoSecretStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Provider struct {
			Vault *struct {
				Server  string `json:"server"`
				Path    string `json:"path"`
				Version string `json:"version"`
				Auth    struct {
					Kubernetes *struct {
						MountPath         string  `json:"mountPath"`
						Role              string  `json:"role"`
						ServiceAccountRef *esoRef `json:"serviceAccountRef"`
					} `json:"kubernetes"`
				} `json:"auth"`
			} `json:"vault"`
			AWS *struct {
				Service string `json:"service"`
				Region  string `json:"region"`
				Auth    struct {
					JWT *struct {
						ServiceAccountRef *esoRef `json:"serviceAccountRef"`
					} `json:"jwt"`
				} `json:"auth"`
			} `json:"aws"`
		} `json:"provider"`
	} `json:"spec"`
}

type esoExternalSecret struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		RefreshInterval metav1.Duration `json:"refreshInterval"`
		SecretStoreRef  struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"secretStoreRef"`
		Target struct {
			Name           string `json:"name"`
			CreationPolicy string `json:"creationPolicy"`
			DeletionPolicy string `json:"deletionPolicy,omitempty"`
			Template       *struct {
				EngineVersion string            `json:"engineVersion"`
				Type          string            `json:"type"`
				Data          map[string]string `json:"data"`
			} `json:"template,omitempty"`
		} `json:"target"`
		Data []struct {
			SecretKey string `json:"secretKey"`
			RemoteRef struct {
				Key      string `json:"key"`
				Property string `json:"property,omitempty"`
			} `json:"remoteRef"`
		} `json:"data,omitempty"`
		DataFrom []struct {
			Extract *struct {
				Key string `json:"key"`
			} `json:"extract,omitempty"`
		} `json:"dataFrom,omitempty"`
	} `json:"spec"`
}

// manifest is one decoded document of a file.
type manifest struct {
	file       string
	apiVersion string
	kind       string
	name       string
	namespace  string
	json       []byte // the document as JSON
	obj        any    // a pointer to its API type
}

func (m *manifest) key() string { return m.kind + "/" + m.name }

// strictJSON decodes data into v rejecting unknown fields and trailing data.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the object")
	}
	return nil
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// decodeFile decodes every document of a YAML file strictly into its API
// type: an unknown or misspelt field, a duplicate key or a wrong type fails.
func decodeFile(path string) ([]*manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*manifest
	for i, doc := range docSeparator.Split(string(data), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		j, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i+1, err)
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(j, &tm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i+1, err)
		}
		obj, err := newObject(tm.APIVersion, tm.Kind)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i+1, err)
		}
		if err := strictJSON(j, obj); err != nil {
			return nil, fmt.Errorf("%s: document %d (%s): %w", path, i+1, tm.Kind, err)
		}
		meta := reflect.ValueOf(obj).Elem().FieldByName("ObjectMeta").Interface().(metav1.ObjectMeta)
		if meta.Name == "" {
			return nil, fmt.Errorf("%s: document %d (%s): metadata.name is empty", path, i+1, tm.Kind)
		}
		out = append(out, &manifest{file: path, apiVersion: tm.APIVersion, kind: tm.Kind,
			name: meta.Name, namespace: meta.Namespace, json: j, obj: obj})
	}
	return out, nil
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// ---- kustomize, without the kustomize binary ----

// kustomization holds the fields of kustomize's Kustomization and
// Component that deploy/ uses; decoding is strict, so a field deploy/
// starts to use must be added here (and to build below) first.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources,omitempty"`
	Components []string `json:"components,omitempty"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
		IncludeTemplates bool              `json:"includeTemplates"`
	} `json:"labels,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
	ConfigMapGenerator []struct {
		Name     string   `json:"name"`
		Behavior string   `json:"behavior,omitempty"`
		Files    []string `json:"files"`
	} `json:"configMapGenerator,omitempty"`
	Patches []struct {
		Path string `json:"path"`
	} `json:"patches,omitempty"`
}

func readKustomization(dir string) (*kustomization, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	var k kustomization
	if err := strictJSON(j, &k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	switch {
	case k.APIVersion == "kustomize.config.k8s.io/v1beta1" && k.Kind == "Kustomization":
	case k.APIVersion == "kustomize.config.k8s.io/v1alpha1" && k.Kind == "Component":
	default:
		return nil, fmt.Errorf("%s/kustomization.yaml: apiVersion %q kind %q is neither a Kustomization nor a Component", dir, k.APIVersion, k.Kind)
	}
	return &k, nil
}

// built is the outcome of building a kustomization: its objects in order,
// and the policies files its ConfigMap generators take.
type built struct {
	objects  []*manifest
	policies map[string]string // ConfigMap name -> policies.yaml path
}

func (b *built) find(kind, name string) *manifest {
	for _, o := range b.objects {
		if o.kind == kind && o.name == name {
			return o
		}
	}
	return nil
}

func (b *built) all(kind string) []*manifest {
	var out []*manifest
	for _, o := range b.objects {
		if o.kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// build does what `kustomize build dir` does with the features deploy/
// uses: resources (files and directories), components, ConfigMap generators
// (create and replace), strategic-merge patches (which must target an
// object that exists), the namespace and image replacements.
func build(dir string) (*built, error) {
	k, err := readKustomization(dir)
	if err != nil {
		return nil, err
	}
	b := &built{policies: map[string]string{}}
	merge := func(sub *built) {
		b.objects = append(b.objects, sub.objects...)
		for n, p := range sub.policies {
			b.policies[n] = p
		}
	}
	join := func(r string) string {
		if filepath.IsAbs(r) {
			return r
		}
		return filepath.Join(dir, r)
	}
	for _, r := range k.Resources {
		p := join(r)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %w", dir, r, err)
		}
		if st.IsDir() {
			sub, err := build(p)
			if err != nil {
				return nil, err
			}
			merge(sub)
			continue
		}
		ms, err := decodeFile(p)
		if err != nil {
			return nil, err
		}
		b.objects = append(b.objects, ms...)
	}
	for _, c := range k.Components {
		p := join(c)
		ck, err := readKustomization(p)
		if err != nil {
			return nil, err
		}
		if ck.Kind != "Component" {
			return nil, fmt.Errorf("%s: components entry %s is a %s, not a Component", dir, c, ck.Kind)
		}
		sub, err := build(p)
		if err != nil {
			return nil, err
		}
		merge(sub)
	}
	for _, g := range k.ConfigMapGenerator {
		if len(g.Files) != 1 || filepath.Base(g.Files[0]) != "policies.yaml" {
			return nil, fmt.Errorf("%s: configMapGenerator %s: expected one file, policies.yaml", dir, g.Name)
		}
		file := filepath.Join(dir, g.Files[0])
		if _, err := os.Stat(file); err != nil {
			return nil, fmt.Errorf("%s: configMapGenerator %s: %w", dir, g.Name, err)
		}
		exists := b.find("ConfigMap", g.Name) != nil
		switch g.Behavior {
		case "", "create":
			if exists {
				return nil, fmt.Errorf("%s: configMapGenerator %s creates a ConfigMap that exists (use behavior: replace)", dir, g.Name)
			}
			data, _ := os.ReadFile(file)
			cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
				ObjectMeta: metav1.ObjectMeta{Name: g.Name}, Data: map[string]string{"policies.yaml": string(data)}}
			j, _ := json.Marshal(cm)
			b.objects = append(b.objects, &manifest{file: file, apiVersion: "v1", kind: "ConfigMap", name: g.Name, json: j, obj: cm})
		case "replace", "merge":
			if !exists {
				return nil, fmt.Errorf("%s: configMapGenerator %s has behavior %s but no base generates it", dir, g.Name, g.Behavior)
			}
		default:
			return nil, fmt.Errorf("%s: configMapGenerator %s: unknown behavior %q", dir, g.Name, g.Behavior)
		}
		b.policies[g.Name] = file
	}
	for _, p := range k.Patches {
		ps, err := decodeFile(filepath.Join(dir, p.Path))
		if err != nil {
			return nil, fmt.Errorf("patch: %w", err)
		}
		for _, patch := range ps {
			target := b.find(patch.kind, patch.name)
			if target == nil {
				return nil, fmt.Errorf("%s: patch %s targets %s, which is not among the resources", dir, p.Path, patch.key())
			}
			schema := reflect.New(reflect.TypeOf(target.obj).Elem()).Interface()
			merged, err := strategicpatch.StrategicMergePatch(target.json, patch.json, schema)
			if err != nil {
				return nil, fmt.Errorf("%s: patch %s: %w", dir, p.Path, err)
			}
			obj, _ := newObject(target.apiVersion, target.kind)
			if err := strictJSON(merged, obj); err != nil {
				return nil, fmt.Errorf("%s: patch %s: result: %w", dir, p.Path, err)
			}
			target.json, target.obj = merged, obj
		}
	}
	if k.Namespace != "" {
		for _, o := range b.objects {
			if o.kind != "Namespace" && !strings.HasPrefix(o.kind, "Cluster") {
				o.namespace = k.Namespace
			}
		}
	}
	for _, img := range k.Images {
		for _, c := range allContainers(b) {
			if c.Image != img.Name {
				continue
			}
			name := img.NewName
			if name == "" {
				name = img.Name
			}
			switch {
			case img.Digest != "":
				c.Image = name + "@" + img.Digest
			case img.NewTag != "":
				c.Image = name + ":" + img.NewTag
			default:
				c.Image = name
			}
		}
	}
	return b, nil
}

// podSpecs returns the pod templates of the workloads.
func podSpecs(b *built) map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for _, o := range b.objects {
		switch x := o.obj.(type) {
		case *appsv1.Deployment:
			out[o.key()] = &x.Spec.Template
		case *batchv1.CronJob:
			out[o.key()] = &x.Spec.JobTemplate.Spec.Template
		}
	}
	return out
}

func allContainers(b *built) []*corev1.Container {
	var out []*corev1.Container
	for _, t := range podSpecs(b) {
		for i := range t.Spec.InitContainers {
			out = append(out, &t.Spec.InitContainers[i])
		}
		for i := range t.Spec.Containers {
			out = append(out, &t.Spec.Containers[i])
		}
	}
	return out
}

// ---- the tests ----

// Every YAML file under deploy/kubernetes decodes strictly: manifests into
// their Kubernetes (or ESO) API types, kustomization files into the
// kustomize fields, policies files with rotator's own loader.
func TestEveryManifestDecodesStrictly(t *testing.T) {
	t.Parallel()
	n := 0
	err := filepath.WalkDir(k8sDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml") {
			return nil
		}
		n++
		switch filepath.Base(path) {
		case "kustomization.yaml":
			_, err := readKustomization(filepath.Dir(path))
			require.NoError(t, err)
		case "policies.yaml":
			requireValidPolicies(t, path)
		default:
			ms, err := decodeFile(path)
			require.NoError(t, err)
			require.NotEmpty(t, ms, "%s holds no manifest", path)
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, n, 15)
}

// The strict decoder does catch a misspelt field, a misplaced one and a
// duplicate key.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	t.Parallel()
	for name, doc := range map[string]string{
		"misspelt field": "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: x}\nspec:\n  concurencyPolicy: Forbid\n",
		"misplaced":      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      readOnlyRootFilesystem: true\n",
		"duplicate key":  "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\nmetadata: {name: y}\n",
		"unknown kind":   "apiVersion: v1\nkind: Pods\nmetadata: {name: x}\n",
	} {
		p := filepath.Join(t.TempDir(), "m.yaml")
		require.NoError(t, os.WriteFile(p, []byte(doc), 0o600))
		_, err := decodeFile(p)
		require.Error(t, err, name)
	}
}

func requireValidPolicies(t *testing.T, path string) *policy.File {
	t.Helper()
	f, err := policy.Load(path)
	require.NoError(t, err, "%s must pass `rotator validate`", path)
	for _, st := range f.Stores {
		switch {
		case st.Vault != nil:
			require.NoError(t, vault.Validate(st.Vault), "%s: store %s", path, st.Name)
		case st.AWSSM != nil:
			require.NoError(t, awssm.Validate(st.AWSSM), "%s: store %s", path, st.Name)
		case st.Files != nil:
			t.Errorf("%s: store %s: a files store in a pod writes to the pod's own disk, which no application reads", path, st.Name)
		}
	}
	return f
}

// envRefs lists the environment variables a policies file reads secrets
// from ({env: NAME} anywhere in it).
func envRefs(f *policy.File) []string {
	seen := map[string]bool{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Struct:
			if r, ok := v.Interface().(policy.Ref); ok {
				if r.Env != "" {
					seen[r.Env] = true
				}
				return
			}
			for i := 0; i < v.NumField(); i++ {
				if v.Type().Field(i).IsExported() {
					walk(v.Field(i))
				}
			}
		case reflect.Slice, reflect.Array:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i))
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				walk(v.MapIndex(k))
			}
		}
	}
	walk(reflect.ValueOf(f))
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

var overlays = map[string]struct {
	workload string // Deployment or CronJob
	replicas int32
	release  bool // the image must be a release: a tag that is not latest/main, or a digest
}{
	"dev":     {workload: "CronJob"},
	"staging": {workload: "Deployment", replicas: 1, release: true},
	"prod":    {workload: "Deployment", replicas: 2, release: true},
}

// Each overlay builds (patches decode and hit existing objects) and its
// output has the settings the runbook relies on.
func TestOverlays(t *testing.T) {
	t.Parallel()
	entries, err := os.ReadDir(filepath.Join(k8sDir, "overlays"))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{"dev", "staging", "prod"}, names)
	for name, want := range overlays {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := build(filepath.Join(k8sDir, "overlays", name))
			require.NoError(t, err)
			checkOverlay(t, name, b, want.workload, want.replicas, want.release)
		})
	}
}

// A patch aimed at an object that is not there fails the build.
func TestPatchMustTargetExistingObject(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base, err := filepath.Abs(filepath.Join(k8sDir, "base"))
	require.NoError(t, err)
	daemon, err := filepath.Abs(filepath.Join(k8sDir, "components", "daemon"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(
		"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: ["+base+"]\ncomponents: ["+daemon+"]\npatches:\n  - path: p.yaml\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: rotatr}\nspec: {replicas: 3}\n"), 0o600))
	_, err = build(dir)
	require.ErrorContains(t, err, "Deployment/rotatr, which is not among the resources")
}

func checkOverlay(t *testing.T, name string, b *built, workload string, replicas int32, release bool) {
	// Namespace with the restricted Pod Security Standard.
	nss := b.all("Namespace")
	require.Len(t, nss, 1)
	ns := nss[0].obj.(*corev1.Namespace)
	require.Equal(t, "restricted", ns.Labels["pod-security.kubernetes.io/enforce"])
	for _, o := range b.objects {
		if o.kind != "Namespace" {
			require.Equal(t, ns.Name, o.namespace, "%s is in the overlay's namespace", o.key())
		}
	}

	// One workload: the one this environment runs.
	pods := podSpecs(b)
	require.Len(t, pods, 1, "one workload per environment")
	require.NotNil(t, b.find(workload, "rotator"), "%s runs the %s", name, workload)

	// The ServiceAccount, bound to nothing, without the API token.
	sa := b.find("ServiceAccount", "rotator")
	require.NotNil(t, sa)
	require.NotNil(t, sa.obj.(*corev1.ServiceAccount).AutomountServiceAccountToken)
	require.False(t, *sa.obj.(*corev1.ServiceAccount).AutomountServiceAccountToken)
	for _, kind := range []string{"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} {
		require.Empty(t, b.all(kind), "rotator calls no Kubernetes API: no %s", kind)
	}

	for key, tpl := range pods {
		spec := tpl.Spec
		require.Equal(t, "rotator", spec.ServiceAccountName, key)
		require.NotNil(t, spec.AutomountServiceAccountToken, key)
		require.False(t, *spec.AutomountServiceAccountToken, key)
		psc := spec.SecurityContext
		require.NotNil(t, psc, key)
		require.True(t, psc.RunAsNonRoot != nil && *psc.RunAsNonRoot, key)
		require.True(t, psc.RunAsUser != nil && *psc.RunAsUser != 0, key)
		require.NotNil(t, psc.SeccompProfile, key)
		require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type, key)
		require.NotNil(t, spec.TerminationGracePeriodSeconds, key)

		// migrate runs first, from the same image.
		require.Len(t, spec.InitContainers, 1, key)
		mig := spec.InitContainers[0]
		require.Equal(t, []string{"migrate"}, append(mig.Command, mig.Args...), key)
		require.Len(t, spec.Containers, 1, key)
		main := spec.Containers[0]
		require.Equal(t, main.Image, mig.Image, "%s: migrate and the workload run the same image", key)

		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
		}
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			where := key + " container " + c.Name
			sc := c.SecurityContext
			require.NotNil(t, sc, where)
			require.True(t, sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, "%s: allowPrivilegeEscalation false", where)
			require.True(t, sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "%s: readOnlyRootFilesystem", where)
			require.True(t, sc.RunAsNonRoot != nil && *sc.RunAsNonRoot, "%s: runAsNonRoot", where)
			require.True(t, sc.Privileged == nil || !*sc.Privileged, where)
			require.NotNil(t, sc.Capabilities, where)
			require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, where)
			require.Empty(t, sc.Capabilities.Add, where)
			require.False(t, c.Resources.Requests.Cpu().IsZero(), "%s: cpu request", where)
			require.False(t, c.Resources.Requests.Memory().IsZero(), "%s: memory request", where)
			require.False(t, c.Resources.Limits.Memory().IsZero(), "%s: memory limit", where)
			checkImage(t, where, c.Image, release)
			env := envOf(c)
			require.Contains(t, env, "DATABASE_URL", where)
			require.NotNil(t, env["DATABASE_URL"].ValueFrom, "%s: DATABASE_URL comes from a Secret", where)
			require.Equal(t, "rotator-state", env["DATABASE_URL"].ValueFrom.SecretKeyRef.Name, where)
			require.Equal(t, "json", env["ROTATOR_LOG_FORMAT"].Value, where)
			for _, m := range c.VolumeMounts {
				require.Contains(t, volumes, m.Name, "%s mounts volume %s", where, m.Name)
			}
		}

		env := envOf(main)
		mounts := map[string]corev1.VolumeMount{}
		for _, m := range main.VolumeMounts {
			mounts[m.MountPath] = m
		}
		// The state key: a file from a Secret volume, never a plain value.
		require.NotContains(t, env, "ROTATOR_STATE_KEY", "%s: the key is a file, not an env value", key)
		keyFile := env["ROTATOR_STATE_KEY_FILE"].Value
		m, ok := mounts[filepath.Dir(keyFile)]
		require.True(t, ok, "%s: ROTATOR_STATE_KEY_FILE %s is on a mount", key, keyFile)
		kv := volumes[m.Name]
		require.NotNil(t, kv.Secret, "%s: the state key comes from a Secret", key)
		require.Equal(t, "rotator-state", kv.Secret.SecretName)
		require.Contains(t, kv.Secret.Items, corev1.KeyToPath{Key: "state-key", Path: filepath.Base(keyFile)})
		// policies.yaml: the generated ConfigMap, valid, and every secret it
		// references is in the container's environment.
		pol := env["ROTATOR_POLICIES"].Value
		pm, ok := mounts[filepath.Dir(pol)]
		require.True(t, ok, "%s: ROTATOR_POLICIES %s is on a mount", key, pol)
		pv := volumes[pm.Name]
		require.NotNil(t, pv.ConfigMap, key)
		file, ok := b.policies[pv.ConfigMap.Name]
		require.True(t, ok, "%s: ConfigMap %s is generated from a policies.yaml", key, pv.ConfigMap.Name)
		pf := requireValidPolicies(t, file)
		for _, ref := range envRefs(pf) {
			require.Contains(t, env, ref, "%s: %s names {env: %s}; the container must set it", key, file, ref)
		}
		// The projected token Vault's Kubernetes auth reads.
		for _, st := range pf.Stores {
			if st.Vault != nil && st.Vault.Auth.Kubernetes != nil {
				jwt := st.Vault.Auth.Kubernetes.JWTFile
				tm, ok := mounts[filepath.Dir(jwt)]
				require.True(t, ok, "%s: the Vault JWT file %s is on a mount", key, jwt)
				pj := volumes[tm.Name].Projected
				require.NotNil(t, pj, key)
				require.Len(t, pj.Sources, 1)
				require.Equal(t, "vault", pj.Sources[0].ServiceAccountToken.Audience)
				require.Equal(t, filepath.Base(jwt), pj.Sources[0].ServiceAccountToken.Path)
			}
		}
	}

	switch workload {
	case "Deployment":
		checkDeployment(t, b, replicas)
	case "CronJob":
		checkCronJob(t, b)
	}
}

func envOf(c corev1.Container) map[string]corev1.EnvVar {
	out := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		out[e.Name] = e
	}
	return out
}

var releaseTag = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

func checkImage(t *testing.T, where, image string, release bool) {
	t.Helper()
	require.True(t, strings.HasPrefix(image, "ghcr.io/rotator/rotator"), "%s: the overlay sets the image (got %q)", where, image)
	if !release {
		return
	}
	if _, digest, ok := strings.Cut(image, "@"); ok {
		require.Regexp(t, `^sha256:[0-9a-f]{64}$`, digest, where)
		return
	}
	_, tag, ok := strings.Cut(strings.TrimPrefix(image, "ghcr.io/"), ":")
	require.True(t, ok, "%s: image %q has no tag (that is :latest)", where, image)
	require.NotEqual(t, "latest", tag, where)
	require.Regexp(t, releaseTag, tag, "%s: a release tag", where)
}

func checkDeployment(t *testing.T, b *built, replicas int32) {
	d := b.find("Deployment", "rotator").obj.(*appsv1.Deployment)
	require.NotNil(t, d.Spec.Replicas)
	require.Equal(t, replicas, *d.Spec.Replicas)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	require.NoError(t, err)
	require.True(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "the selector matches the pod template")

	c := d.Spec.Template.Spec.Containers[0]
	require.Equal(t, []string{"daemon"}, append(c.Command, c.Args...))
	env := envOf(c)
	_, port, ok := strings.Cut(env["ROTATOR_LISTEN"].Value, ":")
	require.True(t, ok, "ROTATOR_LISTEN is set")
	require.Len(t, c.Ports, 1)
	require.Equal(t, port, fmt.Sprint(c.Ports[0].ContainerPort), "the daemon listens on the container port")
	portName := c.Ports[0].Name
	probe := func(p *corev1.Probe, path, what string) {
		require.NotNil(t, p, what)
		require.NotNil(t, p.HTTPGet, what)
		require.Equal(t, path, p.HTTPGet.Path, what)
		require.True(t, p.HTTPGet.Port.String() == portName || p.HTTPGet.Port.IntValue() == int(c.Ports[0].ContainerPort), "%s probes the daemon's port", what)
	}
	probe(c.LivenessProbe, "/healthz", "liveness")
	probe(c.ReadinessProbe, "/readyz", "readiness")
	probe(c.StartupProbe, "/healthz", "startup")

	svc := b.find("Service", "rotator-metrics")
	require.NotNil(t, svc, "a Service exposes the metrics port")
	s := svc.obj.(*corev1.Service)
	require.True(t, labels.Set(s.Spec.Selector).AsSelector().Matches(labels.Set(d.Spec.Template.Labels)), "the Service selects the daemon's pods")
	require.Len(t, s.Spec.Ports, 1)
	require.Equal(t, portName, s.Spec.Ports[0].TargetPort.String())
	require.Equal(t, "/metrics", s.Annotations["prometheus.io/path"])

	pdb := b.find("PodDisruptionBudget", "rotator")
	require.NotNil(t, pdb)
	psel, err := metav1.LabelSelectorAsSelector(pdb.obj.(*policyv1.PodDisruptionBudget).Spec.Selector)
	require.NoError(t, err)
	require.True(t, psel.Matches(labels.Set(d.Spec.Template.Labels)))
}

func checkCronJob(t *testing.T, b *built) {
	cj := b.find("CronJob", "rotator").obj.(*batchv1.CronJob)
	s := cj.Spec
	require.Equal(t, batchv1.ForbidConcurrent, s.ConcurrencyPolicy)
	require.NotEmpty(t, s.Schedule)
	require.NotNil(t, s.StartingDeadlineSeconds)
	require.NotNil(t, s.SuccessfulJobsHistoryLimit)
	require.NotNil(t, s.FailedJobsHistoryLimit)
	require.Positive(t, *s.FailedJobsHistoryLimit)
	js := s.JobTemplate.Spec
	require.NotNil(t, js.BackoffLimit)
	require.LessOrEqual(t, *js.BackoffLimit, int32(2))
	require.NotNil(t, js.ActiveDeadlineSeconds)
	require.Positive(t, *js.ActiveDeadlineSeconds)
	require.Equal(t, corev1.RestartPolicyNever, js.Template.Spec.RestartPolicy, "podFailurePolicy needs restartPolicy Never")
	c := js.Template.Spec.Containers[0]
	require.Equal(t, []string{"run", "--due", "--no-wait"}, append(c.Command, c.Args...))
	// The exit codes of a rotation outcome fail the Job without a retry.
	require.NotNil(t, js.PodFailurePolicy)
	var codes []int32
	for _, r := range js.PodFailurePolicy.Rules {
		if r.Action == batchv1.PodFailurePolicyActionFailJob && r.OnExitCodes != nil {
			require.Equal(t, c.Name, *r.OnExitCodes.ContainerName)
			codes = append(codes, r.OnExitCodes.Values...)
		}
	}
	require.ElementsMatch(t, []int32{2, 3, 4, 5, 6}, codes)
}
