// Build-only module for the dashboard generator behind `make generate`
// (deploy/dashboards/fledge.json), so that the Grafana SDK stays out of
// fledge's own go.mod.
module github.com/fledgehq/fledge/e2e/tools/dashboards

go 1.26

require github.com/grafana/grafana-foundation-sdk/go v0.0.22
