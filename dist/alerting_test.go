package dist

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fmagent/fmagent/internal/testutil"
	"github.com/fmagent/fmagent/internal/testutil/agenttest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rulesFile is Prometheus's rule file format (the fields we use; unknown
// fields are refused, so a typo such as "anotations" fails).
type rulesFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// yamlToJSON parses YAML with Debian's python3-yaml (the Makefile installs
// it for `make test`) and returns it as JSON.
func yamlToJSON(t *testing.T, path string) []byte {
	t.Helper()
	const prog = "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)"
	var tried []string
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		out, err := exec.Command(py, "-c", prog, path).Output()
		if err == nil {
			return out
		}
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		tried = append(tried, py+": "+msg)
	}
	t.Fatalf("cannot parse %s as YAML (needs python3 with Debian's python3-yaml; `make test` installs it):\n%s", path, strings.Join(tried, "\n"))
	return nil
}

var promDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

// metricRE finds the agent's metric names in a PromQL expression.
var metricRE = regexp.MustCompile(`\b(fmagent_[a-z0-9_]+|process_[a-z0-9_]+|go_[a-z0-9_]+)\b`)

func TestAlertRules(t *testing.T) {
	var rf rulesFile
	dec := json.NewDecoder(bytes.NewReader(yamlToJSON(t, "prometheus-alerts.yml")))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&rf))
	require.NotEmpty(t, rf.Groups)
	groups, alerts := map[string]bool{}, map[string]bool{}
	n := 0
	for _, g := range rf.Groups {
		assert.NotEmpty(t, g.Name)
		assert.False(t, groups[g.Name], "group %q twice", g.Name)
		groups[g.Name] = true
		require.NotEmpty(t, g.Rules, g.Name)
		for _, r := range g.Rules {
			n++
			assert.Regexp(t, `^Fmagent[A-Z][A-Za-z]+$`, r.Alert)
			assert.False(t, alerts[r.Alert], "alert %q twice", r.Alert)
			alerts[r.Alert] = true
			assert.NotEmpty(t, strings.TrimSpace(r.Expr), r.Alert)
			assert.Equal(t, strings.Count(r.Expr, "("), strings.Count(r.Expr, ")"), "%s: unbalanced parentheses", r.Alert)
			assert.Regexp(t, promDuration, r.For, "%s: for", r.Alert)
			assert.Contains(t, []string{"page", "ticket"}, r.Labels["severity"], "%s: severity label", r.Alert)
			assert.NotEmpty(t, r.Annotations["summary"], r.Alert)
			assert.NotEmpty(t, r.Annotations["description"], r.Alert)
		}
	}
	assert.GreaterOrEqual(t, n, 10)
	// The first complaint: a dead node pages.
	assert.True(t, alerts["FmagentPeerDown"])
}

// dashboard is the part of Grafana's dashboard model the test checks.
type dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Panels        []struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
		GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	} `json:"panels"`
}

func TestDashboard(t *testing.T) {
	d := readDashboard(t)
	assert.Equal(t, "fmagent-cluster", d.UID)
	assert.NotEmpty(t, d.Title)
	assert.GreaterOrEqual(t, d.SchemaVersion, 30)
	require.NotEmpty(t, d.Panels)
	ids := map[int]bool{}
	for _, p := range d.Panels {
		assert.False(t, ids[p.ID], "panel id %d twice", p.ID)
		ids[p.ID] = true
		assert.NotEmpty(t, p.Title)
		assert.Contains(t, []string{"timeseries", "stat", "table", "gauge"}, p.Type, p.Title)
		assert.True(t, p.GridPos.W > 0 && p.GridPos.H > 0 && p.GridPos.X+p.GridPos.W <= 24, "%s: gridPos", p.Title)
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			assert.NotEmpty(t, tg.RefID, p.Title)
			assert.NotEmpty(t, tg.Expr, p.Title)
			assert.Equal(t, strings.Count(tg.Expr, "("), strings.Count(tg.Expr, ")"), "%s: unbalanced parentheses", p.Title)
		}
	}
}

