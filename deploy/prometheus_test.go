package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The alert rules ship twice: a plain rules file (deploy/prometheus) and
// a PrometheusRule (deploy/kubernetes/components/monitoring). Both are
// checked here with Debian's promtool; the end-to-end test against a real
// Prometheus scraping a live daemon is cmd/rotator's TestSeeIt.

const (
	rulesFile     = "prometheus/rotator-rules.yaml"
	rulesTestFile = "prometheus/rotator-rules.test.yaml"
	ruleManifest  = "kubernetes/components/monitoring/prometheusrule.yaml"
	runbook       = "../docs/runbook.md"
)

// ruleGroups is the groups of a rules file (Prometheus' rulefmt, the
// fields rotator uses; strict decoding catches a misspelt one).
type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

// prometheusRule is the Prometheus Operator's monitoring.coreos.com/v1
// PrometheusRule, with the fields rotator's manifest uses.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ruleGroups `json:"spec"`
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("the alert rule tests need promtool: apt-get install -y prometheus (Debian's package ships promtool)")
	}
	return p
}

func readRules(t *testing.T) ruleGroups {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	var g ruleGroups
	require.NoError(t, yaml.UnmarshalStrict(b, &g))
	require.NotEmpty(t, g.Groups)
	return g
}

// promtool accepts the rules, and the PrometheusRule's spec once written
// out as a rules file.
func TestPromtoolCheckRules(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	out, err := exec.Command(bin, "check", "rules", rulesFile).CombinedOutput()
	require.NoError(t, err, string(out))

	ms, err := decodeFile(ruleManifest)
	require.NoError(t, err)
	require.Len(t, ms, 1)
	spec, err := json.Marshal(ms[0].obj.(*prometheusRule).Spec)
	require.NoError(t, err)
	y, err := yaml.JSONToYAML(spec)
	require.NoError(t, err)
	f := filepath.Join(t.TempDir(), "from-manifest.yaml")
	require.NoError(t, os.WriteFile(f, y, 0o600))
	out, err = exec.Command(bin, "check", "rules", f).CombinedOutput()
	require.NoError(t, err, string(out))
}

// promtool's unit tests of the rules pass, and every alert has at least
// one case in them where it fires.
func TestPromtoolTestRules(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	cmd := exec.Command(bin, "test", "rules", filepath.Base(rulesTestFile))
	cmd.Dir = filepath.Dir(rulesTestFile)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "SUCCESS")

	b, err := os.ReadFile(rulesTestFile)
	require.NoError(t, err)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	require.NoError(t, yaml.Unmarshal(b, &tests))
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			fires[a.Alertname] = fires[a.Alertname] || len(a.ExpAlerts) > 0
		}
	}
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			require.True(t, fires[r.Alert], "%s has no promtool test case in which it fires", r.Alert)
		}
	}
}

// The PrometheusRule holds exactly the rules file's groups.
func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	t.Parallel()
	ms, err := decodeFile(ruleManifest)
	require.NoError(t, err)
	require.Len(t, ms, 1)
	require.Equal(t, readRules(t), ms[0].obj.(*prometheusRule).Spec)
}

// The alerts the issue asks for exist, each with a summary, a severity
// and a runbook link to an anchor that docs/runbook.md has.
func TestAlertsLinkTheRunbook(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(runbook)
	require.NoError(t, err)
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`<a id="([^"]+)"></a>`).FindAllStringSubmatch(string(b), -1) {
		anchors[m[1]] = true
	}
	var names []string
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], r.Alert)
			require.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], r.Alert)
			u := r.Annotations["runbook_url"]
			require.True(t, strings.HasPrefix(u, "https://github.com/rotator/rotator/blob/main/docs/runbook.md#"), "%s: runbook_url %q", r.Alert, u)
			anchor := u[strings.Index(u, "#")+1:]
			require.True(t, anchors[anchor], "%s links #%s, which docs/runbook.md does not have", r.Alert, anchor)
		}
	}
	sort.Strings(names)
	for _, want := range []string{"RotatorRotationFailed", "RotatorSecretOverdue", "RotatorPublishedCredentialBroken",
		"RotatorSecretDrift", "RotatorNeedsAttention", "RotatorSecretQuarantined", "RotatorDaemonDown", "RotatorNotTicking"} {
		require.Contains(t, names, want)
	}
}

// The Grafana dashboard is JSON with a Prometheus query in every panel;
// TestSeeIt (cmd/rotator) evaluates each against a live daemon.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("grafana/rotator-dashboard.json")
	require.NoError(t, err)
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &d))
	require.Equal(t, "rotator", d.UID)
	require.GreaterOrEqual(t, len(d.Panels), 10)
	for _, p := range d.Panels {
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			require.Contains(t, tg.Expr, "rotator", p.Title)
		}
	}
}
