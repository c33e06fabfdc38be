package helmtest

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestRedisTopologies: the redis values render the config section the
// binary reads for each topology, and keep the rest of config.redis.
func TestRedisTopologies(t *testing.T) {
	type redisConfig struct {
		Timeout  string `json:"timeout"`
		Sentinel *struct {
			MasterName string   `json:"master_name"`
			Addresses  []string `json:"addresses"`
			Username   string   `json:"username"`
		} `json:"sentinel"`
		Cluster *struct {
			Addresses []string `json:"addresses"`
		} `json:"cluster"`
		WaitReplicas int `json:"wait_replicas"`
	}
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, r redisConfig)
	}{
		{"sentinel example", []string{"-f", filepath.Join(chartDir, "examples", "redis-sentinel.yaml")}, func(t *testing.T, r redisConfig) {
			if r.Sentinel == nil || r.Sentinel.MasterName != "mymaster" || len(r.Sentinel.Addresses) != 3 || r.Cluster != nil {
				t.Errorf("config.yaml redis = %+v, want the example's sentinel", r)
			}
			if r.WaitReplicas != 1 || r.Timeout != "250ms" {
				t.Errorf("config.yaml redis = %+v, want config.redis kept (wait_replicas 1, timeout 250ms)", r)
			}
		}},
		{"sentinel with a user", []string{"--set", "redis.sentinel.masterName=m", "--set", "redis.sentinel.addresses={s0:26379}",
			"--set", "redis.sentinel.username=watcher"}, func(t *testing.T, r redisConfig) {
			if r.Sentinel == nil || r.Sentinel.Username != "watcher" {
				t.Errorf("config.yaml redis = %+v, want sentinel username watcher", r)
			}
		}},
		{"cluster", []string{"--set", "redis.cluster.addresses={n0:6379,n1:6379}"}, func(t *testing.T, r redisConfig) {
			if r.Cluster == nil || !slices.Equal(r.Cluster.Addresses, []string{"n0:6379", "n1:6379"}) || r.Sentinel != nil {
				t.Errorf("config.yaml redis = %+v, want the two cluster seeds", r)
			}
		}},
		{"none", nil, func(t *testing.T, r redisConfig) {
			if r.Sentinel != nil || r.Cluster != nil {
				t.Errorf("config.yaml redis = %+v, want no topology", r)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cm := one[corev1.ConfigMap](t, render(t, tc.args...), fullname+"-config")
			var cfg struct {
				Redis redisConfig `json:"redis"`
			}
			if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg.Redis)
		})
	}
}

// TestStateStoreAlerts: the PrometheusRule alerts on a state store that is
// down (whatever the topology: the gauge covers one node, the Sentinel
// primary and every cluster primary) and on repeated failovers.
func TestStateStoreAlerts(t *testing.T) {
	objs := render(t, "-f", filepath.Join(chartDir, "examples", "redis-sentinel.yaml"), "--api-versions", monitoringAPI,
		"--set", "metrics.prometheusRule.stateStoreDownFor=90s", "--set", "metrics.prometheusRule.stateStoreFailoversPerHour=5")
	rules := one[prometheusRule](t, objs, fullname)
	found := map[string]bool{}
	for _, g := range rules.Spec.Groups {
		for _, r := range g.Rules {
			switch r.Alert {
			case "AuthgateStateStoreDown":
				found[r.Alert] = true
				if !strings.Contains(r.Expr, "authgate_state_store_up") || !strings.HasSuffix(strings.TrimSpace(r.Expr), "== 0") || r.For != "90s" {
					t.Errorf("AuthgateStateStoreDown = %q for %q, want authgate_state_store_up == 0 for 90s", r.Expr, r.For)
				}
			case "AuthgateStateStoreFailovers":
				found[r.Alert] = true
				if !strings.Contains(r.Expr, "increase(authgate_state_store_topology_changes_total") || !strings.HasSuffix(strings.TrimSpace(r.Expr), "> 5") {
					t.Errorf("AuthgateStateStoreFailovers = %q, want an increase of the changes above 5", r.Expr)
				}
			}
		}
	}
	if len(found) != 2 {
		t.Errorf("state store alerts found: %v, want AuthgateStateStoreDown and AuthgateStateStoreFailovers", found)
	}
}