func readDashboard(t *testing.T) dashboard {
	b, err := os.ReadFile("grafana-dashboard.json")
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(b, &d))
	return d
}

// TestShippedQueriesUseExportedMetrics runs two agents on loopback, scrapes
// one's /metrics once they see each other, and checks that every metric the
// alert rules and the dashboard name is in the scrape, and that the series
// operators alert on are there with their labels.
func TestShippedQueriesUseExportedMetrics(t *testing.T) {
	scrape := scrapeTwoNodeCluster(t)
	families := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(scrape))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = true
			if f[3] == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					families[f[2]+s] = true
				}
			}
		}
	}
	var rf rulesFile
	require.NoError(t, json.Unmarshal(yamlToJSON(t, "prometheus-alerts.yml"), &rf))
	var used []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			used = append(used, metricRE.FindAllString(r.Expr, -1)...)
		}
	}
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			used = append(used, metricRE.FindAllString(tg.Expr, -1)...)
		}
	}
	slices.Sort(used)
	used = slices.Compact(used)
	require.GreaterOrEqual(t, len(used), 15)
	for _, m := range used {
		assert.True(t, families[m], "%s is used by the shipped rules or dashboard but the agent does not export it", m)
	}

	for _, want := range []string{
		`fmagent_peer_up{peer="2"} 1`,
		`fmagent_link_up{net="a",peer="2"} 1`,
		`fmagent_link_up{net="b",peer="2"} 1`,
		`fmagent_alarms_active{severity="critical"} 0`,
		`fmagent_alarms_active{severity="indeterminate"} 0`,
		`fmagent_entities{kind="node",state="up"} 2`,
		`fmagent_entities{kind="service",state="down"} 0`,
		`fmagent_build_info{commit=`,
		`process_cpu_seconds_total `,
		`process_resident_memory_bytes `,
		`process_open_fds `,
		`go_goroutines `,
		`go_info{version="go`,
	} {
		assert.Contains(t, scrape, "\n"+want, "scrape lacks %s", want)
	}
	t.Logf("%d metric names used by the shipped rules and dashboard, all exported (%d families in the scrape)", len(used), len(families))
}

// scrapeTwoNodeCluster starts two agents on lo (random groups, port and
// cluster ID), waits until node 1 sees node 2 up on both networks, checks
// /healthz, and returns node 1's /metrics.
func scrapeTwoNodeCluster(t *testing.T) string {
	t.Helper()
	maddr, _ := startTwoNodeCluster(t)
	return scrapeWhenFormed(t, maddr)
}

// startTwoNodeCluster starts two agents on lo and returns node 1's metrics
// address and API socket.
func startTwoNodeCluster(t *testing.T) (maddr, sock1 string) {
	t.Helper()
	n := testutil.NewNet(t)
	maddr = testutil.FreeTCPAddr(t)
	dir := t.TempDir()
	for id := 1; id <= 2; id++ {
		cfg := n.Config(id, dir)
		if id == 1 {
			cfg.Metrics.Listen = maddr
			sock1 = cfg.Paths.Socket
		}
		cfg.AllowAlone = true
		agenttest.Start(t, cfg, nil)
	}
	return maddr, sock1
}

// scrapeWhenFormed scrapes maddr until node 1 sees node 2 up on both
// networks, checks /healthz and returns the scrape.
func scrapeWhenFormed(t *testing.T, maddr string) string {
	t.Helper()
	get := func(path string) (int, string) {
		hc := http.Client{Timeout: 2 * time.Second}
		resp, err := hc.Get("http://" + maddr + path)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var body string
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, b := get("/metrics")
		body = b
		if code == 200 && strings.Contains(b, `fmagent_link_up{net="b",peer="2"} 1`) && strings.Contains(b, `fmagent_entities{kind="node",state="up"} 2`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 1 never saw node 2 up on both networks; last scrape:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, health := get("/healthz")
	assert.Equal(t, 200, code, health)
	assert.Equal(t, "ok\n", health)
	return "\n" + body
}
