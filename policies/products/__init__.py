"""Products whose terms differ from the declared defaults: one TOML file each."""
