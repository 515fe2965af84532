"""End-to-end fault scenarios: testnets described in TOML, a commerce load, perturbations
and chain-wide checks. See docs/fault-testing.md."""
